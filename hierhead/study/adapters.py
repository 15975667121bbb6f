"""Rows of an older layout read as study rows, so a study that began before the plan files is reported with
the others and its committed CSV is never rewritten. The layout is told by the file's columns:

- ``pretrained``: ``docs/results/pretrained-imagenet.csv`` and the CSVs that took its columns (``dataset, design,
  seed, ..., mAP, split, seconds`` and optionally ``AP50, AP, test_images, skipped_boxes, threads, version,
  commit``), mAP in percent; another plan's rows (the study schema) read the same way, e.g. a baseline arm
  shared with an earlier study (``match: {arm: ...}`` picks its rows);
- ``sweep``: a ``hierhead sweep`` folder's ``results.csv`` as the from-scratch studies committed it (``design,
  seed, fraction, train_images, steps, metric, mAP, train_seconds`` and optionally ``protocol, optimizer, lr,
  unit_lr_scale, loss, loss_before``), with no dataset column (the legacy entry's ``dataset`` names it), VOC07
  mAP as a fraction, scored on the test split;
- ``demo``: ``hierhead demo``'s ``results.csv`` (``design, seed, mAP, unseen_mAP, AP:CLASS...``), mAP in percent
  on the test split, ``unseen_mAP`` the same with every object of a shape its class was trained at marked
  difficult; no dataset or fraction column. The legacy entry's ``column`` says which of the two is the row's
  ``mAP`` (default ``mAP``).

A row belongs to the stage's arm whose label (``label``, default the design) its ``design`` column holds and
whose ``match`` (column: regular expression) its columns meet; rows no arm takes are not the plan's and are left
out. A row without ``threads`` (the layouts' first CSVs) gets the plan's ``threads``, which must say what those
runs used.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from .plan import ROW_COLUMNS, Job, Plan, PlanError

__all__ = ["legacy_rows"]

_SAME = ("dataset", "design", "seed", "fraction", "split", "mAP", "AP50", "AP", "steps", "train_images", "seconds",
         "threads", "skipped_boxes", "version", "commit")


def legacy_rows(plan: Plan, stage: str, old: dict, made: dict) -> list[dict]:
    """The stage's rows in ``old["file"]`` as study rows (strings, :data:`ROW_COLUMNS`); ``old["datasets"]``
    renames datasets (``micro`` -> ``microcontrollers``), ``old["dataset"]`` is the dataset of a ``sweep`` file and
    ``old["device"]`` the device its runs used (default ``cpu``);
    rows of datasets the stage does not run on are left out. ``made``: the earlier stages' picks (an arm's settings
    may hold one)."""
    from .protocols import settings_json

    arms = plan.stage(stage).arms
    names = {d.name for d in plan.datasets_of(stage)}
    with Path(old["file"]).open(newline="") as f:
        rows = list(csv.DictReader(f))
    demo = bool(rows) and "unseen_mAP" in rows[0]
    if old["column"] != "mAP" and not demo:
        raise PlanError(f"{plan.path}: legacy rows {old['file']}: column {old['column']!r} is for a demo file's "
                        f"scores (mAP or unseen_mAP); this file has only mAP")
    if rows and "dataset" not in rows[0]:
        if not old.get("dataset"):
            raise PlanError(f"{plan.path}: legacy rows {old['file']} have no dataset column: give its dataset")
        rows = [_from_demo(r, old["dataset"], old["column"]) if demo else _from_sweep(r, old["dataset"]) for r in rows]
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
        row.update(study=plan.name, stage=stage, arm=arm, protocol=plan.protocol_of(stage), recipe=plan.recipe_of(job),
                   fraction=str(job.fraction), scored_images=r.get("test_images", r.get("scored_images", "")),
                   device=old["device"],
                   settings=settings_json(plan.settings(job, made)))
        out.append(row)
    return out


def _from_demo(r: dict, dataset: str, column: str) -> dict:
    """A ``demo`` row in the ``pretrained`` columns: ``column`` as its mAP."""
    return {"dataset": dataset, "design": r["design"], "seed": r["seed"], "mAP": r[column], "split": "test"}


def _from_sweep(r: dict, dataset: str) -> dict:
    """A ``sweep`` row in the ``pretrained`` columns: mAP in percent, ``seconds`` the training time."""
    if r.get("metric", "voc07") != "voc07":
        raise ValueError(f"a sweep row scored with {r['metric']!r}: only VOC07 rows are study rows")
    return {**r, "dataset": dataset, "mAP": repr(100 * float(r["mAP"])), "seconds": r.get("train_seconds", ""),
            "split": "test"}
