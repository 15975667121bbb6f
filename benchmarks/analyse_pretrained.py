"""The analysis of docs/results/plan-pretrained.md, applied to the committed rows (docs/results/pretrained-*.csv).

    python benchmarks/analyse_pretrained.py settings   # P1's lr and steps (stage val-settings)
    python benchmarks/analyse_pretrained.py seeds      # P1's number of seeds (stage val-pilot)
    python benchmarks/analyse_pretrained.py prior      # the prior's anchor_l2 (stage val-prior)
    python benchmarks/analyse_pretrained.py size       # P2's image size (stage val-size)
    python benchmarks/analyse_pretrained.py tables     # the test tables: frozen, prior, imagenet, gpu-imagenet (what exists)
    python benchmarks/analyse_pretrained.py summary STAGE   # one compact table of a stage (README, results.md)
    python benchmarks/analyse_pretrained.py agreement  # how `hierhead recommend`'s design fared in the frozen stage

Each prints the plan's rule, the numbers it reads and what the rule picks, or the tables with the paired
difference to the general head of the same seed (95 % t interval), Holm's correction across the designs of a
table and the plan's verdict. Pure arithmetic over the CSVs (agreement also reads the training images' boxes):
nothing is trained here.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

from hierhead.comparison import decide
from hierhead.design import GENERAL
from hierhead.design import PRESETS as TABLE_ONE

STORE = Path(__file__).resolve().parents[1] / "docs" / "results"
PRESETS = [d for d in TABLE_ONE if d != GENERAL]  # the five Table I designs compared with the general head


def rows(stage: str) -> list[dict]:
    path = STORE / f"pretrained-{stage}.csv"
    if not path.is_file():
        return []
    out = []
    for r in csv.DictReader(open(path)):
        r["seed"], r["fraction"], r["mAP"] = int(r["seed"]), float(r["fraction"]), float(r["mAP"])
        out.append(r)
    return out


def by_seed(rs: list[dict]) -> dict[tuple, dict[int, float]]:
    """(dataset, fraction, design) -> {seed: mAP}; a (design, seed) run twice is an error."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in rs:
        cell = out[(r["dataset"], r["fraction"], r["design"])]
        if r["seed"] in cell:
            raise SystemExit(f"{r['sweep']}: {r['design']} seed {r['seed']} fraction {r['fraction']} twice")
        cell[r["seed"]] = r["mAP"]
    return out


def diffs(cells: dict, dataset: str, fraction: float, design: str, base: str = GENERAL) -> list[float]:
    a, b = cells.get((dataset, fraction, design), {}), cells.get((dataset, fraction, base), {})
    return [a[s] - b[s] for s in sorted(a) if s in b]


def settings() -> None:
    rs = rows("val-settings")
    means: dict[tuple, list[float]] = defaultdict(list)
    for r in rs:
        means[(float(r["lr"]), int(r["steps"]))].append(r["mAP"])
    print("P1 settings: mean validation mAP of the general head, both datasets x seeds 0-2 (n per cell):")
    for k in sorted(means):
        print(f"  lr {k[0]:g}, {k[1]} steps: {statistics.mean(means[k]):.2f} (n={len(means[k])})")
    top = max(statistics.mean(v) for v in means.values())
    tied = [k for k in means if statistics.mean(means[k]) >= top - 0.5]
    lr, steps = min(tied, key=lambda k: (k[1], k[0]))  # ties within 0.5: fewer steps, then the lower lr
    print(f"rule (highest mean; within 0.5 of it: fewer steps, then lower lr) -> LR={lr:g} STEPS={steps}")


def seeds() -> None:
    cells = by_seed(rows("val-pilot"))
    sds = {}
    for (dataset, fraction, design) in sorted(cells):
        if design != GENERAL:
            d = diffs(cells, dataset, fraction, design)
            sds[(dataset, fraction, design)] = statistics.stdev(d)
            print(f"  {dataset} {fraction:g} {design}: paired diff mean {statistics.mean(d):+.2f}, "
                  f"SD {sds[(dataset, fraction, design)]:.2f} (n={len(d)})")
    s = max(sds.values())
    n = next((n for n in range(10, 31) if stats.t.ppf(0.975, n - 1) * s / math.sqrt(n) <= 0.9), None)
    reach = f"n = {n}" if n else "n = 30 (the cap; 0.9 not reached)"
    print(f"largest SD s = {s:.3f} over {len(sds)} cells; smallest n >= 10 with t(0.975, n-1) s / sqrt(n) <= 0.9: "
          f"{reach} -> SEEDS={n or 30}")


