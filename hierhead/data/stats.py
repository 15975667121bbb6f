"""Dataset statistics in the form of the paper's Table II, and a box-shape plot with anchors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .readers import DetectionDataset

__all__ = ["table_two", "format_stats", "plot_shapes", "resized_boxes"]


def resized_boxes(ds: DetectionDataset, image_size: int | None) -> np.ndarray:
    """(N, 3) array of width, height and class index of every box after resizing each image to
    ``image_size`` x ``image_size`` (the paper's resize; ``None`` keeps the original size)."""
    rows = []
    for r in ds.records:
        sx = image_size / r.width if image_size else 1.0
        sy = image_size / r.height if image_size else 1.0
        for (x1, y1, x2, y2), lab in zip(r.boxes, r.labels):
            rows.append(((x2 - x1) * sx, (y2 - y1) * sy, lab))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def table_two(ds: DetectionDataset, image_size: int | None = 300) -> dict:
    """Images, classes, objects, objects per image; vertical / square / horizontal (aspect ratio h/w, as
    everywhere in hierhead: > 4/3, 2/3-4/3, < 2/3, i.e. Table II's w/h < 0.75, 0.75-1.5, > 1.5) and
    small / medium / large (area < 32^2, 32^2-96^2, > 96^2) after resizing."""
    wh = resized_boxes(ds, image_size)
    w, h = wh[:, 0], wh[:, 1]  # the buckets compared without dividing, so a box on a bound is where Table II puts it
    area = wh[:, 0] * wh[:, 1]
    per_class = Counter(int(c) for c in wh[:, 2])
    n_img = len(ds)
    return {
        "images": n_img,
        "background_images": sum(1 for r in ds.records if not r.boxes),
        "classes": ds.classes,
        "num_classes": len(ds.classes),
        "objects": int(len(wh)),
        "objects_per_image": float(len(wh) / n_img) if n_img else 0.0,
        "image_size": image_size,
        "vertical": int((w < 0.75 * h).sum()),  # h/w > 4/3: taller than wide
        "square": int(((w >= 0.75 * h) & (w <= 1.5 * h)).sum()),
        "horizontal": int((w > 1.5 * h).sum()),  # h/w < 2/3: wider than tall
        "small": int((area < 32**2).sum()),
        "medium": int(((area >= 32**2) & (area <= 96**2)).sum()),
        "large": int((area > 96**2).sum()),
        "per_class": {name: per_class.get(i, 0) for i, name in enumerate(ds.classes)},
        "skipped": ds.skipped,
    }


def format_stats(s: dict) -> str:
    size = f"after resizing to {s['image_size']}x{s['image_size']}" if s["image_size"] else "at original size"
    lines = [
        f"{'# Imgs':>7s} {'# Cls':>6s} {'# Objs':>7s} {'Obj/img':>8s} | {'Vertical':>8s} {'Square':>7s} "
        f"{'Horizontal':>10s} | {'Small':>6s} {'Medium':>7s} {'Large':>6s}",
        f"{s['images']:7d} {s['num_classes']:6d} {s['objects']:7d} {s['objects_per_image']:8.2f} | "
        f"{s['vertical']:8d} {s['square']:7d} {s['horizontal']:10d} | {s['small']:6d} {s['medium']:7d} {s['large']:6d}",
        f"(aspect ratio h/w: vertical > 4/3 >= square >= 2/3 > horizontal; size {size}: "
        f"small < 32^2 <= medium <= 96^2 < large)",
        "",
        "per class:",
    ]
    lines += [f"  {name:24s} {n:6d}" for name, n in s["per_class"].items()]
    if s["background_images"]:
        lines.append(f"background images (no objects): {s['background_images']}")
    if s["skipped"]:
        lines.append("skipped: " + ", ".join(f"{n} {k}" for k, n in s["skipped"].items()))
    return "\n".join(lines)


def plot_shapes(ds: DetectionDataset, path: str | Path, image_size: int | None = 300,
                anchors: list[list[tuple[float, float]]] | None = None, title: str = "") -> Path:
    """Scatter of box width/height on log axes, with anchor (w, h) shapes overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wh = resized_boxes(ds, image_size)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    for i, name in enumerate(ds.classes):
        sel = wh[:, 2] == i
        if sel.any():
            ax.scatter(wh[sel, 0], wh[sel, 1], s=10, alpha=0.6, label=f"{name} ({int(sel.sum())})")
    if anchors:
        pts = np.asarray([p for level in anchors for p in level])
        ax.scatter(pts[:, 0], pts[:, 1], marker="x", s=40, c="black", label=f"anchors ({len(pts)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("box width (px)" + (f", image resized to {image_size}" if image_size else ""))
    ax.set_ylabel("box height (px)")
    lo = max(1.0, float(min(wh[:, :2].min(initial=8), 8)))
    hi = float(max(wh[:, :2].max(initial=image_size or 512), image_size or 0)) * 1.2
    ax.plot([lo, hi], [lo, hi], ":", c="grey", lw=0.8)
    ax.set_title(title or f"{Path(ds.name).name}: box shapes")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # as every other output: its folder is made
    fig.savefig(path)
    plt.close(fig)
    return path
