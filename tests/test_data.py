import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from hierhead.data import DataError, open_dataset
from hierhead.data.stats import table_two

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def voc_xml(name, objects, size=(64, 48), filename=None):
    objs = "".join(
        f"<object><name>{c}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for c, b, d in objects)
    return (f"<annotation><filename>{filename or name + '.jpg'}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height></size>{objs}</annotation>")


def make_folder(root, items, mode="RGB", size=(64, 48)):
    root.mkdir(parents=True, exist_ok=True)
    for name, objs in items.items():
        Image.new(mode, size, 128).save(root / f"{name}.png")
        (root / f"{name}.xml").write_text(voc_xml(name, objs, size, f"{name}.png"))
    return root


def linked_subset(source, folder, n):
    """``folder`` holding links to the first ``n`` annotated images of ``source`` (image and XML)."""
    folder.mkdir(parents=True)
    for xml in sorted(source.glob("*.xml"))[:n]:
        for f in source.glob(xml.stem + ".*"):
            (folder / f.name).symlink_to(f)
    return folder


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")
@pytest.mark.parametrize("name, images, boxes, classes", [
    ("cards/train", 296, 527, 6), ("cards/test", 67, 143, 6),
    ("microcontrollers/train", 142, 170, 4), ("microcontrollers/test", 7, 7, 4),
])
def test_shared_datasets(name, images, boxes, classes):
    ds = open_dataset(SHARED / name)
    assert (len(ds), sum(len(r.boxes) for r in ds.records), len(ds.classes)) == (images, boxes, classes)
    assert ds.skipped == {}
    image, target = ds[0]
    assert image.shape[0] == 3 and image.dtype == torch.uint8
    assert target["boxes"].canvas_size == tuple(image.shape[-2:])


def test_root_of_split_folders_opens_the_asked_part(tmp_path):
    make_folder(tmp_path / "d" / "train", {"a": [("dog", (1, 2, 30, 40), False)]})
    make_folder(tmp_path / "d" / "valid", {"b": [("dog", (1, 2, 30, 40), False)], "c": []})
    assert [r.image_id for r in open_dataset(tmp_path / "d").records] == ["a"]
    assert [r.image_id for r in open_dataset(tmp_path / "d", part="test").records] == ["b", "c"]
    with pytest.raises(DataError, match="part='val'; choose train or test"):
        open_dataset(tmp_path / "d", part="val")


def test_voc_folder_modes_and_background(tmp_path):
    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 2, 30, 40), False)],
                                        "b": [("cat", (5, 5, 20, 20), True), ("dog", (0, 0, 64, 48), False)]},
                       mode="L")
    Image.new("RGBA", (64, 48)).save(root / "c.png")  # no XML: background image
    Image.new("P", (64, 48)).save(root / "d.png")
    Image.new("CMYK", (64, 48)).save(root / "e.jpg")
    ds = open_dataset(root)
    assert ds.classes == ["cat", "dog"] and len(ds) == 5
    for i in range(len(ds)):
        assert ds[i][0].shape == (3, 48, 64)
    _, t = ds[1]
    assert t["labels"].tolist() == [1, 2] and t["difficult"].tolist() == [True, False]
    assert table_two(ds)["background_images"] == 3


