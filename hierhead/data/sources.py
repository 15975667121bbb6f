"""Open any dataset: a path in one of the supported formats (guessed from its layout) or a generated
``synthetic:...`` spec. The one front door over :mod:`.readers` and :mod:`.synthetic`, and the one
place that finds a root's splits (:func:`find_splits`).

Layouts a root may have (what the common labelling tools export), each split opened by name:

- folders of images with VOC XML: ``train/``, ``val|valid|validation/``, ``test/`` (Roboflow's VOC export);
- YOLO as Ultralytics lays it out (``images/train``, ``labels/train``, ...) or as Roboflow exports it
  (``train/images``, ``train/labels``, ...), class names in ``data.yaml`` (or ``dataset.yaml`` /
  ``classes.txt``); ``data.yaml``'s ``train`` / ``val`` / ``test`` are resolved as Ultralytics'
  ``check_det_dataset`` does (relative to ``path:`` or the file's folder, a leading ``../`` dropped
  when the path does not exist), and a path that leaves the root or does not exist here (an absolute
  path of the exporting machine) falls back to the split's folder in the root, with a note;
- COCO JSON per split as Roboflow exports it (``train/_annotations.coco.json`` beside the images), or
  ``annotations/instances_<split>.json`` with the images in ``<split>/`` or ``images/<split>/``;
- a PASCAL VOC devkit (``trainval`` / ``test``, or any split spec of :func:`~.readers.voc_parts`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .readers import DetectionDataset, _is_voc_year, read_coco, read_flickrlogos47, read_voc, read_voc_folder, read_yolo
from .records import FORMAT_NAMES, DataError
from .synthetic import open_synthetic

__all__ = ["open_dataset", "find_splits", "Split", "Splits", "FORMATS", "HELD_OUT", "SPLIT_NAMES"]

FORMATS: dict[str, Callable[..., DetectionDataset]] = dict(zip(
    FORMAT_NAMES, (read_voc_folder, read_voc, read_coco, read_flickrlogos47, read_yolo), strict=True))

HELD_OUT = ("val", "valid", "validation", "test")
SPLIT_NAMES = ("train", *HELD_OUT)
_VAL = ("val", "valid", "validation")  # one split, three spellings
YOLO_FILES = ("data.yaml", "dataset.yaml", "classes.txt")
COCO_SPLIT_FILE = "_annotations.coco.json"  # Roboflow's COCO export, one per split folder


def _guess(path: Path) -> str:
    if path.suffix == ".json":
        return "coco"
    if any(path.glob("VOC20*")) or _is_voc_year(path):
        return "voc"
    if (path / "className2ClassID.txt").is_file():
        return "flickrlogos47"
    if any((path / name).is_file() for name in YOLO_FILES):
        return "yolo"
    return "voc-folder"


@dataclass
class Split:
    """One split of a root: the reader (``format``) and what it opens (``path`` and reader ``options``)."""

    name: str
    format: str
    path: Path
    options: dict = field(default_factory=dict)

    def open(self, classes: Sequence[str] | None = None, skip_bad: bool = False) -> DetectionDataset:
        ds = FORMATS[self.format](self.path, classes=list(classes) if classes else None, skip_bad=skip_bad,
                                  **self.options)
        if len(ds) == 0:  # a table of zeros would be a silent wrong result
            where = self.options.get("images") or self.path
            raise DataError(f"{str(where)!r}: split {self.name!r} holds no images")
        ds.format, ds.split = self.format, self.name
        return ds


@dataclass
class Splits:
    """The splits found in a dataset root, by name (``{}`` for a plain folder read whole), and the layout
    they were found in."""

    root: Path
    layout: str
    splits: dict[str, Split]

    def get(self, name: str) -> Split:
        """The split called ``name`` (``val``, ``valid`` and ``validation`` name the same split)."""
        for alias in _aliases(name):
            if alias in self.splits:
                return self.splits[alias]
        have = ", ".join(self.splits) or "none: the folder is read whole"
        raise DataError(f"{str(self.root)!r}: no split {name!r} (splits here: {have})")

    def train_classes(self) -> list[str]:
        """The training split's class list (read without decoding its images): every split of a root is
        labelled with it, so a class missing from a small test split shifts no label."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return FORMATS[self.train.format](self.train.path, skip_bad=True, verify=False,
                                              **self.train.options).classes

    @property
    def train(self) -> Split | None:
        return self.splits.get("train")

    @property
    def held_out(self) -> Split | None:
        """The split ``eval`` scores and ``train`` validates on: the first of val|valid|validation|test."""
        return next((self.splits[n] for n in HELD_OUT if n in self.splits), None)


