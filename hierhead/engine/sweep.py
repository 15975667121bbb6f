"""Sweeps: every design x seed x training-set fraction, resumable, summarised like Tables III-V.

Each run trains with the recipe, then its *last* checkpoint is evaluated on the test split
(no model selection on the test set). A finished run leaves ``result.json``; a killed sweep
skips those and continues. ``results.csv`` has one row per run; ``results.md`` mean +- std over
seeds per design and fraction, the paired difference to the general head (same seed and subset)
with a 95 % t interval and the number of pairs the design is ahead in, the best design per column
in bold, and a verdict (better / worse / undecided by those intervals); ``results.png`` the metric
against training-set size.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Sequence

from ..design import PRESETS, Design
from .optim import parse_unit_lr_scale
from .recipes import resolve

__all__ = ["sweep", "jobs", "summarise", "paired_interval", "slug", "GENERAL", "PROTOCOLS"]

GENERAL = "9An{9}"
# two-sided 95 % Student t quantiles for 1..30 degrees of freedom
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired_interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of paired differences (nan bounds for one pair)."""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = (_T95[n - 2] if n - 1 <= len(_T95) else 1.96) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def slug(design: str) -> str:
    """A design name as a folder name: 9An{9,3,1}As -> 9An_9-3-1As."""
    return design.replace("{", "_").replace("}", "").replace(",", "-")


def run_dir(out: Path, design: str, seed: int, fraction: float) -> Path:
    return out / "runs" / f"f{fraction:g}" / f"{slug(design)}" / f"seed{seed}"


def jobs(designs: Sequence[str] | str = "all", seeds: int = 3,
         fractions: Sequence[float] = (1.0,)) -> list[tuple[float, str, int]]:
    """A sweep's (fraction, design, seed) runs in order; the general head is always among the designs.

    Checked before any training: every design name, ``seeds >= 1``, each fraction in (0, 1].
    """
    designs = list(PRESETS) if designs == "all" else list(designs)
    if GENERAL not in designs:
        designs = [GENERAL] + designs
    for d in designs:  # fail early on a bad name, before hours of training
        name, _ = variant(d)
        Design.parse(name, num_sizes=3, num_ratios=3)
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: needs at least 1")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ValueError(f"fractions {bad or list(fractions)}: each must be in (0, 1]")
    return [(f, d, s) for f in fractions for s in range(seeds) for d in designs]


PROTOCOLS = ("scratch", "finetune", "head")


def variant(label: str) -> tuple[str, dict]:
    """A design label with optimiser changes, compared in the same sweep as the rest:
    ``'9An{9,3}S@auto'`` -> ``('9An{9,3}S', {"unit_lr_scale": "auto"})`` (also ``@0.25``: the units'
    ``optimizer.unit_lr_scale``); ``'9An{9}@lr3'`` -> ``('9An{9}', {"lr_factor": 3.0})`` (the whole lr
    times 3: a control for the extra step size the units give the shared directions)."""
    name, _, tag = label.partition("@")
    if "@" not in label:
        return name, {}
    if tag.startswith("lr"):
        try:
            factor = float(tag[2:])
        except ValueError:
            factor = 0.0
        if not factor > 0:
            raise ValueError(f"design {label!r}: @lrX needs a factor X > 0, e.g. @lr3")
        return name, {"lr_factor": factor}
    parse_unit_lr_scale(tag)
    return name, {"unit_lr_scale": tag}


def _optimizer_change(section: dict, change: dict) -> dict:
    out = dict(section)
    if "unit_lr_scale" in change:
        out["unit_lr_scale"] = change["unit_lr_scale"]
    if "lr_factor" in change:
        out["lr"] = float(section["lr"]) * change["lr_factor"]
    return out