def test_exif_orientation_applied_to_image_and_boxes(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    img = Image.new("RGB", (60, 40), 0)
    img.paste((255, 255, 255), (10, 5, 30, 15))  # a white box x 10-30, y 5-15 in the stored grid
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(root / "r.jpg", exif=exif, quality=100)
    (root / "r.xml").write_text(voc_xml("r", [("box", (10, 5, 30, 15), False)], (60, 40)))
    ds = open_dataset(root)
    image, t = ds[0]
    assert image.shape == (3, 60, 40)  # displayed: 40 wide, 60 high
    ys, xs = torch.nonzero(image[0] > 128, as_tuple=True)
    bright = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    assert t["boxes"][0].tolist() == pytest.approx(bright, abs=1.5)


@pytest.mark.parametrize("objs, message", [
    ([("dog", (30, 5, 10, 20), False)], "x2 <= x1"),
    ([("dog", ("nan", 5, 10, 20), False)], "non-finite"),
    ([("dog", (100, 100, 200, 200), False)], "outside the 64x48 image"),
    ([("unicorn", (1, 1, 10, 10), False)], "class 'unicorn' is not one of"),
])
def test_bad_boxes_fail_or_are_counted(tmp_path, objs, message):
    root = make_folder(tmp_path / "d", {"a": objs, "b": [("dog", (1, 1, 10, 10), False)]})
    with pytest.raises(DataError, match=message):
        open_dataset(root, classes=["dog"])
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = open_dataset(root, classes=["dog"], skip_bad=True)
    assert len(ds) == 2 and sum(ds.skipped.values()) == 1 and sum(len(r.boxes) for r in ds.records) == 1


def test_slightly_outside_is_clipped(tmp_path):
    root = make_folder(tmp_path / "d", {"a": [("dog", (-3, 2, 66, 50), False)]})
    assert open_dataset(root).records[0].boxes == [[0.0, 2.0, 64.0, 48.0]]


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "a.png").write_bytes(b""), "is empty"),
    (lambda r: (r / "a.png").write_bytes(b"not an image at all"), "cannot be decoded"),
    (lambda r: (r / "a.png").write_bytes((r / "b.png").read_bytes()[:60]), "cannot be decoded"),
    (lambda r: (r / "a.xml").write_text("<annotation><object>"), "malformed or unsafe XML"),
    (lambda r: (r / "a.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><annotation>&b;</annotation>'),
     "malformed or unsafe XML"),
])
def test_bad_files(tmp_path, damage, message):
    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 10, 10), False)], "b": []})
    damage(root)
    with pytest.raises(DataError, match=message):
        open_dataset(root)
    with pytest.warns(UserWarning):
        assert len(open_dataset(root, skip_bad=True)) == 1


def test_paths_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "coco"
    root.mkdir()
    Image.new("RGB", (20, 20)).save(root / "ok.png")
    for bad in ("../../etc/passwd", "/etc/passwd"):
        data = {"images": [{"id": 1, "file_name": "ok.png", "width": 20, "height": 20},
                           {"id": 2, "file_name": bad, "width": 20, "height": 20}],
                "annotations": [], "categories": [{"id": 3, "name": "x"}]}
        (root / "a.json").write_text(json.dumps(data))
        with pytest.raises(DataError, match="outside the dataset root|is absolute"):
            open_dataset(root / "a.json")
        with pytest.warns(UserWarning):
            assert len(open_dataset(root / "a.json", skip_bad=True)) == 1


