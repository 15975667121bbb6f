"""Which parameters of a detector train: a training policy, decided here, applied to the built model and never
saved with it (a run's model spec, its checkpoint's model and the deployed file are the same whatever trained).

Three policies, each one function: :func:`apply` (a training config's ``frozen_stages`` and
``optimizer.backbone_lr_scale: 0``: what ``hierhead train`` does), :func:`freeze_body` (the frozen-backbone
protocol: the ImageNet body frozen, the rest trained) and :func:`train_only_prediction_convs` (the head protocol).
And one speed-up that frozen batch norm allows: :func:`fold_frozen_norms` (the same function, fewer passes).
"""

from __future__ import annotations

import types

import torch
from torch import nn

from ..models.builders import backbone_body
from ..models.convert import prediction_convs
from ..models.stock import freeze_stages
from .optim import parse_backbone_lr_scale

__all__ = ["apply", "freeze_body", "train_only_prediction_convs", "check_frozen_stages", "fold_frozen_norms",
           "unfold_frozen_norms"]


def check_frozen_stages(value) -> int:
    """``frozen_stages`` checked: a whole number of feature levels >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"frozen_stages={value!r}: expected a whole number of the backbone's feature levels (0: none)")
    return value


def apply(model: nn.Module, config: dict) -> None:
    """A training config's policy on ``model``: ``frozen_stages: N`` freezes a pretrained backbone body from its
    input through its N-th feature level (:func:`~hierhead.models.stock.freeze_stages`: timm bodies, whose feature
    levels are known; their batch norm is frozen already, so the model's modules and state are unchanged); ``optimizer.backbone_lr_scale: 0`` freezes the whole body (no
    gradients; a pretrained body's batch norm is frozen already)."""
    stages = check_frozen_stages(config.get("frozen_stages") or 0)
    if stages:
        body = backbone_body(model)
        if not hasattr(body, "feature_info"):
            raise ValueError(f"frozen_stages: a setting of the timm-backbone models (ssdlite320_efficientnet_lite0, "
                             f"ssdlite_timm), not of {config.get('model', 'this model')}; set frozen_stages=0")
        if not config.get("pretrained_backbone"):  # its batch norm is not frozen: freezing would change the model
            raise ValueError("frozen_stages: keeps pretrained layers as they are; this backbone starts random "
                             "(pretrained_backbone: false): set frozen_stages=0")
        freeze_stages(body, stages)  # the pretrained body's batch norm is frozen already: only gradients stop
    if parse_backbone_lr_scale((config.get("optimizer") or {}).get("backbone_lr_scale", 1.0)) == 0:
        freeze_body(model)


def freeze_body(model: nn.Module) -> None:
    """The backbone body gets no gradients (the frozen-backbone protocol; ``backbone_lr_scale: 0``)."""
    backbone_body(model).requires_grad_(False)


def train_only_prediction_convs(model: nn.Module) -> None:
    """Only the prediction convs (and their units) train: the head protocol."""
    model.requires_grad_(False)
    for conv, *_ in prediction_convs(model):
        conv.requires_grad_(True)


def _frozen_norm_types() -> tuple:
    from timm.layers import FrozenBatchNormAct2d
    from torchvision.ops import FrozenBatchNorm2d

    return FrozenBatchNorm2d, FrozenBatchNormAct2d


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen batch norm as ``x * scale + shift`` (per channel)."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    return scale, norm.bias - norm.running_mean * scale


def _folded_conv(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The conv and the frozen norm after it in one convolution: ``conv(x, W * scale) + shift`` (W still trains)."""
    from timm.layers import Conv2dSame, conv2d_same

    scale, shift = _affine(self._hierhead_norm)
    weight = self.weight * scale.view(-1, 1, 1, 1)
    bias = shift if self.bias is None else self.bias * scale + shift
    if type(self) is Conv2dSame:
        return conv2d_same(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
    return self._conv_forward(x, weight, bias)


def _folded_norm(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What is left of a norm folded into its conv: its activation (timm's norm + act), else nothing."""
    return self.act(self.drop(x)) if hasattr(self, "act") else x


def fold_frozen_norms(body: nn.Module, check: tuple[int, ...] = (1, 3, 64, 64)) -> int:
    """Fold every frozen batch norm of ``body`` into the convolution before it, for training: the conv computes
    ``conv(x, W * scale) + shift`` and the norm only its activation, so a step skips the norm's two passes over
    each activation forward and one backward (weight-sized work instead); the conv's weight still trains, the
    function and the state dict are unchanged, and a copy (EMA) folds its own weights. Returns the pairs folded.

    A pair is a plain ``nn.Conv2d`` (or timm's ``Conv2dSame``) and, next among its parent's children, a frozen
    norm (torchvision's ``FrozenBatchNorm2d``, timm's ``FrozenBatchNormAct2d``) of its channels. Module order is
    not data flow, so the fold checks itself: ``body`` on one random ``check`` input, folded and not; on a
    difference beyond rounding everything is unfolded and 0 returned.
    Hand-written: ``torch.fx``'s and ``torch.ao``'s conv-bn fusions are for inference (eval mode, new weights that
    no longer train); this keeps the trained weight and folds the norm anew in every step."""
    from timm.layers import Conv2dSame

    norms = _frozen_norm_types()
    pairs = [(conv, norm) for parent in body.modules() for conv, norm in zip(list(parent.children()),
                                                                              list(parent.children())[1:])
             if type(conv) in (nn.Conv2d, Conv2dSame) and isinstance(norm, norms)
             and norm.weight.numel() == conv.out_channels and "forward" not in vars(conv)]
    if not pairs:
        return 0
    param = next(body.parameters())
    x = torch.randn(check, generator=torch.Generator().manual_seed(0)).to(param.device)
    if param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = body.training
    body.eval()
    with torch.no_grad():
        plain = _tensors(body(x))
        for conv, norm in pairs:
            object.__setattr__(conv, "_hierhead_norm", norm)  # a reference, not a submodule: the state dict stays
            conv.forward = types.MethodType(_folded_conv, conv)  # bound: a deepcopy (EMA) binds to its own copy
            norm.forward = types.MethodType(_folded_norm, norm)
        folded = _tensors(body(x))
    body.train(was_training)
    if not all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(plain, folded)):
        unfold_frozen_norms(body)
        return 0
    return len(pairs)


def _tensors(out) -> list[torch.Tensor]:
    """A module's output as a list of tensors (a tensor, a list / tuple, or a dict of them)."""
    return list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]


def unfold_frozen_norms(model: nn.Module) -> None:
    """Undo :func:`fold_frozen_norms` (each module its class's forward again)."""
    for m in model.modules():
        if vars(m).get("forward") is not None and getattr(m.forward, "__func__", None) in (_folded_conv, _folded_norm):
            del m.forward
            vars(m).pop("_hierhead_norm", None)