def prior() -> None:
    cells = by_seed(rows("val-prior"))
    means = {}
    for strength in ("0.001", "0.01", "0.1", "1"):
        d = [x for ds in ("cards", "micro") for x in diffs(cells, ds, 1.0, f"9An{{9,3}}As@prior{strength}")]
        c = [x for ds in ("cards", "micro") for x in diffs(cells, ds, 1.0, f"9An{{9}}@prior{strength}")]
        if not d:
            continue
        means[strength] = statistics.mean(d)
        print(f"  anchor_l2 {strength}: 9An{{9,3}}As@prior - 9An{{9}} {means[strength]:+.2f} (n={len(d)}); "
              f"the L2 control 9An{{9}}@prior - 9An{{9}} {statistics.mean(c):+.2f} (n={len(c)})")
    if means:
        top = max(means.values())
        pick = min((s for s in means if means[s] >= top - 0.5), key=float)  # within 0.5 of the top: the smaller
        print(f"rule (highest mean paired difference; within 0.5 of it: the smaller value) -> PRIOR={pick}")


def size() -> None:
    at: dict[str, dict[int, float]] = defaultdict(dict)  # dataset -> {image size: validation mAP}
    for r in sorted(rows("val-size"), key=lambda r: (r["dataset"], r["sweep"])):
        print(f"  {r['dataset']} {r['sweep']}: {r['mAP']:.2f}")
        at[r["dataset"]][int(r["sweep"].rsplit("-s", 1)[1])] = r["mAP"]
    rule = "256 if the general head at 256 is within 3 points of 320 on each validation split, else 320"
    if sorted(at) != ["cards", "micro"] or any(sorted(v) != [256, 320] for v in at.values()):
        print(f"rule: {rule} (not all four runs yet)")
        return
    print(f"rule: {rule} -> SIZE={256 if all(v[256] >= v[320] - 3 for v in at.values()) else 320}")


def _half(half: float, goal: float) -> str:
    """A half-width to 2 decimals, or 3 where 2 would print the goal itself (0.995 and 1.004 both show 1.00)."""
    return f"{half:.3f}" if f"{half:.2f}" == f"{goal:.2f}" else f"{half:.2f}"


def _table(title: str, cells: dict, dataset: str, fraction: float, designs: list[str], base: str, margin: float,
           goal: float) -> list[str]:
    pairs = {d: diffs(cells, dataset, fraction, d, base) for d in designs}
    pairs = {d: p for d, p in pairs.items() if p}
    if not pairs:
        return []
    b = cells.get((dataset, fraction, base), {})
    lines = [f"**{title}**, {dataset}, {fraction:g} of train: {base} {statistics.mean(b.values()):.2f} "
             f"(n={len(b)})", "",
             "| design | n | paired diff [95 % t] | half-width | ahead | p | p (Holm) | Bonferroni interval | verdict |",
             "|---|---:|---|---:|---:|---:|---:|---|---|"]
    for d, v in decide(pairs, margin).items():
        miss = "" if v["half"] <= goal else f" (goal {goal:g} missed)"
        lines.append(f"| {d} | {v['n']} | {v['mean']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}] | "
                     f"{_half(v['half'], goal)}{miss} | {v['ahead']} | {v['p']:.3f} | {v['p_holm']:.3f} | "
                     f"[{v['bonferroni'][0]:+.2f}, {v['bonferroni'][1]:+.2f}] | {v['verdict']} |")
    return lines + [""]


def tables() -> None:
    frozen, prior_rows, imagenet = rows("frozen"), rows("prior"), rows("imagenet")
    out = []
    # the prior stage's general head rows are the frozen stage's runs, copied into its folder: counted once
    cells = by_seed(frozen + [r for r in prior_rows if r["design"] != GENERAL])
    for ds in ("cards", "micro"):
        for f in (0.25, 1.0):
            out += _table("P1 frozen backbone", cells, ds, f, PRESETS, GENERAL, 1.0, 1.0)
    # the stage's own designs; its copied general head rows carry no strength
    strengths = sorted({r["design"].split("@prior")[1] for r in prior_rows if "@prior" in r["design"]})
    for s in strengths:
        with_prior = [f"{d}@prior{s}" for d in PRESETS]
        for ds in ("cards", "micro"):
            for f in (0.25, 1.0):
                out += _table(f"Prior (anchor_l2 {s}) against the general head without prior", cells, ds, f,
                              with_prior + [f"{GENERAL}@prior{s}"], GENERAL, 1.0, 1.0)
                out += _table(f"Prior (anchor_l2 {s}) against the L2 control", cells, ds, f, with_prior,
                              f"{GENERAL}@prior{s}", 1.0, 1.0)
    gpu = rows("gpu-imagenet")  # issue 25 item 6: P2 at 320 px on one GPU, exploratory (not in the plan)
    for title, rs in (("P2 from ImageNet", imagenet), ("P2 from ImageNet, 320 px on one GPU (exploratory)", gpu)):
        cells = by_seed(rs)
        for ds in ("cards", "micro"):
            out += _table(title, cells, ds, 1.0, ["9An{9,3}As", "9An{9,3,1}S", "9An{9,1}Both"], GENERAL, 1.5, 1.5)
    print("\n".join(out) if out else "no test rows yet")
    for name, rs in (("frozen", frozen), ("prior", prior_rows), ("imagenet", imagenet), ("gpu-imagenet", gpu)):
        for ds in ("cards", "micro"):
            secs = [float(r["seconds"]) for r in rs if r["dataset"] == ds and r["seconds"]]
            if secs:
                print(f"cost, {name} {ds}: median {statistics.median(secs):.0f} s a run "
                      f"(the training loop's wall time, evaluation excluded, n={len(secs)}; shared cores or a pause count)")


