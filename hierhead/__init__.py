"""hierhead: hierarchical detection heads (Agarwal & Jurie, 2021) for torchvision detectors."""

from .design import PRESETS, Design, paper_order, torchvision_order
from .layers import HierarchicalConv2d
from .models import build, fold, hierarchize

__all__ = ["build", "fold", "hierarchize", "Design", "PRESETS", "HierarchicalConv2d", "paper_order", "torchvision_order"]
__version__ = "0.1.0"
