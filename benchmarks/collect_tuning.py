"""Rows of benchmarks/tune_finetune.sh: run, settings, step, val mAP (%), from each run's logs."""

import csv
import sys
from pathlib import Path

import yaml

out, data = Path(sys.argv[1]), sys.argv[2]
writer = csv.writer(sys.stdout)
writer.writerow(["dataset", "run", "backbone_lr_scale", "lr", "max_steps", "step", "val_mAP"])
for run in sorted(out.glob(f"{data}-*")):
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    for r in rows:
        if r.get("val/mAP"):
            writer.writerow([data, run.name[len(data) + 1:], config["optimizer"]["backbone_lr_scale"],
                             config["optimizer"]["lr"], config["max_steps"], int(r["step"]) + 1,  # Lightning logs the 0-based step
                             f"{100 * float(r['val/mAP']):.2f}"])
