"""Experiments: synthetic anchor-transfer data, sweep (resumable, tables), recommend, demo."""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
from pathlib import Path

import pytest

from hierhead.cli import main
from hierhead.comparison import decide, holm, paired_interval, paired_p, table
from hierhead.data import open_dataset
from hierhead.data.synthetic import open_synthetic, parse_spec, shape_of, unseen_only
from hierhead.study import ROW_COLUMNS

CARDS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cards"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HIERHEAD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


SIDE = 160  # small images: the shapes are fractions of the side


def _shape(box):
    return shape_of(box, SIDE)


@pytest.mark.parametrize("mode", ["ratio", "size", "all"])
def test_synthetic_train_restricts_shapes_and_test_covers_all(mode):
    train, test = open_synthetic(f"synthetic:mode={mode},classes=3,train=60,test=60,size={SIDE},seed=1")
    assert len(train) == 60 and len(test) == 60 and train.classes == ["class0", "class1", "class2"]
    seen = {(c, _shape(b)) for r in train.records for c, b in zip(r.labels, r.boxes)}
    for c, (s, r) in seen:
        if mode == "ratio":
            assert r == c % 3
        elif mode == "size":
            assert s == c % 3
    test_shapes = {(c, _shape(b)) for r in test.records for c, b in zip(r.labels, r.boxes)}
    assert len({sr for _, sr in test_shapes}) == 9  # every shape appears at test time
    if mode != "all":
        assert len({sr for c, sr in test_shapes if c == 0}) > len({sr for c, sr in seen if c == 0})


def test_unseen_only_keeps_just_the_untrained_class_shapes():
    train, test = open_synthetic(f"synthetic:mode=ratio,classes=3,train=60,test=60,size={SIDE},seed=1")  # as above
    unseen = unseen_only(train, test)
    objects = [(c, _shape(b), d) for r in unseen.records for c, b, d in zip(r.labels, r.boxes, r.difficult)]
    assert [r.boxes for r in unseen.records] == [r.boxes for r in test.records] and not any(test.records[0].difficult)
    assert all(d == (s[1] == c % 3) for c, s, d in objects)  # ratio mode: class c trained at ratio c only
    assert 0 < sum(d for *_, d in objects) < len(objects)
    _, every = open_synthetic(f"synthetic:mode=all,classes=3,train=60,test=60,size={SIDE},seed=1")
    assert all(all(r.difficult) for r in unseen_only(every, every).records)


def test_synthetic_is_seeded_and_validated():
    a, _ = open_synthetic("synthetic:train=5,test=2,seed=4")
    b, _ = open_synthetic("synthetic:train=5,test=2,seed=4")
    assert [r.boxes for r in a.records] == [r.boxes for r in b.records]
    assert a.records[0].image_path == b.records[0].image_path
    for bad, msg in [("synthetic:mode=wide", "mode='wide'"), ("synthetic:colour=3", "unknown key 'colour'"),
                     ("synthetic:train=x", "not an integer"),
                     ("synthetic:palette=pastel", "palette='pastel'; choose random, class")]:
        with pytest.raises(ValueError, match=msg):
            parse_spec(bad)


