"""Registry of detectors with the paper's anchors and a hierarchical head (one ``build`` for all).

Every builder makes the stock torchvision detector, gives it the paper's 3 x 3 anchor grid
(Section IV-A) and, unless the design is the general head, hierarchical final convs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

from torch import nn
from torchvision.models.detection import (
    fasterrcnn_resnet50_fpn,
    retinanet_resnet50_fpn,
)
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.ssd import SSD, SSDHead, _vgg_extractor
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.models.detection import _utils as det_utils
from torchvision.models import vgg16

from ..anchors import PaperBoxGenerator, retinanet_anchor_generator
from ..design import Design
from .convert import hierarchize
from .weights import load_state_dict

__all__ = ["build", "names", "register", "spec_of"]

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


def build(
    name: str,
    num_classes: int,
    design: str | Design | None = GENERAL,
    backbone_weights: str | Path | None = None,
    weights: str | Path | None = None,
    torchvision_weights: bool = False,
    soft: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered detector with ``num_classes`` classes (background included).

    ``design`` (a name like ``9An{9,3,1}S`` or a :class:`Design`) makes the final cls and box
    convs hierarchical; ``None`` or the general head gives a stock torchvision model.
    ``backbone_weights``: a local classification-network state_dict (.pth / .safetensors).
    ``weights``: a local whole-model file saved by :func:`hierhead.models.save`.
    ``torchvision_weights=True`` downloads torchvision's ImageNet backbone (needs network).
    Extra keyword arguments go to the torchvision detector (e.g. ``nms_thresh``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"model {name!r}: unknown; choose one of {', '.join(names())}")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: need at least 2 (background + one class)")
    model = _REGISTRY[name](num_classes, backbone_weights=backbone_weights,
                            torchvision_weights=torchvision_weights, **kwargs)
    design_name = GENERAL if design is None else (design.name if isinstance(design, Design) else design)
    if design is not None:
        hierarchize(model, design, soft=soft)
    model.hierhead_spec = {"model": name, "num_classes": num_classes, "design": design_name, "soft": soft}
    if weights is not None:
        from .weights import load_model_weights
        load_model_weights(model, weights)
    return model


def _backbone_weights(path: str | Path | None, torchvision_weights: bool, named: Any) -> Any:
    """torchvision's named weights only on request; a local file is loaded afterwards."""
    if path is not None and torchvision_weights:
        raise ValueError("give either backbone_weights (a local file) or torchvision_weights=True, not both")
    return named if torchvision_weights else None


def _ssd_vgg(num_classes: int, size: int, backbone_weights=None, torchvision_weights=False, **kwargs) -> nn.Module:
    from torchvision.models import VGG16_Weights

    net = vgg16(weights=_backbone_weights(backbone_weights, torchvision_weights, VGG16_Weights.IMAGENET1K_FEATURES))
    if backbone_weights is not None:
        net.load_state_dict(load_state_dict(backbone_weights, what="backbone"))
    trainable = 4 if (backbone_weights or torchvision_weights) else 5
    backbone = _vgg_extractor(net, size == 512, trainable)
    anchors = PaperBoxGenerator(7 if size == 512 else 6)
    out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
    defaults = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0] * 3, "nms_thresh": 0.5}
    head = SSDHead(out_channels, anchors.num_anchors_per_location(), num_classes)
    return SSD(backbone, anchors, (size, size), num_classes, head=head, **{**defaults, **kwargs})


@register("ssd300_vgg16")
def _ssd300(num_classes: int, **kw: Any) -> nn.Module:
    """SSD300 on VGG16 (the paper's VOC SSD used Inception-V2, which torchvision lacks)."""
    return _ssd_vgg(num_classes, 300, **kw)


@register("ssd512_vgg16")
def _ssd512(num_classes: int, **kw: Any) -> nn.Module:
    """SSD512 on VGG16, seven feature maps."""
    return _ssd_vgg(num_classes, 512, **kw)