def summary(stage: str) -> None:
    """One compact table of a stage for README / results.md: designs x (dataset, fraction), each cell the paired
    difference to the general head with its 95 % t interval and the plan's verdict (Holm within each column)."""
    rs = rows(stage)
    if stage == "prior":  # its general-head rows are copies of the frozen stage's
        rs = rows("frozen") + [r for r in rs if r["design"] != GENERAL]
        rs = [r for r in rs if r["design"] == GENERAL or "@prior" in r["design"]]
    margin = 1.5 if stage.endswith("imagenet") else 1.0
    cells = by_seed(rs)
    columns = sorted({(ds, f) for ds, f, _ in cells}, key=lambda c: (c[0], c[1]))
    def order(d: str) -> tuple:  # Table I's order, each design's variants after it, the general head's last
        name = d.split("@")[0]
        return (PRESETS.index(name) if name in PRESETS else len(PRESETS), d)

    designs = sorted({d for *_, d in cells if d != GENERAL}, key=order)
    verdicts = {c: decide({d: diffs(cells, *c, d) for d in designs}, margin) for c in columns}  # skips empty pairs
    head = [f"{ds} {f * 100:g} %" for ds, f in columns]
    print("| design | " + " | ".join(head) + " |")
    print("|---" * (len(columns) + 1) + "|")
    base = [cells.get((ds, f, GENERAL), {}) for ds, f in columns]
    print(f"| {GENERAL} (mAP, n seeds) | " + " | ".join(f"{statistics.mean(b.values()):.1f} (n={len(b)})" if b else ""
                                                      for b in base) + " |")
    for d in designs:
        out = []
        for c in columns:
            v = verdicts[c].get(d)
            word = "" if v is None else (f"none (+-{margin:g})" if v["verdict"].startswith("no effect") else v["verdict"])
            miss = "" if v is None or v["half"] <= margin else " *"  # the plan's half-width goal = its margin
            out.append("" if v is None else f"{v['mean']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]{miss} {word}")
        print(f"| {d} | " + " | ".join(out) + " |")
    print(f"\nPaired by seed (design minus {GENERAL}, mAP points, 95 % t interval); verdict by the plan: Holm across "
          f"the {len(designs)} designs of a column, 'none (+-{margin:g})' = Bonferroni interval inside +-{margin:g}; "
          f"* = half-width above the plan's goal of {margin:g} (missed). "
          f"Rows: docs/results/pretrained-{stage}.csv.")


def agreement() -> None:
    """The paper's heuristic (``hierhead recommend`` on each study's training split, its recipe's model) against
    the frozen stage (six heads) and P2 (four): its design's rank by mean per column, and how often it was the best
    head of a (column, seed). Exploratory: the plan does not test the heuristic."""
    from collect_study import SHARED  # benchmarks/ is this script's folder, so on sys.path
    from collect_study import agreement as ranks

    from hierhead.engine.data import open_config_splits
    from hierhead.engine.recipes import resolve
    from hierhead.models import input_size
    from hierhead.recommend import recommend

    sources = {"cards": ("cards-ssdlite", "cards"), "micro": ("microcontrollers-ssdlite", "microcontrollers")}
    stages = {"frozen": rows("frozen"), "imagenet": rows("imagenet")}
    for name, (recipe, folder) in sources.items():
        config = resolve(recipe, {"data": {"path": str(SHARED / folder)}})
        train, _ = open_config_splits(config)
        design = recommend(train, input_size(config["model"]))["design"]
        print(f"{name} ({len(train)} training images): `hierhead recommend` -> {design}")
        for stage, rs in stages.items():
            print(f"{stage}:", ranks([r for r in rs if r["dataset"] == name], design))


if __name__ == "__main__":
    commands = {"settings": settings, "seeds": seeds, "prior": prior, "size": size, "tables": tables,
                "agreement": agreement}
    if len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    elif len(sys.argv) != 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: python benchmarks/analyse_pretrained.py {{{','.join(commands)}}} | summary STAGE")
    else:
        commands[sys.argv[1]]()
