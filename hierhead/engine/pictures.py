"""Pictures of a run, drawn with matplotlib as Ultralytics draws its own: training curves
(``results.png``), per-class precision-recall curves (``PR_curve.png``), the confusion matrix with
the background (``confusion_matrix.png``) and a grid of images with their ground truth and
predictions (``val_predictions.jpg``). ``train`` writes them into its run folder, ``eval`` into its
own folder; each returns the numbers it drew, so what a picture shows can be checked against the
printed metrics."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.readers import load_image
from ..metrics import confusion_matrix, voc_map

__all__ = ["plot_results", "plot_pr_curves", "plot_confusion", "plot_predictions", "write_pictures",
           "SCORE_THRESHOLD", "PICTURES"]

#: The score from which a detection is drawn and counted in the confusion matrix (Ultralytics: 0.25).
SCORE_THRESHOLD = 0.25
PICTURES = ("PR_curve.png", "confusion_matrix.png", "val_predictions.jpg")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **({"pil_kwargs": {"quality": 85}} if path.suffix == ".jpg" else {}))  # photos: JPEG
    _pyplot().close(fig)
    return path


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get("step")]
    return [s for s, _ in pts], [v for _, v in pts]


def plot_results(metrics_csv: str | Path, path: str | Path) -> dict:
    """Training curves from Lightning's ``metrics.csv``: the loss and its parts, the learning rate of
    each parameter group and the validation mAP, by step. Returns the series drawn."""
    plt = _pyplot()
    rows = list(csv.DictReader(Path(metrics_csv).open(newline="")))
    keys = sorted({k for r in rows for k in r})
    losses = [k for k in keys if k.startswith("train/") and k not in
              ("train/batches", "train/samples", "train/time") and not k.startswith("train/device")]
    lrs = [k for k in keys if k.startswith("lr-")]
    drawn = {k: _series(rows, k) for k in losses + lrs + ["val/mAP"]}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    for k in losses:
        axes[0].plot(*drawn[k], label=k[len("train/"):], lw=1.2 if k == "train/loss" else 0.9)
    axes[0].set_title("training loss")
    for k in lrs:
        axes[1].plot(*drawn[k], label=k[len("lr-"):])
    axes[1].set_title("learning rate")
    steps, vals = drawn["val/mAP"]
    axes[2].plot(steps, [100 * v for v in vals], "o-", c="tab:green")
    axes[2].set_title("validation mAP (%)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return drawn


def plot_pr_curves(result: dict, path: str | Path, title: str = "") -> dict:
    """Each class's precision-recall curve (IoU > 0.5, the VOC matching) with its AP, from
    :func:`~hierhead.metrics.voc_map` (``curves=True``); ``voc_ap`` of each curve drawn is the AP
    in its label. Returns ``{class: (recall, precision)}``."""
    plt = _pyplot()
    many = len(result["curves"]) > 10  # tab10 repeats its colours past 10 classes: tab20, then dashed lines
    fig, ax = plt.subplots(figsize=(8.4 if many else 6.4, 5.2), dpi=100)
    colours = plt.get_cmap("tab20" if many else "tab10").colors
    for k, (name, (recall, precision)) in enumerate(result["curves"].items()):
        ap = result["AP"][name]
        ax.plot(np.concatenate(([0.0], recall)), np.concatenate(([precision[0] if len(precision) else 0.0],
                                                                 precision)),
                lw=1.2, color=colours[k % len(colours)], ls="-" if k < len(colours) else "--",
                label=f"{name} {ap * 100:.1f}" if ap == ap else f"{name} (no boxes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or f"precision-recall, IoU 0.5: mAP ({result['metric']}) {result['mAP'] * 100:.1f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="class, AP", title_fontsize=7,  # many classes: beside the axes, not over them
              **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if many else {"loc": "lower left"}))
    fig.tight_layout()
    _save(fig, path)
    return result["curves"]


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | Path,
                   score_threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """The confusion matrix of :func:`~hierhead.metrics.confusion_matrix` with its counts written in:
    columns the true class, rows the predicted one, background first."""
    plt = _pyplot()
    names = ["background", *classes]
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * n + 2.5), max(4.2, 0.5 * n + 2.0)), dpi=100)
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if np.log1p(v) > 0.6 * np.log1p(matrix.max()) else "black")
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("true class")
    ax.set_ylabel("predicted class")
    ax.set_title(f"confusion matrix (score >= {score_threshold:g}, IoU > 0.5)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return matrix


def plot_predictions(samples: Sequence[tuple], classes: Sequence[str], path: str | Path,
                     score_threshold: float = SCORE_THRESHOLD) -> int:
    """A grid of images, each with its ground truth (white, dashed) and its detections scoring at least
    ``score_threshold`` (coloured by class, labelled with class and score). ``samples``: (uint8 image
    tensor C x H x W, detections, target). Returns the number of detections drawn."""
    plt = _pyplot()
    colours = plt.get_cmap("tab20").colors
    cols = min(4, len(samples))
    rows = math.ceil(len(samples) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), dpi=100, squeeze=False)
    drawn = 0
    for ax, (image, det, target) in zip(axes.flat, samples):
        h, w = image.shape[-2:]
        ax.imshow(_thumbnail(image), extent=(0, w, h, 0))  # boxes stay in the image's own pixels
        for x1, y1, x2, y2 in np.asarray(target["boxes"], dtype=float).reshape(-1, 4):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", lw=1.2, ls="--"))
        scores = np.asarray(det["scores"], dtype=float)
        for k in np.nonzero(scores >= score_threshold)[0]:
            x1, y1, x2, y2 = np.asarray(det["boxes"][k], dtype=float)
            label = int(det["labels"][k])
            c = colours[(label - 1) % len(colours)]
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=c, lw=1.5))
            name = classes[label - 1] if 1 <= label <= len(classes) else str(label)
            ax.text(x1, y1, f"{name} {scores[k]:.2f}", fontsize=6, color="white", va="bottom",
                    bbox={"facecolor": c, "edgecolor": "none", "pad": 0.5})
            drawn += 1
        name = str(target.get("image_id", ""))
        ax.set_title(name if len(name) <= 32 else name[:29] + "...", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"ground truth (white, dashed) and detections scoring >= {score_threshold:g}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return drawn


def _thumbnail(image, side: int = 400) -> np.ndarray:
    """The image at most ``side`` pixels a side: a grid of 16 full-size photos is megabytes of PNG."""
    from PIL import Image

    thumb = Image.fromarray(image.permute(1, 2, 0).numpy())
    thumb.thumbnail((side, side))
    return np.asarray(thumb)


def write_pictures(out: str | Path, predictions: Sequence[dict], targets: Sequence[dict], dataset,
                   classes: Sequence[str], metric: str = "voc07", images: int = 16) -> dict:
    """The PR curves, the confusion matrix and the prediction grid (the first ``images`` of
    ``dataset``) of detections on ``dataset`` into ``out``. The curves are those of the VOC metric
    (``voc12`` matching for a ``coco`` run: an IoU 0.5 picture of it). Returns what was drawn:
    ``{"curves", "AP", "matrix", "drawn", "paths"}``."""
    out = Path(out)
    result = voc_map(predictions, targets, len(classes) + 1, use_07=metric == "voc07", class_names=classes,
                     curves=True)
    curves = plot_pr_curves(result, out / PICTURES[0])
    matrix = plot_confusion(confusion_matrix(predictions, targets, len(classes) + 1), classes, out / PICTURES[1])
    n = min(images, len(predictions))
    samples = [(load_image(dataset.records[i].image_path), predictions[i], dataset.target(i)) for i in range(n)]
    drawn = plot_predictions(samples, classes, out / PICTURES[2]) if n else 0
    return {"curves": curves, "AP": result["AP"], "mAP": result["mAP"], "matrix": matrix, "drawn": drawn,
            "paths": [str(out / p) for p in PICTURES[: 3 if n else 2]]}