def test_synthetic_class_palette_colours_each_class():
    import colorsys

    import numpy as np
    from PIL import Image

    train, _ = open_synthetic("synthetic:mode=all,classes=3,train=20,test=1,seed=2,palette=class")
    checked, matched = 0, 0
    for r in train.records:
        pixels = np.asarray(Image.open(r.image_path).convert("RGB")).astype(int)
        for c, (x1, y1, x2, y2) in zip(r.labels, r.boxes):
            centre = pixels[int(y1 + y2) // 2, int(x1 + x2) // 2]  # classes 0-2: filled outlines
            shades = [255 * np.array(colorsys.hsv_to_rgb((int(c) * 0.618034) % 1.0, 0.9, v)) for v in (0.95, 0.45)]
            matched += min(np.abs(centre - s).max() for s in shades) <= 21
            checked += 1
    assert checked >= 20 and matched >= 0.9 * checked, (matched, checked)  # a later object may cover a centre


def test_paired_interval_and_table():
    m, lo, hi = paired_interval([1.0, 2.0, 3.0])
    assert m == 2 and lo == pytest.approx(2 - 4.302653 / math.sqrt(3)) and hi == pytest.approx(2 + 4.302653 / math.sqrt(3))
    rows = [{"design": d, "seed": s, "fraction": f, "metric": "voc07", "mAP": v}
            for d, base in (("9An{9}", 0.5), ("9An{9,3}S", 0.6)) for f in (0.5, 1.0) for s, v in
            enumerate((base, base + 0.02))]
    md = table(rows)
    assert "| 9An{9,3}S | **60.00 +- 0.00" not in md  # std of 60, 62 is not 0
    assert "**61.00 +- 1.41 (n=2)**<br>+10.00 [+10.00, +10.00], ahead 2/2" in md
    assert md.count("| all pairs |") == 1 and "+10.00 [+10.00, +10.00], ahead 4/4 |" in md  # 2 fractions x 2 seeds
    assert "all pairs" not in table([r for r in rows if r["fraction"] == 1.0])
    assert "Holm-corrected" in md and "better than 9An{9}: 9An{9,3}S; worse: none; inconclusive (no difference shown, or a single pair): none." in md
    worse = [{**r, "mAP": r["mAP"] - 0.2 + 0.01 * r["seed"]} if r["design"] != "9An{9}" else r for r in rows]
    assert "better than 9An{9}: none; worse: 9An{9,3}S;" in table(worse)
    single = table([r for r in rows if r["seed"] == 0 and r["fraction"] == 1.0])
    assert "better than 9An{9}: none; worse: none; inconclusive (no difference shown, or a single pair): 9An{9,3}S." in single and "| 9An{9} | 51.00 +- 1.41 (n=2) |" in md


def test_holm_and_the_plans_decision_rule():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])  # step-down, kept monotone
    assert paired_p([1.0, 1.0]) == 0.0 and paired_p([0.0, 0.0]) == 1.0 and paired_p([3.0]) == 1.0
    assert paired_p([1.0, 2.0, 3.0]) == pytest.approx(0.0742, abs=1e-4)  # t = 3.46 on 2 degrees of freedom
    _, lo, hi = paired_interval([1.0, 2.0, 3.0], alpha=0.05 / 5)  # a Bonferroni interval is wider
    assert hi - 2 == pytest.approx(2 - lo) and hi - 2 > 4.303 / math.sqrt(3)
    small = [0.1, -0.1, 0.2, -0.2, 0.0, 0.1, -0.1, 0.05, -0.05, 0.0]
    clear = [2.0, 2.5, 1.5, 2.2, 1.8, 2.1, 1.9, 2.4, 1.6, 2.0]
    v = decide({"a": small, "b": clear, "c": [-x for x in clear], "d": [5.0, -4.0, 6.0, -5.0]}, margin=1.0)
    assert [v[k]["verdict"] for k in "abcd"] == ["no effect within +-1", "better", "worse", "inconclusive"]
    assert v["b"]["p_holm"] == pytest.approx(4 * v["b"]["p"])  # b and c tie for the smallest p: both times 4 and v["a"]["n"] == 10
    assert [v[k]["ahead"] for k in "abcd"] == ["4/10", "10/10", "0/10", "2/4"]  # a tie (0.0) is not ahead
    assert decide({"a": small})["a"]["verdict"] == "inconclusive"  # no margin: no equivalence claim
    # Holm can leave a design inconclusive that its own uncorrected interval would call better
    p1 = [0.5, 1.5, 0.2, 1.8, 1.0]
    assert paired_interval(p1)[1] > 0 and decide({"x": p1, **{f"y{i}": [0.1, -0.1] for i in range(5)}})["x"]["verdict"] == "inconclusive"


