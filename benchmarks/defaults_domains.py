"""Today's built-in defaults (the pinned recipe ``defaults-2026-12``) on the six shared domains: issue 43,
point 1 ("measure today first"). Resumable: a (domain, seed) already in the rows is skipped, an unfinished
run folder is resumed; one row is appended per finished run, so partial rows can be committed as they come.

    python benchmarks/defaults_domains.py [--seeds 0,1,2] [--domains all] [--out runs/defaults-today]
                                         [--rows docs/results/defaults-today.csv] [--threads 2]

Protocol, fixed before any row: each run is ``hierhead train --recipe defaults-2026-12 --data ROOT --seed S``
from the ImageNet backbone (nothing else set: what a user runs), one run at a time with 2 threads, its
validation on the root's held-out split as ``train`` chooses it (cards, raccoon: test; aerial: valid;
aquarium, chess: val); microcontrollers, whose test split has 7 images, is re-split as the pretrained study
did (``--set data.resplit=0.3``: train + test pooled, a seeded 30 % held out and scored). The last checkpoint
(never one chosen on test) is scored once on the test split: VOC07 mAP and COCO-style AP50 and AP
(pycocotools), in percent; aquarium's test labels hold 2 zero-size boxes, skipped and counted
(``skip_bad``). ``seconds`` is the wall time of the ``train`` command. Columns: those of
``docs/results/pretrained-imagenet.csv`` (``mAP`` = VOC07) plus AP50, AP, test_images, skipped_boxes,
threads, version, commit. Rows are not quoted until a domain has all its seeds.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DOMAINS = ("cards", "microcontrollers", "raccoon", "aerial", "aquarium", "chess")
RECIPE = "defaults-2026-12"
EXTRA = {"microcontrollers": ["--set", "data.resplit=0.3"]}
COLUMNS = ["dataset", "design", "seed", "start", "fraction", "protocol", "backbone", "optimizer", "lr", "unit_lr_scale",
           "weight_decay", "steps", "train_images", "mAP", "anchor_l2", "unit_l2", "split", "seconds", "sweep", "AP50",
           "AP", "test_images", "skipped_boxes", "threads", "version", "commit"]


def score(run: Path, domain: str) -> dict:
    """The last checkpoint on the domain's test split: VOC07, AP50, AP (percent)."""
    import warnings

    import yaml

    from hierhead.data import open_dataset
    from hierhead.engine import load_checkpoint
    from hierhead.engine.data import open_config_splits
    from hierhead.engine.infer import run_model
    from hierhead.metrics import mean_ap

    model, spec = load_checkpoint(run / "checkpoints" / "last.ckpt")
    config = yaml.safe_load((run / "config.yaml").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config["data"].get("resplit"):
            test = open_config_splits(config)[1]  # the seeded re-split's held-out part
        else:
            test = open_dataset(SHARED / domain, split="test", classes=spec.classes, skip_bad=True)
    preds = run_model(model, (test[i][0] for i in range(len(test))), 8)
    targets = [test.target(i) for i in range(len(test))]
    voc = mean_ap(preds, targets, "voc07", test.classes)
    coco = mean_ap(preds, targets, "coco", test.classes)
    return {"mAP": round(100 * voc["mAP"], 3), "AP50": round(100 * coco["AP50"], 3), "AP": round(100 * coco["AP"], 3),
            "test_images": len(test), "skipped_boxes": sum(test.skipped.values()),
            "split": "test (re-split 30 %)" if config["data"].get("resplit") else "test",
            "steps": config["max_steps"], "train_images": None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--domains", default="all")
    ap.add_argument("--out", default="runs/defaults-today")
    ap.add_argument("--rows", default="docs/results/defaults-today.csv")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, help="a smoke test of the runner only (the study runs the recipe's 600)")
    args = ap.parse_args()
    from hierhead.provenance import row_provenance

    rows_path = Path(args.rows)
    done = set()
    if rows_path.is_file():
        done = {(r["dataset"], int(r["seed"])) for r in csv.DictReader(rows_path.open(newline=""))}
    domains = DOMAINS if args.domains == "all" else tuple(args.domains.split(","))
    hierhead = [sys.executable, "-m", "hierhead"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: every domain gets seed 0 first
        for domain in domains:
            if (domain, seed) in done:
                continue
            run = Path(args.out) / f"{domain}-{seed}"
            resume = ["--resume"] if (run / "checkpoints" / "last.ckpt").is_file() else []
            cmd = [*hierhead, "train", "--recipe", RECIPE, "--data", str(SHARED / domain), "--seed", str(seed),
                   "--out", str(run), *EXTRA.get(domain, []), *resume,
                   *(["--max-steps", str(args.max_steps)] if args.max_steps else [])]
            print(f"[{domain} seed {seed}] {' '.join(cmd[2:])}", flush=True)
            t = time.perf_counter()
            finished = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - t
            if finished.returncode != 0:
                sys.exit(f"{domain} seed {seed}: train exited {finished.returncode}; rerun to resume")
            scored = score(run, domain)
            row = {"dataset": domain, "design": "9An{9}", "seed": seed, "start": "", "fraction": 1.0,
                   "protocol": "defaults", "backbone": "imagenet", "optimizer": "adamw", "lr": 0.003,
                   "unit_lr_scale": 1.0, "weight_decay": 0.0001, "anchor_l2": 0.0, "unit_l2": 0.0,
                   "seconds": round(seconds, 1) if not resume else "", "sweep": "defaults-today",
                   "threads": args.threads, **scored, **row_provenance()}
            row["train_images"] = _train_images(run)
            new = not rows_path.is_file()
            rows_path.parent.mkdir(parents=True, exist_ok=True)
            with rows_path.open("a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    w.writeheader()
                w.writerow(row)
            print(f"  VOC07 {row['mAP']:.2f}  AP50 {row['AP50']:.2f}  AP {row['AP']:.2f}  {seconds / 60:.1f} min",
                  flush=True)


def _train_images(run: Path) -> int:
    """How many images the run trained on (the first line the train command logs is not kept: recount)."""
    import warnings

    import yaml

    from hierhead.engine.data import open_config_splits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(open_config_splits(yaml.safe_load((run / "config.yaml").read_text()))[0])


if __name__ == "__main__":
    main()
