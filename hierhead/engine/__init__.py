"""Training on PyTorch Lightning: module, data module, recipes, checkpoints."""

from .._lazy import lazy_names
from .recipes import DEFAULTS, load_recipe, parse_overrides, recipes, resolve

__all__ = ["CheckpointError", "load_checkpoint", "read_checkpoint", "DEFAULTS", "load_recipe", "parse_overrides",
           "recipes", "resolve", "train"]
__getattr__ = lazy_names(__name__, {"CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
                                    "read_checkpoint": "checkpoint", "train": "trainer"})
