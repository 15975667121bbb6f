"""A wall-clock budget for training (``--time 15m``, as ultralytics' ``time``) that ends on time with a finished
schedule: after 5 steps the run measures its pace and sets ``max_steps`` to what fits (never more than asked),
and the cosine schedule is fitted to end at that step (its learning rate reaches 0 there, as in a run planned
that long); after 25 steps and after each validation it measures again and may move the end either way. A
warm-up the run would end inside keeps its share of the planned run. The plan travels in checkpoints, so a
resumed run keeps it and counts the time already spent.

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

#: the steps after which the pace is measured and the run planned: a first plan early (a small budget must not be
#: spent measuring), a second when the pace has settled; the first step (caches, workers) is left out of both
PLANS = (5, 25)
#: the share of the budget training plans to use; the rest covers the final validation and checkpoint
SAFETY = 0.95


#: hours, minutes and seconds, each at most once and in that order: "1h30m", "2h 20m", "90s", "1.5h"
DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?")


def parse_time(text: str | float | int | None) -> float | None:
    """``"15m"``, ``"90s"``, ``"1.5h"``, ``"1h30m"`` or a plain number of minutes -> seconds (None: no budget)."""
    if text is None:
        return None
    s = str(text).strip()
    m = DURATION.fullmatch(s + "m" if re.fullmatch(r"\d+(?:\.\d+)?", s) else s)
    seconds = sum(float(v) * unit for v, unit in zip(m.groups(), (3600, 60, 1)) if v) if m else 0
    if seconds <= 0:
        raise ValueError(f"time {text!r}: expected a duration such as 15m, 900s, 1.5h or 1h30m (a plain number is "
                         "minutes)")
    return seconds


class TimeBudget(Callback):
    """Fit ``max_steps`` into ``seconds`` of training (see the module's docstring); ``log`` gets a line for
    each plan that changes the run's length. Plans are made at :data:`PLANS` and after each validation, from the
    pace since the first step; each may shorten or lengthen the run, never beyond the ``max_steps`` asked for."""

    clock = staticmethod(time.monotonic)

    def __init__(self, seconds: float, log=None) -> None:
        self.seconds = float(seconds)
        self.say = log or (lambda _: None)
        self.spent = 0.0  # seconds of training in earlier parts of a resumed run
        self.planned: int | None = None
        self.wanted: int | None = None  # the run's own max_steps
        self.warmup: int | None = None  # the schedule's own warm-up
        self._start = self._first = self._val_start = None
        self._val_seconds: list[float] = []
        self._val_part = 0.0  # seconds of validation since this part's first step

    def state_dict(self) -> dict:
        return {"spent": self._elapsed(), "planned": self.planned, "wanted": self.wanted, "warmup": self.warmup,
                "val_seconds": list(self._val_seconds)}

    def load_state_dict(self, state: dict) -> None:
        self.spent, self.planned = float(state["spent"]), state["planned"]
        self.wanted, self.warmup = state.get("wanted"), state.get("warmup")
        self._val_seconds = list(state.get("val_seconds", []))

    def _elapsed(self) -> float:
        return self.spent + (self.clock() - self._start if self._start is not None else 0.0)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self.clock()
        self.wanted = self.wanted or int(trainer.max_steps)
        if self.warmup is None:
            self.warmup = next((c.scheduler._milestones[0] for c in trainer.lr_scheduler_configs
                                if isinstance(c.scheduler, SequentialLR)), 0)
        if self.planned is not None:  # resumed: the plan made before the stop holds
            self._apply(trainer, self.planned)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        step = trainer.global_step
        if self._first is None:
            self._first = (step, self.clock())  # the end of the first step seen (after a resume: its first)
        elif step - self._first[0] in [p - 1 for p in PLANS]:
            self._plan(trainer, (self.clock() - self._first[1]) / (step - self._first[0]))

    def on_validation_start(self, trainer: pl.Trainer, *args) -> None:
        self._val_start = self.clock()

    def on_validation_end(self, trainer: pl.Trainer, *args) -> None:
        if self._val_start is None or trainer.sanity_checking:
            return
        self._val_seconds.append(self.clock() - self._val_start)
        self._val_start = None
        step = trainer.global_step
        if self._first is not None:
            self._val_part += self._val_seconds[-1]
            if self._first[0] < step < trainer.max_steps:
                busy = self.clock() - self._first[1] - self._val_part  # this part's training, validations out
                self._plan(trainer, busy / (step - self._first[0]))

    def _plan(self, trainer: pl.Trainer, per_step: float) -> None:
        """Set the run's length to the steps that fit, with room for the validations still to come."""
        step, wanted = trainer.global_step, int(self.wanted)
        val_cost = max(self._val_seconds) if self._val_seconds else 0.0
        every = trainer.val_check_interval if isinstance(trainer.val_check_interval, int) else 0
        left = SAFETY * self.seconds - self._elapsed()
        fit = step + max(1, math.floor(left / per_step)) if per_step > 0 else wanted
        if every and val_cost:  # the validations inside the remaining steps, and the one at the end
            fit = step + max(1, math.floor((left - val_cost * (1 + (fit - step) // every)) / per_step))
        total = max(step + 1, min(wanted, fit))
        now = int(trainer.max_steps)
        if total == now or (self.planned is not None and abs(total - now) < max(2, 0.02 * now)):
            return  # as planned (small drifts of the pace do not move the end)
        warmup = self._apply(trainer, total)
        self.planned = total
        fits = f"{total} of {wanted} steps fit" if now == wanted else f"now {total} steps fit, not {now}"
        self.say(f"time {self.seconds / 60:g} min: {fits} ({per_step:.2f} s a step"
                 f"{f', validation {val_cost:.0f} s' if val_cost else ''}); the schedule ends at step {total}"
                 + (f", its warm-up shortened to {warmup} steps" if warmup is not None else ""))

    def _apply(self, trainer: pl.Trainer, total: int) -> int | None:
        """The run ends at ``total``: the loop's max_steps and the cosine's length; a warm-up the run would end
        inside keeps its share of the planned run (returns its new length; None when unchanged)."""
        trainer.fit_loop.epoch_loop.max_steps = total
        shortened = None
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            parts = sched._schedulers if isinstance(sched, SequentialLR) else [sched]
            if isinstance(sched, SequentialLR):
                step, ramp = trainer.global_step, sched._schedulers[0]
                warm = self.warmup or sched._milestones[0]
                if total <= warm and step < sched._milestones[0]:
                    new = min(total - 1, max(step + 1, round(warm * total / self.wanted)))
                    sched._milestones[0] = ramp.total_iters = shortened = max(1, new)
                elif step < sched._milestones[0] and sched._milestones[0] != warm:
                    sched._milestones[0] = ramp.total_iters = warm  # lengthened again: the warm-up as it was
            offset = sched._milestones[0] if isinstance(sched, SequentialLR) else 0
            for part in parts:
                if isinstance(part, CosineAnnealingLR):
                    part.T_max = max(1, total - offset)
        return shortened
