"""Training-time rewrites of a backbone body that compute the same function in fewer passes over the activations
(issue 41). A rewrite replaces a module's ``forward`` on the instance: the modules, their parameters and the state
dict stay as built (checkpoints, fold and export see the model as it is), the conv's weight still trains, and a
copy (EMA's ``deepcopy``) rewrites with its own weights. Each is a training setting, on in the built-in defaults
and off in the pinned ``defaults-2026-12`` (the runs of that day computed without it). One so far:

- ``fold_frozen_norms`` (:func:`fold_frozen_norms`): a frozen batch norm after a conv is ``x * scale + shift``, two
  passes over each activation forward and one backward; folded into the conv, ``conv(x, W * scale) + shift``, it
  costs weight-sized work instead, and the norm keeps only its activation (0.86x the step at 2 threads, 0.83x at
  one: docs/benchmarks.md).

Measured and dropped: computing timm's ``Conv2dSame`` (TensorFlow's "same" padding) with the kernel grown by a
zero row / column instead of a padded copy of the input (exact, but 0.97x / 1.02x the step: no gain beyond noise;
``git show 247b7f6:hierhead/engine/speed.py``).

Hand-written: ``torch.fx`` / ``torch.ao`` conv-bn fusions are for inference (eval mode, new weights that no longer
train). Module order is not data flow, so a rewrite checks itself on the body (one random input, rewritten and
not) and undoes itself on a difference beyond rounding.
"""

from __future__ import annotations

import types

import torch
from torch import nn

__all__ = ["REWRITES", "apply", "fold_frozen_norms", "restore"]


def _conv_types() -> tuple:
    from timm.layers import Conv2dSame

    return nn.Conv2d, Conv2dSame


def _frozen_norm_types() -> tuple:
    from timm.layers import FrozenBatchNormAct2d
    from torchvision.ops import FrozenBatchNorm2d

    return FrozenBatchNorm2d, FrozenBatchNormAct2d


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen batch norm as ``x * scale + shift`` (per channel)."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    return scale, norm.bias - norm.running_mean * scale


def _conv(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A conv with its frozen norm folded in (``_hierhead_norm``): ``conv(x, W * scale) + shift``."""
    scale, shift = _affine(vars(self)["_hierhead_norm"])
    weight = self.weight * scale.view(-1, 1, 1, 1)
    bias = shift if self.bias is None else self.bias * scale + shift
    if type(self) is nn.Conv2d:
        return self._conv_forward(x, weight, bias)
    from timm.layers import conv2d_same  # timm's Conv2dSame: TF "same" padding, computed as timm computes it

    return conv2d_same(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def _norm_act(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What is left of a norm folded into its conv: its activation (timm's norm + act), else nothing."""
    return self.act(self.drop(x)) if hasattr(self, "act") else x


FLAGS = ("_hierhead_norm", "_hierhead_folded")  # what a rewrite leaves in a module's __dict__


def _mark(module: nn.Module, flag: str, value, forward) -> None:
    object.__setattr__(module, flag, value)  # in __dict__, not a submodule: the state dict stays as built
    module.forward = types.MethodType(forward, module)  # bound: a deepcopy binds to its own copy


def _outputs(out) -> list[torch.Tensor]:
    return list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]


def _checked(body: nn.Module, rewrite, check: tuple[int, ...]) -> int:
    """Apply ``rewrite(body) -> [(module, flag)]`` and keep it only if ``body``'s output on a random ``check`` input
    is unchanged (rounding aside); returns the modules rewritten."""
    param = next(body.parameters(), None)
    if param is None:
        return 0
    x = torch.randn(check, generator=torch.Generator().manual_seed(0)).to(param.device)
    if param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = body.training
    body.eval()
    with torch.no_grad():
        before = _outputs(body(x))
        done = rewrite(body)
        after = _outputs(body(x)) if done else before
    body.train(was_training)
    if not all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(before, after)):
        for module, flag in done:
            _undo(module, flag)
        return 0
    return len(done)


def fold_frozen_norms(body: nn.Module, check: tuple[int, ...] = (1, 3, 64, 64)) -> int:
    """Fold every frozen batch norm of ``body`` into the conv before it (see the module's docstring); returns the
    pairs folded. A pair: a plain ``nn.Conv2d`` or timm's ``Conv2dSame`` and, next among its parent's children,
    a frozen norm of its channels (torchvision's ``FrozenBatchNorm2d``, timm's ``FrozenBatchNormAct2d``)."""
    convs, norms = _conv_types(), _frozen_norm_types()

    def rewrite(body):
        pairs = [(conv, norm) for parent in body.modules() for conv, norm in zip(list(parent.children()),
                                                                                  list(parent.children())[1:])
                 if type(conv) in convs and isinstance(norm, norms) and norm.weight.numel() == conv.out_channels
                 and "_hierhead_norm" not in vars(conv)]
        for conv, norm in pairs:
            _mark(conv, "_hierhead_norm", norm, _conv)
            _mark(norm, "_hierhead_folded", True, _norm_act)
        return [(conv, "_hierhead_norm") for conv, _ in pairs] + [(norm, "_hierhead_folded") for _, norm in pairs]

    return _checked(body, rewrite, check) // 2


def _undo(module: nn.Module, flag: str) -> None:
    vars(module).pop(flag, None)
    if not any(f in vars(module) for f in FLAGS):
        vars(module).pop("forward", None)


def restore(body: nn.Module) -> None:
    """Undo every rewrite of this module: each module its class's forward again."""
    for m in body.modules():
        for flag in FLAGS:
            if flag in vars(m):
                _undo(m, flag)


REWRITES = {"fold_frozen_norms": fold_frozen_norms}
"""Each rewrite by the name of its training setting."""


def apply(body: nn.Module, names) -> dict[str, int]:
    """The rewrites named (settings that are on), in :data:`REWRITES`' order; name -> modules rewritten."""
    unknown = set(names) - set(REWRITES)
    if unknown:
        raise ValueError(f"speed rewrite {sorted(unknown)[0]!r}: choose from {', '.join(REWRITES)}")
    return {name: rewrite(body) for name, rewrite in REWRITES.items() if name in names}
