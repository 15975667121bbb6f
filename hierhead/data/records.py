"""Annotation records, box checks and safe paths shared by every reader.

Box rules (applied to every format, in absolute xyxy pixels of the image as displayed):

- non-finite coordinates, x2 <= x1 or y2 <= y1: *rejected* ("degenerate");
- a box reaching outside the image by at most ``CLIP_TOLERANCE`` of the image side (and
  still overlapping it): *clipped* to the image;
- a box further outside, or not overlapping the image: *rejected* ("outside the image").

A rejected box raises :class:`DataError` naming the file, or with ``skip_bad=True`` is dropped
and counted in :attr:`Problems.counts`. An image without objects is kept (background image).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DataError", "Record", "Problems", "CLIP_TOLERANCE", "FORMAT_NAMES", "check_box", "inside_root"]

#: Fraction of the image side a box may reach beyond the border and still be clipped.
CLIP_TOLERANCE = 0.1
FORMAT_NAMES = ("voc-folder", "voc", "coco", "flickrlogos47", "yolo")  # readers: sources.FORMATS


class DataError(ValueError):
    """A bad file or annotation; the message names the file and the problem."""


@dataclass
class Record:
    """One image and its objects: boxes in absolute xyxy of the displayed (EXIF-oriented) image."""

    image_path: Path
    image_id: str
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # index into the dataset's class list
    difficult: list[bool] = field(default_factory=list)
    orientation: int = 1  # EXIF orientation of the stored image
    areas: list[float] | None = None  # COCO's annotation ``area`` (segment pixels), for APs / APm / APl


class Problems:
    """Raise on bad input, or with ``skip_bad`` count and warn once per kind."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def report(self, kind: str, message: str) -> None:
        if not self.skip_bad:  # every refusal says how to go on without the file or box
            raise DataError(f"{message}; --skip-bad skips and counts such {kind}")
        self.counts[kind] += 1
        self.examples.setdefault(kind, message)

    def summary(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))

    def warn(self, dataset: str) -> None:
        if self.counts:
            warnings.warn(f"{dataset}: skipped {self.summary()} (first: "
                          + "; ".join(self.examples[k] for k in sorted(self.counts)) + ")", stacklevel=3)


def check_box(box: list[float], width: int, height: int, where: str, problems: Problems) -> list[float] | None:
    """Apply the box rules above; returns the (clipped) box or None when rejected and skipped."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        problems.report("bad boxes", f"{where}: box {box} has a non-finite coordinate (rejected)")
        return None
    if x2 <= x1 or y2 <= y1:
        problems.report("bad boxes", f"{where}: box {box} has x2 <= x1 or y2 <= y1 (rejected)")
        return None
    tx, ty = CLIP_TOLERANCE * width, CLIP_TOLERANCE * height
    if x1 < -tx or y1 < -ty or x2 > width + tx or y2 > height + ty or x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        problems.report("bad boxes", f"{where}: box {box} lies outside the {width}x{height} image by more than "
                                     f"{CLIP_TOLERANCE:.0%} of its size (rejected)")
        return None
    return [max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)]


def inside_root(root: Path, name: str, where: str) -> Path:
    """``root / name`` for a path *written in an annotation file*: it must stay inside ``root`` by
    name (absolute paths and ``..`` climbing out are refused). The one link policy of every reader:
    symbolic links that are in the dataset's folders are followed (the user put them there, as in a
    folder of links to another split); paths that annotation text makes up are not."""
    if Path(name).is_absolute() or "\\" in name and ":" in name:
        raise DataError(f"{where}: path {name!r} is absolute; only paths inside {str(root)!r} are read")
    normal = os.path.normpath(name)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise DataError(f"{where}: path {name!r} points outside the dataset root {str(root)!r}")
    return root / normal