def find_splits(path: str | Path, format: str | None = None) -> Splits:
    """The splits of a dataset root, in any layout of the module docstring (the one split discovery)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{str(path)!r}: dataset not found")
    if path.is_file():
        return Splits(path, format or _guess(path), {})
    guessed = format or _guess(path)
    if guessed == "yolo":
        return _yolo_splits(path)
    if format in (None, "coco") and (coco := _coco_splits(path)).splits:
        return coco
    if guessed == "voc-folder":
        folders = {n: Split(n, "voc-folder", path / n) for n in SPLIT_NAMES if (path / n).is_dir()}
        if "train" in folders:
            return Splits(path, "folders", folders)
    return Splits(path, guessed, {})


def _coco_splits(root: Path) -> Splits:
    """Roboflow's COCO export (``<split>/_annotations.coco.json``) or ``annotations/instances_<split>.json``."""
    splits = {n: Split(n, "coco", root / n / COCO_SPLIT_FILE) for n in SPLIT_NAMES
              if (root / n / COCO_SPLIT_FILE).is_file()}
    if not splits and (root / "annotations").is_dir():
        for js in sorted((root / "annotations").glob("instances_*.json")):
            name = js.stem[len("instances_"):]
            images = next((d for d in (root / name, root / "images" / name, root / "images") if d.is_dir()), root)
            splits[name] = Split(name, "coco", js, {"images": images})
    return Splits(root, "coco", splits)


def _inside(root: Path, target: Path) -> bool:
    root, target = root.resolve(), target.resolve()
    return target == root or root in target.parents


def _yolo_splits(root: Path) -> Splits:
    """A YOLO root's splits: ``data.yaml``'s keys resolved as Ultralytics does, then the split folders of
    either layout that the file does not name."""
    from .readers import yolo_config

    config, yaml_file = yolo_config(root)
    notes: list[str] = []
    base = root
    if isinstance(config.get("path"), str) and config["path"]:
        given = Path(config["path"])
        base = given if given.is_absolute() else root / given
        if not (base.is_dir() and _inside(root, base)):
            notes.append(f"path {config['path']!r} is not a folder inside the root, reading the splits from the root")
            base = root
    found: dict[str, list[Path]] = {}
    for key in ("train", "val", "test"):
        value = config.get(key)
        if not value:
            continue
        resolved = [_resolve_yolo(root, base, str(v), key, yaml_file, notes) for v in
                    (value if isinstance(value, list) else [value])]
        found[key] = resolved
    for name in SPLIT_NAMES:  # folders the file does not name (Roboflow leaves out test:)
        folder = next((d for d in (root / name / "images", root / "images" / name) if d.is_dir()), None)
        taken = {p.resolve() for paths in found.values() for p in paths}
        if folder is not None and folder.resolve() not in taken and not any(a in found for a in _aliases(name)):
            found[name] = [folder]
    splits = {n: Split(n, "yolo", root, {"images": paths if len(paths) > 1 else paths[0]})
              for n, paths in found.items()}
    if notes:  # one line for the file (an export from another machine names every split from there)
        warnings.warn(f"{yaml_file.name}: " + "; ".join(notes) + f" (in {str(root)!r})", stacklevel=3)
    return Splits(root, "yolo", splits)


