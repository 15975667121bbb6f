"""``hierhead sweep``: every design x seed x training-set fraction, as a one-stage plan run by the study runner.

The command line becomes a plan (:mod:`.plan`) written to ``OUT/plan.yaml``: one dataset, one stage
(``results``), an arm per design (the general head always among them), the protocol's settings; the study runner
trains it (resumable, ``--workers`` processes; :mod:`.runner`) and writes one row per run in the row schema of
every study (``OUT/results.csv``: :data:`~hierhead.study.plan.ROW_COLUMNS`, mAP in percent). Then ``results.md``
holds the paper's Table III form (mean +- SD over seeds per design and fraction, the paired difference to the
general head with its 95 % t interval, a verdict Holm-corrected across the designs: :func:`.report.fraction_table`)
and ``results.png`` the metric against training-set size (:func:`hierhead.comparison.plot`). Each run's *last*
checkpoint is scored on the test split (or, with ``--set data.holdout=F``, on that seeded holdout of train): no
model selection on what is scored. ``hierhead study run OUT/plan.yaml`` and ``hierhead study report`` work on
the folder too.

A design label may carry an optimiser change, compared in the same sweep (:func:`variant`): ``NAME@auto`` /
``NAME@0.25`` (the units' lr scale), ``NAME@lrX`` (the whole lr times X: a control for the units' extra step
size), ``NAME@priorX`` (sharing as a coupled L2 prior of strength X).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import yaml

from ..design import GENERAL, PRESETS, Design
from .plan import Plan, PlanError, load_plan

__all__ = ["sweep", "sweep_plan", "variant", "labels", "PROTOCOL_NAMES"]

#: ``--protocol`` -> the plan protocol (:data:`hierhead.study.protocols.PROTOCOLS`): ``scratch`` is the recipe
#: as it is (its own start), the plan protocol ``train``.
PROTOCOL_NAMES = {"scratch": "train", "imagenet": "imagenet", "finetune": "finetune", "frozen": "frozen",
                  "head": "head"}
#: the recipe section whose optimiser a cached protocol trains with (a variant changes it there)
SECTION = {"head": "head", "frozen": "frozen"}
STAGE = "results"


def variant(label: str) -> tuple[str, dict]:
    """A design label with an optimiser change: ``'9An{9,3}S@auto'`` -> ``('9An{9,3}S', {"unit_lr_scale":
    "auto"})`` (also ``@0.25``); ``'9An{9}@lr3'`` -> ``('9An{9}', {"lr_factor": 3.0})``; ``'9An{9,3}As@prior0.1'``
    -> ``('9An{9,3}As', {"anchor_l2": 0.1})`` (:func:`~hierhead.engine.optim.prior_penalty`; on the general head,
    the same L2 as a control)."""
    from ..engine.optim import parse_unit_lr_scale

    name, _, tag = label.partition("@")
    if "@" not in label:
        return name, {}
    for prefix, key, what in (("prior", "anchor_l2", "strength"), ("lr", "lr_factor", "factor")):
        if tag.startswith(prefix):
            try:
                value = float(tag[len(prefix):])
            except ValueError:
                value = 0.0
            if not value > 0:
                raise ValueError(f"design {label!r}: @{prefix}X needs a {what} X > 0, e.g. @{prefix}{3 if prefix == 'lr' else 0.1}")
            return name, {key: value}
    parse_unit_lr_scale(tag)
    return name, {"unit_lr_scale": tag}


def labels(designs: Sequence[str] | str = "all") -> list[str]:
    """The sweep's design labels in order, the general head first; every name checked before any training."""
    out = list(PRESETS) if designs == "all" else list(designs)
    if GENERAL not in out:
        out = [GENERAL] + out
    for d in out:
        Design.parse(variant(d)[0], num_sizes=3, num_ratios=3)
    return list(dict.fromkeys(out))