def sweep(recipe: str, data: str, designs: Sequence[str] | str = "all", seeds: int = 3,
          fractions: Sequence[float] = (1.0,), out: str | Path = "runs/sweep", overrides: dict | None = None,
          metric: str | None = None, log=print, shard: tuple[int, int] = (0, 1), protocol: str = "scratch",
          init: str | Path | None = None) -> list[dict]:
    """Train and evaluate every (fraction, design, seed); returns all rows (finished ones are reused).

    Args:
        recipe: recipe name or YAML file (``--set`` overrides in ``overrides``).
        data: the dataset (its train split is trained on, its test/val split scored).
        designs: ``"all"`` (Table I) or names; the general head is always among them.
        seeds: seeds 0..seeds-1; a seed draws the subset, the init and the batch order.
        fractions: fractions of the training split.
        out: the sweep folder (resumable: finished runs are skipped).
        protocol: ``scratch`` (the recipe from its own init), ``finetune`` (the whole detector from
            ``init``) or ``head`` (only the prediction convs, from ``init``'s frozen features, see
            :mod:`hierhead.engine.head`; settings in the recipe's ``head`` section).
        init: the start checkpoint of ``finetune`` and ``head``.
        shard: ``(i, n)`` runs every n-th job from the i-th: n processes (GPUs, machines with a
            shared folder) split one sweep; each rewrites the summary from all finished runs.
    """
    from .data import open_config_splits

    out = Path(out)
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: needs 0 <= i < n")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: unknown; choose {', '.join(PROTOCOLS)}")
    if protocol != "scratch" and not init:
        raise ValueError(f"protocol {protocol!r} starts from a trained model: give --init CKPT")
    if protocol == "scratch" and init:
        raise ValueError("--init starts the finetune or head protocol: give --protocol finetune or head")
    todo = jobs(designs, seeds, fractions)
    overrides = overrides or {}

    def config(fraction: float = 1.0, **over) -> dict:
        return resolve(recipe, {**overrides, **over, "init": str(init) if init else None,
                                "data": {**overrides.get("data", {}), "path": data, "fraction": fraction}})

    open_config_splits(config())  # a missing or broken dataset fails here, not after the first run
    _same_settings(out, {"protocol": protocol, "init": str(init) if init else None,
                         **({"head": config()["head"]} if protocol == "head" else {})})
    mine = [(k, job) for k, job in enumerate(todo, 1)
            if (k - 1) % count == index and not (run_dir(out, job[1], job[2], job[0]) / "result.json").is_file()]
    if protocol == "head" and mine:
        from .head import HeadProtocol
        runner = HeadProtocol(config(), log)
    else:
        runner = None
    for k, (fraction, design, seed) in mine:
        folder = run_dir(out, design, seed, fraction)
        name, change = variant(design)
        run = config(design=name, seed=seed, out=str(folder), validate=False, fraction=fraction)
        if change:  # the variant's optimiser, in the section its protocol trains with
            run["optimizer"] = _optimizer_change(run["optimizer"], change)
            run["head"] = {**run["head"], "optimizer": _optimizer_change(run["head"]["optimizer"], change)}
        log(f"[{k}/{len(todo)}] {design} seed {seed} fraction {fraction:g}")
        row = runner.run(run, metric) if runner else _trained_run(run, folder, metric)
        opt = run["head"]["optimizer"] if protocol == "head" else run["optimizer"]
        row = {"design": design, "seed": seed, "fraction": fraction, "protocol": protocol,
               "optimizer": opt["name"], "lr": opt["lr"], "unit_lr_scale": opt.get("unit_lr_scale", 1.0), **row}
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "result.json.tmp"
        tmp.write_text(json.dumps(row))
        tmp.replace(folder / "result.json")
        summarise(out)
    return summarise(out)


def _same_settings(out: Path, settings: dict) -> None:
    """A sweep folder holds one protocol's runs: refuse to add runs of other settings to it."""
    path = out / "sweep.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        for key in sorted(set(saved) | set(settings)):
            if saved.get(key) != settings.get(key):
                raise ValueError(f"{str(out)!r} holds a sweep with {key}={saved.get(key)!r}, this one has "
                                 f"{key}={settings.get(key)!r}: use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1))


def _trained_run(run: dict, folder: Path, metric: str | None) -> dict:
    """A scratch or finetune run: Lightning training, then the last checkpoint on the test split."""
    from .checkpoint import load_checkpoint
    from .data import open_config_splits
    from .infer import evaluate_model
    from .trainer import train

    resume = (folder / "checkpoints" / "last.ckpt").is_file()
    result = train(run, resume=resume)
    model, _ = load_checkpoint(result["last"])
    _, test = open_config_splits(run)
    scores = evaluate_model(model, test, metric or run["metric"])
    return {"train_images": result.get("train_images"), "steps": result["steps"], "metric": scores["metric"],
            "mAP": scores.get("mAP", scores.get("AP")), "train_seconds": result["train_seconds"]}


def _rows(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*/*/result.json"))]


def summarise(out: str | Path) -> list[dict]:
    """Rewrite results.csv, results.md and results.png from the finished runs under ``out``."""
    out = Path(out)
    rows = _rows(out)
    if not rows:
        return rows
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tag = f".{os.getpid()}.tmp"  # shards may summarise at once: write aside, then rename
    with open(out / f"results.csv{tag}", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    (out / f"results.md{tag}").write_text(table(rows))
    plot(rows, out / f"results{tag}.png")
    for name in ("results.csv", "results.md"):
        os.replace(out / f"{name}{tag}", out / name)
    os.replace(out / f"results{tag}.png", out / "results.png")
    return rows


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
    dm, lo, hi = paired_interval(pairs)
    text = f"{dm:+.2f} [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else f"{dm:+.2f}"
    return f"{text}, ahead {sum(p > 0 for p in pairs)}/{len(pairs)}"


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
    verdict: dict[str, list[str]] = {"better": [], "worse": [], "undecided": []}
    for d in designs:
        cells, everything = [], []
        for f in fractions:
            vals = by.get((d, f), {})
            if not vals:
                cells.append("")
                continue
            m, s = _mean(vals), _std(vals)
            cell = f"{m:.2f} +- {s:.2f} (n={len(vals)})"
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
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
        if everything:
            _, lo, hi = paired_interval(everything)
            verdict["better" if lo > 0 else "worse" if hi < 0 else "undecided"].append(d)
    if any(verdict.values()):
        n = sum(map(len, verdict.values()))
        lines += ["", f"Verdict from the 95 % intervals ({'all pairs' if pooled else 'paired differences'}; "
                      f"{n} comparison{'s' * (n > 1)}, uncorrected): better than {GENERAL}: "
                      f"{', '.join(verdict['better']) or 'none'}; worse: {', '.join(verdict['worse']) or 'none'}; "
                      f"undecided (interval contains 0, or a single pair): {', '.join(verdict['undecided']) or 'none'}."]
    return "\n".join(lines) + "\n"


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
