"""A study's report, generated from its rows only: per stage and dataset, each arm's mean and spread, the picks,
and the plan's decision (paired differences to the baseline, Holm across the declared family:
:func:`hierhead.comparison.decide`). Written to ``<rows>/report.md`` and into every marked block of the plan's
``docs``::

    <!-- study: NAME/STAGE -->
    (generated: replaced by ``hierhead study report``)
    <!-- /study -->

(``<!-- study: NAME/STAGE summary -->``: one line per dataset and arm, with the plan's ``reference`` numbers
beside it: :func:`summary_table`; ``... summary ARM -->`` one arm's lines only; ``... compact -->``: the decision alone, an arm per line and a dataset per
column: :func:`compact_table`; ``... wins -->``: in how many seeds each arm was the best: :func:`wins_table`;
``... picks -->``: the values the stage's picks carry, with their rules: :func:`picks_list`; ``... table [DATASET]
-->``: Table III's form, designs by fractions with the paired difference to the general head: :func:`fraction_table`)

so a number quoted in the docs cannot drift from its rows. A stage with missing rows is reported as
incomplete, with no verdict: a result is quoted once all its pre-registered rows exist.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from ..comparison import decide, holm, paired_interval, plot, pooled_effect, table
from .plan import Decision, Plan, Stage, row_values, seed_counts
from .runner import _own_rows, _row_key, jobs, picks, read_rows, stage_rows

__all__ = ["stage_table", "summary_table", "compact_table", "fraction_table", "report", "write_report", "adopted",
           "BLOCK"]

BLOCK = re.compile(r"(<!-- study: (?P<id>[^ ]+?)(?: (?P<view>summary|compact|wins|picks|table|decision)(?: (?P<arm>[\w-]+))?)? -->\n)"
                   r"(?P<body>.*?)(<!-- /study -->)", re.S)


def decision_table(plan: Plan, stage: Stage, _: str | None = None) -> str:
    """The stage's decisions alone (each rule's table, as in the stage's table), for a page that quotes the verdict
    (the README's "Does it help?"): nothing until every row exists."""
    rows, complete = stage_rows(plan, stage.name)
    if not complete or not stage.decisions:
        return f"({stage.name}: {len(rows)} of {len(jobs(plan, stage.name))} rows; no verdict yet)\n"
    value = row_values(rows, plan.metric)
    return "\n\n".join("\n".join(RULES[d.rule](plan, stage, d, value)) for d in stage.decisions) + "\n"


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _num(x: float, sign: bool = False) -> str:
    return "n/a" if math.isnan(x) else (f"{x:+.2f}" if sign else f"{x:.2f}")


def stage_table(plan: Plan, stage: Stage) -> str:
    """The Markdown of one stage: a table per dataset (arm, n, mean, SD, min-max, seconds; with a decision, the
    paired difference to the baseline, its 95 % t interval, Holm p and verdict), then the pick."""
    rows, complete = stage_rows(plan, stage.name)
    metric = plan.metric
    lines = [f"**{plan.name} / {stage.name}**: {metric} ({'VOC07 mAP' if metric == 'mAP' else 'COCO ' + metric}, %) "
             f"on {'a ' + format(stage.holdout, '.0%') + ' holdout of train' if stage.score == 'holdout' else 'the test split'}"
             f", last checkpoint{_seeds_said(plan, stage)}; {len(rows)} of {len(jobs(plan, stage.name))} rows "
             f"(`{_shown(plan, _rows_path(plan, stage))}`)"
             + ("" if complete else "; **incomplete: not quoted, no verdict, until every row exists**") + "."]
    if not rows:
        return lines[0] + "\n"
    value = row_values(rows, metric)
    for d in plan.datasets_of(stage.name):
        head = "| arm | design | n | mean | SD | min - max | min/run |"
        lines += ["", f"{d.name}:", "", head, "|" + "---|" * (head.count("|") - 1)]
        for a in stage.arms:
            vals = [v for (ds, arm, _, _), v in value.items() if ds == d.name and arm == a.name]
            secs = [float(r["seconds"]) for r in rows if r["dataset"] == d.name and r["arm"] == a.name and r["seconds"]]
            shown = vals if complete else []  # scores are not shown until every row exists
            lines.append(f"| {a.name} | `{a.design}` | {len(vals)} | {_num(sum(shown) / len(shown)) if shown else '-'} | "
                         f"{_num(_sd(shown)) if shown else '-'} | "
                         f"{f'{min(shown):.2f} - {max(shown):.2f}' if shown else '-'} | "
                         f"{f'{sum(secs) / len(secs) / 60:.1f}' if secs else 'n/a'} |")
    made = picks(plan) if complete and stage.picks else {}
    for p in stage.picks if complete else ():
        need = seed_counts(plan, stage, p, rows)[0] if p.rule == "seeds" and p.hours is not None else None
        capped = f" (the half-width alone would need {need!r})" if need not in (None, made[f"{stage.name}.{p.name}"]) else ""
        lines += ["", f"Pick `{stage.name}.{p.name}` ({_pick_rule(p, metric)}): {made[f'{stage.name}.{p.name}']!r}{capped}."]
    for dec in stage.decisions if complete else ():
        lines += ["", *RULES[dec.rule](plan, stage, dec, value)]
    return "\n".join(lines) + "\n"


def _seeds_said(plan: Plan, stage: Stage) -> str:
    """A stage's seeds in the table's first line where they are not the plan's: listed, or counted by a pick."""
    if stage.seed_count:
        first, ref = stage.seed_count
        n = picks(plan, upto=stage.name).get(ref)
        count = (", ".join(f"{d} {k}" for d, k in n.items()) if isinstance(n, dict) else n) if n else "not made yet"
        return f"; seeds from {first}, as many as pick `{ref}` counts ({count})"
    return f"; seeds {', '.join(map(str, stage.seeds))}" if stage.seeds and stage.seeds != plan.seeds else ""


def picks_list(plan: Plan, stage: Stage, _: str | None = None) -> str:
    """The stage's picks as a list: name, value, rule (nothing until the stage is complete)."""
    made = picks(plan)
    lines = [f"- `{stage.name}.{p.name}` = {made[f'{stage.name}.{p.name}']!r}: {_pick_rule(p, plan.metric)}"
             for p in stage.picks if f"{stage.name}.{p.name}" in made]
    return "\n".join(lines) + "\n" if lines else f"({stage.name}: not finished; no picks yet)\n"


def _pick_rule(p, metric: str) -> str:
    """A pick's rule in words."""
    if p.rule == "seeds":
        return (f"the smallest n in [{p.min_n}, {p.max_n}] with t(0.975, n-1) s / sqrt(n) <= {p.half_width:g}, s the "
                f"largest SD of the paired differences to `{p.baseline}`{' of each dataset' if p.per == 'dataset' else ''}"
                + (f"; at most {p.hours:g} h of runs, each dataset's seed costing every arm's run at its median "
                   f"seconds here, {p.workers} at a time (over it, the largest n cut to a common ceiling)"
                   if p.hours is not None else ""))
    among = f" among {', '.join(p.among)}" if p.among else ""
    where = {"all": "pooled over the datasets", "dataset": "per dataset", "each": "on every dataset"}[p.per]
    tie = (f"; within {p.tolerance:g} of it, the first of {', '.join(p.prefer) or 'them in the stage order'}"
           if p.tolerance else "")
    return f"{p.setting} of the arm with the highest mean {metric}{among}, {where}{tie}"


def _holm_rule(plan: Plan, stage: Stage, dec: Decision, value: dict) -> list[str]:
    """The ``holm`` rule's table: each arm against the baseline, per dataset."""
    verdicts = _decisions(plan, dec, value)
    lines = [f"Against `{dec.baseline}`: paired differences (same dataset, seed, fraction); Holm across "
             f"{'the arms of each dataset' if dec.family == 'arms' else 'every dataset x arm'} at {dec.alpha:g}; "
             f"better / worse when the Holm-adjusted p < {dec.alpha:g}"
             + (f", no effect when the Bonferroni interval lies within +-{dec.margin:g}" if dec.margin else "")
             + ", else inconclusive.", "",
             f"| arm | dataset | minus {dec.baseline} [95 % CI] | ahead | Holm p | verdict |", "|---|---|---|---|---|---|"]
    for a in stage.arms:
        for d in plan.datasets_of(stage.name):
            v = verdicts.get((d.name, a.name))
            if v:
                lines.append(f"| {a.name} | {d.name} | {_num(v['mean'], True)} [{_num(v['low'], True)}, "
                             f"{_num(v['high'], True)}] | {v['ahead']} | {v['p_holm']:.3f} | {v['verdict']} |")
    return lines


def _spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "n/a"


def _rows_path(plan: Plan, stage: Stage) -> list[Path]:
    """Where the stage's rows are: its legacy CSVs if it has them (and its own once it has any), else its own."""
    own = plan.rows_file(stage.name)
    if stage.name not in plan.legacy:
        return [own]
    return [old["file"] for old in plan.legacy[stage.name]] + ([own] if own.is_file() else [])


def _shown(plan: Plan, paths: list[Path]) -> str:
    """Paths as the docs name them: relative to the plan's folder when inside it, else to that folder's parent
    (the repository, for the plans in ``studies/``)."""
    def one(path: Path) -> str:
        for base in (plan.path.parent, plan.path.parent.parent):
            try:
                return str(path.relative_to(base))
            except ValueError:
                continue
        return path.name
    return "`, `".join(map(one, paths))


def summary_table(plan: Plan, stage: Stage, arm: str | None = None) -> str:
    """One line per dataset (and arm, when the stage has several): training images, VOC07 mAP, AP50 and AP as mean
    (range) over seeds, minutes a run and its threads, seeds; then the columns of the plan's ``reference`` CSV
    for that dataset (published numbers, e.g. Roboflow 100's)."""
    arms = [stage.arm(arm)] if arm else list(stage.arms)
    keys = {j.row_key() for j in jobs(plan, stage.name) if j.arm in {a.name for a in arms}}
    rows = [r for r in read_rows(plan, stage.name) if _row_key(r) in keys]
    reference: dict[str, dict] = {}
    if plan.reference:
        with plan.reference.open(newline="") as f:
            reference = {r["dataset"]: r for r in csv.DictReader(f)}
    extra = [c for c in next(iter(reference.values()), {}) if c not in ("dataset", "source")]
    several = len(arms) > 1
    metrics = [m for m in ("mAP", "AP50", "AP") if any(r[m] != "" for r in rows)] or ["mAP"]
    names = {"mAP": "VOC07 mAP", "AP50": "AP50", "AP": "AP"}
    head = ("| dataset |" + (" arm |" if several else "") + " training images |"
            + "".join(f" {names[m]} |" for m in metrics) + " minutes a run | seeds |" + "".join(f" {c} |" for c in extra))
    where = (f"a {stage.holdout:.0%} holdout of train" if stage.score == "holdout" else "the test split")
    complete = len(rows) == len(keys)
    lines = [f"Mean (range) over seeds, in %, on {where}, last checkpoint; {len(rows)} of {len(keys)} rows "
             f"(`{_shown(plan, _rows_path(plan, stage))}`)"
             + ("" if complete else "; **incomplete: the scores are not shown until every row exists**") + ".", "",
             head,
             "|" + "---|" * (head.count("|") - 1)]
    for d in plan.datasets_of(stage.name):
        for a in arms:
            mine = [r for r in rows if r["dataset"] == d.name and r["arm"] == a.name]
            secs = [float(r["seconds"]) for r in mine if r["seconds"]]
            threads = sorted({r["threads"] for r in mine if r["seconds"] and r["threads"]})
            images = sorted({r["train_images"] for r in mine if r["train_images"]})
            minutes = (f"{sum(secs) / len(secs) / 60:.1f}" + (f" ({'/'.join(threads)} thread{'s' * (threads != ['1'])})"
                                                             if threads else "")) if secs else "n/a"
            ref = reference.get(d.name, {})
            lines.append(f"| {d.name} |" + (f" {a.name} |" if several else "") + f" {'/'.join(images) or 'n/a'} | "
                         + " | ".join(_spread([float(r[m]) for r in mine if r[m] != ""]) if complete else "-"
                                      for m in metrics)
                         + f" | {minutes} | {len(mine)} |" + "".join(f" {ref.get(c, '') or ''} |" for c in extra))
    return "\n".join(lines) + "\n"


def _compared(stage: Stage, dec: Decision) -> list[str]:
    """The arms a decision compares with its baseline (``arms``, default every other arm), in the stage's order."""
    return [a.name for a in stage.arms if a.name != dec.baseline and (not dec.arms or a.name in dec.arms)]


def compact_table(plan: Plan, stage: Stage, baseline: str | None = None) -> str:
    """A ``holm`` decision of the stage (the one against ``baseline``, default the first) in one table: an arm per
    line, a dataset per column, each cell the paired difference to the baseline [95 % CI] and its verdict (bold
    when decided: better or worse). Nothing until every row exists."""
    rows, complete = stage_rows(plan, stage.name)
    dec = next((d for d in stage.decisions if d.rule == "holm" and baseline in (None, d.baseline)), None)
    if not complete or dec is None:
        return f"({stage.name}: {len(rows)} of {len(jobs(plan, stage.name))} rows; no decision to show yet)\n"
    verdicts = _decisions(plan, dec, row_values(rows, plan.metric))
    head = "| design |" + "".join(f" {d.name} |" for d in plan.datasets_of(stage.name))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for a in _compared(stage, dec):
        cells = []
        for d in plan.datasets_of(stage.name):
            v = verdicts[(d.name, a)]
            cell = f"{_num(v['mean'], True)} [{_num(v['low'], True)}, {_num(v['high'], True)}] {v['verdict']}"
            cells.append(f"**{cell}**" if v["verdict"] in ("better", "worse") else cell)
        lines.append(f"| `{stage.arm(a).row_label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def wins_table(plan: Plan, stage: Stage, arm: str | None = None) -> str:
    """In how many seeds (and fractions) each arm had the best value of its dataset (ties count for each arm at
    the top), against chance (1 in the number of arms); ``arm``: that arm's line only."""
    rows, complete = stage_rows(plan, stage.name)
    if not complete:
        return f"({stage.name}: {len(rows)} of {len(jobs(plan, stage.name))} rows; no counts yet)\n"
    value = row_values(rows, plan.metric)
    head = "| design |" + "".join(f" {d.name} |" for d in plan.datasets_of(stage.name))
    lines = [f"Seeds in which the design had the best {plan.metric} of the {len(stage.arms)} (chance: 1 in "
             f"{len(stage.arms)}):", "", head, "|" + "---|" * (head.count("|") - 1)]
    for a in ([stage.arm(arm)] if arm else stage.arms):
        cells = []
        for d in plan.datasets_of(stage.name):
            cases = sorted({(s, f) for (n, _, s, f) in value if n == d.name})
            best = sum(value[(d.name, a.name, s, f)] == max(value[(d.name, b.name, s, f)] for b in stage.arms)
                       for s, f in cases)
            cells.append(f"{best} of {len(cases)}")
        lines.append(f"| `{a.row_label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fraction_table(plan: Plan, stage: Stage, dataset: str | None = None) -> str:
    """Per dataset (or the one named), the paper's Table III form (:func:`hierhead.comparison.table`): an arm
    per line by its label, a fraction of train per column, mean +- SD over seeds, the paired difference to the
    general head with its 95 % t interval, and a verdict Holm-corrected across the arms. Nothing until every row
    exists."""
    rows, complete = stage_rows(plan, stage.name)
    if not complete:
        return f"({stage.name}: {len(rows)} of {len(jobs(plan, stage.name))} rows; no table yet)\n"
    out = []
    for d in plan.datasets_of(stage.name):
        if dataset not in (None, d.name):
            continue
        out.append(("" if dataset else f"{d.name}:\n\n") + table(_fraction_rows(plan, stage, rows, d.name)))
    return "\n".join(out)


def _fraction_rows(plan: Plan, stage: Stage, rows: list[dict], dataset: str) -> list[dict]:
    """A dataset's rows in :mod:`hierhead.comparison`'s form (the arm's label as its design, mAP a fraction)."""
    metric = {"mAP": "voc07", "AP50": "COCO AP50", "AP": "COCO AP"}[plan.metric]
    return [{"design": stage.arm(r["arm"]).row_label, "seed": int(r["seed"]), "fraction": float(r["fraction"]),
             "mAP": float(r[plan.metric]) / 100, "metric": metric,
             "train_images": int(r["train_images"]) if r["train_images"] else None}
            for r in rows if r["dataset"] == dataset]


def write_sweep_summary(plan: Plan, stage: Stage) -> None:
    """A one-dataset sweep's ``results.md`` (Table III form, of the rows there are so far) and ``results.png``
    (the metric against training-set size) beside its rows."""
    rows = [r for r in read_rows(plan, stage.name) if r[plan.metric] != ""]
    d = plan.datasets_of(stage.name)[0].name
    mine = _fraction_rows(plan, stage, rows, d)
    (plan.rows / "results.md").write_text(table(mine))
    plot(mine, plan.rows / "results.png")


def _pairs(dec: Decision, value: dict) -> dict[tuple, list[float]]:
    """(dataset, arm) -> the arm's paired differences to the baseline (same dataset, seed, fraction)."""
    base_arm = dec.baseline
    pairs: dict[tuple, list[float]] = {}
    for (ds, arm, seed, f), v in value.items():
        base = value.get((ds, base_arm, seed, f))
        if arm != base_arm and base is not None and (not dec.arms or arm in dec.arms):
            pairs.setdefault((ds, arm), []).append(v - base)
    return pairs


def adopt_verdicts(plan: Plan, stage: Stage, dec: Decision, value: dict) -> dict[str, dict]:
    """arm -> the ``adopt`` rule's result: n, mean, low, high (the pooled pairs), per (dataset -> mean difference),
    adopt (bool) and verdict (its words)."""
    pairs = _pairs(dec, value)
    names = [d.name for d in plan.datasets_of(stage.name)]
    out = {}
    for a in _compared(stage, dec):
        everything = [d for n in names for d in pairs.get((n, a), [])]
        mean, lo, hi = paired_interval(everything, dec.alpha)
        per = {n: sum(pairs[(n, a)]) / len(pairs[(n, a)]) for n in names if pairs.get((n, a))}
        adopt = mean > 0 and lo >= -dec.margin and min(per.values()) >= -dec.margin
        why = ("mean <= 0" if mean <= 0 else f"lower bound {lo:+.2f} < -{dec.margin:g}" if lo < -dec.margin
               else f"{min(per, key=per.get)} {min(per.values()):+.2f}")
        out[a] = {"n": len(everything), "mean": mean, "low": lo, "high": hi, "per": per, "adopt": adopt,
                       "verdict": "adopt" if adopt else f"keep {dec.baseline} ({why})"}
    return out


def adopted(plan: Plan, stage_name: str) -> dict[str, bool] | None:
    """arm -> whether the stage's ``adopt`` decision adopts it; None until every row of the stage exists (what the
    built-in defaults follow: tests/test_study.py checks them against it)."""
    stage = plan.stage(stage_name)
    rows, complete = stage_rows(plan, stage_name)
    dec = next(d for d in stage.decisions if d.rule == "adopt")
    if not complete:
        return None
    return {a: r["adopt"] for a, r in adopt_verdicts(plan, stage, dec, row_values(rows, plan.metric)).items()}


def _adopt(plan: Plan, stage: Stage, dec: Decision, value: dict) -> list[str]:
    """The ``adopt`` rule's table: per arm, the pooled paired difference and each dataset's mean difference."""
    names = [d.name for d in plan.datasets_of(stage.name)]
    head = (f"| arm | pooled minus {dec.baseline} [{1 - dec.alpha:.0%} CI] | n | "
            + " | ".join(names) + " | verdict |")
    lines = [f"Pooled over the datasets (rule `adopt`: mean > 0, lower bound >= -{dec.margin:g}, no dataset's mean "
             f"below -{dec.margin:g}):", "", head, "|" + "---|" * (head.count("|") - 1)]
    for a, r in adopt_verdicts(plan, stage, dec, value).items():
        lines.append(f"| {a} | {_num(r['mean'], True)} [{_num(r['low'], True)}, {_num(r['high'], True)}] | {r['n']} | "
                     + " | ".join(_num(r['per'][n], True) if n in r['per'] else "n/a" for n in names)
                     + f" | {r['verdict']} |")
    return lines


def holds_verdicts(plan: Plan, stage: Stage, dec: Decision, value: dict) -> dict[str, dict]:
    """arm -> the ``holds`` rule's result: ``per`` (dataset -> n, mean, low, high of the paired difference to the
    baseline, ``holds``: >= 2 pairs and the lower bound >= -margin, ``time``: the median over seeds of the arm's run
    seconds over the baseline's, same seed) and ``holds`` (on every dataset)."""
    import statistics

    rows, _ = stage_rows(plan, stage.name)
    seconds = {(r["dataset"], r["arm"], int(r["seed"]), float(r["fraction"])): float(r["seconds"])
               for r in rows if r.get("seconds")}
    pairs = _pairs(dec, value)
    names = [d.name for d in plan.datasets_of(stage.name)]
    out = {}
    for a in _compared(stage, dec):
        per = {}
        for n in names:
            diffs = pairs.get((n, a), [])
            mean, lo, hi = paired_interval(diffs, dec.alpha) if diffs else (math.nan,) * 3
            ratios = [seconds[k] / seconds[(n, dec.baseline, *k[2:])] for k in seconds
                      if k[0] == n and k[1] == a and seconds.get((n, dec.baseline, *k[2:]))]
            per[n] = {"n": len(diffs), "mean": mean, "low": lo, "high": hi,
                      "holds": len(diffs) > 1 and lo >= -dec.margin,
                      "time": statistics.median(ratios) if ratios else math.nan}
        out[a] = {"per": per, "holds": all(p["holds"] for p in per.values())}
    return out


def _holds_rule(plan: Plan, stage: Stage, dec: Decision, value: dict) -> list[str]:
    """The ``holds`` rule's table: per arm and dataset, the paired difference, its interval and the time ratio."""
    lines = [f"Against `{dec.baseline}` (rule `holds`: the lower bound of the paired {1 - dec.alpha:.0%} t interval "
             f">= -{dec.margin:g} on every dataset; no correction across arms, each is its own change; time: the "
             f"median over seeds of the run's seconds over `{dec.baseline}`'s, same seed):", "",
             f"| arm | dataset | n | minus {dec.baseline} [{1 - dec.alpha:.0%} CI] | time | verdict |",
             "|---|---|---|---|---|---|"]
    for a, r in holds_verdicts(plan, stage, dec, value).items():
        for n, d in r["per"].items():
            verdict = "holds" if d["holds"] else "does not hold"
            lines.append(f"| {a} | {n} | {d['n']} | {_num(d['mean'], True)} [{_num(d['low'], True)}, "
                         f"{_num(d['high'], True)}] | {d['time']:.2f}x | {verdict} |")
        lines.append(f"| **{a}** | **all** | | | | **{'holds' if r['holds'] else 'does not hold'}** |")
    return lines


def sd_ratio(first: list[float], second: list[float], alpha: float = 0.05) -> tuple[float, float, float]:
    """(SD(second) / SD(first), low, high): the ratio of two paired samples' SDs (the same seeds) with scipy's
    paired percentile bootstrap (9,999 resamples of the seeds, a fixed seed so a report is reproducible)."""
    import numpy as np
    from scipy import stats

    def ratio(a, b, axis=-1):
        return np.std(b, ddof=1, axis=axis) / np.std(a, ddof=1, axis=axis)

    a, b = np.asarray(first, float), np.asarray(second, float)
    point = float(ratio(a, b))
    ci = stats.bootstrap((a, b), ratio, paired=True, vectorized=True, n_resamples=9999, method="percentile",
                         confidence_level=1 - alpha, random_state=np.random.default_rng(0)).confidence_interval
    return point, float(ci.low), float(ci.high)


def spread_verdicts(plan: Plan, stage: Stage, dec: Decision, value: dict) -> dict[str, dict]:
    """dataset -> the ``spread`` rule's result (see :class:`~hierhead.study.plan.Decision`): n, the two SDs, the
    ratio with its interval, ``lower`` (by >= 30 %), and ``effects`` ({(new, old): mean, low, high, holds} for the
    change applied to each arm of the comparison)."""
    (a, b), (c, d) = dec.pairs
    out = {}
    for ds in plan.datasets_of(stage.name):
        seeds = sorted({(s, f) for (n, _, s, f) in value if n == ds.name})
        cell = {arm: [value[(ds.name, arm, s, f)] for s, f in seeds] for arm in (a, b, c, d)}
        first = [x - y for x, y in zip(cell[a], cell[b])]
        second = [x - y for x, y in zip(cell[c], cell[d])]
        ratio, lo, hi = sd_ratio(first, second, dec.alpha)
        effects = {}
        for new, old in ((c, a), (d, b)):
            mean, elo, ehi = paired_interval([x - y for x, y in zip(cell[new], cell[old])], dec.alpha)
            effects[(new, old)] = {"mean": mean, "low": elo, "high": ehi, "holds": elo >= -dec.margin}
        out[ds.name] = {"n": len(seeds), "sd_first": _sd(first), "sd_second": _sd(second), "ratio": ratio, "low": lo,
                        "high": hi, "lower": ratio <= 0.7 and hi < 1, "effects": effects}
    return out


def _spread_rule(plan: Plan, stage: Stage, dec: Decision, value: dict) -> list[str]:
    """The ``spread`` rule's tables (see :class:`~hierhead.study.plan.Decision`)."""
    (a, b), (c, d) = dec.pairs
    lines = [f"Spread (rule `spread`): the SD over seeds of `{a}` minus `{b}` against that of `{c}` minus `{d}`, "
             f"their ratio with a paired bootstrap {1 - dec.alpha:.0%} interval; \"lower by >= 30 %\" when the ratio "
             f"is <= 0.7 and the interval's upper bound < 1. The change's own effect: `{c}` minus `{a}` and `{d}` "
             f"minus `{b}`, t interval, \"holds\" when the lower bound >= -{dec.margin:g}.", "",
             f"| dataset | n | SD {a} - {b} | SD {c} - {d} | ratio [{1 - dec.alpha:.0%} CI] | spread | {c} - {a} | "
             f"{d} - {b} |", "|---|---|---|---|---|---|---|---|"]
    for name, r in spread_verdicts(plan, stage, dec, value).items():
        effects = [f"{_num(e['mean'], True)} [{_num(e['low'], True)}, {_num(e['high'], True)}] "
                   f"{'holds' if e['holds'] else 'does not hold'}" for e in r["effects"].values()]
        lines.append(f"| {name} | {r['n']} | {r['sd_first']:.2f} | {r['sd_second']:.2f} | {r['ratio']:.2f} "
                     f"[{r['low']:.2f}, {r['high']:.2f}] | {'lower by >= 30 %' if r['lower'] else 'not shown lower by 30 %'} "
                     f"| {effects[0]} | {effects[1]} |")
    return lines


def meta_verdicts(plan: Plan, stage: Stage, dec: Decision, value: dict) -> dict[str, dict]:
    """arm -> the ``meta`` rule's result (:class:`~hierhead.study.plan.Decision`): ``per`` (dataset -> paired t
    interval entry: n, mean, low, high, se2, base), ``pooled`` (:func:`~hierhead.comparison.pooled_effect`),
    ``p_holm``, ``bonferroni`` (the HKSJ interval at alpha / arms), ``verdict`` and ``seeds_needed`` (for an
    inconclusive arm: the seeds per dataset that would bring the HKSJ half-width to the margin at this tau^2 and
    these SDs, or None when tau^2 alone keeps it wider)."""
    from scipy import stats

    pairs = _pairs(dec, value)
    names = [d.name for d in plan.datasets_of(stage.name)]
    pooled_names = [n for n in (dec.pool or names) if n != dec.origin]
    arms = _compared(stage, dec)
    out = {}
    for a in arms:
        per = {}
        for n in names:
            diffs = pairs.get((n, a), [])
            if len(diffs) > 1:
                mean, lo, hi = paired_interval(diffs, dec.alpha)
                base = [v for (ds, arm, _, _), v in value.items() if ds == n and arm == dec.baseline]
                per[n] = {"n": len(diffs), "mean": mean, "low": lo, "high": hi, "se2": _sd(diffs) ** 2 / len(diffs),
                          "sd": _sd(diffs), "base": sum(base) / len(base)}
        used = [n for n in pooled_names if n in per]
        pooled = pooled_effect([per[n]["mean"] for n in used], [per[n]["se2"] for n in used], dec.alpha)
        out[a] = {"per": per, "pooled": pooled, "used": used}
    for a, p in zip(arms, holm([out[a]["pooled"]["p"] for a in arms])):
        r, k = out[a]["pooled"], out[a]["pooled"]["k"]
        half = float(stats.t.ppf(1 - dec.alpha / (2 * len(arms)), k - 1)) * r["se"]
        r_b = (r["mean"] - half, r["mean"] + half)
        if p < dec.alpha and r["mean"] != 0:
            verdict = "better" if r["mean"] > 0 else "worse"
        elif -dec.margin <= r_b[0] and r_b[1] <= dec.margin:
            verdict = f"no effect within +-{dec.margin:g}"
        else:
            verdict = "inconclusive"
        out[a].update(p_holm=p, bonferroni=r_b, verdict=verdict,
                      seeds_needed=_meta_seeds(out[a], dec, len(arms)) if verdict == "inconclusive" else None)
    return out


MOST_SEEDS = 1000  # the meta rule's search for the seeds a dataset would need


def _meta_seeds(result: dict, dec: Decision, arms: int, most: int = MOST_SEEDS) -> int | None:
    """The seeds per pooled dataset for which the Bonferroni HKSJ half-width would reach the margin, each dataset's
    paired SD and tau^2 as measured (its weights 1 / (tau^2 + SD^2 / n)); None when not within ``most``."""
    from scipy import stats

    k, tau2 = result["pooled"]["k"], result["pooled"]["tau2"]
    t = float(stats.t.ppf(1 - dec.alpha / (2 * arms), k - 1))
    sds = [result["per"][n]["sd"] for n in result["used"]]
    for n in range(2, most + 1):
        if t * math.sqrt(1 / sum(1 / (tau2 + sd ** 2 / n) for sd in sds)) <= dec.margin:
            return n
    return None


def _meta_rule(plan: Plan, stage: Stage, dec: Decision, value: dict) -> list[str]:
    """The ``meta`` rule's table: per arm, each dataset's paired difference, then the pooled line."""
    results = meta_verdicts(plan, stage, dec, value)
    names = [d.name for d in plan.datasets_of(stage.name)]
    lines = [f"Against `{dec.baseline}`: per dataset the paired difference (same seed) with its "
             f"{1 - dec.alpha:.0%} t interval; pooled over {', '.join(next(iter(results.values()))['used'])} by a "
             f"random-effects meta-analysis (Paule-Mandel tau^2, Hartung-Knapp-Sidik-Jonkman interval, k - 1 df)"
             + (f", {dec.origin} (where the hypothesis was found) beside it, not pooled" if dec.origin else "")
             + f"; Holm across the arms at {dec.alpha:g}: better / worse when the Holm-adjusted p < {dec.alpha:g}, "
             f"no effect when the Bonferroni interval lies within +-{dec.margin:g}, else inconclusive.", "",
             f"| arm | dataset | n | {dec.baseline} mean | minus {dec.baseline} [{1 - dec.alpha:.0%} CI] | verdict |",
             "|---|---|---|---|---|---|"]
    for a, r in results.items():
        for n in names:
            if n in r["per"]:
                d = r["per"][n]
                note = " (origin, not pooled)" if n == dec.origin else ""
                lines.append(f"| {a} | {n}{note} | {d['n']} | {d['base']:.2f} | {_num(d['mean'], True)} "
                             f"[{_num(d['low'], True)}, {_num(d['high'], True)}] | |")
        p = r["pooled"]
        need = (f"; about {r['seeds_needed']} seeds a dataset would bring the interval within +-{dec.margin:g}"
                if r["seeds_needed"] else f"; not within +-{dec.margin:g} at up to {MOST_SEEDS} seeds a dataset (tau^2 keeps "
                "it wide)"
                if r["verdict"] == "inconclusive" else "")
        lines.append(f"| **{a}** | **pooled (k={p['k']})**: tau^2 {p['tau2']:.2f}, I^2 {p['i2']:.0%}, Holm p "
                     f"{r['p_holm']:.3f} | | | **{_num(p['mean'], True)} [{_num(p['low'], True)}, "
                     f"{_num(p['high'], True)}]** | **{r['verdict']}**{need} |")
    return lines + (_explore(plan, stage, dec, results) if dec.explore else [])


_VARIATIONS: dict[tuple, dict] = {}  # variation_of's results: a report reads them for report.md, each docs block
#                                     showing the stage and the scatter, and each opens the dataset


def variation_of(plan: Plan, stage: Stage, dec: Decision, name: str) -> dict:
    """:func:`hierhead.recommend.design_for` of one dataset's training split as the stage's ``dec.baseline`` jobs
    train on it (its first seed: the holdout's carve, the re-split's train part; the run's image size, ``auto``
    chosen as the run chooses it): the Table II variations over sizes and aspect ratios, the paper's pick, and
    ``x``, sizes minus ratios. Computed once per plan file version, stage and dataset in a process."""
    key = (plan.path, plan.path.stat().st_mtime_ns, stage.name, dec.baseline, name)
    if key not in _VARIATIONS:
        _VARIATIONS[key] = _variation(plan, stage, dec, name)
    return _VARIATIONS[key]


def _variation(plan: Plan, stage: Stage, dec: Decision, name: str) -> dict:
    import warnings

    from ..data.stats import table_two
    from ..engine.choose import resolve_auto
    from ..engine.data import open_config_splits
    from ..engine.from_config import image_size
    from ..recommend import design_for
    from .protocols import job_config

    job = next(j for j in jobs(plan, stage.name) if j.dataset == name and j.arm == dec.baseline)
    config = resolve_auto(job_config(plan, job, picks(plan, upto=stage.name), plan.runs / job.key))[0]
    with warnings.catch_warnings():  # the reader's warnings belong to the runs, not to the report
        warnings.simplefilter("ignore")
        train = open_config_splits(config)[0]
    side = (image_size(config) or (300, 300))[0]
    pick = design_for(table_two(train, side))
    return {**pick, "image_size": side, "x": pick["size_variation"] - pick["ratio_variation"]}


def _predicted(design: str) -> str:
    """The sign of r the paper's reading predicts for a design: sharing across sizes (``S``) should help where
    sizes vary more (r > 0), across aspect ratios (``As``) where ratios do (r < 0)."""
    return "> 0" if design.endswith("}S") else "< 0" if design.endswith("}As") else "none"


def _explore(plan: Plan, stage: Stage, dec: Decision, results: dict) -> list[str]:
    """``explore: variation``: each dataset's effect beside its Table II statistic, Pearson's r with its 95 %
    interval (Fisher's z, scipy) per arm, and the scatter ``<stage>-explore.png`` beside the report."""
    from scipy import stats

    names = [d.name for d in plan.datasets_of(stage.name)]
    var = {n: variation_of(plan, stage, dec, n) for n in names}
    arms = list(results)
    lines = ["", f"Exploratory, not a test (no claim beyond it): does the effect track the dataset's Table II "
             f"statistic x = variation over sizes minus over aspect ratios (variation = 1 - normalised entropy of "
             f"the 3 buckets, the training split at the run's input size; the paper's reading shares across the "
             f"dimension that varies more: x > 0 favours `S`, x < 0 `As`; the pick is `hierhead recommend`'s). "
             f"Scatter: `{_shown(plan, [plan.rows / f'{stage.name}-explore.png'])}`.", "",
             "| dataset | sizes | aspect ratios | x | paper's pick | " + " | ".join(arms) + " |",
             "|---|---|---|---|---|" + "---|" * len(arms)]
    for n in names:
        v = var[n]
        effects = [_num(results[a]["per"][n]["mean"], True) if n in results[a]["per"] else "n/a" for a in arms]
        lines.append(f"| {n}{' (origin)' if n == dec.origin else ''} | {v['size_variation']:.2f} | "
                     f"{v['ratio_variation']:.2f} | {v['x']:+.2f} | "
                     f"`{v['design']}` | " + " | ".join(effects) + " |")
    lines.append("")
    for a in arms:
        have = [n for n in names if n in results[a]["per"]]
        x = [var[n]["x"] for n in have]
        y = [results[a]["per"][n]["mean"] for n in have]
        design = stage.arm(a).design
        if len(have) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
            lines.append(f"- {a} (`{design}`): r n/a ({len(have)} datasets)")
            continue
        r = stats.pearsonr(x, y)
        lo, hi = r.confidence_interval(0.95) if len(have) > 3 else (math.nan, math.nan)
        lines.append(f"- {a} (`{design}`): Pearson r {r.statistic:+.2f} [{_num(lo, True)}, {_num(hi, True)}] over "
                     f"{len(have)} datasets{', the origin among them' if dec.origin in have else ''} (the "
                     f"paper's reading predicts r {_predicted(design)})")
    return lines


def explore_plot(plan: Plan, stage: Stage, dec: Decision, path: Path) -> Path:
    """The scatter of ``explore: variation``: per arm, each dataset's effect (its t interval as a bar) against
    the Table II statistic x; the origin hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, _ = stage_rows(plan, stage.name)
    results = meta_verdicts(plan, stage, dec, row_values(rows, plan.metric))
    names = [d.name for d in plan.datasets_of(stage.name)]
    var = {n: variation_of(plan, stage, dec, n) for n in names}
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (a, r) in zip(axes[0], results.items()):
        for n in (n for n in names if n in r["per"]):
            d, x = r["per"][n], var[n]["x"]
            ax.errorbar([x], [d["mean"]], yerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]], marker="o",
                        capsize=3, color="black", mfc="white" if n == dec.origin else "black")
            ax.annotate(n + (" (origin)" if n == dec.origin else ""), (x, d["mean"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.axvline(0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{a} `{stage.arm(a).design}`", fontsize=9)
        ax.set_xlabel("variation over sizes minus over aspect ratios")
        ax.set_ylabel(f"minus {dec.baseline}, {plan.metric} points")
        ax.grid(alpha=0.3)
    fig.suptitle("Exploratory: effect vs Table II statistic (not a test)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return path


RULES = {"holm": _holm_rule, "adopt": _adopt, "spread": _spread_rule, "meta": _meta_rule, "holds": _holds_rule}
"""Each decision rule's table writer (:class:`~hierhead.study.plan.Decision` says what each decides)."""


def _decisions(plan: Plan, dec: Decision, value: dict) -> dict:
    """(dataset, arm) -> :func:`~hierhead.comparison.decide`'s entry for the arm against the baseline."""
    pairs = _pairs(dec, value)
    families = ([[k for k in pairs if k[0] == d.name] for d in plan.datasets] if dec.family == "arms"
                else [list(pairs)])
    out = {}
    for family in families:
        if family:
            result = decide({"\0".join(k): pairs[k] for k in family}, dec.margin, dec.alpha)
            out.update({tuple(k.split("\0")): v for k, v in result.items()})
    return out


def report(plan: Plan) -> str:
    """The whole report of a plan (Markdown)."""
    lines = [f"# Study `{plan.name}`", "",
             f"Generated by `hierhead study report {plan.path.name}` from the rows in this folder; do not edit.", ""]
    if plan.question:
        lines += [plan.question, ""]
    own = "".join(f", arm {a.name}: `{a.recipe}`" for s in plan.stages for a in s.arms if a.recipe)
    recipe = f"recipe `{plan.recipe}`" if plan.recipe else "the built-in defaults"
    lines += [f"Protocol `{plan.protocol}`, {recipe}{own}, seeds {', '.join(map(str, plan.seeds))}, "
              f"datasets {', '.join(d.name for d in plan.datasets)}.", ""]
    lines += [line, ""] if (line := registration_line(plan)) else []
    for s in plan.stages:
        lines += [stage_table(plan, s), summary_table(plan, s)]
        if len(s.fractions or plan.fractions) > 1:  # the tables above pool the fractions: each column apart
            lines += [fraction_table(plan, s)]
    return "\n".join(lines)


def registration_line(plan: Plan) -> str:
    """Whether the plan came before its rows, from git: the commit that first added the plan file, and whether the
    code of each of the plan's own rows (its ``legacy`` rows are other files') descends from it; "" for a plan in
    no git history."""
    from ..provenance import registration

    commits = [r["commit"] for s in plan.stages for r in _own_rows(plan, s.name)]
    done = [c for c in commits if c]
    reg = registration(plan.path, done)
    name = _shown(plan, [plan.path])
    if reg is None:  # not committed (a sweep's or demo's own plan, a draft): nothing to show
        return ""
    line = f"Registration: `{name}` first committed in {reg['commit'][:7]} ({reg['date'][:16].replace('T', ' ')})"
    legacy = sum(len(read_rows(plan, s.name)) for s in plan.stages) - len(commits)
    old = f"{legacy} rows read from other files (`legacy`) are not checked here" if legacy else ""
    if not commits:
        return line + "; " + (old or "no rows yet") + "."
    parts = [f"the code of {reg['after']} of its {len(commits)} own rows descends from that commit"] + ([old] if old else [])
    if reg["before"]:
        parts.append(f"**rows ran code older than the plan**: {', '.join(c[:7] for c in reg['before'])}")
    if reg["unknown"]:
        parts.append(f"commits this history lacks: {', '.join(c[:7] for c in reg['unknown'])}")
    if len(done) < len(commits):
        parts.append(f"{len(commits) - len(done)} rows name no commit")
    return line + "; " + "; ".join(parts) + "."


def write_report(plan: Plan, check: bool = False) -> list[Path]:
    """Write ``report.md`` and every marked block of the plan's docs; returns the files that changed (with
    ``check``, the files whose rows' content would change, nothing written). A block naming an unknown stage is an error."""
    wanted = {plan.rows / "report.md": report(plan)}
    tables = {f"{plan.name}/{s.name}": None for s in plan.stages}
    for doc in plan.docs:
        text = doc.read_text()

        def fill(m: re.Match) -> str:
            ident = m.group("id")
            if not ident.startswith(plan.name + "/"):
                return m.group(0)  # another study's block
            if ident not in tables:
                raise ValueError(f"{doc}: block 'study: {ident}' names no stage of {plan.path.name}")
            stage = plan.stage(ident.split("/", 1)[1])
            view = m.group("view")  # BLOCK admits only the views named here
            if view:
                view_of = {"summary": summary_table, "compact": compact_table, "wins": wins_table,
                           "picks": picks_list, "table": fraction_table, "decision": decision_table}[view]
                return m.group(1) + view_of(plan, stage, m.group("arm")) + m.group(6)
            if tables[ident] is None:
                tables[ident] = stage_table(plan, stage)
            return m.group(1) + tables[ident] + m.group(6)

        wanted[doc] = BLOCK.sub(fill, text)
    def same(path: Path, text: str) -> bool:  # check: the registration line is git's, not the rows' (a shallow
        if not path.is_file():                 # clone or a tarball cannot show it): compared without it
            return False
        old = path.read_text()
        if check:
            old, text = (re.sub(r"(?m)^Registration: .*\n\n", "", t) for t in (old, text))
        return old == text

    changed = [p for p, text in wanted.items() if not same(p, text)]
    plots = [(s, d, plan.rows / f"{s.name}-explore.png") for s in plan.stages for d in s.decisions
             if d.explore and stage_rows(plan, s.name)[1]]
    plots = [(s, d, path) for s, d, path in plots if plan.rows / "report.md" in changed or not path.is_file()]
    if not check:  # the scatter is drawn when the report changes (or is missing)
        for p in changed:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(wanted[p])
        for s, d, path in plots:
            explore_plot(plan, s, d, path)
    return changed + [path for _, _, path in plots]
