"""The head protocol (issue 15): only the prediction convs train, on frozen features cached once;
and the frozen-backbone protocol (issue 25): the ImageNet backbone frozen, everything after it trains.

Eq. 2 changes nothing but the final prediction convs. To compare designs with little noise,
the head protocol starts every run from one trained detector (``--init``), freezes the backbone
and every layer before the prediction convs (batch norm in eval mode), re-initialises the
prediction convs from the run's seed (torchvision's own init, drawn by building the stock model
under that seed) and makes them hierarchical with the units at 0: every design starts as the
general head of that seed. Because the frozen part is a fixed function, the backbone features
of a few augmented *views* of every training image are computed once (:func:`cache_views`) and
every run trains from that cache: a run costs seconds instead of minutes.

The loss is the detector's own (``model.compute_loss``: SSD's smooth L1 + cross-entropy with 3:1
hard negative mining), matching uses the detector's own matcher, and evaluation runs the
detector's own ``head`` / ``postprocess_detections`` / ``transform.postprocess`` on cached test
features: the same numbers as ``model(images)``. The loop is a plain loop rather than
Lightning's: a run is a few hundred steps over tensors already in memory, where a Trainer's
start-up, data loaders and callbacks would cost more than the training itself.

The frozen-backbone protocol (``cut="body"``) caches the outputs of the ImageNet body instead (its two
maps, strides 16 and 32) and trains the extra blocks and the whole head, drawn from the run's seed, with
their batch norm in training mode: the paper's setting of a pretrained backbone, with every run starting
from ImageNet rather than from one trained detector. timm-backbone SSDLites only.

SSD-family detectors only (``ssd300_vgg16``, ``ssd512_vgg16``, ``ssdlite320_*``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

from ..data.readers import DetectionDataset
from ..metrics import mean_ap
from ..design import GENERAL
from ..models import ModelSpec, build_from_spec, hierarchize, prediction_convs
from ..models.builders import backbone_body
from . import freezing
from .data import SeededSamples, eval_transforms, train_transforms, transform_augment
from .optim import lr_scheduler, make_optimizer, prior_penalty

__all__ = ["FeatureCache", "cache_views", "cache_test", "stored", "LiveViews", "head_model", "backbone_model",
           "head_outputs", "outputs_from", "train_head", "detect_cached", "mean_ap_of_head", "pool_of", "HeadProtocol",
           "CUTS"]

#: Where the cache cuts the detector: ``head`` (inputs of the prediction convs; only they train) or
#: ``body`` (outputs of the ImageNet body; the extra blocks and the whole head train).
CUTS = ("head", "body")
#: the config section each cut trains with: the head protocol's ``head``, the frozen-backbone protocol's ``frozen``
SECTIONS = {"head": "head", "body": "frozen"}


def _check(model: nn.Module, cut: str = "head") -> None:
    if cut not in CUTS:
        raise ValueError(f"cut={cut!r}: choose {' or '.join(CUTS)}")
    if not isinstance(model, SSD):
        raise ValueError(f"the head protocol supports SSD-family detectors, not {type(model).__name__}")
    if cut == "body" and not hasattr(model.backbone, "extend"):
        raise ValueError("the frozen-backbone protocol needs a timm-backbone SSDLite (ssdlite320_efficientnet_lite0, "
                         f"ssdlite_timm), not {model.hierhead_spec.model if hasattr(model, 'hierhead_spec') else '?'}")


@dataclass
class FeatureCache:
    """Inputs of the prediction convs and matched targets of images seen through the frozen detector.

    ``features[c][n]`` is the input of prediction conv c (:func:`head_convs` order) for view n;
    ``targets[n]`` its boxes and labels in the model's input frame; ``matched[n]`` the ground-truth index matched to each anchor
    (training views); ``image[n]`` the dataset index the view was drawn from. With ``cut="body"``,
    ``features`` are the body's output maps instead (the frozen-backbone protocol).
    """

    features: list[torch.Tensor]
    targets: list[dict]
    anchors: torch.Tensor
    image: list[int]
    matched: list[torch.Tensor] = field(default_factory=list)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    original_sizes: list[tuple[int, int]] = field(default_factory=list)
    cut: str = "head"

    def __len__(self) -> int:
        return len(self.image)

    @property
    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.features)

    def batch(self, ids: list[int]):
        """(features per level, targets, anchors, matched) of the views ``ids``."""
        index = torch.as_tensor(ids)
        return ([f[index] for f in self.features], [self.targets[i] for i in ids],
                [self.anchors] * len(ids), [self.matched[i] for i in ids])


@torch.no_grad()
def _encode(model: SSD, images: list[torch.Tensor], targets: list[dict] | None, cut: str = "head"):
    """The frozen part of ``model`` on a batch: (inputs of the prediction convs or, ``cut="body"``, the
    body's output maps; transformed images, targets, anchors, matched)."""
    images_t, targets_t = model.transform(images, targets)
    if cut == "body":
        inputs = list(model.backbone.body(images_t.tensors))
        features = list(model.backbone.extend(inputs).values())
    else:
        features = list(model.backbone(images_t.tensors).values())
        captured: dict[int, torch.Tensor] = {}
        hooks = [conv.register_forward_pre_hook(lambda _, args, n=n: captured.__setitem__(n, args[0]))
                 for n, (conv, *_) in enumerate(prediction_convs(model))]
        try:
            model.head(features)
        finally:
            for h in hooks:
                h.remove()
        inputs = [captured[n] for n in range(len(captured))]
    anchors = model.anchor_generator(images_t, features)
    matched = []
    for a, t in zip(anchors, targets_t or []):
        if t["boxes"].numel() == 0:
            matched.append(torch.full((a.size(0),), -1, dtype=torch.int64))
        else:
            matched.append(model.proposal_matcher(box_iou(t["boxes"], a)))
    return inputs, images_t, targets_t, anchors, matched


def head_outputs(model: nn.Module, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """SSD's ``head(features)`` from the inputs of its final convs (``inputs[n]`` feeds conv n of
    :func:`head_convs`): each conv's (N, A*K, H, W) output laid out as (N, HWA, K) and concatenated
    over levels, as torchvision's ``SSDScoringHead`` does."""
    parts: dict[str, list[torch.Tensor]] = {"cls": [], "box": []}
    for (conv, _, _, role), x in zip(prediction_convs(model), inputs):
        y = conv(x)
        k = model.head.classification_head.num_columns if role == "cls" else 4
        n, _, h, w = y.shape
        parts[role].append(y.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k))
    return {"bbox_regression": torch.cat(parts["box"], 1), "cls_logits": torch.cat(parts["cls"], 1)}


def outputs_from(model: nn.Module, inputs: list[torch.Tensor], cut: str = "head") -> dict[str, torch.Tensor]:
    """SSD's head outputs from cached ``inputs`` cut at ``cut``: :func:`head_outputs`, or (``body``)
    the extra blocks and the whole head on the body's maps."""
    if cut == "body":
        return model.head(list(model.backbone.extend(inputs).values()))
    return head_outputs(model, inputs)


def _views(dataset: DetectionDataset, views: int, image_size, augment: dict, seed: int) -> tuple[SeededSamples, list]:
    samples = SeededSamples(dataset, train_transforms(image_size, **transform_augment(augment)), seed)
    return samples, [(i, v) for v in range(views) for i in range(len(dataset))]


def _bar(batches: range, what: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(batches, desc=what, disable=not progress, leave=False)


def _plain(target: dict) -> dict:
    return {"boxes": target["boxes"].as_subclass(torch.Tensor).float(), "labels": target["labels"]}


def _stack(chunks: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per conv input, all views in one channels-last tensor: a 1x1 conv's forward + backward (672 -> 63
    channels, 32 views of 20 x 20) runs 2.3x faster on 2 CPU cores than on NCHW."""
    return [torch.cat([c[n] for c in chunks]).contiguous(memory_format=torch.channels_last)
            for n in range(len(chunks[0]))]


@torch.no_grad()
def cache_views(model: nn.Module, dataset: DetectionDataset, views: int, image_size, augment: dict | None = None,
                seed: int = 0, batch_size: int = 16, cut: str = "head", progress: bool = False) -> FeatureCache:
    """Features of ``views`` augmented views of every image (view v of image i seeded by (seed, v, i)).

    Args:
        model: the start detector (its frozen part is what is cached).
        dataset: the whole training split (runs draw their subsets from it).
        views: augmented views per image (the recipe's augmentation, as in training).
        image_size: the training resize (the model's input size).
        augment: the recipe's ``augment`` section.
        seed: the views' seed (one cache serves every run).
        cut: where the frozen part ends (:data:`CUTS`).
        progress: a progress bar over the views.
    """
    _check(model, cut)
    model.eval()
    samples, keys = _views(dataset, views, image_size, augment or {}, seed)
    feats: list[list[torch.Tensor]] = []
    targets, matched, image = [], [], []
    anchors = None
    for start in _bar(range(0, len(keys), batch_size), "caching the training views", progress):
        chunk = [samples[k] for k in keys[start:start + batch_size]]
        f, _, t, a, m = _encode(model, [c[0] for c in chunk], [_plain(c[1]) for c in chunk], cut)
        feats.append(f)
        targets += t
        matched += m
        anchors = a[0]
        image += [k[0] for k in keys[start:start + batch_size]]
    return FeatureCache(_stack(feats), targets, anchors, image, matched, cut=cut)


@torch.no_grad()
def cache_test(model: nn.Module, dataset: DetectionDataset, batch_size: int = 16, cut: str = "head",
               progress: bool = False) -> FeatureCache:
    """Features of the evaluation images as ``model(images)`` sees them (no augmentation)."""
    _check(model, cut)
    model.eval()
    samples = SeededSamples(dataset, eval_transforms(), 0)
    feats, sizes, originals = [], [], []
    anchors = None
    for start in _bar(range(0, len(dataset), batch_size), "caching the test images", progress):
        images = [samples[i][0] for i in range(start, min(len(dataset), start + batch_size))]
        originals += [tuple(im.shape[-2:]) for im in images]
        f, images_t, _, a, _ = _encode(model, [im.as_subclass(torch.Tensor) for im in images], None, cut)
        feats.append(f)
        sizes += images_t.image_sizes
        anchors = a[0]
    targets = [dataset.target(i) for i in range(len(dataset))]
    return FeatureCache(_stack(feats), targets, anchors, list(range(len(dataset))), image_sizes=sizes,
                        original_sizes=originals, cut=cut)


def stored(key: dict, make) -> FeatureCache:
    """``make()``, kept in ``$HIERHEAD_CACHE/head/`` (default ``~/.cache/hierhead``) under a hash of
    ``key`` and read back by later sweeps of the same start, data and views (an unreadable file is
    remade). ``key`` must name everything the cache depends on, the start file's size and mtime too."""
    base = Path(os.environ.get("HIERHEAD_CACHE", Path.home() / ".cache" / "hierhead")) / "head"
    path = base / (hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20] + ".pt")
    if path.is_file():
        try:
            return FeatureCache(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # truncated or from another version: make it again
            pass
    cache = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save({f.name: getattr(cache, f.name) for f in fields(cache)}, tmp)
    os.replace(tmp, path)
    return cache


class LiveViews:
    """The same views as :func:`cache_views`, encoded through the frozen model at every step (no cache).

    What the cache replaces; kept to check that a cached run equals an uncached one.
    """

    def __init__(self, model: nn.Module, dataset: DetectionDataset, views: int, image_size,
                 augment: dict | None = None, seed: int = 0) -> None:
        _check(model)
        self.model = model
        self.samples, self.keys = _views(dataset, views, image_size, augment or {}, seed)
        self.image = [k[0] for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def batch(self, ids: list[int]):
        chunk = [self.samples[self.keys[i]] for i in ids]
        f, _, t, a, m = _encode(self.model, [c[0] for c in chunk], [_plain(c[1]) for c in chunk])
        return f, t, a, m


def head_model(start: nn.Module, design: str, seed: int, soft: bool = False) -> nn.Module:
    """A copy of ``start`` whose prediction convs are re-drawn from ``seed`` and made ``design``.

    The re-drawn convs are those of the stock model built under ``torch.manual_seed(seed)``
    (torchvision's init for that detector), so every design of one seed starts as the same
    general head; the units start at 0. Everything else is ``start``'s, frozen.
    """
    _check(start)
    spec = start.hierhead_spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_from_spec(spec.replace(design=GENERAL, soft=False))
    model = copy.deepcopy(start)
    for (conv, *_), (new, *_) in zip(prediction_convs(model), prediction_convs(fresh)):
        conv.load_state_dict(new.state_dict())
    hierarchize(model, design, soft=soft)
    model.hierhead_spec = spec.replace(design=design, soft=soft)
    freezing.train_only_prediction_convs(model)
    return model.eval()


def backbone_model(start: nn.Module, design: str, seed: int, soft: bool = False) -> nn.Module:
    """The frozen-backbone protocol's detector: ``start``'s ImageNet body (frozen), everything else drawn
    from ``seed`` and made ``design``.

    The stock model is built under ``torch.manual_seed(seed)`` with the general head (the body's random
    draw comes first, so the extra blocks and head are the same draw for every design of one seed), the
    body's weights are copied from ``start`` and the head is made hierarchical with the units at 0.
    """
    _check(start, "body")
    spec = start.hierhead_spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_from_spec(spec.replace(design=GENERAL, soft=False), pretrained_backbone=True)
    backbone_body(model).load_state_dict(backbone_body(start).state_dict())
    hierarchize(model, design, soft=soft)
    model.hierhead_spec = spec.replace(design=design, soft=soft)
    freezing.freeze_body(model)
    return model.eval()


def train_head(model: nn.Module, source, pool: list[int], steps: int, batch_size: int, optimizer: dict,
               schedule: dict | None = None, seed: int = 0) -> dict:
    """Train ``model``'s trainable parameters (its prediction convs) on the views ``pool`` of ``source``.

    Args:
        model: from :func:`head_model` (eval mode: frozen batch norm) or :func:`backbone_model` (a
            ``cut="body"`` source: the model trains in training mode, then is left in eval mode).
        source: a :class:`FeatureCache` or :class:`LiveViews`.
        pool: the view indices this run trains on (its subset's views).
        steps: optimiser steps; batches are drawn without replacement from a (seed, epoch)-seeded
            permutation of ``pool`` (the last incomplete batch of an epoch is dropped).
        batch_size: views per step (capped at the pool's size).
        optimizer: the recipe's ``optimizer`` section (:func:`~hierhead.engine.optim.make_optimizer`;
            its ``anchor_l2`` / ``unit_l2`` add :func:`~hierhead.engine.optim.prior_penalty` to the loss).
        schedule: the ``schedule`` section (:func:`~hierhead.engine.optim.lr_scheduler`).
        seed: draws the batch order.

    Returns ``{"steps", "loss", "loss_before", "seconds", "losses"}``: the mean training loss over
    the last 10 % of the steps and over the 10 % before them (how far from converged the run
    ended), and every step's loss.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: needs at least 1")
    batch_size = min(batch_size, len(pool))
    opt = make_optimizer(model, optimizer)
    sched = lr_scheduler(opt, total_steps=steps, **(schedule or {}))
    generator = torch.Generator().manual_seed(1_000_003 * seed + 17)
    order: list[int] = []
    losses: list[float] = []
    cut = getattr(source, "cut", "head")
    model.train(cut == "body")  # what trains from its seed's draw learns its batch statistics
    t0 = time.perf_counter()
    for step in range(steps):
        if len(order) < batch_size:
            order = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
        ids, order = order[:batch_size], order[batch_size:]
        features, targets, anchors, matched = source.batch(ids)
        parts = model.compute_loss(targets, outputs_from(model, features, cut), anchors, matched)
        loss = sum(parts.values()) + prior_penalty(model, optimizer)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"head protocol, step {step}: loss is {loss.item()}; lower the lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    tail = max(1, steps // 10)
    before = losses[-2 * tail:-tail] or losses[:tail]
    return {"steps": steps, "loss": sum(losses[-tail:]) / tail, "loss_before": sum(before) / len(before),
            "seconds": round(time.perf_counter() - t0, 2), "losses": losses}


@torch.no_grad()
def detect_cached(model: nn.Module, cache: FeatureCache, batch_size: int = 16) -> list[dict]:
    """``model(images)`` of the cached evaluation images, from their features."""
    out = []
    for start in range(0, len(cache), batch_size):
        ids = list(range(start, min(len(cache), start + batch_size)))
        features = [f[torch.as_tensor(ids)] for f in cache.features]
        sizes = [cache.image_sizes[i] for i in ids]
        dets = model.postprocess_detections(outputs_from(model, features, cache.cut), [cache.anchors] * len(ids), sizes)
        out += model.transform.postprocess(dets, sizes, [cache.original_sizes[i] for i in ids])
    return out


def mean_ap_of_head(model: nn.Module, cache: FeatureCache, metric: str, classes: list[str]) -> dict:
    """The metric of ``model`` on the cached evaluation images (see :func:`cache_test`)."""
    return mean_ap(detect_cached(model, cache), cache.targets, metric, classes)


def pool_of(cache, images: list[int]) -> list[int]:
    """The view indices of the dataset images ``images``."""
    keep = set(images)
    return [n for n, i in enumerate(cache.image) if i in keep]


class HeadProtocol:
    """The head-protocol runs of one sweep: the start and both feature caches are made (or read) once.

    Args:
        config: the sweep's resolved config (``init``, ``data``, ``augment``, and the settings: ``head`` for the
            head protocol, ``frozen`` for the frozen-backbone one).
        log: where the one-line cache report goes.
        cut: ``head`` (the head protocol: the start is ``config["init"]``) or ``body`` (the frozen-backbone
            protocol: the start is the config's detector with its ImageNet backbone weights, no ``init``).
        progress: progress bars while the caches are made.
    """

    def __init__(self, config: dict, log=None, cut: str = "head", progress: bool = False) -> None:
        from ..models import build
        from .checkpoint import load_start_model
        from .data import open_config_splits
        from .from_config import backbone_weights, config_spec, image_size

        if cut not in CUTS:
            raise ValueError(f"cut={cut!r}: choose {' or '.join(CUTS)}")
        self.cut, self.section = cut, SECTIONS[cut]
        self.train, test = open_config_splits(config)
        if cut == "head":
            spec = ModelSpec(model=config["model"], num_classes=len(self.train.classes) + 1, classes=self.train.classes)
            self.start = load_start_model(config["init"], spec)
            self.start.hierhead_spec = self.start.hierhead_spec.replace(classes=self.train.classes)
            source = Path(config["init"]).resolve()
        else:
            weights = backbone_weights(config)
            if weights is None:
                raise ValueError(f"the frozen-backbone protocol needs ImageNet weights for {config['model']!r}'s "
                                 "backbone (shipped for ssdlite320_efficientnet_lite0, or --backbone-weights FILE)")
            spec = config_spec({**config, "design": GENERAL, "soft": False}, self.train.classes)
            self.start = build(spec.model, spec.num_classes, backbone_weights=weights, **spec.options)
            self.start.hierhead_spec = self.start.hierhead_spec.replace(classes=spec.classes, image_size=spec.image_size)
            _check(self.start, cut)
            source = Path(weights).resolve()
        t0 = time.perf_counter()
        h = config[self.section]
        key = {"init": str(source), "stamp": [source.stat().st_size, source.stat().st_mtime_ns],
               "data": config["data"], "model": config["model"], "size": image_size(config),
               **({"cut": cut, "options": self.start.hierhead_spec.options} if cut != "head" else {})}
        self.views = stored({**key, "views": int(h["views"]), "augment": config["augment"]},
                            lambda: cache_views(self.start, self.train, int(h["views"]), image_size(config),
                                                config["augment"], cut=cut, progress=progress))
        self.test = stored({**key, "test": True}, lambda: cache_test(self.start, test, cut=cut, progress=progress))
        name = "head protocol" if cut == "head" else "frozen-backbone protocol"
        (log or (lambda _: None))(f"{name}: {len(self.views)} views of {len(self.train)} training images and {len(test)} test "
            f"images ready in {time.perf_counter() - t0:.0f} s ({(self.views.nbytes + self.test.nbytes) / 2**30:.2f} "
            "GiB in memory)")

    def run(self, run: dict, metric: str | None = None) -> dict:
        """Train and score one (design, seed, fraction) of ``run`` (a resolved config): the sweep's row."""
        from .data import fraction_indices

        h, seed = run[self.section], int(run["seed"])
        images = fraction_indices(len(self.train), float(run["data"]["fraction"]), seed)
        make = head_model if self.cut == "head" else backbone_model
        model = make(self.start, run["design"], seed, soft=bool(run.get("soft")))
        r = train_head(model, self.views, pool_of(self.views, images), int(h["steps"]), int(h["batch_size"]),
                       h["optimizer"], h["schedule"], seed)
        detections = detect_cached(model, self.test)
        scores = mean_ap(detections, self.test.targets, metric or run["metric"], self.train.classes)
        self.model, self.detections, self.scores = model, detections, scores  # the last run's, for reports
        return {"train_images": len(images), "steps": r["steps"], "metric": scores["metric"],
                "mAP": scores.get("mAP", scores.get("AP")), "train_seconds": r["seconds"],
                "loss": round(r["loss"], 4), "loss_before": round(r["loss_before"], 4)}
