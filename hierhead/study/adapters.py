"""Rows of an older layout read as study rows, so a study that began before the plan files is reported with
the others and its committed CSV is never rewritten.

``pretrained`` is the layout of ``docs/results/pretrained-imagenet.csv`` and the CSVs that took its columns
(``dataset, design, seed, ..., mAP, split, seconds`` and optionally ``AP50, AP, test_images, skipped_boxes,
threads, version, commit``), mAP in percent. A row belongs to the stage's arm whose design it names; rows
of designs the stage has no arm for are not the plan's and are left out.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .plan import ROW_COLUMNS, Job, Plan

__all__ = ["legacy_rows"]

_SAME = ("dataset", "design", "seed", "fraction", "split", "mAP", "AP50", "AP", "steps", "train_images", "seconds",
         "threads", "skipped_boxes", "version", "commit")


def legacy_rows(plan: Plan, stage: str, path: Path) -> list[dict]:
    """The stage's rows in ``path`` (layout ``pretrained``) as study rows (strings, :data:`ROW_COLUMNS`)."""
    from .protocols import settings_json

    arms = {a.design: a.name for a in plan.stage(stage).arms}
    with path.open(newline="") as f:
        old = list(csv.DictReader(f))
    out = []
    for r in old:
        if r["design"] not in arms:
            continue
        row = {c: "" for c in ROW_COLUMNS}
        row.update({k: r.get(k, "") or "" for k in _SAME})
        arm = arms[r["design"]]
        job = Job(stage, r["dataset"], arm, int(r["seed"]), float(r.get("fraction") or 1.0))
        row.update(study=plan.name, stage=stage, arm=arm, protocol=plan.protocol, recipe=plan.recipe,
                   fraction=str(job.fraction), scored_images=r.get("test_images", ""), device="cpu",
                   settings=settings_json(plan.settings(job)))
        out.append(row)
    return out
