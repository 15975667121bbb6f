"""The LightningModule: any registry detector, the paper's optimisers and schedules, VOC/COCO validation.

Losses are the torchvision detectors' own: SSD's smooth L1 + cross-entropy with hard negative
mining at 3:1 and positives at IoU > 0.5, RetinaNet's focal loss (alpha 0.25, gamma 2).
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch

from ..metrics import evaluate
from ..models import build
from .optim import LRSchedule, make_optimizer

__all__ = ["DetectorModule", "LRSchedule"]


class DetectorModule(pl.LightningModule):
    """Trains ``build(spec["model"], ...)``; the spec travels in every checkpoint (``hierhead``)."""

    def __init__(self, spec: dict, optimizer: dict | None = None, schedule: dict | None = None,
                 total_steps: int = 0, metric: str = "voc07", backbone_weights: str | None = None,
                 torchvision_weights: bool = False, channels_last: bool = False, init: str | None = None) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.optimizer_cfg = dict(optimizer or {"name": "sgd", "lr": 0.01})
        self.schedule_cfg = dict(schedule or {})
        self.total_steps, self.metric = total_steps, metric
        start = None
        if init:  # every design starts as exactly the trained model at `init` (units at 0)
            from .checkpoint import CheckpointError, load_start_model
            start = load_start_model(init, spec)
        try:
            self.model = build(spec["model"], spec["num_classes"], design=spec.get("design"),
                               soft=spec.get("soft", False), backbone_weights=backbone_weights,
                               torchvision_weights=torchvision_weights, start=start, **spec.get("options", {}))
        except ValueError as e:
            if start is None:
                raise
            raise CheckpointError(f"--init {str(init)!r}: {e}") from None
        self.spec["pretrained_backbone"] = self.model.hierhead_spec["pretrained_backbone"]
        if channels_last:  # NHWC convolutions: 1.39x faster CPU training steps (docs/benchmarks.md); same function
            self.model.to(memory_format=torch.channels_last)
        self._val: list = []
        self._last = None

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
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.global_step}: loss is {loss.item()} "
                                     f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())}); lower the lr")
        n = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=n)
        now = time.perf_counter()
        if self._last is not None:
            self.log("img_s", n * self.trainer.world_size / (now - self._last), prog_bar=True, batch_size=n)
        self._last = now
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
            pairs = [p for part in gathered for p in part]
        self._val = []
        if not pairs or self.trainer.sanity_checking:
            return
        result = evaluate([p for p, _ in pairs], [t for _, t in pairs], self.metric, self.spec.get("classes"))
        key = "AP" if self.metric == "coco" else "mAP"
        self.log("val/mAP", float(result[key]), prog_bar=True, sync_dist=False)
        self._last = None

    def configure_optimizers(self):
        opt = make_optimizer(self.model, self.optimizer_cfg)
        lr = float(self.optimizer_cfg["lr"])
        sched = LRSchedule(lr=lr, total_steps=self.total_steps, **self.schedule_cfg)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, sched), "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hierhead"] = {**self.spec, "optimizer": self.optimizer_cfg, "schedule": self.schedule_cfg,
                                  "total_steps": self.total_steps, "metric": self.metric}