def test_sweep_is_resumable_and_writes_its_tables(tmp_path, capsys):
    args = ["sweep", "--recipe", "cards-ssdlite", "--data", "synthetic:classes=2,train=8,test=4,size=64",
            "--designs", "9An{9,3,1}As", "--seeds", "1", "--fractions", "0.5,1", "--max-steps", "1",
            "--out", str(tmp_path), "--set", "batch_size=2", "--set", "num_workers=0", "--set", "progress=false",
            "--set", "image_size=128"]  # small images: the test is about the sweep, not the detector
    assert main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 4 and list(rows[0]) == list(ROW_COLUMNS)  # the row schema of every study
    assert {(r["arm"], r["design"], r["seed"], r["fraction"]) for r in rows} == {
        (d, d, "0", f) for d in ("9An{9}", "9An{9,3,1}As") for f in ("0.5", "1.0")}
    assert {r["train_images"] for r in rows} == {"4", "8"} and {r["protocol"] for r in rows} == {"train"}
    from hierhead.provenance import provenance
    assert {(r["version"], r["commit"].removesuffix("+dirty")) for r in rows} == {  # every row names its code
        (provenance()["version"], provenance()["commit"] or "")}
    md = (tmp_path / "results.md").read_text()
    assert "| 9An{9,3,1}As |" in md and "50 % of train" in md and "100 % of train" in md
    assert (tmp_path / "results.png").stat().st_size > 5000
    assert main(["study", "run", str(tmp_path / "plan.yaml"), "--dry-run"]) == 0  # the sweep is a plan
    assert "4 with rows, 0 finished to merge, 0 pending" in capsys.readouterr().out
    # a second call finds every run finished and trains nothing; a lost row is rerun alone
    lost = next(r for r in rows if r["arm"] == "9An{9,3,1}As" and r["fraction"] == "1.0")
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(r for r in rows if r is not lost)
    (tmp_path / "runs" / "results" / "synthetic" / "9An{9,3,1}As" / "seed0" / "row.json").unlink()
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "1 of 4 jobs to run" in log and "[1/1] results/synthetic/9An{9,3,1}As/seed0:" in log
    again = {(r["arm"], r["fraction"]): r for r in csv.DictReader(open(tmp_path / "results.csv"))}
    assert len(again) == 4 and again[("9An{9,3,1}As", "1.0")]["mAP"] == lost["mAP"]  # resumed to the same score


