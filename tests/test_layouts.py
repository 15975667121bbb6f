"""Every common export opens from its root: Roboflow's and Ultralytics' YOLO, Roboflow's COCO, VOC folders;
``--split`` picks any split; a split with no images is an error, never a table of zeros."""

import json
from pathlib import Path

import pytest
from PIL import Image

from hierhead.data import DataError, open_dataset
from hierhead.data.sources import find_splits

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def yolo_split(folder, items, size=(100, 50)):
    """``folder/images`` + ``folder/labels``; items: {stem: rows or None (no label file)}."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for stem, rows in items.items():
        Image.new("RGB", size, 90).save(folder / "images" / f"{stem}.jpg")
        if rows is not None:
            (folder / "labels" / f"{stem}.txt").write_text("".join(f"{r}\n" for r in rows))


def roboflow_yolo(root, yaml_text=None):
    yolo_split(root / "train", {"a": ["0 0.5 0.5 0.2 0.4", "1 0.2 0.2 0.1 0.1"], "b": ["1 0.5 0.5 0.5 0.5"]})
    yolo_split(root / "valid", {"c": ["0 0.5 0.5 0.2 0.4"]})
    yolo_split(root / "test", {"d": ["1 0.5 0.5 0.2 0.4"], "e": [], "f": None})
    (root / "data.yaml").write_text(yaml_text or "train: ../train/images\nval: ../valid/images\n\nnc: 2\n"
                                    "names: ['cat', 'dog']\n")  # Roboflow's export leaves out test:
    return root


def boxes(ds):
    return sum(len(r.boxes) for r in ds.records)


def test_roboflow_yolo_root_opens_every_split(tmp_path):
    root = roboflow_yolo(tmp_path / "rf")
    train = open_dataset(root)
    assert (len(train), boxes(train), train.classes, train.split) == (2, 3, ["cat", "dog"], "train")
    assert train.records[0].boxes[0] == pytest.approx([40, 15, 60, 35]) and train.records[0].labels == [0, 1]
    val = open_dataset(root, part="test")  # the held-out split: valid before test
    assert ([r.image_id for r in val.records], val.split) == (["c"], "val")
    assert open_dataset(root, split="valid").split == "val"  # val / valid / validation name one split
    with pytest.warns(UserWarning, match=r"1 of 3 images have no label file and are read as background images \(f.jpg\)"):
        test = open_dataset(root, split="test")
    assert (len(test), boxes(test)) == (3, 1)
    with pytest.raises(DataError, match=r"no split 'holdout' \(splits here: train, val, test\)"):
        open_dataset(root, split="holdout")


def test_ultralytics_yolo_layout_with_path_key(tmp_path):
    root = tmp_path / "ul"
    for split, items in (("train", {"a": ["0 0.5 0.5 0.2 0.2"]}), ("val", {"b": ["1 0.5 0.5 0.2 0.2"], "c": []})):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, rows in items.items():
            Image.new("RGB", (40, 40)).save(root / "images" / split / f"{stem}.png")
            (root / "labels" / split / f"{stem}.txt").write_text("".join(f"{r}\n" for r in rows))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n")
    assert [r.image_id for r in open_dataset(root).records] == ["a"]
    assert [r.image_id for r in open_dataset(root, part="test").records] == ["b", "c"]
    from hierhead.engine.data import open_splits

    train, val = open_splits(root)
    assert (len(train), len(val), val.classes) == (1, 2, ["cat", "dog"])


def test_yaml_paths_from_another_machine_or_outside_the_root_fall_back_with_a_note(tmp_path):
    root = roboflow_yolo(tmp_path / "chess", "train: D:/YOLO/chess/train/images\nval: D:/YOLO/chess/valid/images\n"
                                             "test: ../../outside/images\nnames: [cat, dog]\n")
    (tmp_path / "outside" / "images").mkdir(parents=True)  # exists, but leaves the dataset root
    with pytest.warns(UserWarning) as caught:
        found = find_splits(root)
    note = str(caught[0].message)
    assert note.startswith("data.yaml: train 'D:/YOLO/chess/train/images' does not exist here, reading 'train/images'")
    assert "test '../../outside/images' leaves the dataset root, reading 'test/images'" in note
    assert {n: s.options["images"] for n, s in found.splits.items()} == {
        "train": root / "train" / "images", "val": root / "valid" / "images", "test": root / "test" / "images"}
    (root / "data.yaml").write_text("train: D:/x/train/images\nval: D:/x/holdout/images\nnames: [cat, dog]\n")
    import shutil
    shutil.rmtree(root / "valid")
    with pytest.raises(DataError, match=r"data.yaml': val 'D:/x/holdout/images' does not exist, and neither "
                                        r"val/images nor images/val is in"):
        find_splits(root)


def test_a_split_without_images_is_an_error_never_zeros(tmp_path):
    root = roboflow_yolo(tmp_path / "rf")
    for image in (root / "valid" / "images").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"valid/images': no images"):
        open_dataset(root, part="test")
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (20, 20)).save(folder / "x.jpg")  # images with no annotations at all: not a dataset
    with pytest.raises(DataError, match="1 images but no .xml annotation beside them"):
        open_dataset(folder)
    (folder / "labels").mkdir()
    with pytest.raises(DataError, match="it looks like YOLO data"):
        open_dataset(folder)


def test_files_in_a_labels_folder_that_are_not_txt_are_named(tmp_path):
    root = roboflow_yolo(tmp_path / "rf")
    (root / "train" / "labels" / "a.xml").write_text("<annotation/>")
    with pytest.warns(UserWarning, match=r"labels': 1 files are not YOLO .txt labels and are not read \(a.xml\)"):
        open_dataset(root)


def coco_split(folder, images, anns, group=True):
    folder.mkdir(parents=True)
    cats = ([{"id": 0, "name": "pieces", "supercategory": "none"}] if group else []) + [
        {"id": 1, "name": "cat", "supercategory": "pieces"}, {"id": 2, "name": "dog", "supercategory": "pieces"}]
    for i, name in enumerate(images):
        Image.new("RGB", (60, 40)).save(folder / name)
    doc = {"images": [{"id": i, "file_name": n, "width": 60, "height": 40} for i, n in enumerate(images)],
           "annotations": [{"id": k, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                           for k, (i, c, b) in enumerate(anns)], "categories": cats}
    (folder / "_annotations.coco.json").write_text(json.dumps(doc))


def test_roboflow_coco_root(tmp_path):
    root = tmp_path / "rc"
    coco_split(root / "train", ["a.jpg", "b.jpg", "c.jpg"], [(0, 1, [1, 1, 10, 10]), (1, 2, [5, 5, 20, 20]),
                                                             (2, 2, [0, 0, 30, 30]), (2, 1, [2, 2, 8, 8])])
    coco_split(root / "valid", ["d.jpg"], [(0, 2, [1, 1, 10, 10])])
    coco_split(root / "test", ["e.jpg", "f.jpg"], [(0, 1, [1, 1, 10, 10])])
    train = open_dataset(root)
    assert (len(train), boxes(train), train.classes) == (3, 4, ["cat", "dog"])  # the group 'pieces' is no class
    assert train.records[2].labels == [1, 0]
    assert (len(open_dataset(root, part="test")), len(open_dataset(root, split="test"))) == (1, 2)
    from hierhead.engine.data import open_splits

    assert [len(d) for d in open_splits(root)] == [3, 1]


def test_coco_annotations_folder_layout(tmp_path):
    root = tmp_path / "coco"
    coco_split(root / "train2017", ["a.jpg"], [(0, 1, [1, 1, 10, 10])], group=False)
    (root / "annotations").mkdir()
    (root / "train2017" / "_annotations.coco.json").rename(root / "annotations" / "instances_train2017.json")
    assert list(find_splits(root).splits) == ["train2017"]
    assert boxes(open_dataset(root, split="train2017")) == 1


def test_a_held_out_split_is_labelled_with_the_training_classes(tmp_path):
    from tests.test_data import make_folder

    make_folder(tmp_path / "d" / "train", {"a": [("cat", (1, 2, 30, 40), False)], "b": [("dog", (1, 2, 30, 40), False)]})
    make_folder(tmp_path / "d" / "test", {"c": [("dog", (1, 2, 30, 40), False)]})  # no cat in test
    test = open_dataset(tmp_path / "d", part="test")
    assert (test.classes, test.records[0].labels) == (["cat", "dog"], [1])


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")
@pytest.mark.parametrize("name, images, objects, classes, held_out", [
    ("cards", 296, 527, 6, "test"), ("microcontrollers", 142, 170, 4, "test"), ("raccoon", 160, 173, 1, "test"),
    ("aerial", 371, 1237, 5, "valid"), ("aquarium", 448, 3324, 7, "val"), ("chess", 202, 2108, 13, "val")])
def test_six_shared_domains_open_from_their_roots(name, images, objects, classes, held_out, recwarn):
    found = find_splits(SHARED / name)
    assert found.train is not None and found.held_out.name == held_out
    train = found.train.open()
    assert (len(train), boxes(train), len(train.classes)) == (images, objects, classes)


def test_voc_folder_images_without_xml_are_counted_and_named(tmp_path):
    from tests.test_data import make_folder

    root = make_folder(tmp_path / "d", {"a": [("cat", (1, 2, 30, 40), False)]})
    Image.new("RGB", (64, 48)).save(root / "b.png")
    with pytest.warns(UserWarning, match=r"1 images have no .xml annotation and are read as background images \(b.png\)"):
        assert len(open_dataset(root)) == 2


@pytest.mark.parametrize("layout", ["yolo", "coco"])
def test_cli_stats_and_eval_read_the_chosen_split(tmp_path, capsys, layout):
    from hierhead.cli import main

    root = tmp_path / "r"
    if layout == "yolo":
        roboflow_yolo(root)
    else:
        coco_split(root / "train", ["a.jpg", "b.jpg"], [(0, 1, [1, 1, 10, 10]), (1, 2, [5, 5, 20, 20]),
                                                         (1, 1, [30, 5, 20, 20])])
        coco_split(root / "valid", ["c.jpg"], [(0, 1, [1, 1, 10, 10])])
        coco_split(root / "test", ["d.jpg", "e.jpg", "f.jpg"], [(0, 2, [1, 1, 10, 10])])
    capsys.readouterr()
    for split, images, objects in (([], 2, 3), (["--split", "test"], 3, 1), (["--split", "val"], 1, 1)):
        assert main(["stats", "--data", str(root), "--json", *split]) == 0
        out = capsys.readouterr()
        s = json.loads(out.out)
        assert (s["images"], s["objects"], s["classes"]) == (images, objects, ["cat", "dog"])
        assert f"{images} images of" in out.err and ("(split " + (split[1] if split else "train")) in out.err
    test_id = "d"
    (tmp_path / "p.json").write_text(json.dumps([{"image_id": test_id if layout == "yolo" else 0, "category_id": 2,
                                                  "bbox": [40, 15, 20, 20] if layout == "yolo" else [1, 1, 9, 9],
                                                  "score": 0.9}]))
    code = main(["eval", "--data", str(root), "--split", "test", "--predictions", str(tmp_path / "p.json"),
                 "--out", str(tmp_path / "pics")])
    out = capsys.readouterr()
    assert code == 0 and "mAP (voc07)" in out.out and "(split test)" in out.err, out.err
    assert (tmp_path / "pics" / "PR_curve.png").is_file()


def test_a_split_folder_given_alone_says_how_to_read_it(tmp_path):
    root = roboflow_yolo(tmp_path / "rf")
    for given in (root / "test", root / "test" / "images"):
        with pytest.raises(DataError, match=r"it is a split of the YOLO dataset '.*rf': give --data '.*rf' --split test"):
            open_dataset(given)
