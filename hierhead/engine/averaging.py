"""Weight averaging: an exponential moving average (EMA) of the weights, as Ultralytics trains by default.

Lightning's ``WeightAveraging`` callback does the work: it keeps a ``torch.optim.swa_utils.AveragedModel``
updated after every optimiser step, swaps the average in for validation (so ``val/mAP`` and ``best.ckpt``
are the average's), and writes it into every checkpoint as the model's ``state_dict`` (the trained weights
go to ``current_model_state``), so ``eval``, ``predict``, ``fold`` and ``export`` use the average with no
change, and ``--resume`` restores both exactly. What is ours is the decay schedule (Ultralytics'
``ModelEMA``: ``decay * (1 - exp(-updates / tau))``, so the first steps' weights do not linger in a short
run) and one hook, :meth:`EMA.on_train_end`."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import WeightAveraging

__all__ = ["EMA", "ema_decay"]


def ema_decay(decay: float, tau: float, updates: int) -> float:
    """The weight of the old average at the ``updates``-th update: ``decay`` reached over ``tau`` updates."""
    return decay * (1 - math.exp(-updates / tau)) if tau > 0 else decay


class EMA(WeightAveraging):
    """An EMA of the weights with a ramped decay (see the module docstring).

    Args:
        decay: the decay the ramp approaches (0.999: about the last 1,000 steps).
        tau: the ramp's time constant in optimiser steps (at ``tau`` steps the decay is 63 % of ``decay``).
    """

    def __init__(self, decay: float = 0.999, tau: float = 100) -> None:
        if not 0 <= decay < 1 or tau < 0:
            raise ValueError(f"ema: decay={decay} must be in [0, 1) and tau={tau} >= 0")
        self.decay, self.tau = decay, tau

        def average(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
            d = ema_decay(decay, tau, int(updates))  # updates: how many averaged so far (the first is a copy)
            return d * averaged + (1 - d) * current

        super().__init__(avg_fn=average, use_buffers=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Leave the trained weights in place (Lightning copies the average over them here): the run's final
        checkpoint, written after the fit, then holds the average as its weights *and* the trained weights
        beside them, so a finished run resumed for more steps continues exactly."""