def test_coco_reader_and_crowd(tmp_path):
    root = tmp_path / "coco"
    root.mkdir()
    Image.new("RGB", (50, 40)).save(root / "i.png")
    data = {"images": [{"id": 7, "file_name": "i.png", "width": 50, "height": 40}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 10], "iscrowd": 0, "area": 100},
                            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [5, 5, 20, 20], "iscrowd": 1, "area": 400}],
            "categories": [{"id": 9, "name": "b"}, {"id": 5, "name": "a"}]}
    (root / "c.json").write_text(json.dumps(data))
    ds = open_dataset(root / "c.json")
    _, t = ds[0]
    assert ds.classes == ["a", "b"] and t["boxes"].tolist() == [[1, 2, 11, 12], [5, 5, 25, 25]]
    assert t["labels"].tolist() == [1, 2] and t["difficult"].tolist() == [False, True]
    (root / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        open_dataset(root / "bad.json")


def test_coco_area_reaches_the_size_buckets(tmp_path):
    """APs / APm / APl use the annotation's ``area`` (a segment's pixels), as pycocotools does, not w*h."""
    from hierhead.metrics import coco_map

    root = tmp_path / "coco"
    root.mkdir()
    Image.new("RGB", (100, 100)).save(root / "i.png")
    data = {"images": [{"id": 1, "file_name": "i.png", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "iscrowd": 0,
                             "area": 900.0}],  # box 1600 px (medium), segment 900 px (small)
            "categories": [{"id": 1, "name": "a"}]}
    (root / "c.json").write_text(json.dumps(data))
    ds = open_dataset(root / "c.json")
    t = ds.target(0)
    assert t["area"].tolist() == [900.0]
    pred = [{"boxes": torch.tensor([[10.0, 10, 50, 50]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    r = coco_map(pred, [t], 2)
    assert (r["APs"], r["APm"]) == (pytest.approx(1.0), -1.0)
    del t["area"]
    r = coco_map(pred, [t], 2)
    assert (r["APs"], r["APm"]) == (-1.0, pytest.approx(1.0))
    from hierhead.engine.data import train_transforms
    from torchvision import tv_tensors
    _, out = train_transforms((64, 64), flip=False, iou_crop=False, photometric=False)(
        tv_tensors.Image(torch.zeros(3, 100, 100, dtype=torch.uint8)), ds.target(0))
    assert out["area"].tolist() == [900.0] and len(out["boxes"]) == 1


def test_duplicate_image_ids(tmp_path):
    yolo = tmp_path / "y"
    (yolo / "images").mkdir(parents=True)
    (yolo / "classes.txt").write_text("x\n")
    Image.new("RGB", (20, 20)).save(yolo / "images" / "a.png")
    Image.new("RGB", (20, 20)).save(yolo / "images" / "a.jpg")
    with pytest.raises(DataError, match="duplicate image id 'a'"):
        open_dataset(yolo)


def test_yolo_and_flickrlogos(tmp_path):
    y = tmp_path / "y"
    (y / "images").mkdir(parents=True)
    (y / "labels").mkdir()
    (y / "data.yaml").write_text("names: {0: cat, 1: dog}\n")
    Image.new("RGB", (100, 50)).save(y / "images" / "p.png")
    (y / "labels" / "p.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n")
    ds = open_dataset(y)
    assert ds.classes == ["cat", "dog"]
    assert ds.records[0].boxes[0] == pytest.approx([40, 15, 60, 35]) and ds.records[0].labels == [1, 0]
    (y / "labels" / "p.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(DataError, match="p.txt' line 1: expected 'class cx cy w h'"):
        open_dataset(y)
    f = tmp_path / "fl"
    (f / "train" / "000000").mkdir(parents=True)
    (f / "className2ClassID.txt").write_text("adidas 0\nbmw 1\n")
    (f / "train" / "filelist.txt").write_text("./000000/1.png\n")
    Image.new("RGB", (80, 60)).save(f / "train" / "000000" / "1.png")
    (f / "train" / "000000" / "1.gt_data.txt").write_text("10 10 40 30 1 0 0 0 0\n")
    ds = open_dataset(f, split="train")
    assert ds.classes == ["adidas", "bmw"] and ds.records[0].boxes == [[10, 10, 40, 30]] and ds.records[0].labels == [1]


def test_stats_and_eval_cli(tmp_path, capsys):
    from types import SimpleNamespace

    from hierhead.cli import main

    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 31, 11), False)], "b": [("cat", (0, 0, 10, 40), False)]})

    def run(*args):  # in-process: a subprocess would spend 6 s importing torch per call
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    out = run("stats", "--data", str(root), "--json", "--image-size", "0")
    s = json.loads(out.stdout)
    assert (s["images"], s["objects"], s["horizontal"], s["vertical"], s["classes"]) == (2, 2, 1, 1, ["cat", "dog"])
    preds = [{"image_id": "a", "category_id": 2, "bbox": [1, 1, 30, 10], "score": 0.9},
             {"image_id": "b", "category_id": 2, "bbox": [0, 0, 10, 40], "score": 0.8}]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    out = run("eval", "--data", str(root), "--predictions", str(tmp_path / "p.json"), "--metric", "voc12",
              "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0 and f"2 images of {root}" in out.stderr, out.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["AP"] == {"cat": 0.0, "dog": 1.0} and r["mAP"] == 0.5
    preds[0]["image_id"] = "zzz"
    (tmp_path / "p.json").write_text(json.dumps(preds))
    out = run("eval", "--data", str(root), "--predictions", str(tmp_path / "p.json"))
    assert out.returncode != 0 and "image_id 'zzz', not in the dataset" in out.stderr and "Traceback" not in out.stderr
    out = run("stats", "--data", str(tmp_path / "missing"))
    assert out.returncode != 0 and "dataset not found" in out.stderr and out.stderr.count("\n") == 1
    out = run("stats", "--data", str(tmp_path / "p.json"), "--format", "voc-folder")
    assert out.returncode != 0 and "p.json': a file, not a dataset folder" in out.stderr and out.stderr.count("\n") == 1


def test_voc_devkit_union_and_missing_files(tmp_path):
    for year, ids in (("2007", ["000001", "000002"]), ("2012", ["2012_000001"])):
        base = tmp_path / f"VOC{year}"
        for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (base / d).mkdir(parents=True)
        (base / "ImageSets/Main/trainval.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            Image.new("RGB", (64, 48)).save(base / "JPEGImages" / f"{i}.jpg")
            (base / "Annotations" / f"{i}.xml").write_text(
                voc_xml(i, [("dog", (1, 1, 20, 20), False), ("person", (5, 5, 30, 40), True)]))
    ds = open_dataset(tmp_path, split="trainval")
    assert ds.format == "voc" and len(ds) == 3 and len(ds.classes) == 20
    assert {r.image_id for r in ds.records} == {"2007_000001", "2007_000002", "2012_2012_000001"}
    _, t = ds[0]
    assert t["labels"].tolist() == [12, 15] and t["difficult"].tolist() == [False, True]
    (tmp_path / "VOC2007/JPEGImages/000002.jpg").unlink()
    with pytest.raises(DataError, match="000002.jpg' is missing"):
        open_dataset(tmp_path, split="trainval")
    with pytest.warns(UserWarning, match="skipped 1 bad images"):
        assert len(open_dataset(tmp_path, split="trainval", skip_bad=True)) == 2


def make_devkit(root, layout):
    """A VOC devkit: ``{year: {split: [ids]}}``; every id gets a 64x48 image and one dog."""
    for year, splits in layout.items():
        base = root / f"VOC{year}" if year else root
        for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (base / d).mkdir(parents=True, exist_ok=True)
        for split, ids in splits.items():
            (base / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
            for i in ids:
                Image.new("RGB", (64, 48)).save(base / "JPEGImages" / f"{i}.jpg")
                (base / "Annotations" / f"{i}.xml").write_text(voc_xml(i, [("dog", (1, 1, 20, 20), False)]))
    return root


def test_voc_splits_by_year_on_the_standard_07_12_layout(tmp_path):
    """The paper's 07+12 trainval / 07 test on the standard layout: VOC2012 has no test.txt."""
    from hierhead.engine.data import open_splits
    from hierhead.engine.recipes import load_recipe

    root = make_devkit(tmp_path / "VOCdevkit", {"2007": {"trainval": ["a1", "a2"], "test": ["t1", "t2", "t3"]},
                                                 "2012": {"trainval": ["b1", "b2", "b3", "b4"]}})
    for recipe in ("voc-ssd300", "voc-ssd512"):
        d = load_recipe(recipe)["data"]
        train, test = open_splits(root, d["format"], None, d["train_split"], d["val_split"])
        assert len(train) == 6 and {r.image_id for r in test.records} == {"t1", "t2", "t3"}, recipe
        assert train.name.endswith("(VOC2007 trainval + VOC2012 trainval)")
    assert len(open_dataset(root, split="test")) == 3  # a bare name: every year that has it
    assert len(open_dataset(root, part="test")) == 3 and len(open_dataset(root)) == 6  # parts by split name
    with pytest.raises(DataError, match=r"VOC2012/ImageSets/Main/test.txt': split file not found"):
        open_dataset(root, split="2012/test")
    with pytest.raises(DataError, match=r"VOC split 'val': no val.txt in .*VOC2007/ImageSets/Main or .*VOC2012"):
        open_dataset(root, split="val")
    with pytest.raises(DataError, match=r"VOC2010' not found \(years here: 2007, 2012\)"):
        open_dataset(root, split="2010/trainval")


def test_voc_one_year_devkit_layout(tmp_path):
    """Annotations/, ImageSets/Main/ and JPEGImages/ directly in the root (no VOC20xx folder)."""
    root = make_devkit(tmp_path / "mine", {"": {"trainval": ["x1", "x2"], "test": ["y1"]}})
    ds = open_dataset(root)
    assert ds.format == "voc" and [r.image_id for r in ds.records] == ["x1", "x2"]
    assert [r.image_id for r in open_dataset(root, part="test").records] == ["y1"]


def test_devkit_classes_come_from_its_annotations_and_classes_is_honoured(tmp_path, capsys):
    """A devkit of other classes is not read with the 20 VOC ones; train --classes reaches the data."""
    from hierhead.engine.data import open_splits

    root = tmp_path / "parts"
    for split, ids, cls in (("trainval", ["a", "b"], "bolt"), ("test", ["c"], "nut")):
        make_devkit(root, {"": {split: ids}})
        for i in ids:
            (root / "Annotations" / f"{i}.xml").write_text(voc_xml(i, [(cls, (1, 1, 20, 20), False)]))
    assert open_dataset(root).classes == ["bolt"]
    train, test = open_splits(root, "voc", None, "trainval", "test", classes=["nut", "bolt"])
    assert train.classes == test.classes == ["nut", "bolt"] and train.records[0].labels == [1]
    assert test.records[0].labels == [0]
    assert len(open_dataset(make_devkit(tmp_path / "voc", {"2007": {"trainval": ["x"]}})).classes) == 20  # dog: VOC


def _coco(tmp_path, images, annotations, categories=({"id": 1, "name": "a"},)):
    root = tmp_path / "coco"
    root.mkdir(exist_ok=True)
    for im in images:
        if isinstance(im, dict) and isinstance(im.get("file_name"), str):
            Image.new("RGB", (50, 40)).save(root / im["file_name"])
    path = root / "c.json"
    path.write_text(json.dumps({"images": list(images), "annotations": list(annotations),
                                "categories": list(categories)}))
    return path


@pytest.mark.parametrize("images,annotations,categories,message,skipped", [
    ([{"id": 1, "file_name": "x.png"}, {"id": 1, "file_name": "y.png"}], [], None,
     "c.json: image id 1 appears more than once", {"duplicate ids": 1}),
    ([{"id": 1, "file_name": "x.png"}], [{"id": 9, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}], None,
     "c.json: annotation 9 refers to image id 2, not in 'images'", {"unknown ids": 1}),
    ([{"id": 1, "file_name": "x.png"}], [{"id": 9, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]}], None,
     "c.json: annotation 9 has category id 7, not in 'categories'", {"unknown classes": 1}),
    ([{"id": 1, "file_name": "x.png"}], [{"id": 9, "image_id": 1, "category_id": 1, "bbox": None}], None,
     "c.json: annotation 9 has bbox None, not 4 numbers", {"bad boxes": 1}),
    ([{"id": 1, "file_name": "x.png"}], [{"id": 9, "image_id": 1, "category_id": 1, "bbox": ["1", 1, 5, 5]}], None,
     "c.json: annotation 9 has bbox ['1', 1, 5, 5], not 4 numbers", {"bad boxes": 1}),
    ([{"id": 1, "file_name": "x.png"}], [{"id": 9, "image_id": "1", "category_id": 1, "bbox": [1, 1, 5, 5]}], None,
     "c.json: annotation 9 needs integer 'image_id' and 'category_id'", {"bad annotations": 1}),
    ([{"id": 1}], [], None, "c.json': image {'id': 1} needs an integer 'id' and a string 'file_name'", None),
    ([{"id": 1, "file_name": "x.png"}], [], [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}],
     "c.json': category id 1 / name 'b' appears twice", None),
])
def test_coco_hostile_inputs_are_errors_or_counted_skips(tmp_path, images, annotations, categories, message, skipped):
    """pycocotools' index would keep the last duplicate and drop unknown ids silently: never here."""
    path = _coco(tmp_path, images, annotations, categories or ({"id": 1, "name": "a"},))
    with pytest.raises(DataError) as e:
        open_dataset(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    if skipped:
        with pytest.warns(UserWarning, match="skipped"):
            ds = open_dataset(path, skip_bad=True)
        assert ds.skipped == skipped and sum(len(r.boxes) for r in ds.records) == 0


def test_coco_missing_lists_and_class_order(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="n.json': no 'categories' list"):
        open_dataset(path)
    path = _coco(tmp_path, [{"id": 1, "file_name": "x.png"}],
                 [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}],
                 [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    assert open_dataset(path).records[0].labels == [1]
    ds = open_dataset(path, classes=["b", "a"])  # a checkpoint's order labels by name, never by position
    assert ds.records[0].labels == [0] and ds.coco_ids["categories"] == [2, 1]
