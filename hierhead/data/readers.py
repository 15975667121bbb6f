"""Dataset readers: VOC devkit, VOC XML folders, COCO JSON, FlickrLogos-47 and YOLO txt.

All yield the same sample: ``(image, target)`` with an RGB ``tv_tensors.Image`` and
``target = {"boxes": BoundingBoxes xyxy, "labels": 1 + class index (0 is background),
"difficult": bool, "image_id": str}``, and hold the class list in ``dataset.classes``.

Annotations and image headers are read and checked when the dataset is built (not in the
middle of an epoch). Images: greyscale, RGBA, palette and CMYK become RGB; EXIF orientation is
applied to the image *and* the boxes, which are taken to be in the stored pixel grid (what
labelImg, CVAT and the VOC devkit write); sizes come from the image, not from the XML.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from .records import DataError, Problems, Record, check_box, inside_root

__all__ = ["DetectionDataset", "VOC_CLASSES", "load_image", "IMAGE_BOMBS", "read_voc_folder", "read_voc", "read_coco",
           "read_flickrlogos47", "read_yolo", "voc_parts", "yolo_config", "yolo_label"]

#: What PIL raises for an image over its pixel limit (the warning is made an error while reading).
IMAGE_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112


def _some(names: list[str], k: int = 5, sep: str = ", ") -> str:
    """The first ``k`` of ``names`` for a warning, ``...`` when there are more."""
    return sep.join(names[:k]) + (f"{sep}..." if len(names) > k else "")


def _orient_box(box: list[float], orientation: int, w: int, h: int) -> list[float]:
    """Map a box of the stored w x h pixel grid to the EXIF-transposed image (PIL's convention)."""
    x1, y1, x2, y2 = box
    maps = {
        1: lambda x, y: (x, y), 2: lambda x, y: (w - x, y), 3: lambda x, y: (w - x, h - y),
        4: lambda x, y: (x, h - y), 5: lambda x, y: (y, x), 6: lambda x, y: (h - y, x),
        7: lambda x, y: (h - y, w - x), 8: lambda x, y: (y, w - x),
    }
    f = maps.get(orientation, maps[1])
    (ax, ay), (bx, by) = f(x1, y1), f(x2, y2)
    return [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]


@contextlib.contextmanager
def _bombs_are_errors():
    """PIL only warns for an image between its pixel limit and twice it: make that an error too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _image_header(path: Path, where: str, problems: Problems, verify: bool) -> tuple[int, int, int] | None:
    """(displayed width, height, EXIF orientation) of an image, checking that it decodes."""
    if not path.is_file():
        try:
            path.stat()
        except OSError as e:  # a link to nothing, a loop of links: say which
            if path.is_symlink():
                reason = "is a loop of symbolic links" if e.errno == 40 else "is a symbolic link to a missing file"
                problems.report("bad images", f"{where}: image file {str(path)!r} {reason}")
                return None
        problems.report("bad images", f"{where}: image file {str(path)!r} is missing")
        return None
    if path.stat().st_size == 0:
        problems.report("bad images", f"{where}: image file {str(path)!r} is empty")
        return None
    try:
        with _bombs_are_errors(), Image.open(path) as img:
            orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            w, h = img.size
            if verify:
                img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, *IMAGE_BOMBS) as e:
        problems.report("bad images", f"{where}: image file {str(path)!r} cannot be decoded ({e})")
        return None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return w, h, orientation


def _high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer / float) greyscale image scaled to 8 bits: PIL's ``convert("RGB")``
    clips every value above 255 to white, so a 16-bit PNG would read as a blank image. Integer modes
    are taken as 16-bit (0-65535, PNG's and TIFF's depth), float modes as 0-1."""
    import numpy as np

    values = np.asarray(img, dtype=np.float64)
    scale = 255.0 if img.mode == "F" else 255.0 / 65535.0
    return Image.fromarray(np.round(np.clip(values * scale, 0, 255)).astype(np.uint8), "L")


def load_image(path: Path) -> torch.Tensor:
    """An RGB uint8 tensor (C, H, W) with EXIF orientation applied; 16-bit greyscale is scaled to 8 bits
    (:func:`_high_depth_to_8bit`). An image over PIL's pixel limit (a decompression bomb) raises one of
    ``IMAGE_BOMBS``, never a warning and a giant allocation."""
    with _bombs_are_errors(), Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode.startswith("I") or img.mode == "F":
            img = _high_depth_to_8bit(img)
        img = img.convert("RGB")
        return TF.pil_to_tensor(img)


class DetectionDataset(torch.utils.data.Dataset):
    """Records plus a class list; ``transforms(image, target)`` is applied to each sample."""

    def __init__(self, records: list[Record], classes: Sequence[str], name: str, problems: Problems,
                 transforms: Callable | None = None) -> None:
        self.records = records
        self.classes = list(classes)
        self.name = name
        self.problems = problems
        self.transforms = transforms
        self.decoded: dict[int, torch.Tensor] | None = None  # :meth:`keep_decoded`
        problems.warn(name)

    @property
    def skipped(self) -> dict[str, int]:
        return dict(self.problems.counts)

    def __len__(self) -> int:
        return len(self.records)

    def target(self, i: int) -> dict:
        r = self.records[i]
        boxes = torch.tensor(r.boxes, dtype=torch.float32).reshape(-1, 4)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(r.height, r.width)),
            "labels": torch.tensor(r.labels, dtype=torch.int64) + 1,
            "difficult": torch.tensor(r.difficult, dtype=torch.bool),
            "image_id": r.image_id,
            **({"area": torch.tensor(r.areas, dtype=torch.float64)} if r.areas is not None else {}),
        }

    def _decode(self, i: int) -> torch.Tensor:
        r = self.records[i]
        try:
            return load_image(r.image_path)
        except (OSError, ValueError, *IMAGE_BOMBS) as e:
            raise DataError(f"{self.name}: image file {str(r.image_path)!r} cannot be decoded ({e})") from None

    def decoded_bytes(self) -> int:
        """The memory :meth:`keep_decoded` takes: every image as RGB uint8 (from the records' sizes)."""
        return sum(3 * r.width * r.height for r in self.records)

    def keep_decoded(self) -> None:
        """Decode every image once and keep it (RGB uint8) so that later reads skip the file and the decoder:
        the same tensors as :func:`load_image` gives, so training is unchanged, bit for bit. Made in the
        process that forks the data loader's workers, which share it (copy on write)."""
        self.decoded = {i: self._decode(i) for i in range(len(self.records))}

    def __getitem__(self, i: int):
        image = tv_tensors.Image(self.decoded[i] if self.decoded is not None else self._decode(i))
        target = self.target(i)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def subset(self, indices: Sequence[int]) -> "DetectionDataset":
        out = DetectionDataset([self.records[i] for i in indices], self.classes, self.name, Problems(True),
                               self.transforms)
        if self.decoded is not None:
            out.decoded = {k: self.decoded[i] for k, i in enumerate(indices)}
        return out


