"""A wall-clock budget for training (``--time 15m``, as ultralytics' ``time``) that ends on time with a finished
schedule: after a short probe the run measures its seconds per step and shortens ``max_steps`` to what fits,
and the cosine schedule is stretched to end at that step (its learning rate reaches 0 there, as in a run
planned that long). Each validation re-measures and may shorten again, never lengthen. The plan travels in
checkpoints, so a resumed run keeps it and counts the time already spent.

Hand-written because Lightning's ``max_time`` stops the loop mid-schedule (the learning rate still high) and
no scheduler of torch's knows about time. Only a step-based run with a ``cosine`` or ``constant`` schedule
takes a budget: milestones of a step schedule are steps, and would not move.
"""

from __future__ import annotations

import math
import re
import time

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch.optim.lr_scheduler import CosineAnnealingLR, SequentialLR

__all__ = ["TimeBudget", "parse_time"]

#: the steps after which seconds per step are measured (the first steps pay for warm-up of caches and workers)
PROBE = (5, 25)
#: the share of the budget training plans to use; the rest covers the final validation and checkpoint
SAFETY = 0.95


def parse_time(text: str | float | int | None) -> float | None:
    """``"15m"``, ``"90s"``, ``"1.5h"`` or a plain number of minutes -> seconds (None: no budget)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"time {text!r}: expected a duration such as 15m, 900s or 1.5h (a plain number is minutes)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "": 60}[m.group(2)]


class TimeBudget(Callback):
    """Fit ``max_steps`` into ``seconds`` of training (see the module's docstring); ``log`` gets a line for
    each plan made."""

    clock = staticmethod(time.monotonic)

    def __init__(self, seconds: float, log=None) -> None:
        self.seconds = float(seconds)
        self.say = log or (lambda _: None)
        self.spent = 0.0  # seconds of training in earlier parts of a resumed run
        self.planned: int | None = None
        self._start = self._probe = self._val_start = None
        self._val_seconds: list[float] = []

    def state_dict(self) -> dict:
        return {"spent": self._elapsed(), "planned": self.planned, "val_seconds": list(self._val_seconds)}

    def load_state_dict(self, state: dict) -> None:
        self.spent, self.planned = float(state["spent"]), state["planned"]
        self._val_seconds = list(state.get("val_seconds", []))

    def _elapsed(self) -> float:
        return self.spent + (self.clock() - self._start if self._start is not None else 0.0)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self.clock()
        if self.planned is not None:  # resumed: the plan made before the stop holds
            self._apply(trainer, self.planned)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        step = trainer.global_step
        if step == PROBE[0] or (self._probe is None and step > PROBE[0]):
            self._probe = (step, self.clock())
        elif self._probe and step == max(PROBE[1], self._probe[0] + 1) and self.planned is None:
            self._plan(trainer, (self.clock() - self._probe[1]) / (step - self._probe[0]))

    def on_validation_start(self, trainer: pl.Trainer, *args) -> None:
        self._val_start = self.clock()

    def on_validation_end(self, trainer: pl.Trainer, *args) -> None:
        if self._val_start is None or trainer.sanity_checking:
            return
        self._val_seconds.append(self.clock() - self._val_start)
        self._val_start = None
        step = trainer.global_step
        if self.planned is not None and step > 0 and step < self.planned:
            self._plan(trainer, (self._elapsed() - sum(self._val_seconds)) / step, again=True)

    def _plan(self, trainer: pl.Trainer, per_step: float, again: bool = False) -> None:
        """Shorten the run to the steps that fit, with room for the validations still to come."""
        step, wanted = trainer.global_step, int(trainer.max_steps)
        val_cost = max(self._val_seconds) if self._val_seconds else 0.0
        every = trainer.val_check_interval if isinstance(trainer.val_check_interval, int) else 0
        left = SAFETY * self.seconds - self._elapsed()
        fit = step + max(1, math.floor(left / per_step)) if per_step > 0 else wanted
        if every and val_cost:  # the validations inside the remaining steps, and the one at the end
            fit = step + max(1, math.floor((left - val_cost * (1 + (fit - step) // every)) / per_step))
        total = max(step + 1, min(wanted, fit))
        if total == wanted:  # it fits as planned
            return
        self._apply(trainer, total)
        self.planned = total
        fits = f"now {total} steps fit, not {wanted}" if again else f"{total} of {wanted} steps fit"
        self.say(f"time {self.seconds / 60:g} min: {fits} ({per_step:.2f} s a step"
                 f"{f', validation {val_cost:.0f} s' if val_cost else ''}); the schedule ends at step {total}")

    @staticmethod
    def _apply(trainer: pl.Trainer, total: int) -> None:
        trainer.fit_loop.epoch_loop.max_steps = total
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            parts = sched._schedulers if isinstance(sched, SequentialLR) else [sched]
            offset = sched._milestones[0] if isinstance(sched, SequentialLR) else 0
            for part in parts:
                if isinstance(part, CosineAnnealingLR):
                    part.T_max = max(1, total - offset)
