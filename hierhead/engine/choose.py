"""Settings chosen from the training data (``image_size: auto``, ``anchor_s_min: auto``, ``max_steps: auto``), and why.

An SSD matches a box to the anchors it overlaps at IoU >= 0.5; a box no anchor reaches trains one forced
match only. The share of training boxes some anchor reaches is the *best possible recall* (BPR, as
YOLOv5's AutoAnchor checks it). Eq. 3's anchors are fractions of the input (``s_min`` = 0.2 of the side on
the finest map), so on chess pieces (8 % of the side) the paper's anchors reach 29 % of the boxes at 320 px.
Two rules raise it, each computed from the training boxes before the model is built (no training):

- ``anchor_s_min: auto``: Eq. 3's ``s_min`` from :data:`S_MINS` with the highest BPR at the run's input
  size (a tie keeps the larger, the paper's 0.2 first). A departure from the paper, said in
  docs/fidelity.md.
- ``image_size: auto``: the smallest side in :data:`SIZES` whose BPR (with its own ``s_min`` when that is
  auto, else the one given) is within :data:`TOLERANCE` of the best side's; a larger input costs about
  (side / 320)^2 per step, so it is taken only where it reaches clearly more boxes.

A third rule sizes the schedule: ``max_steps: auto`` is at least :data:`EPOCHS` passes over the training
images at the run's batch, and never fewer than :data:`MIN_STEPS` (the defaults' 600 steps were chosen on cards,
296 images at batch 8: 16 epochs; a larger dataset gets its 16 epochs, a smaller one keeps the 600 steps).

Hand-written because no library computes an SSD's anchor coverage (YOLOv5's AutoAnchor evolves
YOLO's anchors by k-means, another scheme). Whether either rule helps is measured on holdouts
(studies/defaults-rules.yaml), not assumed here.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["SIZES", "S_MINS", "TOLERANCE", "EPOCHS", "MIN_STEPS", "best_possible_recall", "choose", "relative_boxes",
           "resolve_auto", "auto_steps"]

SIZES = (320, 416, 512)
EPOCHS = 16  # the defaults' schedule on cards, where it was chosen: 600 steps x batch 8 / 296 images
MIN_STEPS = 600
S_MINS = (0.2, 0.15, 0.1, 0.07, 0.05)
TOLERANCE = 0.05
IOU = 0.5


def relative_boxes(ds) -> torch.Tensor:
    """Every box of a dataset as (x1, y1, x2, y2) fractions of its image (an SSD squashes each image to a
    square, so a box keeps these fractions at any input size)."""
    boxes = [[b[0] / r.width, b[1] / r.height, b[2] / r.width, b[3] / r.height] for r in ds.records for b in r.boxes]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


@functools.lru_cache(maxsize=8)
def _backbone(model: str, options: tuple) -> torch.nn.Module:
    from ..models import build

    return build(model, 2, design=None, pretrained_backbone=False, **dict(options)).backbone.eval()


@functools.lru_cache(maxsize=32)
def _grids(model: str, side: int, options: tuple) -> tuple[tuple[int, int], ...]:
    """The feature-map sizes of ``model``'s SSD at a square input (one forward of an untrained backbone)."""
    with torch.no_grad():
        features = _backbone(model, options)(torch.zeros(1, 3, side, side))
    return tuple(tuple(f.shape[-2:]) for f in features.values())


def best_possible_recall(model: str, side: int, s_min: float, boxes: torch.Tensor, options: tuple = ()) -> float:
    """The share of ``boxes`` (relative, :func:`relative_boxes`) that some anchor of ``model`` at a ``side``-pixel
    input with Eq. 3's ``s_min`` overlaps at IoU >= 0.5.

    Exact without comparing every anchor: on each map, an anchor shape's overlap with a box only shrinks as
    its centre moves away, so the best anchor of each shape is the one in the cell holding the box's centre."""
    from ..models.builders import paper_anchors

    if len(boxes) == 0:
        return 1.0
    gen = paper_anchors(model, s_min)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    best = torch.zeros(len(boxes))
    for (gh, gw), wh in zip(_grids(model, side, options), gen._wh_pairs):
        grid = torch.tensor([gw, gh], dtype=torch.float32)
        cell = ((centre * grid).floor().clamp(min=0).minimum(grid - 1) + 0.5) / grid  # anchor centres (x, y)
        wh = wh.clamp(0, 1) if gen.clip else wh  # as torchvision tiles them
        lo = cell[:, None, :] - wh[None] / 2  # (boxes, shapes, xy)
        hi = cell[:, None, :] + wh[None] / 2
        inter = (hi.minimum(boxes[:, None, 2:]) - lo.maximum(boxes[:, None, :2])).clamp(min=0).prod(-1)
        area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
        iou = inter / (area[:, None] + wh.prod(-1)[None] - inter)
        best = best.maximum(iou.max(1).values)
    return float((best >= IOU).float().mean())


