"""Evaluate a COCO-results predictions file against a dataset (``hierhead eval --predictions``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .data.readers import DetectionDataset
from .data.records import DataError
from .metrics import mean_ap

__all__ = ["mean_ap_of_file", "load_predictions"]


def load_predictions(path: str | Path, ds: DetectionDataset) -> list[dict]:
    """Per-image xyxy predictions from COCO results (``bbox`` = [x, y, w, h] pixels, ``score``).

    ``image_id`` is the dataset's image id (file stem; COCO: its own id); ``category_id`` is
    1 + class index (COCO: the dataset's category id). Unknown ids are an error.
    """
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"predictions {str(path)!r}: cannot be read as JSON ({e})") from None
    if not isinstance(rows, list):
        raise DataError(f"predictions {str(path)!r}: expected a list of COCO results")
    coco = getattr(ds, "coco_ids", None)
    index = {r.image_id: i for i, r in enumerate(ds.records)}
    cats = {c: k + 1 for k, c in enumerate(coco["categories"])} if coco else None
    per = [{"boxes": [], "scores": [], "labels": []} for _ in ds.records]
    seen: dict[tuple, int] = {}
    for n, row in enumerate(rows):
        try:
            img, cat, (x, y, w, h), score = str(row["image_id"]), int(row["category_id"]), row["bbox"], float(row["score"])
            x, y, w, h = float(x), float(y), float(w), float(h)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"predictions {str(path)!r}: entry {n} needs image_id, category_id, bbox [x,y,w,h], score") from None
        if not all(math.isfinite(v) for v in (x, y, w, h, score)):
            raise DataError(f"predictions {str(path)!r}: entry {n} has a non-finite bbox or score "
                            f"({row['bbox']!r}, {row['score']!r})")
        if w < 0 or h < 0:
            raise DataError(f"predictions {str(path)!r}: entry {n} has bbox {row['bbox']!r}: a negative width or height")
        key = (img, cat, x, y, w, h, score)
        if key in seen:  # a file concatenated with itself scores every detection twice
            raise DataError(f"predictions {str(path)!r}: entry {n} repeats entry {seen[key]} exactly (the same "
                            f"image, class, box and score)")
        seen[key] = n
        if img not in index:
            raise DataError(f"predictions {str(path)!r}: entry {n} has image_id {row['image_id']!r}, not in the dataset")
        label = cats.get(cat) if cats else cat
        if label is None or not 1 <= label <= len(ds.classes):
            raise DataError(f"predictions {str(path)!r}: entry {n} has category_id {cat}, not one of the "
                            f"{len(ds.classes)} classes")
        p = per[index[img]]
        p["boxes"].append([x, y, x + w, y + h])
        p["scores"].append(score)
        p["labels"].append(label)
    return [{"boxes": torch.tensor(p["boxes"]).reshape(-1, 4), "scores": torch.tensor(p["scores"]),
             "labels": torch.tensor(p["labels"], dtype=torch.int64)} for p in per]


def mean_ap_of_file(ds: DetectionDataset, predictions: str | Path, metric: str = "voc07",
                    detections: list | None = None) -> dict:
    """VOC07 (11-point), VOC12 (area) or COCO metrics of a predictions file on ``ds``.
    ``detections``: a list that receives the file's detections, one dict per image."""
    preds = load_predictions(predictions, ds)
    if detections is not None:
        detections.extend(preds)
    targets = [ds.target(i) for i in range(len(ds))]
    coco = getattr(ds, "coco_ids", None) if metric == "coco" else None
    ids = [coco["images"][r.image_id] for r in ds.records] if coco else None
    return mean_ap(preds, targets, metric, ds.classes, image_ids=ids, category_ids=coco["categories"] if coco else None)