# -- shared record building ---------------------------------------------------------------------
def _finish(entries: list[tuple[Path, str, list[tuple[str | int, list[float], bool]], str]],
            classes: Sequence[str] | None, problems: Problems, verify: bool,
            numeric_classes: Sequence[str] | None = None) -> tuple[list[Record], list[str]]:
    """Turn (image path, id, [(class, xyxy in stored pixels, difficult[, area])], where) into records
    (an object's optional ``area``, COCO's, is kept in ``Record.areas`` when every object has one)."""
    if classes is None:
        names = {obj[0] for _, _, objs, _ in entries for obj in objs if isinstance(obj[0], str)}
        classes = sorted(names) if numeric_classes is None else list(numeric_classes)
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    records, seen = [], set()
    for path, image_id, objs, where in entries:
        if image_id in seen:
            problems.report("duplicate ids", f"{where}: duplicate image id {image_id!r} (already in the dataset)")
            continue
        head = _image_header(path, where, problems, verify)
        if head is None:
            continue
        seen.add(image_id)
        w, h, orientation = head
        rec = Record(path, image_id, w, h, orientation=orientation)
        sw, sh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        areas = []
        for cls, box, difficult, *area in objs:
            if isinstance(cls, int):
                if not 0 <= cls < len(classes):
                    problems.report("unknown classes", f"{where}: class id {cls} is not in the {len(classes)} classes")
                    continue
                label = cls
            elif cls not in index:
                problems.report("unknown classes", f"{where}: class {cls!r} is not one of {classes}")
                continue
            else:
                label = index[cls]
            if all(math.isfinite(v) for v in box) and orientation != 1:
                box = _orient_box(box, orientation, sw, sh)
            box = check_box(box, w, h, where, problems)
            if box is None:
                continue
            rec.boxes.append(box)
            rec.labels.append(label)
            rec.difficult.append(bool(difficult))
            areas.append(area[0] if area else None)
        if areas and None not in areas:
            rec.areas = areas
        records.append(rec)
    return records, classes