def sweep_plan(recipe: str | None, data: str, designs: Sequence[str] | str = "all", seeds: int = 3,
               fractions: Sequence[float] = (1.0,), out: str | Path = "runs/sweep", overrides: dict | None = None,
               protocol: str = "scratch", init: str | Path | None = None, name: str = "sweep",
               question: str = "Which design does best on this dataset? (hierhead sweep)", stage: str = STAGE) -> Plan:
    """The sweep as a plan, written to ``OUT/plan.yaml`` and checked (every design, the dataset, the recipe, the
    protocol's start) before any training; a folder holding a plan of other settings is refused. ``name``,
    ``question`` and ``stage`` (its rows: ``OUT/<stage>.csv``) are the plan's."""
    from ..engine.data import open_config_splits
    from ..engine.recipes import resolve
    from .protocols import PROTOCOLS

    if protocol not in PROTOCOL_NAMES:
        raise ValueError(f"protocol {protocol!r}: unknown; choose {', '.join(PROTOCOL_NAMES)}")
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: needs at least 1")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ValueError(f"fractions {bad or list(fractions)}: each must be in (0, 1]")
    names = labels(designs)
    out = Path(out).resolve()
    if recipe and Path(recipe).is_file():
        recipe = str(Path(recipe).resolve())  # the plan is read from OUT: a recipe file by its absolute path
    settings = {"validate": False, **_plain(overrides or {})}  # each run's last checkpoint is scored: no validation
    if init:
        settings["init"] = str(Path(init).resolve())
    holdout = (settings.get("data") or {}).pop("holdout", None)
    root = data if str(data).startswith("synthetic:") else str(Path(data).resolve())
    protocol_name = PROTOCOL_NAMES[protocol]
    config = PROTOCOLS[protocol_name].check(resolve(recipe, {**settings, "data": {**settings.get("data", {}), "path": root}}))
    open_config_splits(config)  # a missing or broken dataset fails here, not after the first run
    section = SECTION.get(protocol_name)
    base_lr = float((config[section] if section else config)["optimizer"]["lr"])
    arms = {}
    for label in names:  # the arm is named by its label; a variant's label also names its rows in the tables
        design, change = variant(label)
        arms[label] = {"design": design, **({"label": label} if label != design else {}),
                       **({"set": _change(change, section, base_lr)} if change else {})}
    entry = {"name": stage, "arms": arms, **({"score": "holdout", "holdout": holdout} if holdout else {})}
    dataset = re.sub(r"[^\w.-]", "_", "synthetic" if root.startswith("synthetic:") else Path(root).name) or "data"
    text = yaml.safe_dump({
        "name": name, "rows": ".", "runs": "runs", "protocol": protocol_name, "recipe": recipe, "question": question,
        "datasets": [{"name": dataset, "root": root}], "seeds": list(range(seeds)),
        "fractions": [float(f) for f in fractions], "set": settings, "metric": "mAP", "stages": [entry]},
        sort_keys=False)
    path = out / "plan.yaml"
    if path.is_file() and path.read_text() != text:
        raise ValueError(f"{str(out)!r} holds a {name} with other settings ({path}): use another --out, or run "
                         f"that plan with 'hierhead study run {path}'")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return load_plan(path)


def _plain(d: dict) -> dict:
    """Overrides as plain YAML data (nested dicts and lists)."""
    return {k: _plain(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _change(change: dict, section: str | None, base_lr: float) -> dict:
    """A variant's optimiser change as settings of the section its protocol trains with."""
    prefix = f"{section}.optimizer." if section else "optimizer."
    out = {}
    if "unit_lr_scale" in change:
        out[prefix + "unit_lr_scale"] = change["unit_lr_scale"]
    if "lr_factor" in change:
        out[prefix + "lr"] = base_lr * change["lr_factor"]
    if "anchor_l2" in change:
        out[prefix + "anchor_l2"] = change["anchor_l2"]
    return out


def sweep(recipe: str | None, data: str, designs: Sequence[str] | str = "all", seeds: int = 3,
          fractions: Sequence[float] = (1.0,), out: str | Path = "runs/sweep", overrides: dict | None = None,
          protocol: str = "scratch", init: str | Path | None = None, workers: int = 0, threads: int | None = None,
          log=print) -> tuple[list[dict], int]:
    """Train and score every (fraction, design, seed) not already done; returns (every row, the jobs that failed).

    Args:
        recipe: recipe name or YAML file (None: the built-in defaults).
        data: the dataset (its train split trained on, its test split scored).
        designs: ``"all"`` (Table I) or labels (:func:`variant`); the general head is always among them.
        seeds: seeds 0..seeds-1; a seed draws the subset, the init and the batch order.
        fractions: fractions of the training split.
        out: the sweep folder (``plan.yaml``, ``results.csv``/``.md``/``.png``, ``runs/``); resumable.
        overrides: nested recipe overrides (:func:`~hierhead.engine.parse_overrides` of ``--set``).
        protocol: ``scratch`` (the recipe from its own start), ``imagenet`` (its ImageNet backbone required,
            fine-tuned whole: the paper's protocol), ``finetune`` (the whole detector from ``init``), ``head``
            (only the prediction convs, on cached features of ``init``) or ``frozen`` (the ImageNet backbone
            frozen and cached, the extra blocks and head drawn from each seed): :mod:`.protocols`.
        init: the trained start of ``finetune`` and ``head``.
        workers: jobs at once, each in its own process (0: one after another in this process).
        threads: CPU threads a job (default: torch's, the machine's cores, with at most one worker; else 1).
        log: a function given each progress line.
    """
    from .report import write_sweep_summary
    from .runner import read_rows, run

    import torch

    plan = sweep_plan(recipe, data, designs, seeds, fractions, out, overrides, protocol, init)
    threads = threads or (torch.get_num_threads() if workers <= 1 else 1)  # as a plain `hierhead train` would
    try:
        failed = run(plan, workers, threads, log=log)
    except PlanError as e:
        raise ValueError(str(e)) from None
    rows = read_rows(plan, STAGE)
    if rows:
        write_sweep_summary(plan, plan.stage(STAGE))
    return rows, failed
