"""Plain torchvision construction of every registered detector from a JSON spec.

This module imports nothing but torch and torchvision (and timm, only inside the builders of the
timm-backbone detectors): ``hierhead fold`` copies it beside the folded weights as ``load_model.py``,
so a deployed model needs no hierhead (Section III-B.c: the folded head is the general head).
``hierhead.models.build`` uses it for the architecture.

spec: ``{"model", "num_classes", "pretrained_backbone", "anchors", "options"}`` where anchors are
``{"wh_pairs": [[[w, h], ...] per level]}`` (SSD, relative sizes) or ``{"sizes": [[...] per
level], "aspect_ratios": [[...] per level]}`` (RetinaNet, RPN; pixels), and options are the
detector's keyword arguments (``nms_thresh``, ``min_size``, ...).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import fasterrcnn_resnet50_fpn as torchvision_fasterrcnn
from torchvision.models.detection import retinanet_resnet50_fpn as torchvision_retinanet
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.ssd import SSD, SSDHead, _vgg_extractor
from torchvision.models.detection.ssdlite import SSDLiteHead, _extra_block, _mobilenet_extractor, _normal_init
from torchvision.ops import batched_nms, clip_boxes_to_image
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["stock_model", "load", "size_options", "architecture", "Architecture", "ARCHITECTURES"]


@dataclass(frozen=True)
class Architecture:
    """Everything hierhead knows about one detector, in one place (registered by :func:`architecture`).

    Attributes:
        name: the registry name (``ssd300_vgg16``).
        make: ``make(num_classes, pretrained, generator, options, net=None)`` -> the torchvision detector.
        backbone: the classification network the backbone is cut from (``vgg16``,
            ``mobilenet_v3_large``, ``resnet50``, a timm name such as ``tf_efficientnet_lite0``): what
            ``backbone_weights`` must hold; for a timm detector, the default of its ``backbone`` option.
        anchors: ``"ssd"`` (relative (w, h) pairs per feature map, ``DefaultBoxGenerator``) or ``"grid"``
            (sizes x aspect ratios per FPN level, ``AnchorGenerator``).
        maps: the SSD's feature maps (one anchor set per map, Eq. 3); None for an FPN detector.
        input_size: the SSD's default square input; None where the detector resizes by itself.
        resizable: True where ``image_size`` sets any square input (SSDLite).
        options: the detector keyword arguments hierhead uses by default (``nms_thresh``).
        doc: one line for ``hierhead models``.
        timm: the backbone is a timm network (named by the ``backbone`` option, default ``backbone``).
    """

    name: str
    make: Callable[..., nn.Module]
    backbone: str
    anchors: str
    maps: int | None = None
    input_size: int | None = None
    resizable: bool = False
    options: dict = field(default_factory=dict)
    doc: str = ""
    timm: bool = False


#: The registered detectors by name (filled by :func:`architecture`; a duplicate name is an error).
ARCHITECTURES: dict[str, Architecture] = {}


def architecture(name: str, *, backbone: str, anchors: str, maps: int | None = None, input_size: int | None = None,
                 resizable: bool = False, options: dict | None = None, timm: bool = False):
    """Register the decorated constructor as detector ``name`` with its facts (see :class:`Architecture`)."""
    if anchors not in ("ssd", "grid"):
        raise ValueError(f"model {name!r}: anchors={anchors!r}; choose ssd or grid")

    def wrap(make: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"model {name!r}: already registered")
        doc = " ".join((make.__doc__ or "").split())
        ARCHITECTURES[name] = Architecture(name, make, backbone, anchors, maps, input_size, resizable,
                                           dict(options or {}), doc, timm)
        return make
    return wrap


def size_options(model: str, size: tuple[int, int]) -> dict:
    """The detector options that make ``model`` take ``(h, w)`` inputs: an SSD's square ``image_size``;
    for RetinaNet / Faster R-CNN the transform's ``fixed_size`` (w, h), so evaluation squashes each image
    to (h, w) exactly as training's ``Resize`` does (the paper resizes FlickrLogos-47 to 1024 x 1024) and
    a box's aspect ratio reaches the model the same way in both modes (``min_size`` / ``max_size`` alone
    would keep the image's aspect ratio at test time only)."""
    arch = ARCHITECTURES[model]
    if arch.input_size is not None:
        if arch.resizable and size[0] == size[1]:
            return {"image_size": size[0]}
        kind = "a square" if arch.resizable else "a fixed"
        resizable = sorted(a.name for a in ARCHITECTURES.values() if a.resizable)
        raise ValueError(f"image_size={list(size)}: {model} takes {kind} input ({', '.join(resizable)} takes any "
                         f"square size)")
    return {"min_size": size[0], "max_size": max(size), "fixed_size": [size[1], size[0]]}