def _txt_rows(path: Path, parse: Callable[[list[str]], tuple], expected: str, problems: Problems) -> list[tuple]:
    """``parse`` applied to the fields of every non-empty line of a txt annotation (none if absent);
    a line it cannot parse is reported as ``path line k: expected '<expected>'``."""
    rows = []
    if path.is_file():
        for k, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(parse(line.split()))
            except (ValueError, IndexError):
                problems.report("bad annotations", f"{str(path)!r} line {k + 1}: expected '{expected}'")
    return rows


def _yolo_row(fields: list[str]) -> tuple[int, list[float]]:
    if len(fields) < 5:
        raise ValueError("too few fields")
    return int(fields[0]), [float(v) for v in fields[1:5]]


def _xml_objects(xml_path: Path, problems: Problems, sizes: dict | None = None) -> tuple[str | None, list] | None:
    """(filename, [(name, xyxy, difficult)]) from a VOC XML parsed with defusedxml; ``sizes`` receives
    the ``<size>`` it states, ``{xml path: (width, height)}`` (see :func:`_check_sizes`)."""
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, DefusedXmlException) as e:
        problems.report("bad annotations", f"{str(xml_path)!r}: malformed or unsafe XML ({type(e).__name__}: {e})")
        return None
    objs = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        except (TypeError, ValueError, AttributeError):
            problems.report("bad boxes", f"{str(xml_path)!r}: object {name!r} has a missing or non-numeric bndbox")
            continue
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
        objs.append((name, box, difficult))
    if sizes is not None:
        try:
            sizes[str(xml_path)] = (int(float(root.findtext("size/width"))), int(float(root.findtext("size/height"))))
        except (TypeError, ValueError):
            pass  # no size given: nothing to disagree with
    return root.findtext("filename"), objs


def _check_sizes(records: list, stated: dict, where_of: dict) -> None:
    """One warning naming the XML files whose ``<size>`` is not their image's (a labelling tool that wrote
    0 x 0, or an image replaced after labelling): the boxes are read in the image's own pixels, as the
    module docstring says, so a user sees why they may be off."""
    wrong = []
    for r in records:
        xml = where_of.get(r.image_id)
        size = stated.get(xml)
        if size is not None and size not in ((r.width, r.height), (r.height, r.width)):
            wrong.append(f"{Path(xml).name}: {size[0]}x{size[1]}, image {r.width}x{r.height}")
    if wrong:
        warnings.warn(f"{len(wrong)} VOC XML files state an image size that is not their image's; boxes are read in "
                      f"the image's pixels ({_some(wrong, 3, '; ')})", stacklevel=3)