def _aliases(name: str) -> tuple[str, ...]:
    return _VAL if name in _VAL else (name,)


def _resolve_yolo(root: Path, base: Path, value: str, key: str, yaml_file: Path, notes: list[str]) -> Path:
    """One ``data.yaml`` split path: Ultralytics' resolution, kept inside the root, else the split's folder."""
    given = Path(value.replace("\\", "/"))
    candidate = None if given.is_absolute() or ":" in value[:3] else base / given
    if candidate is not None and not candidate.exists() and value.startswith("../"):
        candidate = base / value[3:]  # Roboflow writes train: ../train/images beside train/
    exists = candidate is not None and candidate.exists()
    if exists and _inside(root, candidate):
        return candidate
    fallback = next((d for n in _aliases(key) for d in (root / n / "images", root / "images" / n) if d.is_dir()), None)
    if fallback is None:
        raise DataError(f"{str(yaml_file)!r}: {key} {value!r} "
                        + ("is not inside the dataset root" if exists else "does not exist")
                        + f", and neither {key}/images nor images/{key} is in {str(root)!r}")
    why = "leaves the dataset root" if exists else "does not exist here"
    notes.append(f"{key} {value!r} {why}, reading {str(fallback.relative_to(root))!r}")
    return fallback


def open_dataset(path: str | Path, format: str | None = None, classes: Sequence[str] | None = None,
                 skip_bad: bool = False, *, part: str = "train", split: str | None = None,
                 **kwargs) -> DetectionDataset:
    """Open a dataset in any supported format (guessed from the path when not given).

    ``split`` opens the split of that name from a root that has several (``train``, ``valid``, ``test``,
    ...; for a VOC devkit or FlickrLogos-47, the reader's split spec); without it, ``part`` (``train`` or
    ``test``) picks the training split or the held-out one (the first of ``val|valid|validation|test``)
    of such a root, or of ``synthetic:...`` (the generated anchor-transfer data), and a VOC devkit's
    ``trainval`` / ``test``. A folder without splits is read whole."""
    if part not in ("train", "test"):
        raise DataError(f"{str(path)!r}: part={part!r}; choose train or test")
    if str(path).startswith("synthetic:"):
        if split not in (None, "train", "test"):
            raise DataError(f"{str(path)!r}: split {split!r}; a synthetic dataset has train and test")
        return open_synthetic(str(path))[(split or part) == "test"]
    path = Path(path)
    found = find_splits(path, format)
    if found.splits:
        chosen = found.get(split) if split else found.train if part == "train" else found.held_out
        if chosen is None:
            raise DataError(f"{str(path)!r}: no {'train' if part == 'train' else 'val|valid|validation|test'} "
                            f"split (splits here: {', '.join(found.splits)})")
        if classes is None and found.train is not None and chosen is not found.train and chosen.format != "yolo":
            classes = found.train_classes()  # labels are indices into the training split's classes
        return chosen.open(classes, skip_bad)
    format = format or _guess(path)
    if path.is_file() and format != "coco":
        raise DataError(f"{str(path)!r}: a file, not a dataset folder (only COCO data is one .json file)")
    if format not in FORMATS:
        raise DataError(f"format {format!r}: unknown; choose one of {', '.join(FORMATS)}")
    if split is not None and format in ("voc", "flickrlogos47", "yolo"):
        kwargs["split"] = split
    elif split is not None:
        raise DataError(f"{str(path)!r}: no split {split!r}: the folder has no train/val/test splits and is read whole")
    if format == "voc" and kwargs.get("split") is None:  # a devkit's parts by split name
        kwargs["split"] = "trainval" if part == "train" else "test"
    ds = FORMATS[format](path, classes=list(classes) if classes else None, skip_bad=skip_bad, **kwargs)
    ds.format = format
    return ds
