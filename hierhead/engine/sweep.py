"""Sweeps: every design x seed x training-set fraction, resumable, summarised like Tables III-V
(the tables, intervals and plots: :mod:`hierhead.comparison`).

Each run trains with the recipe, then its *last* checkpoint is evaluated on the test split
(no model selection on the test set). A finished run leaves ``result.json``; a killed sweep
skips those and continues. ``results.csv`` has one row per run; ``results.md`` mean +- std over
seeds per design and fraction, the paired difference to the general head (same seed and subset)
with a 95 % t interval and the number of pairs the design is ahead in, the best design per column
in bold, and a verdict (better / worse / inconclusive by paired t-tests, Holm-corrected across the designs); ``results.png`` the metric
against training-set size.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

from ..comparison import plot, table
from ..design import GENERAL, PRESETS, Design
from ..provenance import row_provenance
from .optim import parse_unit_lr_scale
from .recipes import resolve

__all__ = ["sweep", "jobs", "summarise", "slug", "run_dir", "PROTOCOLS"]

def slug(design: str) -> str:
    """A design name as a folder name: 9An{9,3,1}As -> 9An_9-3-1As."""
    return design.replace("{", "_").replace("}", "").replace(",", "-")


def run_dir(out: Path, design: str, seed: int, fraction: float) -> Path:
    return out / "runs" / f"f{fraction:g}" / f"{slug(design)}" / f"seed{seed}"


def jobs(designs: Sequence[str] | str = "all", seeds: int = 3,
         fractions: Sequence[float] = (1.0,)) -> list[tuple[float, str, int]]:
    """A sweep's (fraction, design, seed) runs in order; the general head is always among the designs.

    Checked before any training: every design name, ``seeds >= 1``, each fraction in (0, 1].
    """
    designs = list(PRESETS) if designs == "all" else list(designs)
    if GENERAL not in designs:
        designs = [GENERAL] + designs
    for d in designs:  # fail early on a bad name, before hours of training
        name, _ = variant(d)
        Design.parse(name, num_sizes=3, num_ratios=3)
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: needs at least 1")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ValueError(f"fractions {bad or list(fractions)}: each must be in (0, 1]")
    return [(f, d, s) for f in fractions for s in range(seeds) for d in designs]


PROTOCOLS = ("scratch", "finetune", "head", "frozen", "imagenet")
#: the protocols that train from cached features (:class:`~hierhead.engine.head.HeadProtocol`; the recipe
#: section with each one's settings: :data:`~hierhead.engine.head.SECTIONS`), and where each cuts the detector
CACHED = {"head": "head", "frozen": "body"}


def variant(label: str) -> tuple[str, dict]:
    """A design label with optimiser changes, compared in the same sweep as the rest:
    ``'9An{9,3}S@auto'`` -> ``('9An{9,3}S', {"unit_lr_scale": "auto"})`` (also ``@0.25``: the units'
    ``optimizer.unit_lr_scale``); ``'9An{9}@lr3'`` -> ``('9An{9}', {"lr_factor": 3.0})`` (the whole lr
    times 3: a control for the extra step size the units give the shared directions); ``'9An{9,3}As@prior0.1'``
    -> ``('9An{9,3}As', {"anchor_l2": 0.1})`` (sharing as a prior, :func:`~hierhead.engine.optim.prior_penalty`;
    on the general head, the same L2 as a control)."""
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


def _optimizer_change(section: dict, change: dict) -> dict:
    out = dict(section)
    if "unit_lr_scale" in change:
        out["unit_lr_scale"] = change["unit_lr_scale"]
    if "lr_factor" in change:
        out["lr"] = float(section["lr"]) * change["lr_factor"]
    if "anchor_l2" in change:
        out["anchor_l2"] = change["anchor_l2"]
    return out


def sweep(recipe: str, data: str, designs: Sequence[str] | str = "all", seeds: int = 3,
          fractions: Sequence[float] = (1.0,), out: str | Path = "runs/sweep", overrides: dict | None = None,
          metric: str | None = None, log=None, shard: tuple[int, int] = (0, 1), protocol: str = "scratch",
          init: str | Path | None = None) -> list[dict]:
    """Train and evaluate every (fraction, design, seed); returns all rows (finished ones are reused).

    Args:
        recipe: recipe name or YAML file (``--set`` overrides in ``overrides``).
        data: the dataset (its train split is trained on, its test/val split scored).
        designs: ``"all"`` (Table I) or names; the general head is always among them.
        seeds: seeds 0..seeds-1; a seed draws the subset, the init and the batch order.
        fractions: fractions of the training split.
        out: the sweep folder (resumable: finished runs are skipped).
        overrides: nested recipe overrides (:func:`~hierhead.engine.parse_overrides` of ``--set``).
        metric: the test metric (default: the recipe's).
        log: a function given each progress line (e.g. ``print``); None: silent.
        protocol: ``scratch`` (the recipe from its own init), ``finetune`` (the whole detector from
            ``init``), ``head`` (only the prediction convs, from ``init``'s frozen features, see
            :mod:`hierhead.engine.head`; settings in the recipe's ``head`` section) or ``frozen`` (the
            ImageNet backbone frozen and cached, the extra blocks and head drawn from each seed and
            trained; settings in the ``frozen`` section, chosen on validation; no ``init``) or ``imagenet`` (the recipe with its
            ImageNet backbone required, fine-tuned whole: the paper's setting; ``scratch`` takes the
            recipe's ``pretrained_backbone`` as it is).
        init: the start checkpoint of ``finetune`` and ``head``.
        shard: ``(i, n)`` runs every n-th job from the i-th: n processes (GPUs, machines with a
            shared folder) split one sweep; each rewrites the summary from all finished runs.

    Returns:
        one row per finished run (design, seed, fraction, protocol, metric, mAP, ...), as in ``results.csv``.
    """
    from .data import open_config_splits

    out = Path(out)
    log = log or (lambda _: None)
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: needs 0 <= i < n")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: unknown; choose {', '.join(PROTOCOLS)}")
    if protocol in ("finetune", "head") and not init:
        raise ValueError(f"protocol {protocol!r} starts from a trained model: give --init CKPT")
    if protocol in ("scratch", "frozen", "imagenet") and init:
        raise ValueError(f"--init starts the finetune or head protocol (protocol {protocol!r} has no start): "
                         "give --protocol finetune or head")
    todo = jobs(designs, seeds, fractions)
    overrides = overrides or {}

    if protocol == "imagenet":
        if overrides.get("pretrained_backbone") is False:
            raise ValueError("protocol 'imagenet' starts from the ImageNet backbone: drop pretrained_backbone=false")
        overrides = {**overrides, "pretrained_backbone": True}  # a model without shipped weights fails here

    def config(fraction: float = 1.0, **over) -> dict:
        return resolve(recipe, {**overrides, **over, "init": str(init) if init else None,
                                "data": {**overrides.get("data", {}), "path": data, "fraction": fraction}})

    open_config_splits(config())  # a missing or broken dataset fails here, not after the first run
    if protocol == "imagenet":
        from .from_config import backbone_weights
        backbone_weights(config())  # a model without ImageNet weights fails here, not at its first run
    section = None  # the recipe section with a cached protocol's steps, batch, optimiser and schedule
    if protocol in CACHED:
        from .head import SECTIONS
        section = SECTIONS[CACHED[protocol]]
    _same_settings(out, {"protocol": protocol, "init": str(init) if init else None,
                         **({section: config()[section]} if section else {})})
    mine = [(k, job) for k, job in enumerate(todo, 1)
            if (k - 1) % count == index and not (run_dir(out, job[1], job[2], job[0]) / "result.json").is_file()]
    if protocol in CACHED and mine:
        from .head import HeadProtocol
        runner = HeadProtocol(config(), log, cut=CACHED[protocol])
    else:
        runner = None
    for k, (fraction, design, seed) in mine:
        folder = run_dir(out, design, seed, fraction)
        name, change = variant(design)
        run = config(design=name, seed=seed, out=str(folder), validate=False, fraction=fraction, plots=False)
        if change:  # the variant's optimiser, in the section its protocol trains with
            if section:
                run[section] = {**run[section], "optimizer": _optimizer_change(run[section]["optimizer"], change)}
            else:
                run["optimizer"] = _optimizer_change(run["optimizer"], change)
        log(f"[{k}/{len(todo)}] {design} seed {seed} fraction {fraction:g}")
        row = runner.run(run, metric) if runner else _trained_run(run, folder, metric)
        opt = run[section]["optimizer"] if section else run["optimizer"]
        row = {"design": design, "seed": seed, "fraction": fraction, "protocol": protocol,
               "optimizer": opt["name"], "lr": opt["lr"], "unit_lr_scale": opt.get("unit_lr_scale", 1.0),
               "weight_decay": opt.get("weight_decay"), "anchor_l2": opt.get("anchor_l2") or 0.0,
               "unit_l2": opt.get("unit_l2") or 0.0, **row, **row_provenance()}
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "result.json.tmp"
        tmp.write_text(json.dumps(row))
        tmp.replace(folder / "result.json")
        summarise(out)
    return summarise(out)


def _same_settings(out: Path, settings: dict) -> None:
    """A sweep folder holds one protocol's runs: refuse to add runs of other settings to it."""
    path = out / "sweep.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        for key in sorted(set(saved) | set(settings)):
            if saved.get(key) != settings.get(key):
                raise ValueError(f"{str(out)!r} holds a sweep with {key}={saved.get(key)!r}, this one has "
                                 f"{key}={settings.get(key)!r}: use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1))


def _trained_run(run: dict, folder: Path, metric: str | None) -> dict:
    """A scratch or finetune run: Lightning training, then the last checkpoint on the test split."""
    from .checkpoint import load_checkpoint
    from .data import open_config_splits
    from .infer import mean_ap_of_model
    from .trainer import train

    resume = (folder / "checkpoints" / "last.ckpt").is_file()
    result = train(run, resume=resume)
    model, _ = load_checkpoint(result["last"])
    _, test = open_config_splits(run)
    scores = mean_ap_of_model(model, test, metric or run["metric"])
    return {"train_images": result.get("train_images"), "steps": result["steps"], "metric": scores["metric"],
            "mAP": scores.get("mAP", scores.get("AP")), "train_seconds": result["train_seconds"]}


def _rows(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*/*/result.json"))]


def summarise(out: str | Path) -> list[dict]:
    """Rewrite results.csv, results.md and results.png from the finished runs under ``out``."""
    out = Path(out)
    rows = _rows(out)
    if not rows:
        return rows
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tag = f".{os.getpid()}.tmp"  # shards may summarise at once: write aside, then rename
    with open(out / f"results.csv{tag}", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    (out / f"results.md{tag}").write_text(table(rows))
    plot(rows, out / f"results{tag}.png")
    for name in ("results.csv", "results.md"):
        os.replace(out / f"{name}{tag}", out / name)
    os.replace(out / f"results{tag}.png", out / "results.png")
    return rows
