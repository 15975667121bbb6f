"""Comparing designs with paired differences: the t interval, the paired t-test with Holm's correction across
designs and the decision rule of docs/results/plan-pretrained.md, the random-effects pooling of domains, the tables of docs/results.md and sweeps'
``results.md``, and the plots. Pure functions of result rows (``design``, ``seed``, ``fraction``,
``metric``, ``mAP``): no training, no files but the plot asked for."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .design import GENERAL

__all__ = ["paired_interval", "paired_p", "holm", "decide", "pooled_effect", "ahead", "interval_text", "table", "plot"]


def paired_interval(diffs: Sequence[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided (1 - alpha) t interval of paired differences (nan bounds for one pair)."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_p(diffs: Sequence[float]) -> float:
    """The two-sided paired t-test p-value of mean difference 0 (1 for one pair; 0 or 1 when every pair is equal)."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return 1.0
    if all(d == diffs[0] for d in diffs):  # no spread: the t statistic is infinite, or 0/0 at mean 0
        return 0.0 if mean != 0 else 1.0
    return float(stats.ttest_1samp(list(diffs), 0.0).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the order given.

    Hand-written because it is four lines (statsmodels' ``multipletests`` does the same with arrays).
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def decide(pairs: dict[str, Sequence[float]], margin: float | None = None, alpha: float = 0.05) -> dict[str, dict]:
    """Per design, the verdict of its paired differences to the general head, corrected across the designs given.

    ``better`` / ``worse``: Holm's step-down rejects "no difference" at family-wise ``alpha`` (sign of the mean);
    ``no effect within +-margin``: otherwise, if the Bonferroni interval (alpha / number of designs) lies
    inside [-margin, +margin]; else ``inconclusive`` (the word of docs/results/plan-pretrained.md). Each entry:
    n, mean, low, high (plain 1 - alpha interval), half (its half-width), p, p_holm, bonferroni (low, high),
    ahead (:func:`ahead`), verdict.
    """
    names = [d for d in pairs if len(pairs[d])]
    ps = [paired_p(pairs[d]) for d in names]
    out = {}
    for d, p, ph in zip(names, ps, holm(ps)):
        mean, lo, hi = paired_interval(pairs[d], alpha)
        _, blo, bhi = paired_interval(pairs[d], alpha / len(names))
        if ph < alpha and mean != 0:
            verdict = "better" if mean > 0 else "worse"
        elif margin is not None and -margin <= blo and bhi <= margin:
            verdict = f"no effect within +-{margin:g}"
        else:
            verdict = "inconclusive"
        out[d] = {"n": len(pairs[d]), "mean": mean, "low": lo, "high": hi, "half": (hi - lo) / 2, "p": p,
                  "p_holm": ph, "bonferroni": (blo, bhi), "ahead": ahead(pairs[d]), "verdict": verdict}
    return out


def pooled_effect(effects: Sequence[float], variances: Sequence[float], alpha: float = 0.05) -> dict:
    """A random-effects meta-analysis of per-domain effects (e.g. mean paired differences, each with its squared
    standard error): the Paule-Mandel between-domain variance tau^2 and the pooled mean from statsmodels'
    ``combine_effects``, with the Hartung-Knapp-Sidik-Jonkman interval, mean +- t(1 - alpha/2, k-1) x its
    weighted-residual standard error (statsmodels' ``sd_eff_w_re_hksj``; the t quantile is the few lines the
    library leaves to the caller). Returns k, mean, se, low, high, p (two-sided, t with k-1 df), tau2, i2 (the
    share of the spread beyond sampling error, 0 when negative). As published, HKSJ is narrower than the plain
    random-effects interval when the domains agree more closely than their standard errors say (zero width when
    they agree exactly): read a very narrow pooled interval with its domains' own."""
    import numpy as np
    from scipy import stats
    from statsmodels.stats.meta_analysis import combine_effects

    y, v = np.asarray(effects, float), np.asarray(variances, float)
    k = len(y)
    if k < 2:
        raise ValueError(f"pooled_effect: {k} domain(s); a random-effects interval needs at least 2")
    with np.errstate(divide="ignore", invalid="ignore"):  # I^2 of effects that agree exactly: 1 - 1/0
        r = combine_effects(y, v, method_re="pm")
    mean, se = float(r.mean_effect_re), float(r.sd_eff_w_re_hksj)
    i2 = float(r.i2)
    t = float(stats.t.ppf(1 - alpha / 2, k - 1))
    p = 1.0 if se == 0 and mean == 0 else (0.0 if se == 0 else float(2 * stats.t.sf(abs(mean / se), k - 1)))
    return {"k": k, "mean": mean, "se": se, "low": mean - t * se, "high": mean + t * se, "p": p,
            "tau2": float(r.tau2), "i2": max(0.0, i2) if math.isfinite(i2) else 0.0}


def ahead(diffs: Sequence[float]) -> str:
    """``k/n``: in how many of the ``n`` paired differences the design is ahead (strictly above 0)."""
    return f"{sum(d > 0 for d in diffs)}/{len(diffs)}"


def interval_text(diffs: Sequence[float]) -> str:
    """``+0.12 [-0.40, +0.64]``: the mean paired difference and its 95 % interval (the mean alone for one pair)."""
    mean, lo, hi = paired_interval(diffs)
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else f"{mean:+.2f}"


def _cells(rows: list[dict]) -> tuple[list[str], list[float], dict]:
    designs = list(dict.fromkeys([GENERAL] + [r["design"] for r in rows]))
    designs = [d for d in designs if any(r["design"] == d for r in rows)]
    fractions = sorted({r["fraction"] for r in rows})
    by = {}
    for r in rows:
        by.setdefault((r["design"], r["fraction"]), {})[r["seed"]] = r["mAP"] * 100
    return designs, fractions, by


def _paired(pairs: list[float]) -> str:
    """A paired difference to the general head: mean [95 % interval], pairs ahead."""
    return f"{interval_text(pairs)}, ahead {ahead(pairs)}"


def table(rows: list[dict]) -> str:
    """Markdown: rows = designs, columns = fractions; mean +- std, paired difference to the general head.

    With several fractions, a last column pools every (fraction, seed) pair of a design.
    """
    designs, fractions, by = _cells(rows)
    metric = rows[0]["metric"]
    pooled = len(fractions) > 1
    head = "| Configuration | " + " | ".join(f"{f * 100:g} % of train" for f in fractions) + \
        (" | all pairs |" if pooled else " |")
    lines = [f"{metric} mAP (%) on the test split: mean +- std over seeds; below it, the paired difference "
             f"to {GENERAL} (same seed and subset) with its 95 % t interval, and in how many of those pairs the "
             f"design is ahead" + ("; the last column pools the pairs of every column" if pooled else "") +
             ". Best mean per column in bold.", "",
             head, "|---" * (len(fractions) + 1 + pooled) + "|"]
    best = {f: max(designs, key=lambda d: _mean(by.get((d, f), {}))) for f in fractions}
    pairs_of: dict[str, list[float]] = {}
    for d in designs:
        line, pairs = _design_row(d, fractions, by, best, pooled)
        lines.append(line)
        if pairs:
            pairs_of[d] = pairs
    if pairs_of:
        verdict: dict[str, list[str]] = {"better": [], "worse": [], "inconclusive": []}
        for d, v in decide(pairs_of).items():
            verdict[v["verdict"]].append(d)
        lines += ["", _verdict_line(verdict, pooled)]
    return "\n".join(lines) + "\n"


def _design_row(d: str, fractions: list, by: dict, best: dict, pooled: bool) -> tuple[str, list[float]]:
    """A design's table row and its paired differences to the general head over every column."""
    cells, everything = [], []
    for f in fractions:
        vals = by.get((d, f), {})
        if not vals:
            cells.append("")
            continue
        cell = f"{_mean(vals):.2f} +- {_std(vals):.2f} (n={len(vals)})"
        if best[f] == d:
            cell = f"**{cell}**"
        base = by.get((GENERAL, f), {})
        pairs = [vals[k] - base[k] for k in vals if k in base]
        if d != GENERAL and pairs:
            cell += f"<br>{_paired(pairs)}"
            everything += pairs
        cells.append(cell)
    if pooled:
        cells.append(_paired(everything) if everything else "")
    return f"| {d} | " + " | ".join(cells) + " |", everything


def _verdict_line(verdict: dict[str, list[str]], pooled: bool) -> str:
    n = sum(map(len, verdict.values()))
    return (f"Verdict from paired t-tests ({'all pairs' if pooled else 'paired differences'}; "
            f"{n} comparison{'s' * (n > 1)}, Holm-corrected to a family-wise 5 %): better than {GENERAL}: "
            f"{', '.join(verdict['better']) or 'none'}; worse: {', '.join(verdict['worse']) or 'none'}; "
            f"inconclusive (no difference shown, or a single pair): {', '.join(verdict['inconclusive']) or 'none'}.")


def _mean(vals: dict) -> float:
    return sum(vals.values()) / len(vals) if vals else -math.inf


def _std(vals: dict) -> float:
    if len(vals) < 2:
        return 0.0
    m = _mean(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals.values()) / (len(vals) - 1))


def plot(rows: list[dict], path: str | Path) -> Path:
    """The metric against training-set size, one line per design, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs, fractions, by = _cells(rows)
    sizes = {r["fraction"]: r.get("train_images") or r["fraction"] for r in rows}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, d in enumerate(designs):
        xs = [f for f in fractions if by.get((d, f))]
        ax.errorbar([sizes[f] * (1 + 0.012 * (k - len(designs) / 2)) for f in xs], [_mean(by[(d, f)]) for f in xs],
                    yerr=[_std(by[(d, f)]) for f in xs], marker="o", capsize=3, label=d,
                    linewidth=2.4 if d == GENERAL else 1.4, color="black" if d == GENERAL else None)
    xs_all = [sizes[f] for f in fractions]
    ax.set_xscale("log")
    ax.set_xlim(min(xs_all) / 1.6, max(xs_all) * 1.6)
    ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
    ax.minorticks_off()
    ax.set_xlabel("training images" if all(r.get("train_images") for r in rows) else "fraction of the training set")
    ax.set_ylabel(f"{rows[0]['metric']} mAP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
