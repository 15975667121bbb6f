"""Copy the study's sweep results into docs/results/ and refresh the tables in docs/results.md.

Each ``<!-- table:NAME -->`` ... ``<!-- /table -->`` block of docs/results.md is replaced by the
Table III-style table of ``docs/results/NAME.csv``; NAME.csv and NAME.png are copied from
``runs/study/NAME/`` when that sweep folder exists. Run it after (or during) the study:

    .venv/bin/python benchmarks/collect_study.py
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

from hierhead.engine.sweep import table

ROOT = Path(__file__).resolve().parents[1]
DOC, STORE, RUNS = ROOT / "docs" / "results.md", ROOT / "docs" / "results", ROOT / "runs" / "study"


def rows(path: Path) -> list[dict]:
    out = []
    for r in csv.DictReader(open(path)):
        out.append({**r, "seed": int(r["seed"]), "fraction": float(r["fraction"]), "mAP": float(r["mAP"])})
    return out


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
    main()
