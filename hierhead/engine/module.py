"""The LightningModule: any registry detector, the paper's optimisers and schedules, VOC/COCO validation.

Losses are the torchvision detectors' own: SSD's smooth L1 + cross-entropy with hard negative
mining at 3:1 and positives at IoU > 0.5, RetinaNet's focal loss (alpha 0.25, gamma 2).
"""

from __future__ import annotations

import math
import time

import lightning.pytorch as pl
import torch

from ..layers import HierarchicalConv2d
from ..metrics import evaluate
from ..models import build

__all__ = ["DetectorModule", "LRSchedule"]


class LRSchedule:
    """lr factor at a step: linear warm-up, then multistep / step (exponential every k) / cosine / constant."""

    def __init__(self, name: str = "constant", lr: float = 1.0, milestones=(), gamma: float = 0.1,
                 step_size: int = 0, total_steps: int = 0, warmup_steps: int = 0,
                 warmup_start_lr: float | None = None) -> None:
        if name not in ("constant", "multistep", "step", "cosine"):
            raise ValueError(f"schedule {name!r}: unknown; choose constant, multistep, step or cosine")
        if name == "step" and step_size <= 0:
            raise ValueError("schedule 'step' needs step_size > 0")
        self.name, self.milestones, self.gamma, self.step_size = name, sorted(milestones), gamma, step_size
        self.total, self.warmup = total_steps, warmup_steps
        self.warmup_start = (warmup_start_lr / lr) if warmup_start_lr is not None else 0.001

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup
        if self.name == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.name == "step":
            return self.gamma ** (step // self.step_size)
        if self.name == "cosine" and self.total > self.warmup:
            t = min(1.0, (step - self.warmup) / (self.total - self.warmup))
            return 0.5 * (1 + math.cos(math.pi * t))
        return 1.0


class DetectorModule(pl.LightningModule):
    """Trains ``build(spec["model"], ...)``; the spec travels in every checkpoint (``hierhead``)."""

    def __init__(self, spec: dict, optimizer: dict | None = None, schedule: dict | None = None,
                 total_steps: int = 0, metric: str = "voc07", backbone_weights: str | None = None,
                 torchvision_weights: bool = False, channels_last: bool = False) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.optimizer_cfg = dict(optimizer or {"name": "sgd", "lr": 0.01})
        self.schedule_cfg = dict(schedule or {})
        self.total_steps, self.metric = total_steps, metric
        self.model = build(spec["model"], spec["num_classes"], design=spec.get("design"), soft=spec.get("soft", False),
                           backbone_weights=backbone_weights, torchvision_weights=torchvision_weights,
                           **spec.get("options", {}))
        self.spec["pretrained_backbone"] = self.model.hierhead_spec["pretrained_backbone"]
        if channels_last:  # NHWC convolutions: 1.39x faster CPU training steps (docs/benchmarks.md); same function
            self.model.to(memory_format=torch.channels_last)
        self._val: list = []
        self._last = None

    def forward(self, images):
        return self.model(images)

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
        cfg = dict(self.optimizer_cfg)
        name, lr = cfg.pop("name", "sgd").lower(), float(cfg.pop("lr"))
        decay = float(cfg.pop("weight_decay", 0.0))
        # Eq. 2's units move every anchor they join: unit_lr_scale != 1 gives them their own lr
        scale = float(cfg.pop("unit_lr_scale", 1.0))
        unit_ids = {id(p) for m in self.model.modules() if isinstance(m, HierarchicalConv2d)
                    for p in (m.unit_weight, m.unit_bias)}
        trained = [p for p in self.model.parameters() if p.requires_grad]
        units = [p for p in trained if id(p) in unit_ids]
        # one group at scale 1 (the paper's single lr; also what checkpoints from before the option hold)
        params = [{"params": [p for p in trained if id(p) not in unit_ids]}, {"params": units, "lr": lr * scale}] \
            if units and scale != 1.0 else [{"params": trained}]
        if name == "sgd":
            opt = torch.optim.SGD(params, lr=lr, momentum=float(cfg.pop("momentum", 0.9)), weight_decay=decay)
        elif name == "rmsprop":  # TF Object Detection API's RMSprop (paper IV-C)
            opt = torch.optim.RMSprop(params, lr=lr, momentum=float(cfg.pop("momentum", 0.9)), alpha=0.9,
                                      eps=float(cfg.pop("eps", 1.0)), weight_decay=decay)
        elif name in ("adam", "adamw"):
            cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
            opt = cls(params, lr=lr, weight_decay=decay)
        else:
            raise ValueError(f"optimizer {name!r}: unknown; choose sgd, rmsprop, adam or adamw")
        sched = LRSchedule(lr=lr, total_steps=self.total_steps, **self.schedule_cfg)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, sched), "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hierhead"] = {**self.spec, "optimizer": self.optimizer_cfg, "schedule": self.schedule_cfg,
                                  "total_steps": self.total_steps, "metric": self.metric}
