"""A seeded synthetic anchor-transfer dataset (not in the paper).

Textured shapes of K classes on noisy backgrounds, drawn at the 3 x 3 anchor shapes (3 sizes x
aspect ratios h/w in {1, 0.5, 2}). In training, class c appears only at some shapes:

- ``mode=ratio``: only at aspect ratio c mod 3 (e.g. class 0 only square, class 1 only wide),
- ``mode=size``: only at size c mod 3,
- ``mode=all``: at every shape (the control);

the test split has every class at every shape. Classes differ by outline and texture, in random
colours (``palette=random``) or, with ``palette=class``, also in a colour pair fixed per class: an
easier recognition task, so that a short from-scratch run learns the classes and the benchmark
measures the transfer across anchors rather than learning speed. The paper's mechanism ("anchors that have seen an
object share with those that have not", III-A) predicts a gain for hierarchical heads in the
first two modes and none in the control.

Spec: ``synthetic:mode=ratio,classes=4,train=300,test=150,size=320,seed=0,palette=random`` (any
subset of keys);
the images are written once to ``$HIERHEAD_CACHE`` (default ``~/.cache/hierhead``) as a VOC folder.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, tostring

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.ops import box_iou

from ..design import PAPER_RATIOS
from .readers import DetectionDataset, read_voc_folder
from .records import DataError

__all__ = ["parse_spec", "generate", "open_synthetic", "shape_of", "unseen_only", "SHAPES", "SIZES", "SPEC_DEFAULTS"]

SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "cross", "ring")
SIZES = (0.16, 0.3, 0.55)  # sqrt(area) / image side
SPEC_DEFAULTS = {"mode": "ratio", "classes": 4, "train": 300, "test": 150, "size": 320, "seed": 0, "palette": "random"}
WORDS = {"mode": ("ratio", "size", "all"), "palette": ("random", "class")}


def parse_spec(text: str) -> dict:
    """``synthetic:key=value,...`` -> settings (unknown keys and bad values are errors)."""
    body = text.split(":", 1)[1] if text.startswith("synthetic:") else text
    spec = dict(SPEC_DEFAULTS)
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key not in SPEC_DEFAULTS:
            raise DataError(f"{text!r}: unknown key {key!r}; known: {', '.join(SPEC_DEFAULTS)}")
        try:
            spec[key] = value if key in WORDS else int(value)
        except ValueError:
            raise DataError(f"{text!r}: {key}={value!r} is not an integer") from None
    for key, words in WORDS.items():
        if spec[key] not in words:
            raise DataError(f"{text!r}: {key}={spec[key]!r}; choose {', '.join(words)}")
    if not 1 <= spec["classes"] <= len(SHAPES) * 2:
        raise DataError(f"{text!r}: classes={spec['classes']} must be 1..{len(SHAPES) * 2}")
    if spec["train"] < 1 or spec["test"] < 1 or spec["size"] < 64:
        raise DataError(f"{text!r}: train and test need >= 1 image and size >= 64")
    return spec


def _allowed(cls: int, mode: str, split: str) -> list[tuple[int, int]]:
    """(size index, ratio index) at which ``cls`` may appear in ``split``."""
    shapes = [(s, r) for s in range(3) for r in range(3)]
    if split == "test" or mode == "all":
        return shapes
    return [(s, r) for s, r in shapes if (r if mode == "ratio" else s) == cls % 3]


def _texture(rng: np.random.Generator, w: int, h: int, cls: int, palette: str) -> np.ndarray:
    """A class texture (stripes for the first six classes, checks for the next) in random colours,
    or in the class's own colour pair (``palette=class``: a bright and a dark shade of a hue fixed per
    class, hues spread by the golden ratio, each channel jittered by +-20)."""
    yy, xx = np.mgrid[0:h, 0:w]
    period = rng.uniform(5, 9)
    pattern = (np.sin((xx + yy) * 2 * np.pi / period) > 0) if cls < len(SHAPES) else \
        (((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 0)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)  # drawn either way: the seeded data stay as generated
    if palette == "class":
        hue = (cls * 0.618034) % 1.0
        fixed = [255 * np.array(colorsys.hsv_to_rgb(hue, 0.9, v)) for v in (0.95, 0.45)]
        a, b = (np.clip(c + rng.integers(-20, 21, 3), 0, 255) for c in fixed)
    return np.where(pattern[..., None], a, b).astype(np.uint8)


def _mask(shape: str, w: int, h: int) -> Image.Image:
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    if shape == "ellipse":
        d.ellipse([0, 0, w - 1, h - 1], fill=255)
    elif shape == "rectangle":
        d.rectangle([0, 0, w - 1, h - 1], fill=255)
    elif shape == "triangle":
        d.polygon([(w / 2, 0), (w - 1, h - 1), (0, h - 1)], fill=255)
    elif shape == "diamond":
        d.polygon([(w / 2, 0), (w - 1, h / 2), (w / 2, h - 1), (0, h / 2)], fill=255)
    elif shape == "cross":
        d.rectangle([w * 0.35, 0, w * 0.65, h - 1], fill=255)
        d.rectangle([0, h * 0.35, w - 1, h * 0.65], fill=255)
    else:  # ring
        d.ellipse([0, 0, w - 1, h - 1], fill=255)
        d.ellipse([w * 0.28, h * 0.28, w * 0.72, h * 0.72], fill=0)
    return m


def _image(rng: np.random.Generator, spec: dict, split: str) -> tuple[Image.Image, list[tuple[int, list[int]]]]:
    n = spec["size"]
    base = rng.integers(60, 200, 3)
    noise = rng.normal(0, 28, (n, n, 3))
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    objects: list[tuple[int, list[int]]] = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, spec["classes"]))
        shapes = _allowed(cls, spec["mode"], split)
        s, r = shapes[int(rng.integers(0, len(shapes)))]
        side = SIZES[s] * n * rng.uniform(0.9, 1.1)
        w, h = side / math.sqrt(PAPER_RATIOS[r]), side * math.sqrt(PAPER_RATIOS[r])
        w, h = int(min(w, n - 2)), int(min(h, n - 2))
        for _try in range(20):
            x, y = int(rng.integers(0, n - w)), int(rng.integers(0, n - h))
            box = [x, y, x + w, y + h]
            if not objects or box_iou(torch.tensor([box], dtype=torch.float64),
                                      torch.tensor([b for _, b in objects], dtype=torch.float64)).max() < 0.1:
                break
        else:
            continue
        img.paste(Image.fromarray(_texture(rng, w, h, cls, spec["palette"])), (x, y), _mask(SHAPES[cls % len(SHAPES)], w, h))
        objects.append((cls, box))
    return img, objects


def _xml(name: str, n: int, objects: list[tuple[int, list[int]]]) -> bytes:
    root = Element("annotation")
    SubElement(root, "filename").text = name
    size = SubElement(root, "size")
    for k, v in (("width", n), ("height", n), ("depth", 3)):
        SubElement(size, k).text = str(v)
    for cls, (x1, y1, x2, y2) in objects:
        o = SubElement(root, "object")
        SubElement(o, "name").text = f"class{cls}"
        SubElement(o, "difficult").text = "0"
        b = SubElement(o, "bndbox")
        for k, v in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            SubElement(b, k).text = str(v)
    return tostring(root)


def generate(spec: dict, root: str | Path) -> Path:
    """Write ``train/`` and ``test/`` VOC folders for ``spec`` under ``root`` (skipped if complete).

    Written aside and renamed into place, so that processes sharing the cache (two sweeps, parallel
    tests) never read a half-written dataset: the first to finish wins, the others discard theirs."""
    root = Path(root)
    if (root / "done").is_file():
        return root
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for split in ("train", "test"):
        folder = tmp / split
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([spec["seed"], 0 if split == "train" else 1])
        for i in range(spec[split]):
            img, objects = _image(rng, spec, split)
            name = f"{split}_{i:05d}"
            img.save(folder / f"{name}.png")
            (folder / f"{name}.xml").write_bytes(_xml(f"{name}.png", spec["size"], objects))
    (tmp / "done").write_text("ok\n")
    if root.is_dir() and not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)  # left by an interrupted older version
    try:
        os.replace(tmp, root)
    except OSError:  # another process put a complete copy there first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "done").is_file():
            raise
    return root


def cache_dir(spec: dict) -> Path:
    key = ",".join(f"{k}={spec[k]}" for k in sorted(spec))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    base = Path(os.environ.get("HIERHEAD_CACHE", Path.home() / ".cache" / "hierhead"))
    return base / "synthetic" / f"{spec['mode']}-{digest}"


def open_synthetic(text: str) -> tuple[DetectionDataset, DetectionDataset]:
    """(train, test) datasets of a ``synthetic:...`` spec, generated on first use."""
    spec = parse_spec(text)
    root = generate(spec, cache_dir(spec))
    classes = [f"class{c}" for c in range(spec["classes"])]
    parts = read_voc_folder(root / "train", classes=classes), read_voc_folder(root / "test", classes=classes)
    for ds in parts:
        ds.format = "voc-folder"
    return parts


def shape_of(box: Sequence[float], image_side: int) -> tuple[int, int]:
    """(size index, ratio index) of a generated box: the nearest of SIZES x PAPER_RATIOS (h / w)."""
    w, h = box[2] - box[0], box[3] - box[1]
    ratio = min(range(3), key=lambda r: abs(math.log((h / w) / PAPER_RATIOS[r])))
    size = min(range(3), key=lambda s: abs(math.sqrt(w * h) / image_side - SIZES[s]))
    return size, ratio


def unseen_only(train: DetectionDataset, test: DetectionDataset) -> DetectionDataset:
    """``test`` with every object whose (class, shape) occurs in ``train`` marked difficult.

    VOC AP ignores difficult objects (a detection of one is neither right nor wrong), so the AP of
    this split measures only the transfer to shapes a class was never trained at: the case where,
    by Section III-A, anchors that have seen a class share with those that have not.
    """
    seen = {(c, shape_of(b, r.width)) for r in train.records for c, b in zip(r.labels, r.boxes)}
    records = [replace(r, difficult=[(c, shape_of(b, r.width)) in seen for c, b in zip(r.labels, r.boxes)])
               for r in test.records]
    return DetectionDataset(records, test.classes, f"{test.name} (unseen shapes)", test.problems, test.transforms)
