"""The hierarchical prediction conv of Eq. 2 and its exact folding (Section III-B.c)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .design import Design

__all__ = ["HierarchicalConv2d"]


class HierarchicalConv2d(nn.Module):
    """Drop-in for a head's final ``nn.Conv2d(C, A*K, k)`` computing Eq. 2.

    Anchor a's K outputs (channels ``a*K .. a*K+K-1``, anchor-major as in torchvision) are
    its own conv plus the sum of the units R_j that the design joins to it:
    ``W'_a x + b'_a`` with ``W'_a = W_a + sum_j M_ja W_Rj`` (and the same for biases).

    The forward composes W' in weight space and runs ONE convolution: the same function and
    gradients as the literal J+1-branch form, at the general head's cost. :meth:`fold`
    returns the plain ``nn.Conv2d`` holding W' (Section III-B.c: no extra parameters at
    inference).

    Initialisation (``std``, ``bias``): the effective weights W'_a get the distribution of the
    general head being replaced, so that designs differ by sharing, not by init scale. With n_a
    units joined to anchor a and n = max_a n_a, units are drawn with std ``std / sqrt(1 + n)``
    and anchor a's own weights with ``sqrt(std^2 - n_a * std_unit^2)``, so every W'_a has std
    ``std``; the bias (e.g. the focal-loss prior ``-log((1 - p) / p)``) goes to the anchors and
    the unit biases start at 0. ``std=None`` uses ``nn.Conv2d``'s default std
    ``1 / sqrt(3 * fan_in)``. :meth:`from_conv` instead keeps a conv's weights as the anchors'
    and starts the units at 0: it computes exactly what the conv computed.

    ``soft=True`` makes M a learnable real-valued gate matrix initialised from the design
    (the paper's future work, Section V); it is still linear, so it still folds.

    Args:
        in_channels: C, the channels of the feature map.
        design: the :class:`Design` (its M joins units to anchors; A anchors, J units).
        num_outputs_per_anchor: K (classes for a classifier, 4 for a box regressor).
        kernel_size, stride, padding, dilation: as ``nn.Conv2d`` (padding default: ``kernel_size // 2``).
        std: the std of every composed W'_a (None: ``nn.Conv2d``'s default).
        bias: every composed bias b'_a (e.g. the focal-loss prior).
        soft: learn M (real-valued) instead of keeping the design's 0/1 matrix.
    """

    def __init__(
        self,
        in_channels: int,
        design: Design,
        num_outputs_per_anchor: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        std: float | None = None,
        bias: float = 0.0,
        soft: bool = False,
    ) -> None:
        super().__init__()
        self.design = design
        self.in_channels = in_channels
        self.num_anchors = design.num_anchors
        self.num_units = design.num_units
        self.num_outputs_per_anchor = k_out = num_outputs_per_anchor
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.dilation = dilation
        shape = (in_channels, kernel_size, kernel_size)
        self.anchor_weight = nn.Parameter(torch.empty(self.num_anchors * k_out, *shape))
        self.anchor_bias = nn.Parameter(torch.empty(self.num_anchors * k_out))
        self.unit_weight = nn.Parameter(torch.empty(self.num_units * k_out, *shape))
        self.unit_bias = nn.Parameter(torch.empty(self.num_units * k_out))
        matrix = design.matrix
        if soft:
            self.matrix = nn.Parameter(matrix)
        else:
            self.register_buffer("matrix", matrix, persistent=False)
        self.reset_parameters(std, bias)

    @property
    def out_channels(self) -> int:
        return self.num_anchors * self.num_outputs_per_anchor

    @torch.no_grad()
    def reset_parameters(self, std: float | None = None, bias: float = 0.0) -> None:
        """Draw weights so that each composed W'_a has std ``std`` (see the class docstring)."""
        if std is None:
            std = 1.0 / math.sqrt(3 * self.in_channels * self.kernel_size**2)
        m = self.matrix.detach()
        joined = m.sum(0)  # n_a
        unit_std = std / math.sqrt(1.0 + float(joined.max())) if self.num_units else 0.0
        own_std = (std**2 - joined * unit_std**2).clamp_min(0).sqrt()  # (A,)
        k_out = self.num_outputs_per_anchor
        nn.init.normal_(self.anchor_weight)
        self.anchor_weight.mul_(own_std.repeat_interleave(k_out).view(-1, 1, 1, 1))
        nn.init.normal_(self.unit_weight, std=unit_std)
        self.anchor_bias.fill_(bias)
        self.unit_bias.zero_()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, design: Design, num_outputs_per_anchor: int, soft: bool = False) -> "HierarchicalConv2d":
        """Wrap a general head conv: its weights become the anchors' own, the units start at 0."""
        if conv.groups != 1:
            raise ValueError(f"from_conv: grouped convs are not supported (groups={conv.groups})")
        k = conv.kernel_size[0]
        if conv.kernel_size != (k, k) or len(set(conv.stride)) != 1 or len(set(conv.dilation)) != 1:
            raise ValueError(f"from_conv: need a square kernel, stride and dilation, got {conv}")
        if isinstance(conv.padding, str) or len(set(conv.padding)) != 1:
            raise ValueError(f"from_conv: need a symmetric integer padding, got {conv.padding!r}")
        expected = design.num_anchors * num_outputs_per_anchor
        if conv.out_channels != expected:
            raise ValueError(
                f"from_conv: conv has {conv.out_channels} output channels, design {design.name!r} with "
                f"{design.num_anchors} anchors x {num_outputs_per_anchor} outputs needs {expected}"
            )
        layer = cls(conv.in_channels, design, num_outputs_per_anchor, k, conv.stride[0], conv.padding[0],
                    conv.dilation[0], soft=soft)
        layer.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            layer.anchor_weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.anchor_bias.copy_(conv.bias)
            else:
                layer.anchor_bias.zero_()
            layer.unit_weight.zero_()
            layer.unit_bias.zero_()
        return layer

    def effective_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W'_a = W_a + sum_j M_ja W_Rj and b'_a likewise, stacked anchor-major."""
        if self.num_units == 0:
            return self.anchor_weight, self.anchor_bias
        a, j, k_out = self.num_anchors, self.num_units, self.num_outputs_per_anchor
        m = self.matrix.to(self.unit_weight.dtype)
        shared_w = (m.t() @ self.unit_weight.reshape(j, -1)).reshape_as(self.anchor_weight)
        shared_b = (m.t() @ self.unit_bias.reshape(j, k_out)).reshape(a * k_out)
        return self.anchor_weight + shared_w, self.anchor_bias + shared_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.effective_weight_and_bias()
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """The plain ``nn.Conv2d`` with W' and b': identical outputs, the general head's size."""
        weight, bias = self.effective_weight_and_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, device=weight.device, dtype=weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, anchors={self.num_anchors}, units={self.num_units}, "
                f"outputs_per_anchor={self.num_outputs_per_anchor}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, design={self.design.name!r}")
