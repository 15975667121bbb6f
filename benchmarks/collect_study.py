"""Copy the study's sweep results into docs/results/ and refresh the tables in docs/results.md.

Each ``<!-- table:NAME -->`` ... ``<!-- /table -->`` block of docs/results.md is replaced by the
Table III-style table of ``docs/results/NAME.csv``; NAME.csv and NAME.png are copied from
``runs/study/NAME/`` when that sweep folder exists. Run it after (or during) the study:

    .venv/bin/python benchmarks/collect_study.py

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

from hierhead.engine.sweep import run_dir, table

ROOT = Path(__file__).resolve().parents[1]
DOC, STORE, RUNS = ROOT / "docs" / "results.md", ROOT / "docs" / "results", ROOT / "runs" / "study"


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
    DOC.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--restore"]:
        for name in sys.argv[2:]:
            restore(name)
    else:
        main()