class SigmoidSSD(SSD):
    """SSD classified as the paper does (IV-C, TF Object Detection API): an independent sigmoid per
    class (background included as a column) instead of torchvision's softmax, with the same hard
    negative mining (3 negatives per positive, the highest-loss ones) and smooth L1 box loss.

    Kept by hand because torchvision's SSD hard-codes softmax in ``compute_loss`` and
    ``postprocess_detections``; the head, matching, box coder and NMS are torchvision's. Scores at
    inference are ``sigmoid(logit)`` per class, so a folded model needs this class too: it lives in
    this file, which ``hierhead fold`` ships as ``load_model.py``.
    """

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        losses = super().compute_loss(targets, head_outputs, anchors, matched_idxs)  # its box loss is the paper's
        logits = head_outputs["cls_logits"]
        labels = torch.stack([t["labels"][m.clamp(min=0)] * (m >= 0) if t["labels"].numel() else torch.zeros_like(m)
                              for t, m in zip(targets, matched_idxs)])
        per_anchor = F.binary_cross_entropy_with_logits(
            logits, F.one_hot(labels, logits.size(-1)).to(logits.dtype), reduction="none").sum(-1)
        positive = labels > 0
        hardest = per_anchor.masked_fill(positive, -float("inf")).argsort(1, descending=True).argsort(1)
        negative = hardest < self.neg_to_pos_ratio * positive.sum(1, keepdim=True)
        losses["classification"] = (per_anchor[positive].sum() + per_anchor[negative].sum()) / max(1, int(positive.sum()))
        return losses

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        detections = []
        for deltas, logits, anchors, shape in zip(head_outputs["bbox_regression"], head_outputs["cls_logits"],
                                                  image_anchors, image_shapes):
            boxes = clip_boxes_to_image(self.box_coder.decode_single(deltas, anchors), shape)
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in range(1, logits.size(-1)):  # per class: above the threshold, the top candidates
                score = torch.sigmoid(logits[:, label])
                keep = torch.where(score > self.score_thresh)[0]
                score, order = score[keep].topk(det_utils._topk_min(score[keep], self.topk_candidates, 0))
                kept_boxes.append(boxes[keep[order]])
                kept_scores.append(score)
                kept_labels.append(torch.full_like(order, label))
            boxes, scores, labels = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections


def _ssd(loss: str):
    """The SSD class of the ``loss`` option: ``softmax`` (torchvision's) or ``sigmoid`` (the paper's)."""
    if loss not in ("softmax", "sigmoid"):
        raise ValueError(f"loss={loss!r}: unknown; choose softmax (torchvision's SSD) or sigmoid (the paper's)")
    return SSD if loss == "softmax" else SigmoidSSD


def _ssd_generator(anchors: dict) -> DefaultBoxGenerator:
    """A stock generator of the given (w, h) pairs per map: ``_wh_pairs`` is torchvision's private list of
    them (pinned by tests/test_models.py::test_private_torchvision_names_are_pinned)."""
    pairs = anchors["wh_pairs"]
    gen = DefaultBoxGenerator([[] for _ in pairs], scales=[0.0] * (len(pairs) + 1))
    gen._wh_pairs = [torch.tensor(level, dtype=torch.float32) for level in pairs]
    return gen


def _grid_generator(anchors: dict) -> AnchorGenerator:
    return AnchorGenerator(tuple(tuple(s) for s in anchors["sizes"]), tuple(tuple(r) for r in anchors["aspect_ratios"]))


def _per_location(generator: DefaultBoxGenerator) -> list[int]:
    return [len(p) for p in generator._wh_pairs]


def _ssd_vgg(size: int, num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
             net: nn.Module | None = None) -> nn.Module:
    from torchvision.models import vgg16

    backbone = _vgg_extractor(net or vgg16(), size == 512, 4 if pretrained else 5)
    out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
    head = SSDHead(out_channels, _per_location(generator), num_classes)
    defaults = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0] * 3}
    cls = _ssd(options.pop("loss", "softmax"))
    return cls(backbone, generator, (size, size), num_classes, head=head, **{**defaults, **options})


@architecture("ssd300_vgg16", backbone="vgg16", anchors="ssd", maps=6, input_size=300, options={"nms_thresh": 0.5})
def ssd300_vgg16(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                 net: nn.Module | None = None) -> nn.Module:
    """SSD300 on VGG16 (the paper's VOC SSD used Inception-V2, which torchvision lacks)."""
    return _ssd_vgg(300, num_classes, pretrained, generator, options, net)


