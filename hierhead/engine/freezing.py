"""Which parameters of a detector train: a training policy, decided here, applied to the built model and never
saved with it (a run's model spec, its checkpoint's model and the deployed file are the same whatever trained).

Three policies, each one function: :func:`apply` (a training config's ``frozen_stages`` and
``optimizer.backbone_lr_scale: 0``: what ``hierhead train`` does), :func:`freeze_body` (the frozen-backbone
protocol: the ImageNet body frozen, the rest trained) and :func:`train_only_prediction_convs` (the head protocol).
"""

from __future__ import annotations

from torch import nn

from ..models.builders import backbone_body
from ..models.convert import prediction_convs
from ..models.stock import freeze_stages
from .optim import parse_backbone_lr_scale

__all__ = ["apply", "freeze_body", "train_only_prediction_convs", "check_frozen_stages"]


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