# -- readers --------------------------------------------------------------------------------------
def read_voc_folder(root: Path, classes=None, skip_bad=False, verify=True, **_) -> DetectionDataset:
    """A folder of images with a VOC XML beside each; image ids are file stems. An XML annotates the
    image its ``<filename>`` names, else the one image of its stem: another file with that stem (a
    drawing of it written beside it) is never read in its place, and is named in a warning, not read
    as a background image. Images with no XML of their stem are background images (named in a warning)."""
    problems = Problems(skip_bad)
    entries = []
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(root.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS:
            by_stem.setdefault(p.stem, []).append(p)
    xmls = sorted(root.glob("*.xml"))
    if not xmls:  # read as background images only, every image would be a silent wrong result
        count = sum(map(len, by_stem.values()))
        raise DataError(f"{str(root)!r}: " + (f"{count} images but no .xml annotation beside them" if count
                                              else "no images and no .xml annotations found") + _layout_hint(root))
    not_read, stated = [], {}
    for xml in xmls:
        same = by_stem.pop(xml.stem, [])  # an image whose XML is bad is dropped, not kept as background
        parsed = _xml_objects(xml, problems, stated)
        if parsed is None:
            continue
        filename, objs = parsed
        named = Path(filename.replace("\\", "/")).name if filename and filename.strip() else None
        image = next((p for p in same if named and p.name.lower() == named.lower()), None)
        if image is None and len(same) > 1:
            problems.report("bad images", f"{str(xml)!r}: names {named!r}, which is not here, and "
                                          f"{', '.join(p.name for p in same)} share its stem: which image it annotates "
                                          f"is ambiguous")
            continue
        if image is None and same:
            image = same[0]  # the one image of its stem (an export that renamed the file)
        if image is None and named:
            image = inside_root(root, named, str(xml))
        if image is None:
            problems.report("bad images", f"{str(xml)!r}: no image with stem {xml.stem!r} beside it")
            continue
        not_read += [p.name for p in same if p != image]
        entries.append((image, xml.stem, objs, str(xml)))
    if not_read:
        warnings.warn(f"{str(root)!r}: {len(not_read)} images share the stem of an annotated image and are not read "
                      f"({_some(not_read)})", stacklevel=2)
    background = [p for images in by_stem.values() for p in images]  # images without XML
    entries += [(image, image.stem, [], str(image)) for image in background]
    if background:
        names = sorted(p.name for p in background)
        warnings.warn(f"{str(root)!r}: {len(names)} images have no .xml annotation and are read as background images "
                      f"({_some(names)})", stacklevel=2)
    records, classes = _finish(entries, classes, problems, verify)
    _check_sizes(records, stated, {e[1]: e[3] for e in entries})
    return DetectionDataset(records, classes, str(root), problems)


def _layout_hint(root: Path) -> str:
    """What a folder that is not VOC XML looks like, for the error that refuses it."""
    for up, split in ((root.parent, root.name), (root.parent.parent, root.parent.name)):
        if any((up / n).is_file() for n in ("data.yaml", "dataset.yaml", "classes.txt")):
            return f"; it is a split of the YOLO dataset {str(up)!r}: give --data {str(up)!r} --split {split}"
    if (root / "labels").is_dir() or (root.parent / "labels").is_dir() or any(root.glob("*.txt")):
        return ("; it looks like YOLO data (labels/ or .txt files): put its class names in data.yaml "
                "('names: [...]') or classes.txt at the dataset root")
    if any(root.glob("*.json")):
        return "; for COCO data give the .json file as --data (or name it _annotations.coco.json)"
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir())[:5] if root.is_dir() else []
    return f" (subfolders: {', '.join(subfolders)}; a root needs a train/ split)" if subfolders else ""


def _is_voc_year(path: Path) -> bool:
    """One year's devkit folder: ``Annotations/`` and ``ImageSets/Main/`` directly inside."""
    return (path / "Annotations").is_dir() and (path / "ImageSets" / "Main").is_dir()


