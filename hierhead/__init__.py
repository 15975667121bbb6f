"""hierhead: hierarchical detection heads (Agarwal & Jurie, 2021) for torchvision detectors."""

from ._lazy import lazy_names
from .design import PRESETS, Design, paper_order, torchvision_order

__all__ = ["build", "fold", "hierarchize", "Design", "PRESETS", "HierarchicalConv2d", "paper_order", "torchvision_order"]
__version__ = "0.1.0"
__getattr__ = lazy_names(__name__, {"HierarchicalConv2d": "layers", "build": "models", "fold": "models",
                                    "hierarchize": "models"})