def test_sweep_runs_in_worker_processes_and_refuses_another_settings_folder(tmp_path, capsys):
    args = ["sweep", "--recipe", "cards-ssdlite", "--data", "synthetic:classes=2,train=4,test=2,size=64",
            "--designs", "9An{9,3}S", "--seeds", "1", "--max-steps", "1", "--out", str(tmp_path),
            "--set", "batch_size=2", "--set", "num_workers=0", "--set", "progress=false", "--set", "image_size=128"]
    assert main([*args, "--workers", "2", "--threads", "1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert sorted(r["arm"] for r in rows) == ["9An{9,3}S", "9An{9}"] and {r["threads"] for r in rows} == {"1"}
    assert all((tmp_path / "runs" / "results" / "synthetic" / r["arm"] / "seed0" / "job.log").is_file() for r in rows)
    capsys.readouterr()
    assert main([*args, "--set", "batch_size=1"]) == 2
    err = capsys.readouterr().err
    assert "holds a sweep with other settings" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--workers", "-1"]) == 2 and "--workers -1" in capsys.readouterr().err


def test_sweep_rejects_bad_settings_before_training(tmp_path, capsys):
    base = ["sweep", "--recipe", "cards-ssdlite", "--data", "synthetic:train=4,test=2", "--out", str(tmp_path)]
    for extra, msg in ((["--designs", "9An{9,4}S"], "9An{9,4}S"),
                       (["--seeds", "0"], "seeds=0: needs at least 1"),
                       (["--fractions", "0.5,0"], "fractions [0.0]: each must be in (0, 1]"),
                       (["--fractions", "half"], "--fractions 'half': expected comma-separated numbers"),
                       (["--data", str(tmp_path / "nowhere")], "nowhere': dataset not found")):
        code = main([*base, *extra])
        err = capsys.readouterr().err
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not CARDS.is_dir(), reason="cards not present")
def test_recommend_on_cards(capsys):
    assert main(["recommend", "--data", str(CARDS / "train"), "--model", "ssdlite320_mobilenet_v3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "9An{9,3,1}S"  # cards: sizes lopsided (variation 0.41), aspect ratios even (0.16)
    assert "vary more across sizes" in out[1] and "527 training objects" in out[2]
    assert "paper's heuristic, not a measurement" in out[3] and "agreed with our sweeps" in out[3]
    assert any(line.startswith("Our evidence") for line in out) and not any("<!--" in line for line in out)
    assert "| `9An{9,3,1}S` | 5 of 10 | 4 of 10 |" in out  # generated from the rows (studies/pretrained-p2.yaml)
    commands = [shlex.split(line) for line in out if line.startswith("  hierhead ")]
    assert [c[1] for c in commands] == ["train", "sweep"]
    assert "--protocol head" in out[-1] and "--designs '9An{9,3,1}S'" in out[-1]
    from hierhead.cli import parser

    for command in commands:  # each runs as printed: no required argument left out, no placeholder
        args = parser().parse_args(command[1:])
        assert "CKPT" not in command and args.data == str(CARDS / "train")
    # a model whose ImageNet weights ship: the whole detector fine-tuned from them (no trained start); the frozen
    # protocol ranked the designs in reverse on our rows, so it is not offered as a screen
    assert main(["recommend", "--data", str(CARDS / "train"), "--model", "ssdlite320_efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    commands = [shlex.split(line) for line in out.splitlines() if line.startswith("  hierhead ")]
    assert [c[1] for c in commands] == ["sweep"] and not any("--init" in c for c in commands)
    args = parser().parse_args(commands[0][1:])
    assert args.protocol == "imagenet" and args.designs == "9An{9,3,1}S"
    assert "in reverse" in out and "no screen" in out and "about 20 min a run" in out


#: Table II of the paper: (vertical, square, horizontal), (small, medium, large), objects, the paper's reading.
TABLE_TWO = {"VOC (SSD300)": ((24852, 16763, 5608), (9035, 16710, 21478), 47223, "As"),
             "VOC (SSD512)": ((24864, 16749, 5610), (3669, 13110, 30444), 47223, "S"),
             "Flickr (SSD1024)": ((497, 607, 832), (91, 651, 1194), 1936, "S")}


def _shaped_like(ratios, sizes, scale: int):
    """A dataset whose boxes fall in Table II's buckets with the row's counts divided by ``scale``:
    box i gets the i-th ratio bucket and the i-th size bucket (w/h 0.5 / 1 / 2, area 20^2 / 60^2 / 150^2)."""
    from hierhead.data.readers import DetectionDataset
    from hierhead.data.records import Problems, Record

    shapes = [r for r, n in zip((0.5, 1.0, 2.0), ratios) for _ in range(round(n / scale))]
    sides = [s for s, n in zip((20.0, 60.0, 150.0), sizes) for _ in range(round(n / scale))]
    records = []
    for i, (r, side) in enumerate(zip(shapes, sides)):
        w, h = side * r ** 0.5, side / r ** 0.5
        records.append(Record(Path(f"{i}.jpg"), str(i), 300, 300, [[10.0, 10.0, 10.0 + w, 10.0 + h]], [0], [False]))
    return DetectionDataset(records, ["object"], "table-two", Problems(False))


@pytest.mark.parametrize("row", list(TABLE_TWO))
def test_recommend_reads_table_two_as_the_paper(row):
    """IV-C: VOC-SSD300 varies more over aspect ratios -> As; VOC-SSD512 more over scale -> S; the
    FlickrLogos-47 winners share across sizes with the global unit (Table IV)."""
    from hierhead.recommend import design_for, recommend

    ratios, sizes, objects, share = TABLE_TWO[row]
    full = dict(zip(("vertical", "square", "horizontal", "small", "medium", "large"), ratios + sizes), objects=objects)
    assert design_for(full)["design"] == ("9An{9,3}" if objects > 20_000 else "9An{9,3,1}") + share
    ds = _shaped_like(ratios, sizes, scale=100 if objects > 20_000 else 10)  # counts scaled down
    r = recommend(ds, None)
    assert r["objects"] == len(ds) and r["design"] == "9An{9,3,1}" + share, (row, r)


def test_recommend_rejects_an_unknown_model(capsys):
    assert main(["recommend", "--data", "synthetic:train=4,test=1", "--model", "yolo9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hierhead recommend: error: model 'yolo9': unknown; choose one of") and "\n" not in err


def test_recommend_follows_the_variation(tmp_path):
    from hierhead.recommend import recommend

    train, _ = open_synthetic("synthetic:mode=size,classes=1,train=40,test=1")  # class 0: one size, all ratios
    assert recommend(train, 320)["design"] == "9An{9,3,1}S"  # sizes lopsided: share across sizes
    train, _ = open_synthetic("synthetic:mode=ratio,classes=1,train=40,test=1")  # one ratio, all sizes
    assert recommend(train, 320)["design"] == "9An{9,3,1}As"


def test_demo_runs_end_to_end(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path), "--seeds", "2", "--steps", "2",
                 "--data", "synthetic:classes=2,train=16,test=4", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "every run from ImageNet" in out and "start" not in out.replace("starts", "")  # no trained start
    assert "Folded detections identical to the hierarchical model's: True" in out
    assert "| general 9An{9} |" in out and "| hierarchical 9An{9,3,1}As (folded) |" in out
    diff = next(line for line in out.splitlines() if line.startswith("| difference |"))
    assert re.search(r"\| [+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] \|", diff)  # mean [95 % interval]
    assert "All shapes: " in out and "Unseen shapes: " in out
    assert (tmp_path / "per_class_ap.png").is_file() and (tmp_path / "side_by_side.png").is_file()
    assert (tmp_path / "results.md").read_text().count("|") > 20
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))  # every (design, seed), paired by seed
    assert [(r["design"], r["seed"]) for r in rows] == [("9An{9}", "0"), ("9An{9}", "1"), ("9An{9,3,1}As", "0"),
                                                        ("9An{9,3,1}As", "1")]
    mean = sum(float(r["mAP"]) for r in rows[2:]) / 2 - sum(float(r["mAP"]) for r in rows[:2]) / 2
    assert f"| difference | {mean:+.2f} [" in out and set(rows[0]) >= {"unseen_mAP", "AP:class0", "AP:class1",
                                                                        "version", "commit"}
    # a packaged plan: one study row per run (the frozen protocol), equal to the demo's all-shapes scores
    plan_rows = list(csv.DictReader(open(tmp_path / "rows.csv")))
    assert list(plan_rows[0]) == list(ROW_COLUMNS) and {r["protocol"] for r in plan_rows} == {"frozen"}
    scores = {(r["design"], r["seed"]): float(r["mAP"]) for r in rows}
    assert len(plan_rows) == 4 and all(abs(float(r["mAP"]) - scores[(r["arm"], r["seed"])]) < 1e-3 for r in plan_rows)
    table = (tmp_path / "results.md").read_text()
    assert main(["demo", "--out", str(tmp_path), "--seeds", "2", "--steps", "2",  # again: resumed, nothing trained
                 "--data", "synthetic:classes=2,train=16,test=4", "--no-progress"]) == 0
    assert (tmp_path / "results.md").read_text().split("| difference")[1] == table.split("| difference")[1]


def test_demo_picture_draws_the_truth_marks_unseen_shapes_then_the_detections():
    import torch

    from hierhead.demo import panel_items

    target = {"boxes": torch.tensor([[0.0, 0, 10, 20], [30, 30, 60, 45]]), "labels": torch.tensor([1, 2]),
              "difficult": torch.tensor([True, False])}  # unseen_only marks the shapes seen in training difficult
    det = {"boxes": torch.tensor([[1.0, 1, 9, 19], [5, 5, 8, 8], [31, 30, 60, 44]]),
           "scores": torch.tensor([0.9, 0.1, 0.4]), "labels": torch.tensor([1, 1, 3])}
    items = panel_items(det, target, ["a", "b"], score=0.3)
    assert [(i["kind"], i["text"]) for i in items] == [("seen", "a"), ("unseen", "b"), ("detection", "a 0.90"),
                                                       ("detection", "3 0.40")]
    assert items[1]["box"] == [30.0, 30.0, 60.0, 45.0]


def test_demo_per_class_plot_keeps_its_title_inside_the_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from hierhead.demo import _plot_ap, _split_text, class_labels

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to measure it
    classes = ["class0", "class1", "class2"]
    results = {d: [{"mAP": 40.0 + s, "AP": {c: 30.0 + s for c in classes}} for s in range(3)]
               for d in ("9An{9}", "9An{9,3}As")}
    _plot_ap(results, ("9An{9}", "9An{9,3}As"), classes, class_labels("ratio", classes), _split_text("ratio"),
             tmp_path / "ap.png")
    fig = figures[0]
    box = fig.axes[0].title.get_window_extent(fig.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1  # the longest split text was cut off


def test_demo_data_and_start_are_pinned():
    """What `make demo` measures is fixed: its data (boxes, labels, sizes and two images' pixels) and its
    start (every run from the shipped ImageNet weights, no trained start). A change to either shows here."""
    import hashlib

    from hierhead.data.readers import load_image
    from hierhead.data.synthetic import open_synthetic
    from hierhead.demo import DATA, MODEL
    from hierhead.models.pretrained import packaged_weights

    assert DATA == "synthetic:mode=ratio,classes=3,train=240,test=60,size=160,palette=class"
    assert MODEL == "ssdlite320_efficientnet_lite0"
    train, test = open_synthetic(DATA)
    h = hashlib.sha256()
    for ds in (train, test):
        for r in ds.records:
            h.update(json.dumps([r.width, r.height, r.boxes, r.labels]).encode())
    for r in (train.records[0], test.records[-1]):
        h.update(load_image(r.image_path).numpy().tobytes())
    assert (len(train), len(test)) == (240, 60)
    assert h.hexdigest() == "10800989052a279d6b5f4671e14e47e3b5f8b8914f22993cc259f46c8fc13242"
    weights = Path(packaged_weights("tf_efficientnet_lite0")).read_bytes()
    assert hashlib.sha256(weights).hexdigest() == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def test_demo_labels_say_what_each_class_was_trained_at():
    from hierhead.demo import class_labels

    names = ["class0", "class1", "class2", "class3"]
    assert class_labels("ratio", names) == [
        "class0\n(trained square only)", "class1\n(trained wide only)", "class2\n(trained tall only)",
        "class3\n(trained square only)"]
    assert class_labels("size", names[:3]) == [
        "class0\n(trained small only)", "class1\n(trained medium only)", "class2\n(trained large only)"]
    assert class_labels("all", names) == names


def test_open_dataset_takes_a_synthetic_spec():
    spec = "synthetic:mode=ratio,classes=2,train=6,test=3,seed=5"
    train, test = open_synthetic(spec)
    assert [r.image_path for r in open_dataset(spec).records] == [r.image_path for r in train.records]
    assert [r.image_path for r in open_dataset(spec, part="test").records] == [r.image_path for r in test.records]
    with pytest.raises(ValueError, match="part='val'; choose train or test"):
        open_dataset(spec, part="val")
