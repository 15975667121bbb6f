"""Rows of an older layout read as study rows, so a study that began before the plan files is reported with
the others and its committed CSV is never rewritten.

``pretrained`` is the layout of ``docs/results/pretrained-imagenet.csv`` and the CSVs that took its columns
(``dataset, design, seed, ..., mAP, split, seconds`` and optionally ``AP50, AP, test_images, skipped_boxes,
threads, version, commit``), mAP in percent. A row belongs to the stage's arm whose label (``label``, default
the design) its ``design`` column holds and whose ``match`` (column: regular expression) its columns meet;
rows no arm takes are not the plan's and are left out. A row without ``threads`` (the layout's first CSVs) gets
the plan's ``threads``, which must say what those runs used.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from .plan import ROW_COLUMNS, Job, Plan

__all__ = ["legacy_rows"]

_SAME = ("dataset", "design", "seed", "fraction", "split", "mAP", "AP50", "AP", "steps", "train_images", "seconds",
         "threads", "skipped_boxes", "version", "commit")


def legacy_rows(plan: Plan, stage: str, old: dict) -> list[dict]:
    """The stage's rows in ``old["file"]`` (layout ``pretrained``) as study rows (strings, :data:`ROW_COLUMNS`);
    ``old["datasets"]`` renames datasets (``micro`` -> ``microcontrollers``); rows of other datasets are left out."""
    from .protocols import settings_json
    from .runner import picks

    arms = plan.stage(stage).arms
    names = {d.name for d in plan.datasets}
    with Path(old["file"]).open(newline="") as f:
        rows = list(csv.DictReader(f))
    made = picks(plan, upto=stage)  # an arm's settings may hold an earlier stage's pick
    out = []
    for r in rows:
        dataset = old["datasets"].get(r["dataset"], r["dataset"])
        arm = next((a.name for a in arms if a.row_label == r["design"] and all(
            re.search(pattern, str(r.get(column, ""))) for column, pattern in a.match.items())), None)
        if arm is None or dataset not in names:
            continue
        row = {c: "" for c in ROW_COLUMNS}
        row.update({k: r.get(k, "") or "" for k in _SAME})
        row["dataset"] = dataset
        job = Job(stage, dataset, arm, int(r["seed"]), float(r.get("fraction") or 1.0))
        row["threads"] = row["threads"] or str(plan.threads)  # the layout's first CSVs left it out: the plan's
        row.update(study=plan.name, stage=stage, arm=arm, protocol=plan.protocol_of(stage), recipe=plan.recipe,
                   fraction=str(job.fraction), scored_images=r.get("test_images", ""), device="cpu",
                   settings=settings_json(plan.settings(job, made)))
        out.append(row)
    return out
