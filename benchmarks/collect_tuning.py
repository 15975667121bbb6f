"""Rows of benchmarks/tune_finetune.sh: run, settings, step, val mAP (%), from each run's logs;
``train_s`` is Lightning's training time to that step (wall seconds, whatever else the machine ran)."""

import csv
import sys
from pathlib import Path

import yaml

out, data = Path(sys.argv[1]), sys.argv[2]
writer = csv.writer(sys.stdout)
writer.writerow(["dataset", "run", "backbone_lr_scale", "lr", "max_steps", "frozen_stages", "step", "val_mAP",
                 "train_s"])
for run in sorted(out.glob(f"{data}-*")):
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    times = {int(r["step"]): float(r["train/time"]) for r in rows if r.get("train/time")}
    for r in rows:
        if r.get("val/mAP"):
            step = int(r["step"])
            timed = [s for s in times if s <= step]
            writer.writerow([data, run.name[len(data) + 1:], config["optimizer"]["backbone_lr_scale"],
                             config["optimizer"]["lr"], config["max_steps"],
                             (config.get("model_kwargs") or {}).get("frozen_stages", 0),
                             step + 1,  # Lightning logs the 0-based step
                             f"{100 * float(r['val/mAP']):.2f}", f"{times[max(timed)]:.0f}" if timed else ""])
