"""Protocols: how a study's job trains and what it scores, one small object each.

Five protocols (:data:`PROTOCOLS`), one object each (where a job starts, how it trains, what it scores).
``train`` is what a user runs: ``hierhead train --recipe R --data ROOT`` with the arm's settings (the recipe's
own start: the ImageNet backbone for the built-in defaults), then the *last* checkpoint scored once on the
stage's split (no checkpoint is chosen on it); ``imagenet``, ``finetune``, ``frozen`` and ``head`` differ in
their start or in what trains (:data:`PROTOCOLS`). ``test`` is the root's test split (for a dataset with
``data.resplit``, the seeded re-split's held-out part; for ``synthetic:`` data, its test images); ``holdout``
a seeded fraction of the training split (``data.holdout``, drawn with the job's seed), which the run also
validates on. Metrics: VOC07 mAP, COCO-style AP50 and AP (pycocotools), in percent.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

__all__ = ["PROTOCOLS", "Protocol", "TrainProtocol", "CachedProtocol", "job_config", "keep", "kept"]


def job_config(plan, job, picks: dict, folder: Path) -> dict:
    """The resolved training config of one job (:func:`hierhead.engine.resolve` of its recipe, the arm's or the
    plan's, with the job's settings, its dataset root, seed and run folder)."""
    from ..engine.recipes import resolve

    settings = plan.settings(job, picks)
    stage = plan.stage(job.stage)
    data = {**settings.get("data", {}), "path": plan.dataset(job.dataset).root}
    if job.fraction != 1:
        data["fraction"] = job.fraction
    if stage.score == "holdout":
        data.update(holdout=stage.holdout, split_seed=job.seed)
    design = plan.stage(job.stage).arm(job.arm).design
    return resolve(plan.recipe_of(job), {**settings, "data": data, "design": design, "seed": job.seed, "out": str(folder),
                                 "plots": False})


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A protocol: ``run(config, score) -> metrics`` trains one job in its run folder (resuming a killed one)
    and scores it. ``start``: where a job's weights start: ``recipe`` (as the recipe says), ``init`` (a trained
    checkpoint, the setting ``init``: the head and fine-tune protocols of the from-scratch studies) or
    ``imagenet`` (the recipe's ImageNet backbone, required)."""
    name: str
    description: str
    start: str = "recipe"

    def run(self, config: dict, score: str) -> dict:  # pragma: no cover - the base is abstract
        raise NotImplementedError

    def check(self, config: dict) -> dict:
        """The job's config as this protocol trains it, or a one-line error before any training."""
        if self.start == "init" and not config.get("init"):
            raise ValueError(f"protocol {self.name!r} starts from a trained model: set init: CHECKPOINT "
                             "(hierhead sweep --init CHECKPOINT)")
        if self.start != "init" and config.get("init"):
            raise ValueError(f"protocol {self.name!r} has no trained start (init {config['init']!r}): "
                             "use the finetune or head protocol")
        if self.start == "imagenet":
            if config.get("pretrained_backbone") is False:
                raise ValueError(f"protocol {self.name!r} starts from the ImageNet backbone: drop pretrained_backbone: false")
            from ..engine.from_config import backbone_weights

            config = {**config, "pretrained_backbone": True}
            backbone_weights(config)  # a model without ImageNet weights fails here, not after its caches
        return config

    def fingerprint(self, config: dict) -> str:
        """What decides the job's result: two jobs with the same fingerprint train the same run (the runner
        trains it once and gives both its row). Here: the config with its ``auto`` choices made, less its folder."""
        return settings_json({k: v for k, v in config.items() if k != "out"})


class TrainProtocol(Protocol):
    def fingerprint(self, config: dict) -> str:
        from ..engine.choose import resolve_auto
        from ..engine.from_config import image_size

        chosen = resolve_auto(config)[0]  # the defaults written out: null and the paper's 0.2 train the same model
        return super().fingerprint({**chosen, "image_size": list(image_size(chosen) or []),
                                    "anchor_s_min": chosen.get("anchor_s_min") or 0.2})

    def run(self, config: dict, score: str) -> dict:
        from ..engine.checkpoint import load_checkpoint
        from ..engine.trainer import train

        config = self.check(config)
        folder = Path(config["out"])
        result = train(config, resume=(folder / "checkpoints" / "last.ckpt").is_file())
        model, spec = load_checkpoint(result["last"])
        ds, split = scored_split(config, spec.classes, score)
        return {**scores(model, ds), "split": split, "steps": result["steps"], "train_images": result["train_images"]}


def scored_split(config: dict, classes: list[str], score: str):
    """(the dataset a job is scored on, its short name for the row's ``split``): see the module's docstring."""
    from ..data import open_dataset
    from ..engine.data import open_config_splits

    data = config["data"]
    with warnings.catch_warnings():  # the reader's warnings were shown when the run opened its data
        warnings.simplefilter("ignore")
        if score == "holdout":
            return open_config_splits(config)[1], f"holdout {data['holdout']:.0%} of train (split_seed {data['split_seed']})"
        if not _reads_roots_test(data):
            return open_config_splits(config)[1], f"test (re-split {data['resplit']:.0%})" if data.get("resplit") else "test"
        return open_dataset(data["path"], data.get("format"), classes=classes, skip_bad=True, split="test"), "test"


