"""Registry of detectors with the paper's anchors and a hierarchical head (one ``build`` for all).

Every builder makes the stock torchvision detector, gives it the paper's 3 x 3 anchor grid
(Section IV-A) and, unless the design is the general head, hierarchical final convs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..anchors import PaperBoxGenerator, retinanet_anchor_generator
from ..design import Design
from .convert import hierarchize, load_start
from .stock import ARCHITECTURES, INPUT_SIZES, ssdlite_norm, stock_model
from .weights import load_state_dict

__all__ = ["build", "names", "input_size", "register", "spec_of"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
GENERAL = "9An{9}"


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn
    return wrap


def names() -> list[str]:
    """The registered model names."""
    return sorted(_REGISTRY)


def _known(name: str) -> str:
    if name not in _REGISTRY:
        raise ValueError(f"model {name!r}: unknown; choose one of {', '.join(names())}")
    return name


def input_size(name: str) -> int | None:
    """A registered model's square input size (the SSDs), None where the detector resizes by itself."""
    return INPUT_SIZES.get(_known(name))


def build(
    name: str,
    num_classes: int,
    design: str | Design | None = GENERAL,
    backbone_weights: str | Path | None = None,
    weights: str | Path | None = None,
    torchvision_weights: bool = False,
    soft: bool = False,
    start: nn.Module | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered detector with ``num_classes`` classes (background included).

    ``design`` (a name like ``9An{9,3,1}S`` or a :class:`Design`) makes the final cls and box
    convs hierarchical; ``None`` or the general head gives a stock torchvision model.
    ``backbone_weights``: a local classification-network state_dict (.pth / .safetensors).
    ``weights``: a local whole-model file saved by :func:`hierhead.models.save`.
    ``torchvision_weights=True`` downloads torchvision's ImageNet backbone (needs network).
    ``start``: a trained detector of the same model, classes and anchors (any design: it is
    folded) whose weights are loaded before the head is made hierarchical; the units then start
    at 0, so every design starts as exactly the function ``start`` computes (``--init``).
    ``pretrained_backbone=True`` builds the pretrained-backbone architecture without loading
    weights (for checkpoints). Extra keyword arguments go to the torchvision detector (``nms_thresh``).
    """
    _known(name)
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: need at least 2 (background + one class)")
    model = _REGISTRY[name](num_classes, backbone_weights=backbone_weights,
                            torchvision_weights=torchvision_weights, **kwargs)
    design_name = GENERAL if design is None else (design.name if isinstance(design, Design) else design)
    if start is not None:
        load_start(model, start)
    if design is not None:
        hierarchize(model, design, soft=soft)
    model.hierhead_spec = {**model.hierhead_spec, "design": design_name, "soft": soft}
    if weights is not None:
        from .weights import load_model_weights
        load_model_weights(model, weights)
    return model


def _generator(name: str) -> nn.Module:
    """The paper's 3 x 3 anchor grid (Section IV-A): Eq. 3 per SSD map, or sizes 32..512 on the FPN."""
    levels = {"ssd300_vgg16": 6, "ssd512_vgg16": 7, "ssdlite320_mobilenet_v3": 6}
    return PaperBoxGenerator(levels[name]) if name in levels else retinanet_anchor_generator()


def _classification_net(name: str, path: str | Path | None, torchvision_weights: bool) -> nn.Module | None:
    """The SSD backbone's classification network with local or (on request) torchvision weights
    (None when training from scratch: the architecture then makes its own)."""
    if path is None and not torchvision_weights:
        return None
    from torchvision.models import (MobileNet_V3_Large_Weights, VGG16_Weights, mobilenet_v3_large, vgg16)

    if name.startswith("ssd") and "vgg16" in name:
        net = vgg16(weights=VGG16_Weights.IMAGENET1K_FEATURES if torchvision_weights else None)
    elif name == "ssdlite320_mobilenet_v3":
        named = MobileNet_V3_Large_Weights.IMAGENET1K_V1 if torchvision_weights else None
        net = mobilenet_v3_large(weights=named, norm_layer=ssdlite_norm, reduced_tail=False)
    else:
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


DEFAULT_OPTIONS: dict[str, dict] = {
    "ssd300_vgg16": {"nms_thresh": 0.5},
    "ssd512_vgg16": {"nms_thresh": 0.5},
    "ssdlite320_mobilenet_v3": {"nms_thresh": 0.5},
    "retinanet_resnet50_fpn": {"nms_thresh": 0.5},
    "retinanet_resnet50_fpn_nosubnet": {"nms_thresh": 0.1},  # paper's FlickrLogos-47 setting
    "fasterrcnn_resnet50_fpn": {},
}
_DOCS = {
    "ssd300_vgg16": "SSD300 on VGG16 (the paper's VOC SSD used Inception-V2, which torchvision lacks).",
    "ssd512_vgg16": "SSD512 on VGG16, seven feature maps.",
    "ssdlite320_mobilenet_v3": "SSDLite320 on MobileNetV3-Large (as torchvision builds it): CPU-sized.",
    "retinanet_resnet50_fpn": "RetinaNet R50-FPN, 4-conv subnet, focal loss alpha 0.25 gamma 2 (paper's COCO setting).",
    "retinanet_resnet50_fpn_nosubnet": "RetinaNet R50-FPN, prediction convs directly on P3-P7 (FlickrLogos-47 setting).",
    "fasterrcnn_resnet50_fpn": "Faster R-CNN R50-FPN whose RPN predicts on the paper's 3 x 3 grid (III-B.b).",
}


def _register_all() -> None:
    for name in ARCHITECTURES:
        def make(num_classes: int, backbone_weights=None, torchvision_weights=False, pretrained_backbone=None,
                 _name=name, **options):
            if backbone_weights is not None and torchvision_weights:
                raise ValueError("give either backbone_weights (a local file) or torchvision_weights=True, not both")
            given = backbone_weights is not None or torchvision_weights
            pretrained = given if pretrained_backbone is None else bool(pretrained_backbone)
            spec = {"model": _name, "num_classes": num_classes, "pretrained_backbone": pretrained,
                    "options": {**DEFAULT_OPTIONS[_name], **options}}
            net = _classification_net(_name, backbone_weights, torchvision_weights)
            model = stock_model(spec, generator=_generator(_name), net=net)
            if given and net is None:
                _load_resnet_body(model.backbone.body, backbone_weights)
            model.hierhead_spec = spec
            return model
        make.__doc__ = _DOCS[name]
        register(name)(make)


_register_all()


def spec_of(model: nn.Module) -> dict:
    """The model spec recorded by :func:`build` (name, classes, design)."""
    spec = getattr(model, "hierhead_spec", None)
    if spec is None:
        raise ValueError("model was not built by hierhead.models.build (no spec)")
    return dict(spec)