def _voc_years(root: Path) -> dict[str, Path]:
    """``{year: folder}`` of a devkit root: its ``VOC20xx`` folders, or the root itself when it is one
    year's folder (``Annotations/``, ``ImageSets/Main/``, ``JPEGImages/`` directly inside; year "")."""
    years = {d.name[3:]: d for d in sorted(root.glob("VOC20*")) if d.is_dir()}
    if not years and _is_voc_year(root):
        years = {"": root}
    if not years:
        raise DataError(f"{str(root)!r}: no VOC20xx folder and no Annotations/ + ImageSets/Main/ "
                        f"(expected e.g. {str(root / 'VOC2007')!r})")
    return years


def voc_parts(root: Path, split: str, years=None) -> list[tuple[str, Path]]:
    """The (year, split file) pairs a split spec names. ``"2007/trainval+2012/trainval"`` names each
    year's file (a missing one is an error); a bare ``"test"`` reads every year that has that file
    (VOC2012 has no ``test.txt``: ``test`` on a 07+12 devkit is VOC2007 test, the paper's test set),
    an error only when no year has it. ``years`` (the old argument) restricts a bare name."""
    found = _voc_years(root)
    parts = []
    for item in (t.strip() for t in split.split("+")):
        year, _, name = item.rpartition("/")
        if not name:
            raise DataError(f"VOC split {split!r}: empty part; expected e.g. 2007/trainval+2012/trainval or test")
        if year:
            if year not in found:
                raise DataError(f"VOC split {split!r}: {str(root / ('VOC' + year))!r} not found "
                                f"(years here: {', '.join(y for y in found if y) or 'one unnamed year'})")
            chosen = [year]
        else:
            chosen = [y for y in found if years is None or y in {str(v) for v in years}]
        files = [(y, found[y] / "ImageSets" / "Main" / f"{name}.txt") for y in chosen]
        if year and not files[0][1].is_file():
            raise DataError(f"{str(files[0][1])!r}: split file not found")
        files = [(y, f) for y, f in files if f.is_file()]
        if not files:
            where = " or ".join(str(found[y] / "ImageSets" / "Main") for y in chosen) or str(root)
            raise DataError(f"VOC split {name!r}: no {name}.txt in {where}")
        parts += [p for p in files if p not in parts]
    return parts


def read_voc(root: Path, split="trainval", years=None, classes=None, skip_bad=False, verify=True,
             **_) -> DetectionDataset:
    """A PASCAL VOC devkit root (``VOC2007``, ``VOC2012``, ...; or one year's folder) read by the split
    spec of :func:`voc_parts`; several years give their union, image ids then ``YEAR_ID``."""
    problems = Problems(skip_bad)
    parts = voc_parts(root, split, years)
    several = len({y for y, _ in parts}) > 1
    entries, stated = [], {}
    for year, split_file in parts:
        base = split_file.parents[2]
        for line in split_file.read_text().split():
            try:
                xml = inside_root(base / "Annotations", f"{line}.xml", str(split_file))
                image = inside_root(base / "JPEGImages", f"{line}.jpg", str(split_file))
            except DataError as e:
                problems.report("bad annotations", str(e))
                continue
            if not xml.is_file():
                problems.report("bad annotations", f"{str(xml)!r}: annotation listed in {split_file.name} is missing")
                continue
            parsed = _xml_objects(xml, problems, stated)
            if parsed is None:
                continue
            entries.append((image, f"{year}_{line}" if several else line, parsed[1], str(xml)))
    if classes is None:  # the 20 VOC classes for VOC data, else the devkit's own (sorted)
        found = {obj[0] for _, _, objs, _ in entries for obj in objs}
        classes = VOC_CLASSES if found <= set(VOC_CLASSES) else sorted(found)
    records, classes = _finish(entries, classes, problems, verify)
    _check_sizes(records, stated, {e[1]: e[3] for e in entries})
    name = f"{root} ({' + '.join(f'VOC{y} ' * bool(y) + f.stem for y, f in parts)})"
    return DetectionDataset(records, classes, name, problems)


