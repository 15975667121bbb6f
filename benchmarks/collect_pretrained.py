"""Rows of the pretrained study (docs/results/plan-pretrained.md) from its sweep folders, and back.

    python benchmarks/collect_pretrained.py STAGE            # runs/pretrained/STAGE-*/results.csv -> docs/results/pretrained-STAGE.csv
    python benchmarks/collect_pretrained.py --restore STAGE  # the committed CSV -> result.json in each sweep folder

A sweep folder is ``runs/pretrained/STAGE-DATASET[-SETTING]``; the CSV has the plan's columns
(``mAP`` in %, ``backbone`` imagenet, ``start`` empty: every run starts from the ImageNet backbone) plus
``split`` (``val``: a holdout of the training split; ``test``), ``anchor_l2``, ``unit_l2``, ``seconds``
and ``sweep`` (the folder, for ``--restore``: a fresh checkout resumes where the committed rows end).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from hierhead.engine.sweep import run_dir

ROOT = Path(__file__).resolve().parents[1]
RUNS, STORE = ROOT / "runs" / "pretrained", ROOT / "docs" / "results"
COLUMNS = ["dataset", "design", "seed", "start", "fraction", "protocol", "backbone", "optimizer", "lr",
           "unit_lr_scale", "weight_decay", "steps", "train_images", "mAP", "anchor_l2", "unit_l2", "split",
           "seconds", "sweep"]


def collect(stage: str) -> int:
    out = []
    for folder in sorted(RUNS.glob(f"{stage}-*")):
        split = "val" if stage.startswith("val") else "test"  # val-* stages score a holdout of train
        dataset = folder.name[len(stage) + 1:].split("-")[0]
        for p in sorted((folder / "runs").glob("*/*/*/result.json")):
            r = json.loads(p.read_text())
            out.append({"dataset": dataset, "design": r["design"], "seed": r["seed"], "start": "",
                        "fraction": r["fraction"], "protocol": r["protocol"], "backbone": "imagenet",
                        "optimizer": r["optimizer"], "lr": r["lr"], "unit_lr_scale": r["unit_lr_scale"],
                        "weight_decay": r.get("weight_decay"), "steps": r["steps"], "train_images": r["train_images"],
                        "mAP": round(100 * float(r["mAP"]), 3), "anchor_l2": r.get("anchor_l2", 0.0),
                        "unit_l2": r.get("unit_l2", 0.0), "split": split, "seconds": r.get("train_seconds"),
                        "sweep": folder.name})
    path = STORE / f"pretrained-{stage}.csv"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # the runner's two chains collect one stage: write aside, rename
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(sorted(out, key=lambda r: (r["sweep"], r["fraction"], r["seed"], r["design"])))
    tmp.replace(path)
    print(f"{path.relative_to(ROOT)}: {len(out)} rows")
    return len(out)


def restore(stage: str) -> int:
    path, n = STORE / f"pretrained-{stage}.csv", 0
    if not path.is_file():
        return 0
    for r in csv.DictReader(open(path)):
        folder = run_dir(RUNS / r["sweep"], r["design"], int(r["seed"]), float(r["fraction"]))
        if (folder / "result.json").is_file():
            continue
        row = {"design": r["design"], "seed": int(r["seed"]), "fraction": float(r["fraction"]),
               "protocol": r["protocol"], "optimizer": r["optimizer"], "lr": float(r["lr"]),
               "unit_lr_scale": r["unit_lr_scale"], "weight_decay": float(r["weight_decay"]),
               "anchor_l2": float(r["anchor_l2"]), "unit_l2": float(r["unit_l2"]),
               "train_images": int(r["train_images"]), "steps": int(r["steps"]), "metric": "voc07",
               "mAP": float(r["mAP"]) / 100, "train_seconds": float(r["seconds"] or 0)}
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"result.json.{os.getpid()}.tmp"  # the other chain's sweep may be reading this folder
        tmp.write_text(json.dumps(row))
        tmp.replace(folder / "result.json")
        n += 1
    print(f"{stage}: {n} runs restored from {path.relative_to(ROOT)}")
    return n


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--restore":
        for s in args[1:]:
            restore(s)
    else:
        for s in args:
            collect(s)
