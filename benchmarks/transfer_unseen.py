"""Re-evaluate the anchor-transfer runs on the test objects at untrained (class, shape) pairs only.

For each finished run of ``runs/study/NAME`` (a ``mode=ratio`` or ``mode=size`` transfer sweep),
its last checkpoint is evaluated on ``unseen_only(train, test)``: the objects whose class was
trained at that shape are marked difficult, so VOC07 AP counts only the transfer to new shapes.
Writes ``docs/results/NAME-unseen.csv`` (the sweep's columns, mAP = the unseen-shape mAP), whose
table ``benchmarks/collect_study.py`` then puts into docs/results.md:

    .venv/bin/python benchmarks/transfer_unseen.py transfer-class-s300-ratio transfer-class-s300-unitlr0.25-ratio
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

from hierhead.data.synthetic import open_synthetic, unseen_only
from hierhead.engine.checkpoint import load_checkpoint
from hierhead.engine.infer import mean_ap_of_model

ROOT = Path(__file__).resolve().parents[1]
RUNS, STORE = ROOT / "runs" / "study", ROOT / "docs" / "results"


def unseen_rows(name: str) -> tuple[list[dict], int]:
    """(one row per run with its checkpoint, number of finished runs without one)."""
    rows, missing, splits = [], 0, {}
    for result in sorted((RUNS / name / "runs").glob("*/*/*/result.json")):
        ckpt = result.parent / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():  # restored from a committed CSV: its checkpoint stayed on another machine
            missing += 1
            continue
        data = yaml.safe_load((result.parent / "config.yaml").read_text())["data"]["path"]
        if data not in splits:  # the runs of one study share their data: mark it once
            splits[data] = unseen_only(*open_synthetic(data))
        model, _ = load_checkpoint(ckpt)
        scores = mean_ap_of_model(model, splits[data], "voc07")
        rows.append({**json.loads(result.read_text()), "mAP": scores["mAP"]})
    return rows, missing


def main(names: list[str]) -> None:
    for name in names:
        rows, missing = unseen_rows(name)
        if not rows:
            print(f"{name}: no run with a checkpoint ({missing} without)")
            continue
        with open(STORE / f"{name}-unseen.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"{name}: {len(rows)} runs re-evaluated on unseen shapes ({missing} without a checkpoint)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["transfer-class-s300-ratio", "transfer-class-s300-unitlr0.25-ratio"])
