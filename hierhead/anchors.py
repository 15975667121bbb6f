"""The paper's anchors (Section IV-A, Eq. 3) and each anchor's (size index, ratio index).

Every location holds a 3 x 3 grid: aspect ratios {1, 0.5, 2} (height / width, as in
torchvision) times sizes {s, 2^-0.33 s, 2^-0.66 s}. Inside a location the size varies
fastest, as in torchvision's ``AnchorGenerator``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator

from .design import PAPER_RATIOS, torchvision_order

__all__ = ["PAPER_RATIOS", "SIZE_FACTORS", "ssd_scales", "PaperBoxGenerator", "retinanet_anchor_generator",
           "anchor_grid", "anchor_shapes", "to_torchvision"]

#: Sizes of a location relative to its base size s: {s, 2^-0.33 s, 2^-0.66 s}.
SIZE_FACTORS: tuple[float, ...] = (1.0, 2.0**-0.33, 2.0**-0.66)


def ssd_scales(num_maps: int, s_min: float = 0.2, s_max: float = 0.95) -> list[float]:
    """Eq. 3: s_k = s_min + (s_max - s_min) (k - 1) / (K - 1), relative to the input size."""
    if num_maps == 1:
        return [s_min]
    return [s_min + (s_max - s_min) * k / (num_maps - 1) for k in range(num_maps)]


class PaperBoxGenerator(DefaultBoxGenerator):
    """SSD default boxes on the paper's 3 x 3 grid per location (Section IV-A, Eq. 3).

    Same tiling and clipping as torchvision's ``DefaultBoxGenerator``; only the (w, h) pairs
    of a location differ. :meth:`fold` (:func:`to_torchvision`) turns it into a stock generator.
    """

    def __init__(
        self,
        num_maps: int,
        s_min: float = 0.2,
        s_max: float = 0.95,
        ratios: Sequence[float] = PAPER_RATIOS,
        size_factors: Sequence[float] = SIZE_FACTORS,
        clip: bool = True,
    ) -> None:
        self.ratios = tuple(float(r) for r in ratios)
        self.size_factors = tuple(float(f) for f in size_factors)
        self.s_min, self.s_max = s_min, s_max
        super().__init__([[] for _ in range(num_maps)], scales=ssd_scales(num_maps, s_min, s_max) + [1.0], clip=clip)

    def _generate_wh_pairs(self, num_outputs: int, dtype: torch.dtype = torch.float32,
                           device: torch.device = torch.device("cpu")) -> list[torch.Tensor]:
        pairs = []
        for k in range(num_outputs):
            wh = []
            for r in self.ratios:
                for f in self.size_factors:
                    s = self.scales[k] * f
                    wh.append([s / math.sqrt(r), s * math.sqrt(r)])
            pairs.append(torch.as_tensor(wh, dtype=dtype, device=device))
        return pairs

    def num_anchors_per_location(self) -> list[int]:
        return [len(self.ratios) * len(self.size_factors)] * len(self.aspect_ratios)

    def fold(self) -> DefaultBoxGenerator:
        """The stock generator of the same boxes (what :func:`hierhead.models.fold` deploys)."""
        return to_torchvision(self)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(maps={len(self.aspect_ratios)}, scales={self.scales[:-1]}, "
                f"ratios={self.ratios}, size_factors={self.size_factors}, clip={self.clip})")


def retinanet_anchor_generator(base_sizes: Sequence[float] = (32, 64, 128, 256, 512),
                               ratios: Sequence[float] = PAPER_RATIOS) -> AnchorGenerator:
    """Stock torchvision anchors with the paper's grid: {s, 2^-0.33 s, 2^-0.66 s} x {1, 0.5, 2}."""
    sizes = tuple(tuple(s * f for f in SIZE_FACTORS) for s in base_sizes)
    return AnchorGenerator(sizes, (tuple(ratios),) * len(sizes))


def anchor_shapes(generator: nn.Module) -> list[list[tuple[float, float]]]:
    """(width, height) of each anchor of a location, per level (relative for SSD, pixels otherwise)."""
    if isinstance(generator, DefaultBoxGenerator):
        return [[(float(w), float(h)) for w, h in p.tolist()] for p in generator._wh_pairs]
    if isinstance(generator, AnchorGenerator):
        out = []
        for base in generator.cell_anchors:
            out.append([(float(x2 - x1), float(y2 - y1)) for x1, y1, x2, y2 in base.tolist()])
        return out
    raise TypeError(f"unsupported anchor generator {type(generator).__name__}")


def anchor_grid(generator: nn.Module) -> list[list[tuple[int, int]]]:
    """(size index, ratio index) of each anchor of a location, per level, read from the shapes.

    Size = sqrt(w h) and ratio = h / w, indexed in increasing order of their distinct values
    (rounded), so the result is right for any generator and any order inside a location.
    """
    if isinstance(generator, AnchorGenerator):
        # torchvision's order: ratio-major, size fastest
        return [torchvision_order(len(s), len(r)) for s, r in zip(generator.sizes, generator.aspect_ratios)]
    grids = []
    for shapes in anchor_shapes(generator):
        sizes = [round(math.sqrt(w * h), 5) for w, h in shapes]
        ratios = [round(h / w, 3) for w, h in shapes]
        if isinstance(generator, PaperBoxGenerator):  # index as declared, not as sorted
            nr, nf = len(generator.ratios), len(generator.size_factors)
            grids.append([(a % nf, a // nf) for a in range(nr * nf)])
            continue
        size_ids = sorted(set(sizes))
        ratio_ids = sorted(set(ratios))
        grids.append([(size_ids.index(s), ratio_ids.index(r)) for s, r in zip(sizes, ratios)])
    return grids


def to_torchvision(generator: nn.Module) -> nn.Module:
    """A stock torchvision generator producing the same anchors (for deployment)."""
    if type(generator) in (AnchorGenerator, DefaultBoxGenerator):
        return generator
    if isinstance(generator, DefaultBoxGenerator):
        stock = DefaultBoxGenerator([[] for _ in generator.aspect_ratios], scales=list(generator.scales),
                                    steps=generator.steps, clip=generator.clip)
        stock._wh_pairs = [p.clone() for p in generator._wh_pairs]
        return stock
    raise TypeError(f"unsupported anchor generator {type(generator).__name__}")


def pixel_shapes(generator: nn.Module, image_size: int) -> list[list[tuple[float, float]]]:
    """Anchor (w, h) per level in pixels of an ``image_size`` input (SSD boxes are relative)."""
    shapes = anchor_shapes(generator)
    if isinstance(generator, DefaultBoxGenerator):
        return [[(w * image_size, h * image_size) for w, h in level] for level in shapes]
    return shapes