def _reads_roots_test(data: dict) -> bool:
    """Whether ``score: test`` reads the root's own ``test`` split (not a re-split's or synthetic data's part)."""
    return not data.get("resplit") and not str(data["path"]).startswith("synthetic:")


def scores(model, ds) -> dict:
    """VOC07 mAP, COCO AP50 and AP of ``model`` on ``ds`` in percent (one pass of the model), with the images
    and the boxes the reader skipped."""
    from ..engine.infer import run_model

    preds = run_model(model, (ds[i][0] for i in range(len(ds))), 8)
    return {**_scores_of(preds, [ds.target(i) for i in range(len(ds))], ds.classes), "scored_images": len(ds),
            "skipped_boxes": sum(ds.skipped.values())}


def _scores_of(preds: list, targets: list, classes: list[str]) -> dict:
    from ..metrics import mean_ap

    voc = mean_ap(preds, targets, "voc07", classes)
    coco = mean_ap(preds, targets, "coco", classes)
    return {"mAP": round(100 * voc["mAP"], 3), "AP50": round(100 * coco["AP50"], 3), "AP": round(100 * coco["AP"], 3)}


@dataclasses.dataclass(frozen=True)
class CachedProtocol(Protocol):
    """A protocol on cached features (:class:`hierhead.engine.head.HeadProtocol`): the part of a start below
    ``cut`` frozen and its features of a few augmented views cached, the rest trained with the recipe's section
    of that cut. ``cut="body"`` (``frozen``): the ImageNet backbone, the extra blocks and the head drawn from the
    job's seed (the ``frozen`` section); ``cut="head"`` (``head``): everything but the prediction convs of the
    ``init`` checkpoint (the ``head`` section). The caches are stored on disk (``HIERHEAD_CACHE``), so every job
    after the first reads them. It scores the run's held-out split, so ``score: test`` reads a root's ``test``
    split explicitly (not a ``val`` one)."""
    cut: str = "body"

    def run(self, config: dict, score: str) -> dict:
        from ..engine.head import HeadProtocol

        config = self.check(config)
        data = config["data"]
        if score == "test" and _reads_roots_test(data):
            config = {**config, "data": {**data, "train_split": "train", "val_split": "test"}}
        runner = HeadProtocol(config, cut=self.cut)
        result = runner.run(config, "voc07")
        if config[runner.section].get("keep"):  # the trained model and its test detections, for reports and pictures
            keep(runner.model, runner.detections, Path(config["out"]))
        ds, split = scored_split(config, runner.train.classes, score)
        return {**_scores_of(runner.detections, runner.test.targets, runner.train.classes), "split": split,
                "scored_images": len(runner.test.targets), "skipped_boxes": sum(ds.skipped.values()),
                "steps": result["steps"], "train_images": result["train_images"]}


def keep(model, detections: list[dict], folder: Path) -> None:
    """A cached protocol's run kept in its folder: ``model.safetensors`` (:func:`hierhead.models.save`, its spec in
    the metadata) and ``detections.pt`` (the test split's detections, tensors only: :func:`kept`)."""
    import torch

    from ..models import save

    folder.mkdir(parents=True, exist_ok=True)
    save(model, folder / "model.safetensors")
    tmp = folder / "detections.pt.tmp"
    torch.save([{k: v.detach().cpu() for k, v in d.items()} for d in detections], tmp)
    tmp.replace(folder / "detections.pt")


def kept(folder: Path):
    """(model in eval mode, test detections) of a run :func:`keep` wrote (``torch.load(weights_only=True)``)."""
    import torch

    from ..engine.checkpoint import load_saved_model

    model, _ = load_saved_model(Path(folder) / "model.safetensors")
    return model, torch.load(Path(folder) / "detections.pt", weights_only=True)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    TrainProtocol("train", "the product's training (hierhead train) from the recipe's start, the last checkpoint "
                           "scored once"),
    TrainProtocol("imagenet", "as train, the recipe's ImageNet backbone required: the whole detector fine-tuned "
                              "from it (the paper's protocol, P2)", start="imagenet"),
    TrainProtocol("finetune", "as train, from the trained checkpoint init (every design from the same function: "
                              "units at 0)", start="init"),
    CachedProtocol("frozen", "the ImageNet backbone frozen and cached, the extra blocks and head trained from the "
                             "seed's draw (the recipe's frozen section)", start="imagenet", cut="body"),
    CachedProtocol("head", "only the prediction convs trained, on the cached features of the trained checkpoint "
                           "init (the recipe's head section)", start="init", cut="head"),
)}


def settings_json(settings: dict) -> str:
    """A row's ``settings`` column: the effective settings as sorted, compact JSON."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
