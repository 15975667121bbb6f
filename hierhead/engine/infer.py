"""Inference with a trained model: evaluate on a dataset, predict on images (PNGs + COCO results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes

from ..data.readers import IMAGE_BOMBS, IMAGE_EXTS, DetectionDataset, load_image
from ..data.records import DataError
from ..metrics import mean_ap

__all__ = ["run_model", "mean_ap_of_model", "image_paths", "predict", "coco_results", "draw_detections", "drawn_boxes"]


@torch.inference_mode()
def run_model(model: nn.Module, images: Iterable[torch.Tensor], batch_size: int = 4) -> list[dict]:
    """Detections (CPU tensors) for uint8 or float images, in batches."""
    model.eval()
    device = next(model.parameters()).device
    out, batch = [], []

    def flush() -> None:
        out.extend({k: v.cpu() for k, v in d.items()} for d in model(batch))
        batch.clear()

    for image in images:  # streamed: only one batch of decoded images in memory
        batch.append(TF.to_dtype(torch.as_tensor(image), torch.float32, scale=True).to(device))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return out


def mean_ap_of_model(model: nn.Module, ds: DetectionDataset, metric: str = "voc07", batch_size: int = 4,
                     detections: list | None = None) -> dict:
    """VOC07 / VOC12 / COCO metric of ``model`` on ``ds`` (boxes in the images' own pixels).
    ``detections``: a list that receives the model's detections, one dict per image."""
    if len(ds) == 0:
        raise DataError(f"{ds.name}: the dataset is empty")
    preds = run_model(model, (ds[i][0] for i in range(len(ds))), batch_size)  # the reader's decode errors
    if detections is not None:
        detections.extend(preds)
    return mean_ap(preds, [ds.target(i) for i in range(len(ds))], metric, ds.classes)


def image_paths(inputs: Sequence[str | Path], ignored: list[Path] | None = None) -> list[Path]:
    """Image files from files and folders (folders: their images, sorted; not their subfolders).
    ``ignored`` receives what a folder held that is not read: subfolders and files that are not images."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            entries = sorted(p.iterdir())
            paths += [q for q in entries if q.suffix.lower() in IMAGE_EXTS and q.is_file()]
            if ignored is not None:
                ignored += [q for q in entries if not (q.suffix.lower() in IMAGE_EXTS and q.is_file())]
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{str(p)!r}: no such image or folder")
    if not paths:
        folders = sorted(q.name for item in inputs if Path(item).is_dir() for q in Path(item).iterdir() if q.is_dir())
        raise DataError(f"no images found in {', '.join(map(str, inputs))}" + (
            f" (it holds folders {', '.join(folders[:5])}: give the one with the images)" if folders else ""))
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems and stems[p.stem] != p:
            raise DataError(f"{str(p)!r} and {str(stems[p.stem])!r} have the same name: outputs would collide")
        stems[p.stem] = p
    return list(dict.fromkeys(paths))


def drawn_boxes(scores: torch.Tensor, score_thresh: float, max_boxes: int | None = None) -> torch.Tensor:
    """Indices of the boxes to draw: score >= ``score_thresh``, best first, at most ``max_boxes``."""
    keep = (scores >= score_thresh).nonzero().flatten()
    return keep[scores[keep].argsort(descending=True)][:max_boxes]


def predict(model: nn.Module, inputs: Sequence[str | Path], out: str | Path, classes: Sequence[str],
            score_thresh: float = 0.3, batch_size: int = 4, max_boxes: int | None = None,
            skip_bad: bool = False) -> dict:
    """Annotated PNGs (class name and score per box above ``score_thresh``, at most the ``max_boxes``
    best) and ``detections.json`` (COCO results: image_id = file stem, category_id = 1 + class
    index, every detection). An image that cannot be decoded is an error naming it, or with
    ``skip_bad`` a counted skip (``skipped``).

    Returns:
        ``{"images", "detections", "boxes_drawn", "top_score", "skipped", "ignored", "out"}`` (``ignored``:
        the subfolders and files that are not images in the folders given, not read).
    """
    if max_boxes is not None and max_boxes < 1:
        raise ValueError(f"max_boxes={max_boxes}: must be >= 1")
    out = Path(out)
    ignored: list[Path] = []
    paths = image_paths(inputs, ignored)
    _check_outputs(paths, out)
    out.mkdir(parents=True, exist_ok=True)
    results, drawn, boxes, top, skipped = [], 0, 0, None, []
    for i in range(0, len(paths), batch_size):
        chunk, images = [], []
        for path in paths[i:i + batch_size]:
            try:
                images.append(load_image(path))
                chunk.append(path)
            except (OSError, ValueError, *IMAGE_BOMBS) as e:
                if not skip_bad:
                    raise DataError(f"image {str(path)!r} cannot be decoded ({e}); --skip-bad skips it") from None
                skipped.append(str(path))
        for path, image, det in zip(chunk, images, run_model(model, images, batch_size) if images else []):
            results += coco_results(det, path.stem)
            boxes += len(drawn_boxes(det["scores"], score_thresh, max_boxes))
            if len(det["scores"]):
                top = max(top or 0.0, float(det["scores"].max()))
            draw_detections(image, det, classes, score_thresh, max_boxes).save(out / f"{path.stem}.png")
            drawn += 1
    (out / "detections.json").write_text(json.dumps(results))
    return {"images": drawn, "detections": len(results), "boxes_drawn": boxes, "top_score": top,
            "skipped": skipped, "ignored": [str(p) for p in ignored], "out": str(out)}


def coco_results(det: dict, image_id: str) -> list[dict]:
    """One image's detections as COCO results rows (``bbox`` = [x, y, w, h] pixels, ``category_id`` =
    the model's label: 1 + class index). Values are written as the model gave them, unrounded:
    scores rounded to 5 decimals tied detections whose order decides the VOC AP's tail (``eval
    --predictions`` of the file scored 52.16 where ``eval --checkpoint`` scored 50.34)."""
    rows = []
    for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
        rows.append({"image_id": image_id, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "score": float(score)})
    return rows


def draw_detections(image: torch.Tensor, det: dict, classes: Sequence[str], score_thresh: float,
                    max_boxes: int | None = None):
    """A PIL image of ``image``, at its own size, with its boxes above ``score_thresh`` (the ``max_boxes``
    best), each labelled with class name and score in a font scaled to the image (10 px at the least)."""
    keep = drawn_boxes(det["scores"], score_thresh, max_boxes)
    names = [f"{_name(classes, int(label))} {s:.2f}" for label, s in zip(det["labels"][keep], det["scores"][keep])]
    side = max(image.shape[1:])
    width = max(1, round(side / 300))
    canvas = draw_bounding_boxes(image, det["boxes"][keep], labels=names, colors="red", width=width,
                                 font=_font(), font_size=max(10, round(side / 40))) if len(names) else image
    return TF.to_pil_image(canvas)


def _check_outputs(paths: Sequence[Path], out: Path) -> None:
    """Refuse, before writing anything, outputs that would replace an input or each other."""
    inputs = {p.resolve() for p in paths}
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise ValueError(f"{str(stems[p.stem])!r} and {str(p)!r} would both be drawn to {p.stem}.png in "
                             f"{str(out)!r}: rename one or predict them separately")
        stems[p.stem] = p
    for target in [out / f"{stem}.png" for stem in stems] + [out / "detections.json"]:
        if target.resolve() in inputs:
            raise ValueError(f"--out {str(out)!r}: writing {target.name} would overwrite the input image "
                             f"{str(target)!r}; choose another output folder")


def _font() -> str | None:
    """A TrueType font for the labels: matplotlib's DejaVu Sans (PIL's default font cannot scale)."""
    try:
        from matplotlib import font_manager
        return font_manager.findfont("DejaVu Sans", fallback_to_default=True)
    except Exception:
        return None


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label - 1] if 1 <= label <= len(classes) else str(label)