def choose(config: dict, train_set) -> tuple[dict, list[str]]:
    """The config with ``image_size: auto`` and ``anchor_s_min: auto`` replaced by numbers chosen on
    ``train_set``'s boxes, and one line per choice saying why. Other configs come back as they are."""
    from ..models.builders import _architecture
    from .from_config import image_size

    size, s_min = config.get("image_size"), config.get("anchor_s_min")
    if "auto" not in (size, s_min):
        return config, []
    if _architecture(config["model"]).anchors != "ssd":
        raise ValueError(f"image_size / anchor_s_min: auto chooses an SSD's input and anchors; {config['model']} "
                         f"has FPN anchors: give numbers")
    boxes = relative_boxes(train_set)
    options = tuple(sorted((k, v) for k, v in (config.get("model_kwargs") or {}).items()
                           if k in ("backbone", "first_stride")))  # what changes the feature maps

    def best(side: int) -> tuple[float, float]:
        """(s_min, BPR) at a side: the best of S_MINS when auto (ties: the larger), else the given."""
        if s_min != "auto":
            given = 0.2 if s_min is None else float(s_min)
            return given, best_possible_recall(config["model"], side, given, boxes, options)
        scores = [(best_possible_recall(config["model"], side, s, boxes, options), s) for s in S_MINS]
        top = max(b for b, _ in scores)
        return next(s for b, s in scores if b == top), top

    sides = SIZES if size == "auto" else [(image_size(config) or (300, 300))[0]]  # the given side, or the model's
    results = {side: best(side) for side in sides}
    top = max(bpr for _, bpr in results.values())
    side = next(s for s in sorted(results) if results[s][1] >= top - TOLERANCE)
    chosen_s, bpr = results[side]
    rel = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    median = f"median object {float(rel.median()) * 100:.0f} % of the image side" if len(rel) else "no boxes"
    lines, out = [], dict(config)
    if size == "auto":
        others = ", ".join(f"{s}: {results[s][1]:.0%}" for s in sorted(results) if s != side)
        lines.append(f"image_size {side} (auto): anchors reach {bpr:.0%} of the training boxes at IoU 0.5 "
                     f"({others}); {median}")
        out["image_size"] = side
    if s_min == "auto":
        paper = best_possible_recall(config["model"], side, 0.2, boxes, options)
        lines.append(f"anchor_s_min {chosen_s:g} (auto, Eq. 3's smallest anchor scale): reaches {bpr:.0%} of the "
                     f"training boxes at {side} px (the paper's 0.2: {paper:.0%})")
        out["anchor_s_min"] = chosen_s
    return out, lines


def auto_steps(config: dict, images: int) -> tuple[int, str]:
    """``max_steps: auto`` for a training set of ``images``: (steps, why)."""
    batch = int(config["batch_size"])
    steps = max(MIN_STEPS, -(-EPOCHS * images // batch))
    return steps, (f"max_steps {steps} (auto): {EPOCHS} epochs of {images} training images at batch {batch}"
                   + (f", at least {MIN_STEPS}" if steps == MIN_STEPS else ""))


def resolve_auto(config: dict) -> tuple[dict, list[str]]:
    """:func:`choose` and :func:`auto_steps` on the run's training split (its fraction included), opened here;
    configs with nothing ``auto`` come back at once."""
    if "auto" not in (config.get("image_size"), config.get("anchor_s_min"), config.get("max_steps")):
        return config, []
    import warnings

    from .data import fraction_subset, open_config_splits

    with warnings.catch_warnings():  # the reader's warnings are shown when the run opens its data
        warnings.simplefilter("ignore")
        train_set = fraction_subset(open_config_splits(config)[0], float(config["data"].get("fraction", 1.0)),
                                    config["seed"])
    config, lines = choose(config, train_set)
    if config.get("max_steps") == "auto":
        steps, why = auto_steps(config, len(train_set))
        config, lines = {**config, "max_steps": steps}, lines + [why]
    return config, lines
