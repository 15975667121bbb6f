"""Copy the study's sweep results into docs/results/ and refresh the tables in docs/results.md.

Each ``<!-- table:NAME -->`` ... ``<!-- /table -->`` block of docs/results.md is replaced by the
Table III-style table of ``docs/results/NAME.csv``; NAME.csv and NAME.png are copied from
``runs/study/NAME/`` when that sweep folder exists. Run it after (or during) the study:

    .venv/bin/python benchmarks/collect_study.py

A ``<!-- recommend:NAME -->`` ... ``<!-- /recommend -->`` block gets how often ``hierhead recommend``'s
design for the dataset was the sweep's best: per column (mean over seeds) and per (column, seed).

``--restore NAME`` goes the other way: on a fresh checkout (``runs/`` is not committed) it writes a
``result.json`` for each run of ``docs/results/NAME.csv`` into ``runs/study/NAME/``, so that a
resumed sweep skips the runs the committed CSV already holds.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import shutil
from pathlib import Path

from hierhead.comparison import table
from hierhead.engine.sweep import run_dir

ROOT = Path(__file__).resolve().parents[1]
DOC, STORE, RUNS = ROOT / "docs" / "results.md", ROOT / "docs" / "results", ROOT / "runs" / "study"
SHARED = ROOT.parent / "shared" / "datasets"
#: The training split each study's recommendation is computed from, and the study's model.
RECOMMEND = {"cards": (SHARED / "cards" / "train", "ssdlite320_mobilenet_v3"),
             "micro": (SHARED / "microcontrollers" / "train", "ssdlite320_mobilenet_v3")}


def rows(path: Path) -> list[dict]:
    out = []
    for r in csv.DictReader(open(path)):
        out.append({**r, "seed": int(r["seed"]), "fraction": float(r["fraction"]), "mAP": float(r["mAP"])})
    return out


def restore(name: str) -> int:
    """Write result.json for each committed run of NAME that runs/study/NAME lacks; returns the count."""
    path, n = STORE / f"{name}.csv", 0
    if not path.is_file():
        return 0
    for r in rows(path):
        folder = run_dir(RUNS / name, r["design"], r["seed"], r["fraction"])
        if (folder / "result.json").is_file():
            continue
        row = {**r, "train_images": int(r["train_images"]), "steps": int(r["steps"]),
               "train_seconds": float(r["train_seconds"])}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(row))
        n += 1
    print(f"{name}: {n} runs restored from {path.relative_to(ROOT)}")
    return n


def agreement(found: list[dict], design: str) -> str:
    """Markdown: where ``design`` ranks per column (by mean) and how often it is best per (column, seed)."""
    lines, hits, total = [], 0, 0
    found = [r for r in found if "@" not in r["design"]]  # the six heads recommend chooses from, not the variants
    for f in sorted({r["fraction"] for r in found}):
        col = [r for r in found if r["fraction"] == f]
        seeds = sorted({r["seed"] for r in col})
        means = {}
        for d in sorted({r["design"] for r in col}):
            vals = [r["mAP"] for r in col if r["design"] == d]
            if len(vals) == len(seeds):  # rank only designs with every seed of the column
                means[d] = sum(vals) / len(vals)
        ranked = sorted(means, key=means.get, reverse=True)
        rank = f"rank {ranked.index(design) + 1} of {len(ranked)}" if design in ranked else "not finished"
        per_seed = []
        for sd in seeds:
            runs = {r["design"]: r["mAP"] for r in col if r["seed"] == sd}
            if design in runs:
                total += 1
                best = max(runs, key=runs.get)
                hits += best == design
                per_seed.append(f"seed {sd}: {best}")
        top = ranked[0] if ranked else "-"
        lines.append(f"- {f:.0%} of train ({len(col)} runs, seeds {', '.join(map(str, seeds))}): best by mean {top}; "
                     f"{design} {rank}; best per seed: {', '.join(per_seed) or '-'}")
    lines.append(f"- the recommended design was the best run of its (column, seed) in {hits} of {total}")
    return "\n".join(lines) + "\n"


def recommended(name: str) -> str | None:
    from hierhead.data import open_dataset
    from hierhead.models import input_size
    from hierhead.recommend import recommend

    key = next((k for k in RECOMMEND if k in name.split("-")), None)  # cards, head-cards-adamw, ...
    path, model = RECOMMEND.get(key, (None, None))
    if path is None or not path.is_dir():
        return None
    return recommend(open_dataset(path), input_size(model))["design"]


def main() -> None:
    text = DOC.read_text()
    for name in re.findall(r"<!-- table:([\w.-]+) -->", text):
        src = RUNS / name
        if (src / "results.csv").is_file():
            shutil.copyfile(src / "results.csv", STORE / f"{name}.csv")
            shutil.copyfile(src / "results.png", STORE / f"{name}.png")
        csv_path = STORE / f"{name}.csv"
        found = rows(csv_path) if csv_path.is_file() else []
        block = table(found) if found else "(no finished run yet)\n"
        text = re.sub(rf"(<!-- table:{re.escape(name)} -->\n).*?(<!-- /table -->)",
                      lambda m: m.group(1) + block + m.group(2), text, flags=re.S)
        print(f"{name}: {len(found)} finished runs")
    for name in re.findall(r"<!-- recommend:([\w.-]+) -->", text):
        csv_path, design = STORE / f"{name}.csv", recommended(name)
        found = rows(csv_path) if csv_path.is_file() else []
        block = f"`hierhead recommend`: {design}\n" + agreement(found, design) if found and design else "(no run yet)\n"
        text = re.sub(rf"(<!-- recommend:{re.escape(name)} -->\n).*?(<!-- /recommend -->)",
                      lambda m: m.group(1) + block + m.group(2), text, flags=re.S)
    DOC.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--restore"]:
        for name in sys.argv[2:]:
            restore(name)
    else:
        main()
