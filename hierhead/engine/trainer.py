"""``train(config)``: a resolved recipe to a Lightning run (CPU, GPUs, nodes through DDP).

Writes to ``config["out"]``: ``config.yaml`` (the resolved settings), ``checkpoints/last.ckpt``
(every N steps and at the end, written atomically), ``checkpoints/best.ckpt`` (highest val mAP),
TensorBoard and CSV logs. Multi-GPU / multi-node: ``devices``, ``num_nodes``, ``strategy``; under
torchrun or SLURM, Lightning reads the rank from the environment.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import (Callback, LearningRateMonitor, ModelCheckpoint, ThroughputMonitor, Timer,
                                         TQDMProgressBar)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..models import ModelSpec
from . import speed
from .averaging import EMA
from .budget import TimeBudget, parse_time
from .choose import resolve_auto
from .from_config import backbone_weights, config_spec, image_size
from .data import DetectionDataModule, fraction_subset, open_config_splits
from .module import DetectorModule

__all__ = ["train", "prepare", "config_spec", "backbone_weights", "AtomicCheckpointIO", "PaperSettingWarning", "TrainingStopped",
           "TrainingInterrupted", "LAST", "BEST"]

LAST, BEST = "last", "best"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to ``<file>.tmp`` then rename: a killed run never leaves a half-written checkpoint,
    and a failed write (a full disk) removes its ``.tmp`` and says which file it could not write."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
            tmp.unlink(missing_ok=True)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
            raise OSError(f"{str(path)!r}: checkpoint not written ({reason}); the previous one is kept") from None


class TrainingStopped(RuntimeError):
    """Training was stopped from outside (SIGTERM: a scheduler's pre-emption); ``last.ckpt`` holds
    the step it reached and ``--resume`` continues from it."""


class StepProgressBar(TQDMProgressBar):
    """Lightning's bar counting the run's optimizer steps out of ``max_steps`` (one bar for the whole
    run, its description the epoch), for step-based runs. Lightning's own bar counts the batches of each
    epoch and opens as "Training: 0/?" before the first: a 300-step run on 40 images showed 60 bars
    of 0-5 and no total. A resumed run's bar starts at the step it resumes from."""

    def init_train_tqdm(self):
        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

        return Tqdm(desc="Training", total=self.trainer.max_steps, initial=self.trainer.global_step, unit="step",
                    disable=self.is_disabled, leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0,
                    bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer: "pl.Trainer", *_) -> None:
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", *_) -> None:
        bar = self.train_progress_bar
        bar.total = trainer.max_steps  # a time budget (budget.py) may shorten the run after the bar opened
        if self._should_update(trainer.global_step, bar.total) and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))


class LogLines(Callback):
    """Progress for a log file: when the output is not a terminal, one plain line every ``every`` steps
    and at the end (step, loss, lr, images/s since the last line, the time this part of the run has taken and
    what is left at its pace so far, validations included, the last val mAP) instead of a bar redrawn with
    ``\r`` hundreds of times. Kept by hand: Lightning's bars are the terminal's only."""

    def __init__(self, every: int, log: Callable[[str], None] = print) -> None:
        self.every, self.write = max(1, every), log
        self._since: tuple[float, int] | None = None
        self._start: tuple[float, int] | None = None

    def on_train_start(self, trainer: pl.Trainer, *_) -> None:
        self._since = self._start = (time.perf_counter(), trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, *_) -> None:
        step, total = trainer.global_step, trainer.max_steps if trainer.max_steps > 0 else None
        if step % self.every and step != total:
            return
        now = time.perf_counter()
        t0, s0 = self._since or (now, step)
        self._since = (now, step)
        metrics = trainer.callback_metrics
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        parts = [f"step {step}" + (f"/{total}" if total else ""), f"epoch {trainer.current_epoch}"]
        if "train/loss" in metrics:
            parts.append(f"loss {float(metrics['train/loss']):.3f}")
        parts.append(f"lr {lr:.3g}")
        if now > t0 and step > s0:
            parts.append(f"{(step - s0) * len(batch[0]) * trainer.world_size / (now - t0):.1f} images/s")
        begun, first = self._start or (now, step)
        if step > first:
            left = f", ~{_clock(total - step, (now - begun) / (step - first))} left" if total and step < total else ""
            parts.append(f"{_clock(1, now - begun)} elapsed{left}")
        if "val/mAP" in metrics:
            parts.append(f"val mAP {100 * float(metrics['val/mAP']):.2f} %")
        if trainer.is_global_zero:
            self.write("  ".join(parts))

    def on_validation_end(self, trainer: pl.Trainer, *_) -> None:
        score = trainer.callback_metrics.get("val/mAP")
        if score is not None and not trainer.sanity_checking and trainer.is_global_zero:
            self.write(f"step {trainer.global_step}" + (f"/{trainer.max_steps}" if trainer.max_steps > 0 else "")
                       + f"  validation: val mAP {100 * float(score):.2f} %")