@architecture("ssd512_vgg16", backbone="vgg16", anchors="ssd", maps=7, input_size=512, options={"nms_thresh": 0.5})
def ssd512_vgg16(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                 net: nn.Module | None = None) -> nn.Module:
    """SSD512 on VGG16, seven feature maps."""
    return _ssd_vgg(512, num_classes, pretrained, generator, options, net)


def ssdlite_norm(*args, **kwargs) -> nn.BatchNorm2d:
    """torchvision's SSDLite batch norm (eps 0.001, momentum 0.03)."""
    return nn.BatchNorm2d(*args, **{"eps": 0.001, "momentum": 0.03, **kwargs})


@architecture("ssdlite320_mobilenet_v3", backbone="mobilenet_v3_large", anchors="ssd", maps=6, input_size=320, resizable=True,
              options={"nms_thresh": 0.5})
def ssdlite320_mobilenet_v3(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                            net: nn.Module | None = None) -> nn.Module:
    """SSDLite320 on MobileNetV3-Large (as torchvision builds it): CPU-sized."""
    from torchvision.models import mobilenet_v3_large

    norm = ssdlite_norm
    size = int(options.pop("image_size", 320))  # any square input
    if net is None:
        net = mobilenet_v3_large(norm_layer=norm, reduced_tail=not pretrained)
        if not pretrained:
            _normal_init(net)  # as torchvision does for a backbone trained from scratch
    backbone = _mobilenet_extractor(net, 6, norm)
    out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
    head = SSDLiteHead(out_channels, _per_location(generator), num_classes, norm)
    defaults = {"score_thresh": 0.001, "detections_per_img": 300, "topk_candidates": 300,
                "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    cls = _ssd(options.pop("loss", "softmax"))
    return cls(backbone, generator, (size, size), num_classes, head=head, **{**defaults, **options})


FIRST_STRIDES = {16: 2, 8: 3}  # the SSDLite's finest map's stride -> the timm body's deepest maps it takes


def timm_body(name: str, first_stride: int = 16) -> nn.Module:
    """timm's ``name`` as a feature extractor of its deepest maps from ``first_stride`` on (16: strides 16 and
    32, as torchvision's SSDLite takes from MobileNetV3; 8: strides 8, 16 and 32), random weights. Only names
    in timm's own registry are built: a ``hf-hub:`` name would fetch a config from the network even without
    weights."""
    import timm

    if name not in timm.list_models():
        raise ValueError(f"backbone {name!r}: not a timm model name (see timm.list_models())")
    return timm.create_model(name, features_only=True, out_indices=timm_maps(first_stride))


def timm_maps(first_stride: int) -> tuple[int, ...]:
    """timm's ``out_indices`` of the body maps an SSDLite with its finest map at ``first_stride`` takes."""
    if first_stride not in FIRST_STRIDES or isinstance(first_stride, bool):
        raise ValueError(f"first_stride={first_stride!r}: the finest SSD map's stride, 16 (SSDLite's) or 8 "
                         f"(the VGG SSD300's conv4_3)")
    return tuple(range(-FIRST_STRIDES[first_stride], 0))


class TimmSSDLiteFeatures(nn.Module):
    """SSDLite's six feature maps on a timm body: its two deepest maps, then torchvision's four SSDLite
    extra blocks on the deepest (512, 256, 256, 128 channels), as torchvision builds SSDLite on MobileNetV3.
    A body of three maps (strides 8, 16, 32: ``first_stride`` 8) takes the first three extra blocks: six maps
    still (Eq. 3's), each from the next stride down, the smallest (1 x 1 at 320 px) left out."""

    EXTRA = (512, 256, 256, 128)  # torchvision's SSDLite extra blocks' output channels
    MAPS = 6

    def __init__(self, body: nn.Module, norm_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.body = body
        own = body.feature_info.channels()
        self.out_channels = [*own, *self.EXTRA[:self.MAPS - len(own)]]
        deepest = len(own) - 1  # the extra blocks continue from the body's deepest map
        self.extra = nn.ModuleList([_extra_block(a, b, norm_layer) for a, b in
                                    zip(self.out_channels[deepest:], self.out_channels[deepest + 1:])])
        _normal_init(self.extra)

    def extend(self, maps: list[torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        """The six maps from the body's two (what the frozen-backbone protocol caches)."""
        maps = list(maps)
        for block in self.extra:
            maps.append(block(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.extend(self.body(x))


def freeze_stages(body: nn.Module, stages: int) -> None:
    """Freeze a timm body from its input through its ``stages``-th feature level (the layers up to stride
    ``2 ** stages``; 0 freezes nothing), as torchvision's ``trainable_backbone_layers`` and mmdetection's
    ``frozen_stages`` do: the parameters stop training and their batch norm is frozen (timm's ``freeze``).
    Early layers hold generic edges and textures, and they cost most of a step's backward pass at full
    resolution. The level's module comes from timm's ``feature_info``; everything before it in module
    order (the stem) goes with it."""
    from timm.utils import freeze

    levels = body.feature_info.info
    if not 0 <= stages <= len(levels):
        raise ValueError(f"frozen_stages={stages}: expected 0 to {len(levels)} (the backbone's feature levels)")
    if stages == 0:
        return
    last, names = levels[stages - 1]["module"], []
    for n, _ in body.named_modules():
        if n and not last.startswith(n + ".") and not any(n.startswith(k + ".") for k in names):
            names.append(n)  # a module before the level's (not one of its containers), or the level's own
        if n == last:
            break
    freeze(body, names)


def _ssdlite_timm(name: str, num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                  net: nn.Module | None) -> nn.Module:
    """SSDLite on timm's ``name``; a pretrained body gets timm's frozen batch norm (as torchvision's
    pretrained bodies), and the input is normalised with the mean / std timm trained it with.
    ``frozen_stages`` (option, default 0) freezes the body through that feature level (:func:`freeze_stages`);
    ``first_stride`` (option, default 16) is the finest map's stride: 8 adds the body's stride-8 map (small
    objects: the VGG SSD300 has its first map there, conv4_3; the paper's Inception-V2 SSD and SSDLite at 16)
    and drops the coarsest extra block."""
    import timm
    from timm.layers import freeze_batch_norm_2d

    size = int(options.pop("image_size", 320))  # any square input
    stages = options.pop("frozen_stages", 0)
    if not isinstance(stages, int) or isinstance(stages, bool):  # before timm builds anything
        raise ValueError(f"frozen_stages={stages!r}: expected a whole number of feature levels")
    first = options.pop("first_stride", 16)
    maps = timm_maps(first)
    body = net if net is not None else timm_body(name, first)
    if len(body.feature_info.channels()) != len(maps):
        raise ValueError(f"first_stride={first}: the given body has {len(body.feature_info.channels())} maps, "
                         f"not {len(maps)}")
    if pretrained:
        body = freeze_batch_norm_2d(body)
    freeze_stages(body, stages)
    backbone = TimmSSDLiteFeatures(body, ssdlite_norm)
    head = SSDLiteHead(backbone.out_channels, _per_location(generator), num_classes, ssdlite_norm)
    cfg = timm.get_pretrained_cfg(name)
    mean, std = (list(cfg.mean), list(cfg.std)) if cfg is not None else ([0.5] * 3, [0.5] * 3)
    defaults = {"score_thresh": 0.001, "detections_per_img": 300, "topk_candidates": 300,
                "image_mean": mean, "image_std": std}
    cls = _ssd(options.pop("loss", "softmax"))
    return cls(backbone, generator, (size, size), num_classes, head=head, **{**defaults, **options})


@architecture("ssdlite320_efficientnet_lite0", backbone="tf_efficientnet_lite0", anchors="ssd", maps=6, input_size=320,
              resizable=True, options={"nms_thresh": 0.5}, timm=True)
def ssdlite320_efficientnet_lite0(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                                  net: nn.Module | None = None) -> nn.Module:
    """SSDLite320 on timm's EfficientNet-Lite0 (ImageNet weights ship with hierhead): the default."""
    name = options.pop("backbone", "tf_efficientnet_lite0")
    if name != "tf_efficientnet_lite0":
        raise ValueError(f"backbone {name!r}: ssdlite320_efficientnet_lite0 is EfficientNet-Lite0; "
                         f"use --model ssdlite_timm --set model_kwargs.backbone={name}")
    return _ssdlite_timm(name, num_classes, pretrained, generator, options, net)


@architecture("ssdlite_timm", backbone="resnet18", anchors="ssd", maps=6, input_size=320, resizable=True,
              options={"nms_thresh": 0.5, "backbone": "resnet18"}, timm=True)
def ssdlite_timm(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                 net: nn.Module | None = None) -> nn.Module:
    """SSDLite320 on any timm backbone (``model_kwargs.backbone``, default resnet18)."""
    name = options.pop("backbone", "resnet18")
    return _ssdlite_timm(name, num_classes, pretrained, generator, options, net)


def _freeze_bn(body: nn.Module) -> None:
    """Frozen batch norm in a pretrained ResNet body, as torchvision uses with pretrained weights."""
    for name, m in list(body.named_children()):
        if isinstance(m, nn.BatchNorm2d):
            setattr(body, name, FrozenBatchNorm2d(m.num_features, eps=m.eps))
        else:
            _freeze_bn(m)


def _retinanet(subnet: bool, num_classes: int, pretrained: bool, generator: nn.Module, options: dict) -> nn.Module:
    box_loss = options.pop("box_loss", "l1")  # torchvision's default; "smooth_l1" is the paper's VOC loss
    if box_loss not in ("l1", "smooth_l1", "giou", "diou", "ciou"):
        raise ValueError(f"box_loss={box_loss!r}: unknown; choose l1, smooth_l1, giou, diou or ciou")
    model = torchvision_retinanet(weights=None, weights_backbone=None, num_classes=num_classes, **options)
    if pretrained:
        _freeze_bn(model.backbone.body)
    model.anchor_generator = generator
    model.head = RetinaNetHead(256, generator.num_anchors_per_location()[0], num_classes)
    model.head.regression_head._loss_type = box_loss
    if not subnet:  # FlickrLogos-47 setting: predict directly on the FPN levels
        model.head.classification_head.conv = nn.Sequential()
        model.head.regression_head.conv = nn.Sequential()
    return model


@architecture("retinanet_resnet50_fpn", backbone="resnet50", anchors="grid", options={"nms_thresh": 0.5})
def retinanet_resnet50_fpn(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                           net: None = None) -> nn.Module:
    """RetinaNet R50-FPN, 4-conv subnet, focal loss alpha 0.25 gamma 2 (paper's COCO setting)."""
    return _retinanet(True, num_classes, pretrained, generator, options)


@architecture("retinanet_resnet50_fpn_nosubnet", backbone="resnet50", anchors="grid", options={"nms_thresh": 0.1})  # FlickrLogos-47's
def retinanet_resnet50_fpn_nosubnet(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                                    net: None = None) -> nn.Module:
    """RetinaNet R50-FPN, prediction convs directly on P3-P7 (FlickrLogos-47 setting)."""
    return _retinanet(False, num_classes, pretrained, generator, options)


@architecture("fasterrcnn_resnet50_fpn", backbone="resnet50", anchors="grid")
def fasterrcnn_resnet50_fpn(num_classes: int, pretrained: bool, generator: nn.Module, options: dict,
                            net: None = None) -> nn.Module:
    """Faster R-CNN R50-FPN whose RPN predicts on the paper's 3 x 3 grid (III-B.b)."""
    model = torchvision_fasterrcnn(weights=None, weights_backbone=None, num_classes=num_classes, **options)
    if pretrained:
        _freeze_bn(model.backbone.body)
    model.rpn.anchor_generator = generator
    model.rpn.head = RPNHead(256, generator.num_anchors_per_location()[0])
    return model


def stock_model(spec: dict, generator: nn.Module | None = None, net: nn.Module | None = None) -> nn.Module:
    """The plain torchvision detector described by ``spec``; ``generator`` overrides its anchors and
    ``net`` gives the SSD classification network (VGG16 / MobileNetV3) to build the backbone from."""
    name = spec["model"]
    if name not in ARCHITECTURES:
        raise ValueError(f"model {name!r}: unknown; choose one of {', '.join(sorted(ARCHITECTURES))}")
    arch = ARCHITECTURES[name]
    if generator is None:
        generator = _ssd_generator(spec["anchors"]) if arch.anchors == "ssd" else _grid_generator(spec["anchors"])
    options = dict(spec.get("options", {}))
    options.pop("anchor_s_min", None)  # hierhead's: the generator above holds its boxes
    if not arch.timm and options.pop("frozen_stages", 0):  # torchvision's SSD would swallow it unused
        raise ValueError(f"frozen_stages: an option of the timm-backbone models (ssdlite320_efficientnet_lite0, "
                         f"ssdlite_timm), not of {name}; set model_kwargs.frozen_stages=0")
    return arch.make(num_classes=int(spec["num_classes"]), pretrained=bool(spec.get("pretrained_backbone", False)),
                     generator=generator, options=options, net=net)


def load(folder: str | Path) -> nn.Module:
    """The folded model saved by ``hierhead fold``: ``model.json`` + ``model.safetensors``, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    model = stock_model(json.loads((folder / "model.json").read_text()))
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    return model.eval()