def _coco_json(path: Path, problems: Problems) -> dict:
    """The COCO JSON checked before pycocotools indexes it (its index silently keeps the last of
    duplicate ids and drops annotations of unknown images): a missing or mistyped field, a duplicate
    category id or name is a :class:`DataError` naming the file and the id; a duplicate image id
    (both images and their boxes are ambiguous), an annotation of an unknown image or category or with
    a bad ``bbox`` is an error, or with ``skip_bad`` a counted skip."""
    where = str(path)
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{where!r}: malformed COCO JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where!r}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{where!r}: no {key!r} list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DataError(f"{where!r}: 'annotations' is not a list")
    is_id = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    cats, names = {}, set()
    for c in data["categories"]:
        if not isinstance(c, dict) or not is_id(c.get("id")) or not isinstance(c.get("name"), str):
            raise DataError(f"{where!r}: category {c!r} needs an integer 'id' and a string 'name'")
        if c["id"] in cats or c["name"] in names:
            raise DataError(f"{where!r}: category id {c['id']} / name {c['name']!r} appears twice")
        cats[c["id"]] = c
        names.add(c["name"])
    images, dup = {}, set()
    for im in data["images"]:
        if not isinstance(im, dict) or not is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            raise DataError(f"{where!r}: image {im!r} needs an integer 'id' and a string 'file_name'")
        if im["id"] in images:
            dup.add(im["id"])
        images[im["id"]] = im
    for i in sorted(dup):
        problems.report("duplicate ids", f"{where}: image id {i} appears more than once (its boxes are ambiguous)")
        del images[i]
    kept = []
    for k, a in enumerate(anns):
        aid = a.get("id", f"#{k}") if isinstance(a, dict) else f"#{k}"
        if not isinstance(a, dict) or not is_id(a.get("image_id")) or not is_id(a.get("category_id")):
            problems.report("bad annotations", f"{where}: annotation {aid} needs integer 'image_id' and 'category_id'")
        elif a["image_id"] in dup:
            continue  # counted with its image
        elif a["image_id"] not in images:
            problems.report("unknown ids", f"{where}: annotation {aid} refers to image id {a['image_id']}, not in 'images'")
        elif a["category_id"] not in cats:
            problems.report("unknown classes", f"{where}: annotation {aid} has category id {a['category_id']}, "
                                               f"not in 'categories'")
        elif not (isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a["bbox"])):
            problems.report("bad boxes", f"{where}: annotation {aid} has bbox {a.get('bbox')!r}, not 4 numbers")
        else:
            kept.append(a)
    return {**data, "images": list(images.values()), "annotations": kept, "categories": list(cats.values())}


def _roboflow_group(coco, cat_id: int) -> bool:
    """Roboflow's COCO export adds one category that names the project and is the ``supercategory`` of
    every other one, with no annotation of its own: a group, not a class (it is left out)."""
    name = coco.cats[cat_id]["name"]
    others = [c for i, c in coco.cats.items() if i != cat_id]
    return bool(others) and not coco.catToImgs.get(cat_id) and all(c.get("supercategory") == name for c in others)