def _clock(steps: int, seconds_each: float) -> str:
    """``steps x seconds_each`` as m:ss (h:mm:ss from an hour)."""
    m, sec = divmod(round(steps * seconds_each), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"{m}:{sec:02d}"


class _SaveOnSigterm(Callback):
    """Lightning turns SIGTERM into ``SIGTERMException`` (a ``SystemExit`` with status 0) at the end of
    the running step: save ``last.ckpt`` there, so a pre-empted run resumes where it stopped."""

    def __init__(self, last: Path) -> None:
        self.last = last

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.last, weights_only=False)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT): training stopped at the end of the running step, ``last.ckpt`` holds it."""


class _StopOnInterrupt(Callback):
    """Ctrl-C stops at the end of the running step instead of wherever it lands (Lightning's own handling
    exits 1 and saves nothing; a step cut in the middle of the optimiser's update is not a state to save):
    the first SIGINT sets a flag that ends the fit at the step's end (``should_stop``), without the
    validation Lightning runs before such a stop (and the ``best.ckpt`` it may write), so the run's final
    save writes ``last.ckpt`` there; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.interrupted = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if self.interrupted:
            trainer.should_stop = True
            trainer.limit_val_batches = 0  # Lightning validates a run asked to stop: not one the user stops

    def restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class _ValidateAtLastStep(Callback):
    """A step-based run whose ``max_steps`` is not a multiple of ``val_every_n_steps`` (850 / 200) validates
    at its last step too, so "val mAP" and ``best.ckpt`` include the final weights. Lightning validates
    every ``val_check_interval`` steps only; asking it to stop at the last step (``should_stop``) makes its
    own loop validate there, in step order, before the fit ends."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step >= trainer.max_steps:  # added only where the last step may not be a validation step
            trainer.should_stop = True


class PaperSettingWarning(UserWarning):
    """A paper recipe run in a way the paper's numbers do not apply to (e.g. without pretrained weights)."""


def prepare(config: dict) -> tuple[DetectorModule, DetectionDataModule]:
    """The module and data module of a resolved config (datasets opened and checked here); an ``auto`` value
    still in it (``max_steps: auto``, the built-in defaults') is chosen first, as ``train`` does."""
    config = resolve_auto(config)[0]
    data = config["data"]
    train_set, val_set = open_config_splits(config)
    train_set = fraction_subset(train_set, float(data.get("fraction", 1.0)), config["seed"])
    size = image_size(config)
    dm = DetectionDataModule(train_set, val_set if config.get("validate", True) else None, int(config["batch_size"]),
                             size, config["augment"], int(config["num_workers"]), int(config["seed"]),
                             config.get("val_batch_size"))  # checks the training set before the model is built
    if config.get("cache_images"):
        _keep_decoded(train_set, int(config["num_workers"]), say=config["cache_images"] is True)
    spec = config_spec(config, train_set.classes)
    total = int(config["max_steps"]) if config.get("max_steps") and not config.get("epochs") else \
        int(config["epochs"] or 1) * max(1, len(train_set) // int(config["batch_size"]))
    module = DetectorModule(spec, config["optimizer"], config["schedule"], total, config["metric"],
                            backbone_weights(config), bool(config.get("torchvision_weights")),
                            bool(config.get("channels_last")), config.get("init"), config.get("frozen_stages") or 0,
                            tuple(name for name in speed.REWRITES if config.get(name)))
    if int(config["batch_size"]) < 2 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
                                             for m in module.model.modules()):  # torch fails at the first step
        raise ValueError(f"batch_size={config['batch_size']}: {config['model']} trains batch-norm layers, which need "
                         f"at least 2 images a step; give --batch-size 2 or more")
    return module, dm


def _keep_decoded(train_set, workers: int, say: bool = True) -> None:
    """``cache_images``: the training images decoded once, in memory (``DetectionDataset.keep_decoded``), when
    they fit in a quarter of the available memory and the loader's workers are forked (a spawned worker would
    get its own pickled copy); otherwise the run reads the files as usual, and with ``say`` a warning says why."""
    import multiprocessing

    from .memory import available_bytes

    need, have = train_set.decoded_bytes(), available_bytes()
    if workers and multiprocessing.get_start_method() != "fork":
        why = f"the loader's workers are not forked: each would copy the {need / 2**20:.0f} MiB"
    elif have is not None and need > have / 4:
        why = f"{need / 2**30:.1f} GiB of decoded images, over a quarter of the {have / 2**30:.1f} GiB available"
    else:
        train_set.keep_decoded()
        return
    if say:
        warnings.warn(f"cache_images: not kept ({why})")


def _terminal() -> bool:
    """Whether the output is a terminal (progress bars) rather than a log file (progress lines)."""
    return sys.stdout.isatty()


def _lightning_trainer(config: dict, out: Path, has_val: bool, callbacks: list) -> pl.Trainer:
    """Lightning's Trainer for a resolved config: last / best checkpoints, lr, throughput and SIGTERM
    callbacks, CSV + TensorBoard logs under ``out``, atomic checkpoint writes."""
    step_based = not config.get("epochs")
    every = config.get("checkpoint_every_n_steps")
    ckpt_last = ModelCheckpoint(dirpath=out / "checkpoints", save_top_k=0, save_last=True,
                                every_n_train_steps=every or None, enable_version_counter=False)
    # images/s per process (train/device/samples_per_sec, over the last 10 steps, validation time excluded)
    throughput = ThroughputMonitor(batch_size_fn=lambda batch: len(batch[0]), window_size=10)
    last = out / "checkpoints" / f"{LAST}.ckpt"
    cbs: list = [ckpt_last, LearningRateMonitor("step"), throughput, _SaveOnSigterm(last)]
    if has_val:
        cbs.append(ModelCheckpoint(dirpath=out / "checkpoints", filename=BEST, monitor="val/mAP", mode="max",
                                   save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False))
    bars = bool(config.get("progress", True)) and _terminal()
    if bars:
        cbs.append(StepProgressBar(refresh_rate=1) if step_based else TQDMProgressBar(refresh_rate=1))
    elif config.get("progress", True):  # a log file: a line every 5 % of a step-based run (every 50 steps else)
        every = max(1, int(config["max_steps"]) // 20) if step_based else 50
        cbs.append(LogLines(every, lambda line: print(line, flush=True)))
    cbs += callbacks
    val_steps = config.get("val_every_n_steps")
    if step_based and val_steps and has_val and (int(config["max_steps"]) % int(val_steps) or config.get("time")):
        cbs.append(_ValidateAtLastStep())  # a time budget (budget.py) may end the run at any step
    return pl.Trainer(
        default_root_dir=out,
        accelerator=config["accelerator"], devices=config["devices"], num_nodes=config["num_nodes"],
        strategy=config["strategy"], precision=config["precision"],
        max_steps=int(config["max_steps"]) if step_based else -1,
        max_epochs=None if step_based else int(config["epochs"]),
        # a run shorter than the interval still validates once, at its end
        val_check_interval=(min(int(val_steps), int(config["max_steps"])) if step_based else int(val_steps))
        if (val_steps and has_val) else None,
        check_val_every_n_epoch=None if (val_steps or not has_val) else int(config["val_every_n_epochs"]),
        limit_val_batches=None if has_val else 0,
        num_sanity_val_steps=0,
        gradient_clip_val=config.get("gradient_clip"),
        deterministic=bool(config.get("deterministic")) or None,
        callbacks=cbs,
        logger=[CSVLogger(out, name="logs", version=""), TensorBoardLogger(out / "logs", name="tensorboard", version="")],
        log_every_n_steps=int(config.get("log_every_n_steps", 10)),
        enable_progress_bar=bars,
        enable_model_summary=False,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
    )


def _check_resumable(path: Path, spec: ModelSpec) -> None:
    """A checkpoint of another model, design or class list cannot be resumed: say which differs."""
    from .checkpoint import read_checkpoint, saved_spec

    saved = ModelSpec.from_dict(saved_spec(read_checkpoint(path)))
    for key in ("model", "design", "classes"):
        if getattr(saved, key) != getattr(spec, key):
            raise ValueError(f"--resume: {str(path)!r} was trained with {key}={getattr(saved, key)!r}, "
                             f"this run has {key}={getattr(spec, key)!r}")


#: Settings a resumed run may change: its length and where / how it runs (``cache_images`` keeps the same decoded
#: tensors in memory: the same run); every other one decides what is learned, and the checkpoint's optimiser and
#: schedule hold the values it started with.
RESUMABLE_CHANGES = {"max_steps", "epochs", "out", "progress", "num_workers", "accelerator", "devices", "num_nodes",
                     "strategy", "val_every_n_steps", "val_every_n_epochs", "checkpoint_every_n_steps",
                     "log_every_n_steps", "val_batch_size", "validate", "recipe", "data.skip_bad", "plots",
                     "cache_images"}


def _flat(config: dict, where: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "model_kwargs":
            out.update(_flat(value, f"{where}{key}."))
        else:
            out[f"{where}{key}"] = value
    return out


def _check_same_settings(saved_path: Path, config: dict) -> None:
    """``--resume`` with settings that differ from the run's ``config.yaml`` (other than
    :data:`RESUMABLE_CHANGES`) is refused, naming each: they would be recorded without having run
    (the optimiser and schedule come back from the checkpoint; the image size would change mid-run)."""
    if not saved_path.is_file():
        return
    try:
        saved = yaml.safe_load(saved_path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # an edited file: a YAML tag, a broken line
        problem = getattr(e, "problem", None) or type(e).__name__
        mark = getattr(e, "problem_mark", None)
        raise ValueError(f"--resume: {str(saved_path)!r} is not a readable run config ({problem}"
                         + (f", line {mark.line + 1}" if mark else "") + "); nothing was run") from None
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: {str(saved_path)!r} is not a run config (expected a mapping of settings)")
    saved, now = _flat(saved), _flat(config)
    saved = {k: v for k, v in saved.items() if not k.startswith("provenance.")}  # the code may change
    for flat in (saved, now):  # the same data, however the path is spelled
        for key in ("data.path", "data.val", "init", "backbone_weights"):
            if isinstance(flat.get(key), str) and not flat[key].startswith("synthetic:"):
                flat[key] = str(Path(flat[key]).resolve())
    changed = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
               if k not in RESUMABLE_CHANGES and k in saved and saved.get(k) != now.get(k)]
    if changed:
        raise ValueError(f"--resume: settings differ from {str(saved_path)!r}: {', '.join(changed)}; resume with the "
                         f"run's settings (only its length, max_steps / epochs, and where it runs may change)")


def _join_logs(logs: Path) -> None:
    """One metrics.csv across resumes: each earlier part keeps its rows before the next part's first step."""
    parts = sorted(logs.glob("metrics.part*.csv"), key=lambda p: int(p.stem[len("metrics.part"):]))
    if not parts:
        return
    tables = [list(csv.DictReader(p.open(newline=""))) for p in [*parts, logs / "metrics.csv"] if p.is_file()]
    rows: list[dict] = []
    for table in tables:
        start = min((int(r["step"]) for r in table if r.get("step")), default=None)
        rows = [r for r in rows if start is None or int(r["step"]) < start] + table
    keys = sorted({k for r in rows for k in r})
    tmp = logs / "metrics.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(logs / "metrics.csv")
    for p in parts:
        p.unlink()


def train(config: dict, resume: bool = False, callbacks: list | None = None,
          log: Callable[[str], None] | None = None) -> dict:
    """Train one detector with Lightning: checkpoints, logs and the final weights under ``config["out"]``.

    A paper recipe (``paper`` set) started without pretrained or start weights warns once
    (:class:`PaperSettingWarning`): the paper fine-tuned ImageNet-pretrained backbones.

    Args:
        config: a resolved config (:func:`~hierhead.engine.resolve`: a recipe with overrides).
        resume: continue from ``out/checkpoints/last.ckpt`` (weights, optimiser, schedule, data
            order and timer: the result equals an uninterrupted run); without it, an ``out`` that
            holds a run is refused.
        callbacks: extra Lightning callbacks.
        log: called once with what the run trains and validates on, before training (the CLI prints it).

    Returns:
        ``{"out", "last", "best", "val_mAP", "steps", "train_images", "train_seconds", "processes",
        "rank", "batch_per_process"}`` (seconds of training over every resumed part; ``rank`` this
        process's global rank; ``batch_size`` is the global batch).
    """
    config = copy.deepcopy(config)
    out = Path(config["out"])
    with _run_lock(out):
        return _train(config, out, resume, callbacks, log)


def _other_rank() -> bool:
    """A DDP process other than global rank 0 (its rank variables set, not 0), before the Trainer knows it."""
    return any(os.environ.get(k, "0") != "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


@contextlib.contextmanager
def _run_lock(out: Path):
    """One ``train`` per run folder: an exclusive ``flock`` on ``OUT/.train.lock`` held for the whole run,
    taken before the "holds a run" check (two processes started a second apart both passed that check
    and wrote over each other). The OS drops the lock when the process ends, however it ends. DDP ranks
    other than global 0 (``RANK`` / ``LOCAL_RANK`` / ``NODE_RANK`` set and not 0) share rank 0's run."""
    from .._lock import exclusive

    if _other_rank():
        yield
        return
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".train.lock"
    try:
        with exclusive(lock, FileExistsError(f"--out {str(out)!r}: another hierhead train is running in it; wait "
                                             f"for it to end or give a new --out")):
            yield
    finally:
        if made and [p.name for p in out.iterdir()] == [lock.name]:  # refused before writing: leave no folder
            lock.unlink()
            out.rmdir()


def _draw(out: Path, module: DetectorModule, dm: DetectionDataModule, metric: str, has_val: bool,
          log: Callable[[str], None] | None) -> None:
    """The run's pictures (:mod:`.pictures`): the curves of its logs, and from the last validation's
    detections (the final weights) the PR curves, confusion matrix and prediction grid. A picture that
    cannot be drawn is a warning: the trained run stands."""
    from .pictures import plot_results, write_pictures

    try:
        written = []
        if (out / "logs" / "metrics.csv").is_file():  # none when nothing was logged (a run stopped at once)
            plot_results(out / "logs" / "metrics.csv", out / "results.png")
            written.append(str(out / "results.png"))
        if has_val and module.last_val:
            pairs = module.last_val
            written += write_pictures(out, [p for p, _ in pairs], [t for _, t in pairs], dm.val_set,
                                      module.spec.classes, metric)["paths"]
    except (OSError, ValueError, RuntimeError) as e:
        warnings.warn(f"pictures not drawn ({type(e).__name__}: {e})")
        return
    if log is not None:
        log(f"pictures: {', '.join(Path(p).name for p in written)} in {out}")


def _train(config: dict, out: Path, resume: bool, callbacks: list | None, log: Callable[[str], None] | None) -> dict:
    last = out / "checkpoints" / f"{LAST}.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {str(last)!r} (nothing to resume)")
    if not resume and last.is_file():  # never replace an earlier run's checkpoints and logs
        raise FileExistsError(f"--out {str(out)!r} holds a run ({str(last)!r}): --resume continues it; "
                              f"give a new --out to start another")
    pl.seed_everything(int(config["seed"]), workers=True, verbose=False)
    config, chosen = resolve_auto(config)
    module, dm = prepare(config)
    if config.get("paper") and not (backbone_weights(config) or config.get("torchvision_weights")
                                    or config.get("init")):
        warnings.warn(f"the recipe reproduces the paper's {config['paper']}, which fine-tuned an ImageNet-pretrained "
                      f"backbone; this run starts from random weights and will not reach the paper's mAP (give "
                      f"--backbone-weights FILE, torchvision_weights=true or --init CKPT)", PaperSettingWarning)
    if resume:
        _check_resumable(last, module.spec)
        _check_same_settings(out / "config.yaml", config)
    if config["accelerator"] == "cpu" or config["accelerator"] == "auto" and not torch.cuda.is_available():
        from .memory import check_fits
        check_fits(module.model, int(config["batch_size"]), image_size(config))  # refused before it runs out
    out.mkdir(parents=True, exist_ok=True)
    from ..provenance import provenance
    (out / "config.yaml").write_text(yaml.safe_dump({**config, "provenance": provenance()}, sort_keys=False))

    logs = out / "logs"
    if resume and (logs / "metrics.csv").is_file():  # Lightning's CSVLogger would delete it: set it aside
        (logs / "metrics.csv").rename(logs / f"metrics.part{len(list(logs.glob('metrics.part*.csv')))}.csv")
        warnings.filterwarnings("ignore", message="Experiment logs directory .* will be deleted")  # handled

    has_val = dm.val_set is not None and len(dm.val_set) > 0
    if log is not None and not _other_rank():
        for line in chosen:
            log(line)
        val = f"validating on {len(dm.val_set)} images of {dm.val_set.name}" if has_val else "no validation"
        weights = backbone_weights(config)
        start = (f"from --init {config['init']}" if config.get("init") else
                 f"backbone from {Path(weights).name}" if weights else "from random weights")
        kept = (f" (decoded once, {dm.train_set.decoded_bytes() / 2**20:.0f} MiB kept in memory)"
                 if getattr(dm.train_set, "decoded", None) is not None else "")
        params = [(p.numel(), p.requires_grad) for p in module.model.parameters()]
        trains = f"{sum(n for n, g in params if g) / 1e6:.2f} of {sum(n for n, _ in params) / 1e6:.2f} M parameters train"
        log(f"training {config['model']} ({config['design']}, {start}; {trains}) on {len(dm.train_set)} images "
            f"of {dm.train_set.name}{kept}; {val}")
        warm = int((config.get("schedule") or {}).get("warmup_steps") or 0)
        steps = config.get("max_steps") if not config.get("epochs") else None
        if steps and warm >= int(steps) and not config.get("time"):  # --time shortens it (engine/budget.py)
            log(f"note: the run's {steps} steps end inside the schedule's {warm}-step warm-up, so "
                f"the learning rate never reaches its peak (--set schedule.warmup_steps=N shortens it)")
    timer = Timer()  # its elapsed time travels in the checkpoint, so a resumed run counts all its parts
    interrupt = _StopOnInterrupt()
    ema = config.get("ema") or {}
    averaging = [EMA(float(ema.get("decay", 0.999)), float(ema.get("tau", 100)))] if ema.get("enabled") else []
    budget = [TimeBudget(parse_time(config["time"]), log if not _other_rank() else None)] if config.get("time") else []
    trainer = _lightning_trainer(config, out, has_val, [timer, interrupt, *averaging, *budget, *(callbacks or [])])
    # a checkpoint is untrusted input: resume reads it with weights_only=True
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None,
                    weights_only=True if resume else None)
    except SIGTERMException:
        raise TrainingStopped(f"stopped by SIGTERM at step {trainer.global_step}; {str(last)!r} holds it: "
                              f"continue with --resume") from None
    finally:
        interrupt.restore()
    trainer.save_checkpoint(last, weights_only=False)  # the full final state (all ranks call it; rank 0 writes)
    if interrupt.interrupted:
        raise TrainingInterrupted(f"interrupted (Ctrl-C) at step {trainer.global_step}; {str(last)!r} holds it: "
                                  f"continue with --resume")
    if trainer.is_global_zero:
        _join_logs(logs)
        if config.get("plots", True):
            _draw(out, module, dm, config["metric"], has_val, log)
    best = out / "checkpoints" / f"{BEST}.ckpt"
    score = trainer.callback_metrics.get("val/mAP")
    return {"out": str(out), "last": str(last), "best": str(best) if best.is_file() else None,
            "val_mAP": float(score) if score is not None else None, "steps": trainer.global_step,
            "train_images": len(dm.train_set), "train_seconds": round(timer.time_elapsed("train"), 1),
            "processes": trainer.world_size, "rank": trainer.global_rank,
            "batch_per_process": dm.per_process_batch(trainer.world_size)}
