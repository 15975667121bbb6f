"""Turn a torchvision detector's final head convs into hierarchical ones (Eq. 2) and back (fold)."""

from __future__ import annotations

import copy
from typing import Iterator

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.ssd import SSD

from ..anchors import anchor_grid, anchor_shapes
from ..design import Design
from ..layers import HierarchicalConv2d
from .weights import state_mismatch

__all__ = ["hierarchize", "fold", "head_convs", "prediction_convs", "level_designs", "load_start",
           "anchor_generator_of"]


def _get(parent: nn.Module, name: str) -> nn.Module:
    return parent[int(name)] if isinstance(parent, (nn.ModuleList, nn.Sequential)) else getattr(parent, name)


def _set(parent: nn.Module, name: str, module: nn.Module) -> None:
    if isinstance(parent, (nn.ModuleList, nn.Sequential)):
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


def head_convs(model: nn.Module) -> Iterator[tuple[nn.Module, str, int, int, str]]:
    """Yield (parent, attribute, level, outputs per anchor, role) of every final prediction conv.

    level is the feature-map index whose anchors the conv predicts (-1: shared by all levels).
    """
    if isinstance(model, SSD):
        heads = (("cls", model.head.classification_head), ("box", model.head.regression_head))
        for role, head in heads:
            for level, block in enumerate(head.module_list):
                if isinstance(block, nn.Sequential):  # SSDLite: depthwise block then a 1x1 conv
                    yield block, str(len(block) - 1), level, head.num_columns, role
                else:
                    yield head.module_list, str(level), level, head.num_columns, role
    elif isinstance(model, RetinaNet):
        cls_head, box_head = model.head.classification_head, model.head.regression_head
        yield cls_head, "cls_logits", -1, cls_head.num_classes, "cls"
        yield box_head, "bbox_reg", -1, 4, "box"
    elif isinstance(model, FasterRCNN):
        yield model.rpn.head, "cls_logits", -1, 1, "cls"
        yield model.rpn.head, "bbox_pred", -1, 4, "box"
    else:
        raise TypeError(f"hierarchize: unsupported model {type(model).__name__} (SSD, RetinaNet or FasterRCNN)")


def prediction_convs(model: nn.Module) -> list[tuple[nn.Module, int, int, str]]:
    """(conv, level, outputs per anchor, role) of every final prediction conv, in :func:`head_convs` order."""
    return [(_get(parent, name), level, k_out, role) for parent, name, level, k_out, role in head_convs(model)]


def anchor_generator_of(model: nn.Module) -> nn.Module:
    """The one anchor generator in ``model`` (torchvision's ``AnchorGenerator`` / ``DefaultBoxGenerator``
    or a subclass), wherever the detector keeps it (``anchor_generator``, ``rpn.anchor_generator``)."""
    found = [m for m in model.modules() if isinstance(m, (AnchorGenerator, DefaultBoxGenerator))]
    if len(found) != 1:
        raise TypeError(f"{type(model).__name__}: expected one anchor generator, found {len(found)}")
    return found[0]


def level_designs(model: nn.Module, design: str | Design) -> list[Design]:
    """The design built for each feature map's own anchors (size, ratio) of ``model``."""
    gen = anchor_generator_of(model)
    designs = []
    for grid, shapes in zip(anchor_grid(gen), anchor_shapes(gen)):
        ratios = {r: h / w for (_, r), (w, h) in zip(grid, shapes)}
        ratio_values = [ratios[i] for i in range(max(ratios) + 1)] if len(ratios) == max(ratios) + 1 else None
        if isinstance(design, Design):
            designs.append(design.rebuild(grid))
        else:
            designs.append(Design.parse(design, anchors=grid, ratios=ratio_values))
    return designs


def hierarchize(model: nn.Module, design: str | Design, soft: bool = False) -> nn.Module:
    """Replace the final cls and box convs of ``model`` in place by :class:`HierarchicalConv2d`.

    Each conv keeps its weights (``from_conv``), so the model computes what it computed
    before; classifier and regressor get units of their own. A general design is a no-op.

    Args:
        model: a torchvision SSD / SSDLite, RetinaNet or Faster R-CNN (its RPN) with plain convs.
        design: a Table I name (built per feature map from that map's anchor sizes and ratios)
            or a :class:`Design` (rebuilt on each map's anchor grid).
        soft: a learnable real-valued M initialised from the design (the paper's future work).

    Returns:
        ``model``, changed in place.
    """
    designs = level_designs(model, design)
    if designs[0].is_general:
        return model
    targets = list(head_convs(model))
    for parent, name, level, k_out, _ in targets:
        conv = _get(parent, name)
        if isinstance(conv, HierarchicalConv2d):
            raise ValueError("hierarchize: model is already hierarchical; fold() it first")
        if level < 0 and any(d.matrix.tolist() != designs[0].matrix.tolist() for d in designs):
            raise ValueError("hierarchize: a head shared by all levels needs the same anchor grid on every level")
        _set(parent, name, HierarchicalConv2d.from_conv(conv, designs[max(level, 0)], k_out, soft=soft))
    return model


def load_start(model: nn.Module, start: nn.Module) -> nn.Module:
    """Load the weights of ``start``, a trained detector, into ``model``, a general head of the same kind.

    A hierarchical ``start`` is folded first, so any trained design is a start. Refused with a
    one-line error: another detector class, another anchor grid (shapes per level) or weights
    of other shapes (e.g. another number of classes). Made hierarchical afterwards
    (:func:`hierarchize`), the model starts as exactly the function ``start`` computes.

    Args:
        model: the detector to initialise, with plain (general-head) prediction convs.
        start: a trained detector (e.g. ``load_checkpoint(...)[0]``).
    """
    if type(start) is not type(model):
        raise ValueError(f"start: a {type(start).__name__}, this model is a {type(model).__name__}")
    theirs, ours = anchor_shapes(anchor_generator_of(start)), anchor_shapes(anchor_generator_of(model))
    if theirs != ours:
        raise ValueError(f"start: another anchor grid ({sum(map(len, theirs))} anchors per location set over "
                         f"{len(theirs)} maps, this model {sum(map(len, ours))} over {len(ours)}, or other shapes)")
    state = fold(start).state_dict()
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise ValueError(f"start: weights do not match this model: {mismatch}")
    model.load_state_dict(state, strict=True)
    return model


def fold(model: nn.Module) -> nn.Module:
    """A copy of ``model`` of the same torchvision class with plain ``nn.Conv2d`` heads (Section III-B.c).

    A walk over the modules, knowing no architecture (as RepVGG's deploy conversion): every module
    that can fold itself (a ``fold()`` method: :class:`HierarchicalConv2d` -> ``nn.Conv2d`` holding
    W', :class:`~hierhead.anchors.PaperBoxGenerator` -> torchvision's ``DefaultBoxGenerator`` with the
    same boxes) is replaced by what it returns. The copy's ``state_dict()`` loads with ``strict=True``
    into the stock model with the same backbone, classes and anchors.

    Args:
        model: a detector from :func:`hierhead.models.build` (any design), or any module.

    Returns:
        the folded copy; ``model`` is untouched.
    """
    folded = copy.deepcopy(model)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if callable(getattr(type(child), "fold", None)):
                setattr(parent, name, child.fold())
    spec = getattr(folded, "hierhead_spec", None)
    if spec is not None:
        folded.hierhead_spec = spec.replace(folded=True)
    return folded
