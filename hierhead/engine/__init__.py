"""Training on PyTorch Lightning: module, data module, recipes, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from .recipes import DEFAULTS, load_recipe, parse_overrides, recipes, resolve

__all__ = ["CheckpointError", "load_checkpoint", "read_checkpoint", "DEFAULTS", "load_recipe", "parse_overrides",
           "recipes", "resolve", "train"]


def train(config: dict, resume: bool = False, callbacks: list | None = None) -> dict:
    """See :func:`hierhead.engine.trainer.train` (imported lazily: Lightning is slow to import)."""
    from .trainer import train as _train
    return _train(config, resume=resume, callbacks=callbacks)
