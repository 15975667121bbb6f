"""The LightningModule: any registry detector, the paper's optimisers and schedules, VOC/COCO validation.

Losses are the torchvision detectors' own: SSD's smooth L1 + cross-entropy with hard negative
mining at 3:1 and positives at IoU > 0.5, RetinaNet's focal loss (alpha 0.25, gamma 2).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from ..metrics import mean_ap
from ..models import ModelSpec, build_from_spec
from ..models.builders import backbone_body
from . import freezing, speed
from .optim import lr_scheduler, make_optimizer, prior_penalty

__all__ = ["DetectorModule"]


class DetectorModule(pl.LightningModule):
    """Trains the detector of a :class:`~hierhead.models.ModelSpec`.

    The spec and the training settings are the module's hyper-parameters (``save_hyperparameters``),
    so they travel in every checkpoint (``hyper_parameters``); a checkpoint written before that
    (the spec under a ``hierhead`` key, a ``LambdaLR`` schedule) is converted when it is resumed.

    Args:
        spec: the model (a :class:`ModelSpec` or its dict).
        optimizer: the recipe's ``optimizer`` section (:func:`~hierhead.engine.optim.make_optimizer`).
        schedule: the ``schedule`` section (:func:`~hierhead.engine.optim.lr_scheduler`).
        total_steps: the run's optimiser steps (the cosine's end).
        metric: validation metric, ``voc07`` / ``voc12`` / ``coco``.
        backbone_weights, torchvision_weights: as :func:`hierhead.models.build`.
        channels_last: NHWC convolutions (faster on CPU; the same function).
        init: a trained checkpoint every design starts from (units at 0).
        frozen_stages: the backbone body frozen through that feature level (:mod:`.freezing`).
        speedups: the names of :mod:`.speed`'s rewrites applied to the backbone body while training
            (``fold_frozen_norms``: fewer passes a step; the same function and state).
    """

    #: No FLOP count: Lightning's ThroughputMonitor then logs samples/s only (without a warning).
    flops_per_batch = None

    def __init__(self, spec: ModelSpec | dict, optimizer: dict | None = None, schedule: dict | None = None,
                 total_steps: int = 0, metric: str = "voc07", backbone_weights: str | None = None,
                 torchvision_weights: bool = False, channels_last: bool = False, init: str | None = None,
                 frozen_stages: int = 0, speedups: tuple[str, ...] = ()) -> None:
        super().__init__()
        spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
        self.optimizer_cfg = dict(optimizer or {"name": "sgd", "lr": 0.01})
        self.schedule_cfg = dict(schedule or {})
        self.total_steps, self.metric = total_steps, metric
        start = None
        if init:  # every design starts as exactly the trained model at `init` (units at 0)
            from .checkpoint import CheckpointError, load_start_model
            start = load_start_model(init, spec)
        if start is not None:  # the start's backbone architecture (frozen batch norm or not), its weights
            spec = spec.replace(pretrained_backbone=start.hierhead_spec.pretrained_backbone)
            backbone_weights, torchvision_weights = None, False
        try:
            self.model = build_from_spec(spec, backbone_weights=backbone_weights,
                                         torchvision_weights=torchvision_weights, start=start)
        except ValueError as e:
            if start is None:
                raise
            raise CheckpointError(f"--init {str(init)!r}: {e}") from None
        self.spec = self.model.hierhead_spec
        self.save_hyperparameters({"spec": self.spec.to_dict(), "optimizer": self.optimizer_cfg,
                                   "schedule": self.schedule_cfg, "total_steps": total_steps, "metric": metric,
                                   "frozen_stages": frozen_stages})
        # which parameters train: a training policy (engine/freezing.py), not a part of the saved model
        freezing.apply(self.model, {"model": spec.model, "frozen_stages": frozen_stages, "optimizer": self.optimizer_cfg,
                                    "pretrained_backbone": self.spec.pretrained_backbone})
        if channels_last:  # NHWC convolutions: 1.39x faster CPU training steps (docs/benchmarks.md); same function
            self.model.to(memory_format=torch.channels_last)
        speed.apply(backbone_body(self.model), speedups)
        self._val: list = []
        self.last_val: list = []  # the last validation's (detections, target) pairs: the run's pictures

    def forward(self, images):
        return self.model(images)

    def on_before_optimizer_step(self, optimizer) -> None:
        """Stop before a non-finite gradient reaches the weights: no checkpoint, ``best`` included,
        ever holds inf / NaN weights."""
        grads = [(n, p.grad) for n, p in self.model.named_parameters() if p.grad is not None]
        if grads and not torch.stack([torch.isfinite(g).all() for _, g in grads]).all():  # one device sync a step
            bad = [n for n, g in grads if not torch.isfinite(g).all()]
            raise FloatingPointError(f"step {self.global_step}: non-finite gradient in {bad[0]} (and {len(bad) - 1} "
                                     f"more); lower the lr or set gradient_clip; the checkpoints hold the last good "
                                     f"weights")

    def training_step(self, batch, batch_idx: int):
        images, targets = batch
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        losses = self.model(images, targets)
        prior = prior_penalty(self.model, self.optimizer_cfg)  # 0 unless optimizer.anchor_l2 / unit_l2
        if torch.is_tensor(prior):
            losses = {**losses, "prior": prior}
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.global_step}: loss is {loss.item()} "
                                     f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())}); lower the lr")
        n = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=n)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch, batch_idx: int) -> None:
        images, targets = batch
        for p, t in zip(self.model(images), targets):
            self._val.append(({k: v.detach().cpu() for k, v in p.items()},
                              {k: t[k].cpu() for k in ("boxes", "labels", "difficult")}))

    def on_validation_epoch_end(self) -> None:
        pairs = self._val
        if self.trainer.world_size > 1:  # every rank evaluated a share of the images
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, pairs)
            # rank r held images r, r + world, ... (EpochSampler without shuffle): interleaving restores
            # the dataset's order, so tied scores rank as in a one-process eval and the mAPs agree
            pairs = [part[i] for i in range(len(gathered[0])) for part in gathered if i < len(part)]
        self._val = []
        if not pairs or self.trainer.sanity_checking:
            return
        self.last_val = pairs
        result = mean_ap([p for p, _ in pairs], [t for _, t in pairs], self.metric, self.spec.classes)
        key = "AP" if self.metric == "coco" else "mAP"
        self.log("val/mAP", float(result[key]), sync_dist=False)  # a fraction (checkpoints, logs, sweeps)
        # the progress bar in the unit of every table and summary line: percent
        self.log("val/mAP%", 100 * float(result[key]), prog_bar=True, logger=False, sync_dist=False)

    def configure_optimizers(self):
        opt = make_optimizer(self.model, self.optimizer_cfg)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self._scheduler(opt), "interval": "step"}}

    def _scheduler(self, opt: torch.optim.Optimizer):
        return lr_scheduler(opt, total_steps=self.total_steps, **self.schedule_cfg)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume a checkpoint written before the spec became hyper-parameters (``hierhead`` key) and the
        schedule torch's schedulers (a ``LambdaLR`` state): the schedule's state becomes that of this
        run's scheduler after the same number of steps, the optimiser's rates its rates there."""
        if "hierhead" not in checkpoint or "hyper_parameters" in checkpoint:
            return
        legacy = checkpoint.pop("hierhead")
        checkpoint["hyper_parameters"] = {"spec": ModelSpec.from_dict(legacy).to_dict(),
                                          **{k: legacy[k] for k in ("optimizer", "schedule", "total_steps", "metric")}}
        for i, old in enumerate(checkpoint.get("lr_schedulers", [])):
            if "lr_lambdas" not in old:
                continue
            opt = make_optimizer(self.model, self.optimizer_cfg)
            sched = self._scheduler(opt)
            for _ in range(int(old["last_epoch"])):
                opt.step()  # no gradients: the weights do not move, only the schedule
                sched.step()
            checkpoint["lr_schedulers"][i] = sched.state_dict()
            for group, saved in zip(opt.param_groups, checkpoint["optimizer_states"][i]["param_groups"]):
                saved["lr"] = group["lr"]
