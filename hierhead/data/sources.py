"""Open any dataset: a path in one of the supported formats (guessed from its layout) or a generated
``synthetic:...`` spec. The one front door over :mod:`.readers` and :mod:`.synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .readers import DetectionDataset, _is_voc_year, read_coco, read_flickrlogos47, read_voc, read_voc_folder, read_yolo
from .records import FORMAT_NAMES, DataError
from .synthetic import open_synthetic

__all__ = ["open_dataset", "split_folders", "FORMATS", "HELD_OUT"]

FORMATS: dict[str, Callable[..., DetectionDataset]] = dict(zip(
    FORMAT_NAMES, (read_voc_folder, read_voc, read_coco, read_flickrlogos47, read_yolo), strict=True))


def _guess(path: Path) -> str:
    if path.suffix == ".json":
        return "coco"
    if any(path.glob("VOC20*")) or _is_voc_year(path):
        return "voc"
    if (path / "className2ClassID.txt").is_file():
        return "flickrlogos47"
    if (path / "classes.txt").is_file() or (path / "data.yaml").is_file() or (path / "dataset.yaml").is_file():
        return "yolo"
    return "voc-folder"


HELD_OUT = ("val", "valid", "validation", "test")


def split_folders(path: str | Path) -> tuple[Path, Path] | None:
    """(``train/``, first of ``val|valid|validation|test/``) of a dataset root that has both, else None."""
    path = Path(path)
    held = next((path / n for n in HELD_OUT if (path / n).is_dir()), None)
    return (path / "train", held) if held is not None and (path / "train").is_dir() else None


def yolo_splits(path: str | Path) -> tuple[str, str] | None:
    """(``train``, first of ``val|valid|validation|test``) of a YOLO root laid out as Ultralytics does
    (``images/train``, ``images/val``, labels likewise), else None."""
    if _guess(Path(path)) != "yolo":
        return None
    images = Path(path) / "images"
    held = next((n for n in HELD_OUT if (images / n).is_dir()), None)
    return ("train", held) if held is not None and (images / "train").is_dir() else None


def open_dataset(path: str | Path, format: str | None = None, classes: Sequence[str] | None = None,
                 skip_bad: bool = False, *, part: str = "train", **kwargs) -> DetectionDataset:
    """Open a dataset in any supported format (guessed from the path when not given).

    ``part`` (``train`` or ``test``) picks within a root that holds both: ``synthetic:...`` (the
    generated anchor-transfer data), a folder with ``train/`` and ``val|test/`` subfolders, or a VOC
    devkit (``trainval`` / ``test`` unless ``split=`` names one, see :func:`voc_parts`)."""
    if part not in ("train", "test"):
        raise DataError(f"{str(path)!r}: part={part!r}; choose train or test")
    if str(path).startswith("synthetic:"):
        return open_synthetic(str(path))[part == "test"]
    path = Path(path)
    if format in (None, "voc-folder") and _guess(path) == "voc-folder" and (folders := split_folders(path)):
        path = folders[part == "test"]  # a root of plain subfolders (cards/train, cards/test)
    if not path.exists():
        raise DataError(f"{str(path)!r}: dataset not found")
    format = format or _guess(path)
    if path.is_file() and format != "coco":
        raise DataError(f"{str(path)!r}: a file, not a dataset folder (only COCO data is one .json file)")
    if format not in FORMATS:
        raise DataError(f"format {format!r}: unknown; choose one of {', '.join(FORMATS)}")
    if format == "voc" and kwargs.get("split") is None:  # a devkit's parts by split name
        kwargs["split"] = "trainval" if part == "train" else "test"
    if format == "yolo" and kwargs.get("split") is None and (parts := yolo_splits(path)):  # images/train, images/val
        kwargs["split"] = parts[part == "test"]
    ds = FORMATS[format](path, classes=list(classes) if classes else None, skip_bad=skip_bad, **kwargs)
    ds.format = format
    return ds