def read_coco(path: Path, images=None, classes=None, skip_bad=False, verify=True, **_) -> DetectionDataset:
    """A COCO JSON file (checked by :func:`_coco_json`, indexed by pycocotools); crowd boxes are kept
    as ``difficult`` (ignored); classes default to the categories in id order (without the group
    category of Roboflow's export, :func:`_roboflow_group`)."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    problems = Problems(skip_bad)
    if not path.is_file():
        raise DataError(f"{str(path)!r}: COCO annotation file not found")
    coco = COCO()
    coco.dataset = _coco_json(path, problems)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    image_root = Path(images) if images else path.parent
    cat_ids = sorted(c for c in coco.getCatIds() if not _roboflow_group(coco, c))
    names = [coco.cats[c]["name"] for c in cat_ids]
    entries = []
    for img_id in sorted(coco.getImgIds()):
        info = coco.imgs[img_id]
        objs = []
        for ann in coco.imgToAnns.get(img_id, []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            objs.append((coco.cats[ann["category_id"]]["name"], [x, y, x + w, y + h], bool(ann.get("iscrowd", 0)),
                         float(ann.get("area", w * h))))
        try:
            image = inside_root(image_root, info["file_name"], str(path))
        except DataError as e:
            problems.report("bad images", str(e))
            continue
        entries.append((image, str(img_id), objs, f"{path}: image {img_id}"))
    records, classes = _finish(entries, classes or names, problems, verify)
    ds = DetectionDataset(records, classes, str(path), problems)
    ds.coco_ids = {"images": {str(i): i for i in coco.getImgIds()},
                   "categories": [cat_ids[names.index(c)] if c in names else None for c in classes]}
    return ds


def read_flickrlogos47(root: Path, split="train", classes=None, skip_bad=False, verify=True,
                       **_) -> DetectionDataset:
    """FlickrLogos-47: ``className2ClassID.txt``, ``<split>/filelist.txt`` and a
    ``<image stem>.gt_data.txt`` beside each image: ``x1 y1 x2 y2 class_id ...`` per line."""
    problems = Problems(skip_bad)
    names_file = root / "className2ClassID.txt"
    if not names_file.is_file():
        raise DataError(f"{str(names_file)!r}: class list not found")
    pairs = [line.split() for line in names_file.read_text().splitlines() if line.strip()]
    try:
        by_id = {int(i): n for n, i in pairs}
    except ValueError:
        raise DataError(f"{str(names_file)!r}: expected 'name id' on every line") from None
    id_order = sorted(by_id)
    names = [by_id[i] for i in id_order]
    split_dir = root / split
    listing = split_dir / "filelist.txt"
    if not listing.is_file():
        raise DataError(f"{str(listing)!r}: file list not found")
    entries = []
    for line in listing.read_text().split():
        try:
            image = inside_root(split_dir, line.lstrip("./") if line.startswith("./") else line, str(listing))
        except DataError as e:
            problems.report("bad images", str(e))
            continue
        gt = image.with_name(image.stem + ".gt_data.txt")
        rows = _txt_rows(gt, lambda f: (int(f[4]), [float(v) for v in f[:4]]), "x1 y1 x2 y2 class_id ...", problems)
        objs = [(id_order.index(cls) if cls in by_id else -1, box, False) for cls, box in rows]
        entries.append((image, image.stem, objs, str(gt)))
    records, classes = _finish(entries, classes, problems, verify, numeric_classes=names)
    return DetectionDataset(records, classes, str(root), problems)


def yolo_config(root: Path) -> tuple[dict, Path]:
    """(the dataset YAML's contents, its path) of a YOLO root; ``classes.txt`` becomes ``{"names": [...]}``.
    The class names are checked here: a list of strings or a ``{id: name}`` map, as many as ``nc``."""
    import yaml

    for name in ("data.yaml", "dataset.yaml"):
        file = root / name
        if file.is_file():
            try:
                data = yaml.safe_load(file.read_text())
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise DataError(f"{str(file)!r}: malformed data yaml ({type(e).__name__})") from None
            if not isinstance(data, dict) or "names" not in data:
                raise DataError(f"{str(file)!r}: no 'names' (the class names) in the data yaml")
            raw = data["names"]
            if isinstance(raw, dict) and all(isinstance(k, int) for k in raw):
                raw = [raw[k] for k in sorted(raw)]
            if not (isinstance(raw, list) and raw and all(isinstance(n, (str, int)) for n in raw)):
                raise DataError(f"{str(file)!r}: 'names' must be a list of class names or an {{id: name}} map")
            names = [str(n) for n in raw]
            if "nc" in data and data["nc"] != len(names):
                raise DataError(f"{str(file)!r}: nc is {data['nc']!r} but 'names' lists {len(names)} classes")
            return {**data, "names": names}, file
    file = root / "classes.txt"
    if file.is_file():
        return {"names": [n.strip() for n in file.read_text().splitlines() if n.strip()]}, file
    raise DataError(f"{str(root)!r}: no classes.txt or data.yaml with 'names'")


def yolo_label(image: Path) -> Path:
    """Where YOLO keeps an image's labels (Ultralytics' ``img2label_paths``): the last ``images``
    folder of its path replaced by ``labels``, the suffix by ``.txt``; beside the image when its
    path has no ``images`` folder."""
    parts = image.parts
    if "images" in parts[:-1]:
        k = len(parts) - 2 - parts[:-1][::-1].index("images")
        return Path(*parts[:k], "labels", *parts[k + 1:]).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo_images(folder: Path, root: Path) -> list[Path]:
    """The images of one YOLO split: a folder's image files, or the lines of a ``.txt`` list (paths
    relative to the list's folder, as Ultralytics reads them; kept inside the dataset root)."""
    if folder.is_file() and folder.suffix == ".txt":
        paths = []
        for line in (t.strip() for t in folder.read_text().splitlines()):
            if line:
                image = Path(line) if Path(line).is_absolute() else folder.parent / line
                if not image.resolve().is_relative_to(root.resolve()):
                    raise DataError(f"{str(folder)!r}: image {line!r} lies outside the dataset root {str(root)!r}")
                paths.append(image)
        return paths
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r}: image folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def read_yolo(root: Path, split=None, classes=None, skip_bad=False, verify=True, images=None,
              **_) -> DetectionDataset:
    """YOLO txt: ``class cx cy w h`` normalised, class names from ``data.yaml`` / ``dataset.yaml``
    (``names``) or ``classes.txt`` in ``root``. ``images``: the split's image folder(s) or ``.txt``
    list (:func:`~hierhead.data.sources.find_splits` resolves them); else ``images/<split>``,
    ``images/`` or ``root``. Labels where :func:`yolo_label` puts them. An image without a label file
    is a background image: they are counted and named in a warning, as are files in a labels folder
    that are not ``.txt``."""
    problems = Problems(skip_bad)
    names = yolo_config(root)[0]["names"]
    if images is None:
        images = root / "images" / split if split else (root / "images" if (root / "images").is_dir() else root)
    folders = [Path(f) for f in (images if isinstance(images, (list, tuple)) else [images])]
    paths = [p for f in folders for p in _yolo_images(f, root)]
    where = ", ".join(str(f) for f in folders)
    if not paths:
        raise DataError(f"{where!r}: no images")
    entries, unlabelled = [], []
    for image in paths:
        txt = yolo_label(image)
        if not txt.is_file() and txt != image.with_suffix(".txt") and image.with_suffix(".txt").is_file():
            txt = image.with_suffix(".txt")
        if not txt.is_file():
            unlabelled.append(image.name)
        rows = _txt_rows(txt, _yolo_row, "class cx cy w h", problems)
        entries.append((image, image.stem, rows, str(txt)))
    if unlabelled:
        warnings.warn(f"{where}: {len(unlabelled)} of {len(paths)} images have no label file and are read as "
                      f"background images ({_some(unlabelled)})",
                      stacklevel=2)
    image_dirs = {p.parent.resolve() for p in paths}
    for folder in sorted({yolo_label(p).parent for p in paths}):
        if not folder.is_dir() or folder.resolve() in image_dirs:
            continue
        others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() != ".txt")
        if others:
            warnings.warn(f"{str(folder)!r}: {len(others)} files are not YOLO .txt labels and are not read "
                          f"({_some(others, 3)})", stacklevel=2)
    # normalised -> pixels needs the displayed size: resolve after reading headers
    fixed = []
    for image, stem, rows, where_ in entries:
        head = _image_header(image, where_, Problems(True), False)
        w, h = (head[0], head[1]) if head else (1, 1)
        objs = [(c, [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], False)
                for c, (cx, cy, bw, bh) in rows]
        fixed.append((image, stem, objs, where_))
    records, classes = _finish(fixed, classes, problems, verify, numeric_classes=names)
    return DetectionDataset(records, classes, where, problems)
