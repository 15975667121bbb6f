"""Build a registered detector with the paper's anchors and a hierarchical head (one ``build`` for all).

The detectors and their facts (input size, feature maps, default options) are registered once, each
by its decorated constructor in :mod:`.stock`; here every one gets the paper's 3 x 3 anchor grid
(Section IV-A), local backbone weights, a start (``--init``) and, unless the design is the general
head, hierarchical final convs. The result carries its :class:`~.spec.ModelSpec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..anchors import PaperBoxGenerator, retinanet_anchor_generator
from ..design import GENERAL, Design
from .convert import hierarchize, load_start
from .spec import ModelSpec
from .stock import ARCHITECTURES, Architecture, ssdlite_norm, stock_model
from .weights import load_state_dict

__all__ = ["build", "build_from_spec", "names", "input_size", "spec_of", "paper_anchors", "timm_backbone",
           "backbone_body"]


def names() -> list[str]:
    """The registered model names."""
    return sorted(ARCHITECTURES)


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"model {name!r}: unknown; choose one of {', '.join(names())}")
    return ARCHITECTURES[name]


def input_size(name: str) -> int | None:
    """A registered model's square input size (the SSDs), None where the detector resizes by itself."""
    return _architecture(name).input_size


def build(
    name: str,
    num_classes: int,
    design: str | Design | None = GENERAL,
    backbone_weights: str | Path | None = None,
    weights: str | Path | None = None,
    torchvision_weights: bool = False,
    soft: bool = False,
    start: nn.Module | None = None,
    pretrained_backbone: bool | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered detector, stock torchvision but for its anchors and prediction convs.

    Args:
        name: a registered model (:func:`names`), e.g. ``ssdlite320_mobilenet_v3``.
        num_classes: classes including background (at least 2).
        design: a Table I name like ``9An{9,3,1}S`` or a :class:`Design` for the final cls and box
            convs; ``None`` or the general head gives a stock head.
        backbone_weights: a local classification-network state_dict (.pth / .safetensors); for a timm
            backbone in timm's naming or, for EfficientNet-Lite0, the shipped package's
            (:func:`~.pretrained.packaged_weights` gives that file).
        weights: a local whole-model file saved by :func:`hierhead.models.save`.
        torchvision_weights: download the named ImageNet backbone: torchvision's, or timm's from its
            model hub for a timm backbone (needs the network; never used by tests or recipes).
        soft: a learnable real-valued M initialised from the design (the paper's future work).
        start: a trained detector of the same model, classes and anchors (any design: it is folded)
            whose weights are loaded before the head is made hierarchical; the units then start at 0,
            so every design starts as exactly the function ``start`` computes (``--init``).
        pretrained_backbone: build the pretrained-backbone architecture (frozen batch norm, full
            tail) without loading weights (for checkpoints); default: whether weights are given.
        **options: keyword arguments of the torchvision detector (``nms_thresh``, ``image_size``), and
            ``anchor_s_min``: Eq. 3's smallest anchor scale of an SSD (default the paper's 0.2).

    Returns:
        the detector, with its :class:`ModelSpec` as ``model.hierhead_spec``.
    """
    arch = _architecture(name)
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: need at least 2 (background + one class)")
    if backbone_weights is not None and torchvision_weights:
        raise ValueError("give either backbone_weights (a local file) or torchvision_weights=True, not both")
    given = backbone_weights is not None or torchvision_weights
    pretrained = given if pretrained_backbone is None else bool(pretrained_backbone)
    spec = ModelSpec(model=name, num_classes=num_classes, pretrained_backbone=pretrained,
                     options={**arch.options, **options})
    net = _classification_net(arch, backbone_weights, torchvision_weights, spec.options)
    model = stock_model(spec.to_dict(), generator=paper_anchors(name, spec.options.get("anchor_s_min")), net=net)
    if given and net is None:
        _load_resnet_body(model.backbone.body, backbone_weights)
    if start is not None:
        load_start(model, start)
    if design is not None:
        hierarchize(model, design, soft=soft)
    design_name = GENERAL if design is None else (design.name if isinstance(design, Design) else design)
    model.hierhead_spec = spec.replace(design=design_name, soft=soft)
    if weights is not None:
        from .weights import load_model_weights
        load_model_weights(model, weights)
    return model


def build_from_spec(spec: ModelSpec, **kwargs: Any) -> nn.Module:
    """:func:`build` of ``spec``'s model, classes, design and options (keyword arguments: ``weights``,
    ``start``, ``backbone_weights``, ...); the result's spec keeps ``spec``'s classes and image size."""
    model = build(spec.model, spec.num_classes, design=spec.design, soft=spec.soft,
                  pretrained_backbone=kwargs.pop("pretrained_backbone", spec.pretrained_backbone or None),
                  **kwargs, **spec.options)
    model.hierhead_spec = model.hierhead_spec.replace(classes=spec.classes, image_size=spec.image_size)
    return model


def paper_anchors(name: str, s_min: float | None = None) -> nn.Module:
    """A registered model's anchor generator on the paper's 3 x 3 grid (Section IV-A): Eq. 3 per SSD
    map (``s_min``: its smallest scale, default the paper's 0.2), or sizes 32..512 on the FPN. What
    :func:`build` gives the model, without building it."""
    arch = _architecture(name)
    if arch.anchors != "ssd":
        if s_min is not None:
            raise ValueError(f"anchor_s_min: an option of the SSD models (Eq. 3), not of {name} (FPN anchors 32..512)")
        return retinanet_anchor_generator()
    if s_min is None:
        return PaperBoxGenerator(arch.maps)
    if not 0 < float(s_min) < 0.95:
        raise ValueError(f"anchor_s_min={s_min!r}: Eq. 3's smallest scale, a fraction of the input in (0, 0.95)")
    return PaperBoxGenerator(arch.maps, s_min=float(s_min))


def timm_backbone(name: str, options: dict | None = None) -> str | None:
    """The timm network a registered model's backbone is (None: not a timm-backbone model)."""
    arch = _architecture(name)
    return str((options or {}).get("backbone") or arch.options.get("backbone") or arch.backbone) if arch.timm else None


def _classification_net(arch: Architecture, path: str | Path | None, torchvision_weights: bool,
                        options: dict) -> nn.Module | None:
    """The SSD backbone's classification network with local or (on request) torchvision / timm-hub weights
    (None when training from scratch: the architecture then makes its own)."""
    if path is None and not torchvision_weights:
        return None
    if arch.timm:
        from .pretrained import load_timm_body
        from .stock import timm_body, timm_maps

        name = timm_backbone(arch.name, options)
        first = options.get("first_stride", 16)
        if path is None:  # timm's model hub (network)
            import timm
            return timm.create_model(name, pretrained=True, features_only=True, out_indices=timm_maps(first))
        return load_timm_body(timm_body(name, first), path, name)
    from torchvision.models import (MobileNet_V3_Large_Weights, VGG16_Weights, mobilenet_v3_large, vgg16)

    if arch.backbone == "vgg16":
        net = vgg16(weights=VGG16_Weights.IMAGENET1K_FEATURES if torchvision_weights else None)
    elif arch.backbone == "mobilenet_v3_large":
        named = MobileNet_V3_Large_Weights.IMAGENET1K_V1 if torchvision_weights else None
        net = mobilenet_v3_large(weights=named, norm_layer=ssdlite_norm, reduced_tail=False)
    else:  # a ResNet-50 body: loaded into the built detector (_load_resnet_body)
        return None
    if path is not None:
        net.load_state_dict(load_state_dict(path, what="backbone"))
    return net


def _load_resnet_body(body: nn.Module, path: str | Path | None) -> None:
    if path is None:  # torchvision's named ImageNet weights (network)
        from torchvision.models import ResNet50_Weights
        state = ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    else:
        state = load_state_dict(path, what="backbone")
    own = body.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"backbone weights {str(path)!r}: not a ResNet-50 state_dict (missing {missing[0]})")
    body.load_state_dict({k: state[k] for k in own}, strict=True)


def backbone_body(model: nn.Module) -> nn.Module:
    """The part of a built detector cut from the classification network (what ImageNet weights fill):
    ``backbone.body`` (timm bodies, ResNet-50 FPN bodies) or ``backbone.features`` (VGG16, MobileNetV3)."""
    backbone = model.backbone
    return backbone.body if hasattr(backbone, "body") else backbone.features


def spec_of(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` recorded by :func:`build` (name, classes, design, options)."""
    spec = getattr(model, "hierhead_spec", None)
    if not isinstance(spec, ModelSpec):
        raise ValueError("model was not built by hierhead.models.build (no spec)")
    return spec