@register("ssdlite320_mobilenet_v3")
def _ssdlite(num_classes: int, backbone_weights=None, torchvision_weights=False, **kwargs: Any) -> nn.Module:
    """SSDLite320 on MobileNetV3-Large (as torchvision builds it) with the paper's anchors: CPU-sized."""
    from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large
    from torchvision.models.detection.ssdlite import _mobilenet_extractor, _normal_init

    named = _backbone_weights(backbone_weights, torchvision_weights, MobileNet_V3_Large_Weights.IMAGENET1K_V1)
    pretrained = backbone_weights is not None or torchvision_weights
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    net = mobilenet_v3_large(weights=named, norm_layer=norm, reduced_tail=not pretrained)
    if backbone_weights is not None:
        net.load_state_dict(load_state_dict(backbone_weights, what="backbone"))
    if not pretrained:
        _normal_init(net)
    backbone = _mobilenet_extractor(net, 6, norm)
    anchors = PaperBoxGenerator(6)
    out_channels = det_utils.retrieve_out_channels(backbone, (320, 320))
    head = SSDLiteHead(out_channels, anchors.num_anchors_per_location(), num_classes, norm)
    defaults = {"score_thresh": 0.001, "nms_thresh": 0.5, "detections_per_img": 300, "topk_candidates": 300,
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    return SSD(backbone, anchors, (320, 320), num_classes, head=head, **{**defaults, **kwargs})


def _resnet_named(torchvision_weights: bool) -> Any:
    from torchvision.models import ResNet50_Weights
    return ResNet50_Weights.IMAGENET1K_V1 if torchvision_weights else None


def _retinanet(num_classes: int, subnet: bool, backbone_weights=None, torchvision_weights=False,
               **kwargs: Any) -> nn.Module:
    _backbone_weights(backbone_weights, torchvision_weights, None)
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=_resnet_named(torchvision_weights),
                                   num_classes=num_classes, **kwargs)
    if backbone_weights is not None:
        _load_resnet_body(model.backbone.body, backbone_weights)
    model.anchor_generator = retinanet_anchor_generator()
    model.head = RetinaNetHead(256, model.anchor_generator.num_anchors_per_location()[0], num_classes)
    if not subnet:  # FlickrLogos-47 setting: predict directly on the FPN levels
        model.head.classification_head.conv = nn.Sequential()
        model.head.regression_head.conv = nn.Sequential()
    return model


def _load_resnet_body(body: nn.Module, path: str | Path) -> None:
    state = load_state_dict(path, what="backbone")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = body.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"backbone weights {str(path)!r}: not a ResNet-50 state_dict (missing {missing[0]})")
    body.load_state_dict({k: state[k] for k in own}, strict=True)


@register("retinanet_resnet50_fpn")
def _retina(num_classes: int, **kw: Any) -> nn.Module:
    """RetinaNet R50-FPN with the 4-conv subnet, focal loss alpha 0.25 gamma 2 (paper's COCO setting)."""
    return _retinanet(num_classes, True, **kw)


@register("retinanet_resnet50_fpn_nosubnet")
def _retina_nosub(num_classes: int, **kw: Any) -> nn.Module:
    """RetinaNet R50-FPN, prediction convs directly on P3-P7 (paper's FlickrLogos-47 setting)."""
    kw.setdefault("nms_thresh", 0.1)
    return _retinanet(num_classes, False, **kw)


@register("fasterrcnn_resnet50_fpn")
def _frcnn(num_classes: int, backbone_weights=None, torchvision_weights=False, **kwargs: Any) -> nn.Module:
    """Faster R-CNN R50-FPN whose RPN predicts objectness and boxes on the paper's 3 x 3 grid (III-B.b)."""
    _backbone_weights(backbone_weights, torchvision_weights, None)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=_resnet_named(torchvision_weights),
                                    num_classes=num_classes, **kwargs)
    if backbone_weights is not None:
        _load_resnet_body(model.backbone.body, backbone_weights)
    model.rpn.anchor_generator = retinanet_anchor_generator()
    model.rpn.head = RPNHead(256, model.rpn.anchor_generator.num_anchors_per_location()[0])
    return model


def spec_of(model: nn.Module) -> dict:
    """The model spec recorded by :func:`build` (name, classes, design)."""
    spec = getattr(model, "hierhead_spec", None)
    if spec is None:
        raise ValueError("model was not built by hierhead.models.build (no spec)")
    return dict(spec)


