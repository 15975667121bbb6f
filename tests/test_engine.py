"""Training engine: CLI train -> eval / predict / fold / export on the cards dataset, resume, DDP, recipes."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hierhead.cli import main
from hierhead.engine import load_checkpoint, parse_overrides, recipes, resolve
from hierhead.engine.recipes import load_recipe

CARDS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cards"
needs_cards = pytest.mark.skipif(not CARDS.is_dir(), reason="../shared/datasets/cards not present")
QUICK = ["--set", "num_workers=0", "--set", "progress=false", "--set", "val_batch_size=8",
         "--set", "log_every_n_steps=1"]


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 3-step cards run through the CLI (validation on a 12-image val set), on the torchvision-backbone
    SSDLite: its deployment needs torchvision only (timm backbones: tests/test_pretrained.py)."""
    root = tmp_path_factory.mktemp("run")
    from test_data import linked_subset

    val = linked_subset(CARDS / "test", root / "val", 12)
    if not CARDS.is_dir():
        pytest.skip("../shared/datasets/cards not present")
    code = main(["train", "--recipe", "cards-ssdlite", "--model", "ssdlite320_mobilenet_v3", "--design", "9An{9,3,1}S",
                 "--set", "frozen_stages=0",  # the recipe's frozen_stages is a timm-backbone setting
                 "--data", str(CARDS / "train"), "--val", str(val),
                 "--max-steps", "4", "--batch-size", "2", "--out", str(root / "out"),
                 "--set", "val_every_n_steps=3", "--set", "checkpoint_every_n_steps=2", "--set", "image_size=160",
                 *QUICK])  # 160 px: what the tests below check does not depend on the input size
    assert code == 0
    return root


@needs_cards
def test_train_writes_checkpoints_config_and_logs(trained):
    out = trained / "out"
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    assert not list((out / "checkpoints").glob("*.tmp"))
    config = (out / "config.yaml").read_text()
    assert "cards-ssdlite" in config and "max_steps: 4" in config
    metrics = (out / "logs" / "metrics.csv").read_text()
    assert "val/mAP" in metrics and "train/loss" in metrics
    lrs = [k for k in next(csv.reader(io.StringIO(metrics))) if k.startswith("lr-")]  # named groups, not pg1, pg2
    assert lrs and all(k.split("/")[-1] in ("detector", "units", "backbone") for k in lrs), lrs
    # every 3 steps and at the last (4 is not a multiple of 3): Lightning's 0-based steps 2 and 3
    val_steps = [int(r["step"]) for r in csv.DictReader(io.StringIO(metrics)) if r.get("val/mAP")]
    assert val_steps == [2, 3], val_steps
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    model, spec = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert spec.classes == ["ace", "jack", "king", "nine", "queen", "ten"]
    assert spec.design == "9An{9,3,1}S" and spec.num_classes == 7 and spec.image_size == [160, 160]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


@needs_cards
def test_eval_predict_fold_export(trained, capsys, tmp_path):
    ckpt = str(trained / "out" / "checkpoints" / "last.ckpt")
    code, out, _ = _cli(["eval", "--checkpoint", ckpt, "--data", str(trained / "val"), "--json",
                         str(tmp_path / "r.json")], capsys)
    assert code == 0 and "mAP (voc07)" in out
    assert 0 <= json.loads((tmp_path / "r.json").read_text())["mAP"] <= 1

    images = sorted(p for p in (trained / "val").iterdir() if p.suffix.lower() == ".jpg")[:2]
    code, out, _ = _cli(["predict", "--checkpoint", ckpt, *map(str, images), "--out", str(tmp_path / "p"),
                         "--score", "0.0"], capsys)
    assert code == 0 and "2 annotated images" in out
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == sorted(i.stem + ".png" for i in images)
    rows = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert rows and {r["image_id"] for r in rows} <= {i.stem for i in images}
    assert all(len(r["bbox"]) == 4 and 1 <= r["category_id"] <= 6 for r in rows)

    code, out, _ = _cli(["fold", "--checkpoint", ckpt, "--out", str(tmp_path / "deploy")], capsys)
    assert code == 0 and "load_state_dict(load_file" in out
    spec = json.loads((tmp_path / "deploy" / "model.json").read_text())
    assert spec["classes"][0] == "ace" and len(spec["anchors"]["wh_pairs"]) == 6

    # the folded model loads with torch + torchvision only (no hierhead, no timm), and detects what the checkpoint detects
    script = ("import sys, json, torch; sys.modules['hierhead'] = None; sys.modules['timm'] = None\n"
              "from load_model import load\n"
              "m = load('.'); torch.manual_seed(0); x = [torch.rand(3, 240, 330), torch.rand(3, 320, 320)]\n"
              "with torch.no_grad(): out = m(x)\n"
              "torch.save([{k: v for k, v in d.items()} for d in out], 'out.pt')\n")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "deploy", check=True)
    stock_out = torch.load(tmp_path / "deploy" / "out.pt", weights_only=True)
    model, _ = load_checkpoint(ckpt)
    torch.manual_seed(0)
    x = [torch.rand(3, 240, 330), torch.rand(3, 320, 320)]
    with torch.no_grad():
        ours = model(x)
    for a, b in zip(ours, stock_out):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=0)

    code, out, err = _cli(["export", "--checkpoint", ckpt, "--onnx", str(tmp_path / "new" / "m.onnx")], capsys)
    assert code == 0 and err == "", err  # a 3-step model passes its check, without library noise; folder made
    assert "checked with onnxruntime" in out and (tmp_path / "new" / "m.onnx").stat().st_size > 1e6
    assert not list((tmp_path / "new").glob("*.tmp*"))
    from hierhead.models import deploy

    with pytest.MonkeyPatch.context() as mp:  # a graph that fails its check leaves no file
        mp.setattr(deploy, "_detections_differ", lambda *a: "3 vs 300 detections")
        code, _, err = _cli(["export", "--checkpoint", ckpt, "--onnx", str(tmp_path / "bad.onnx")], capsys)
    assert code == 2 and "3 vs 300 detections" in err and "nothing written" in err and err.count("\n") == 1
    assert not list(tmp_path.glob("bad.onnx*"))


@needs_cards
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, capfd):
    from lightning.pytorch.callbacks import Callback

    from hierhead.engine.trainer import train

    class Crash(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 4:
                raise RuntimeError("killed")

    def config(out):
        return resolve("cards-ssdlite", {"data": {"path": str(CARDS), "fraction": 0.1}, "max_steps": 6, "design": "9An{9,3,1}S",
                                         "batch_size": 2, "checkpoint_every_n_steps": 3, "val_every_n_steps": None,
                                         "deterministic": True, "num_workers": 0, "progress": False,
                                         "out": str(out), "seed": 3, "log_every_n_steps": 1,
                                         "image_size": 160})  # small images: the test is about resuming

    train(config(tmp_path / "a"))
    logged = (tmp_path / "a/logs/metrics.csv").read_text()
    with pytest.raises(FileExistsError, match=r"holds a run .*--resume continues it; give a new --out"):
        train(config(tmp_path / "a"))  # without --resume: refused, the earlier run untouched
    assert (tmp_path / "a/logs/metrics.csv").read_text() == logged
    with pytest.raises(RuntimeError, match="killed"):
        train(config(tmp_path / "b"), callbacks=[Crash()])
    crashed = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert crashed["global_step"] == 3
    before = crashed["callbacks"]["Timer"]["time_elapsed"]["train"]  # training time travels in the checkpoint
    other = {**config(tmp_path / "b"), "design": "9An{9,3}S"}
    with pytest.raises(ValueError, match=re.escape("trained with design='9An{9,3,1}S', this run has design='9An{9,3}S'")):
        train(other, resume=True)
    capfd.readouterr()
    from hierhead.engine import trainer as trainer_module
    with pytest.MonkeyPatch.context() as mp:  # a terminal: the bar (a log file gets lines, test below)
        mp.setattr(trainer_module, "_terminal", lambda: True)
        resumed = train({**config(tmp_path / "b"), "progress": True}, resume=True)  # the bar may change on resume
    assert resumed["train_seconds"] >= round(before, 1) > 0
    bar = capfd.readouterr().out  # one bar of the run's steps, from the step resumed (not "0/?" per epoch)
    assert "| 3/6 [" in bar and "| 6/6 [" in bar and "/?" not in bar and "| 0/" not in bar
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k

    def losses(run):  # the resumed run's log keeps its steps before the crash, once each, and equal
        rows = csv.DictReader((tmp_path / run / "logs/metrics.csv").open())
        return [(r["step"], r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses("a") == losses("b") and len(losses("a")) == 6 and not list((tmp_path / "b/logs").glob("*.part*"))

    # a checkpoint written before the spec became Lightning hyper-parameters and the schedule torch's
    # schedulers (spec under "hierhead", a LambdaLR state) resumes to the same weights
    (tmp_path / "c/checkpoints").mkdir(parents=True)
    _write_legacy(crashed, tmp_path / "c/checkpoints/last.ckpt")
    train(config(tmp_path / "c"), resume=True)
    c = torch.load(tmp_path / "c/checkpoints/last.ckpt", weights_only=True)
    assert c["global_step"] == 6 and c["hyper_parameters"]["spec"]["design"] == "9An{9,3,1}S"
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], c["state_dict"][k]), k


def _write_legacy(ckpt: dict, path: Path) -> None:
    """``ckpt`` in the layout hierhead wrote before it used save_hyperparameters and torch's schedulers
    (read off a checkpoint of that version): the spec and the training settings flat under
    ``hierhead``; a LambdaLR state whose lr_lambdas hold the LRSchedule's attributes; the optimiser's
    lr what that LambdaLR set."""
    import copy

    old = copy.deepcopy(ckpt)
    h = old.pop("hyper_parameters")
    schedule = h["schedule"]
    old["hierhead"] = {**{k: v for k, v in h["spec"].items() if k not in ("anchors", "folded")},
                       **{k: h[k] for k in ("optimizer", "schedule", "total_steps", "metric")}}
    steps, lr = old["global_step"], h["optimizer"]["lr"]
    start = schedule["warmup_start_lr"] / lr
    factor = start + (1 - start) * steps / schedule["warmup_steps"]  # cards-ssdlite: still warming up at step 3
    assert steps < schedule["warmup_steps"]
    old["lr_schedulers"] = [{"base_lrs": [lr], "last_epoch": steps, "_step_count": steps + 1, "_is_initial": False,
                             "_get_lr_called_within_step": False, "_last_lr": [lr * factor],
                             "lr_lambdas": [{"name": schedule["name"], "milestones": [], "gamma": 0.1, "step_size": 0,
                                             "total": h["total_steps"], "warmup": schedule["warmup_steps"],
                                             "warmup_start": start}]}]
    for group in old["optimizer_states"][0]["param_groups"]:
        group["lr"] = lr * factor
    torch.save(old, path)


@needs_cards
def test_two_process_ddp_on_cpu(tmp_path):
    env = {**os.environ, "PL_DISABLE_FORK": "1"}
    val = tmp_path / "val"  # 9 images: the two ranks' shares differ in size, the gathered mAP covers all
    val.mkdir()
    for xml in sorted((CARDS / "test").glob("*.xml"))[:9]:
        for f in (CARDS / "test").glob(xml.stem + ".*"):
            (val / f.name).symlink_to(f)
    cmd = [sys.executable, "-m", "hierhead.cli", "train", "--recipe", "cards-ssdlite", "--data", str(CARDS),
           "--fraction", "0.05", "--max-steps", "2", "--batch-size", "4", "--out", str(tmp_path / "ddp"),
           "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--set", "val_every_n_steps=2",
           "--val", str(val), "--set", "image_size=160", *QUICK]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sync_dist" not in r.stderr, r.stderr  # the gathered val/mAP is the same on every rank
    assert r.stdout.count("trained 2 steps of global batch 4 (2 processes x 2)") == 1  # rank 0 says it, once
    ckpt = torch.load(tmp_path / "ddp/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["spec"]["model"] == "ssdlite320_efficientnet_lite0"
    logged = [float(r["val/mAP"]) for r in csv.DictReader((tmp_path / "ddp/logs/metrics.csv").open()) if r.get("val/mAP")]
    assert main(["eval", "--checkpoint", str(tmp_path / "ddp/checkpoints/last.ckpt"), "--data", str(val),
                 "--json", str(tmp_path / "r.json")]) == 0  # one process, every image: the mAP DDP logged
    assert logged == [pytest.approx(json.loads((tmp_path / "r.json").read_text())["mAP"], abs=1e-6)]


def test_the_defaults_fine_tune_the_pretrained_detector_as_cards_ssdlite():
    """No --recipe: the pretrained detector with the fine-tuning schedule chosen for cards-ssdlite;
    --max-steps and image_size keep it a fine-tuning run; the paper recipes keep one lr for all."""
    from hierhead.engine.from_config import backbone_weights

    defaults, cards = resolve(None, {}), resolve("cards-ssdlite")
    for key in ("model", "design", "batch_size", "optimizer", "schedule", "augment", "image_size"):
        assert defaults[key] == cards[key], key
    # cards-ssdlite's round-2 schedule freezes the stem and stages to stride 4 (a timm-backbone option)
    # for 850 steps; the defaults keep round 1's whole backbone, valid for every model, for at least round 1's 600
    # steps (max_steps auto: defaults-steps' verdict)
    assert (defaults["max_steps"], defaults["model_kwargs"]) == ("auto", {})
    assert (cards["max_steps"], cards["frozen_stages"]) == (850, 2)
    assert defaults["model"] == "ssdlite320_efficientnet_lite0" and defaults["optimizer"]["backbone_lr_scale"] == 0.1
    short = resolve(None, {"max_steps": 50, "image_size": 224})
    assert backbone_weights(short) is not None and short["optimizer"]["backbone_lr_scale"] == 0.1
    micro = resolve("microcontrollers-ssdlite")
    assert micro["data"]["resplit"] == 0.3 and micro["optimizer"] == cards["optimizer"] and micro["data"]["format"] is None
    assert cards["data"]["format"] is None  # the data says its format: a devkit, YOLO or COCO works too
    for paper in ("voc-ssd300", "voc-ssd512", "voc-ssd300-val", "voc-ssd512-val", "flickrlogos47-retinanet",
                  "coco-retinanet"):
        config = resolve(paper)
        assert config["optimizer"]["backbone_lr_scale"] == 1.0 and backbone_weights(config) is None
        assert config["schedule"]["warmup_steps"] == (1000 if paper == "coco-retinanet" else 0)


def test_recipes_hold_the_paper_values():
    assert set(recipes()) >= {"voc-ssd300", "voc-ssd512", "flickrlogos47-retinanet", "coco-retinanet", "cards-ssdlite"}
    voc = resolve("voc-ssd300")
    assert voc["batch_size"] == 32 and voc["optimizer"]["name"] == "tf_rmsprop" and voc["optimizer"]["lr"] == 1e-3
    assert (voc["optimizer"]["decay"], voc["optimizer"]["eps"], voc["optimizer"]["weight_decay"]) == (0.9, 1.0, 4e-5)
    assert voc["augment"] == {"flip": True, "iou_crop": True, "zoom_out": False, "photometric": False,
                              "mosaic": 0.0}  # IV-C: no mosaic
    assert voc["model_kwargs"] == {"nms_thresh": 0.5, "loss": "sigmoid"}
    assert voc["design"] == "9An{9,3}As" and resolve("voc-ssd512")["design"] == "9An{9,3,1}S"  # Table III val
    val = resolve("voc-ssd300-val")
    assert val["max_steps"] == 60000 and val["schedule"]["milestones"] == [30000, 40000, 45000, 50000]
    assert val["data"]["train_split"] == "2007/train+2012/train" and val["data"]["val_split"] == "2007/val+2012/val"
    assert voc["schedule"]["milestones"] == [60000, 80000, 90000, 100000] and voc["max_steps"] == 120000
    assert voc["schedule"]["gamma"] == pytest.approx(1 / 3, rel=1e-6)
    assert resolve("voc-ssd512")["model"] == "ssd512_vgg16"
    flickr = resolve("flickrlogos47-retinanet")
    assert flickr["model"] == "retinanet_resnet50_fpn_nosubnet" and flickr["image_size"] == 1024
    assert flickr["schedule"] == {**flickr["schedule"], "name": "step", "step_size": 25000, "gamma": 0.8}
    assert flickr["batch_size"] == 2 and flickr["max_steps"] == 300000 and flickr["model_kwargs"]["nms_thresh"] == 0.1
    assert flickr["optimizer"]["name"] == "tf_rmsprop" and flickr["augment"]["photometric"] is False  # "as VOC"
    assert flickr["model_kwargs"] == {"nms_thresh": 0.1, "fg_iou_thresh": 0.5, "bg_iou_thresh": 0.5, "box_loss": "smooth_l1"}
    assert all(resolve(r)["paper"] for r in recipes() if r.startswith(("voc", "flickr", "coco")))
    coco = resolve("coco-retinanet")
    assert coco["schedule"]["warmup_steps"] == 1000 and coco["schedule"]["warmup_start_lr"] == 2e-4
    assert coco["optimizer"]["lr"] == 0.01 and coco["schedule"]["milestones"] == [210000, 250000]
    assert coco["max_steps"] == 270000 and coco["batch_size"] == 16


def _rates(schedule: dict, total: int, lrs=(0.01, 0.0025)) -> list[list[float]]:
    """Each parameter group's lr at steps 0..total-1 under lr_scheduler (stepped once per step)."""
    from hierhead.engine.optim import lr_scheduler

    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    opt = torch.optim.SGD(groups, lr=lrs[0])
    sched, out = lr_scheduler(opt, total_steps=total, **schedule), []
    for _ in range(total):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_lr_schedules_are_torchs_with_the_papers_step_counting():
    # the factor the recipes mean, written out: warm-up from warmup_start_lr, milestones counted from step 0
    def factor(step, name, warmup=0, start=0.001, milestones=(), gamma=0.1, step_size=0, total=100):
        if step < warmup:
            return start + (1 - start) * step / warmup
        if name == "multistep":
            return gamma ** sum(step >= m for m in milestones)
        if name == "step":
            return gamma ** (step // step_size)
        if name == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        return 1.0

    cases = [({"name": "multistep", "milestones": [10, 20, 3], "warmup_steps": 5, "warmup_start_lr": 0.0002},
              {"name": "multistep", "warmup": 5, "start": 0.02, "milestones": [10, 20, 3]}),
             ({"name": "step", "step_size": 25, "gamma": 0.8, "warmup_steps": 10},
              {"name": "step", "warmup": 10, "step_size": 25, "gamma": 0.8}),
             ({"name": "cosine", "warmup_steps": 20, "warmup_start_lr": 1e-5},
              {"name": "cosine", "warmup": 20, "start": 1e-3}),
             ({"name": "cosine"}, {"name": "cosine"}), ({"name": "constant", "warmup_steps": 7}, {"name": "constant",
                                                                                             "warmup": 7})]
    for schedule, want in cases:
        for step, got in enumerate(_rates(schedule, 100)):
            f = factor(step, **want)
            assert got == pytest.approx([0.01 * f, 0.0025 * f], rel=1e-9, abs=1e-15), (schedule, step)
    with pytest.raises(ValueError, match="schedule 'linear': unknown"):
        _rates({"name": "linear"}, 3)


def test_unit_lr_scale_gives_the_units_their_own_lr():
    from hierhead.engine.module import DetectorModule

    spec = {"model": "ssdlite320_mobilenet_v3", "num_classes": 3, "design": "9An{9,3,1}As"}
    for name in ("adamw", "sgd", "rmsprop"):
        module = DetectorModule(spec, {"name": name, "lr": 0.01, "unit_lr_scale": 0.25}, {"name": "cosine"}, 10)
        opt = module.configure_optimizers()["optimizer"]
        assert [g["lr"] for g in opt.param_groups] == [0.01, 0.0025]
        units = {id(p) for n, p in module.model.named_parameters() if "unit_" in n}
        assert {id(p) for p in opt.param_groups[1]["params"]} == units and len(units) == 24  # 6 maps x cls/reg x w/b
    assert resolve("cards-ssdlite")["optimizer"]["unit_lr_scale"] == 1.0  # the paper: one lr for all
    module = DetectorModule(spec, {"name": "adamw", "lr": 0.01, "unit_lr_scale": 1.0}, {"name": "cosine"}, 10)
    opt = module.configure_optimizers()["optimizer"]  # one group, as checkpoints from before the option hold
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == len(list(module.parameters()))


def test_overrides_and_unknown_keys():
    over = parse_overrides(["optimizer.lr=0.5", "design=9An{9,3}S", "augment.flip=false", "schedule.milestones=[1,2]"])
    cfg = resolve("cards-ssdlite", over)
    assert cfg["optimizer"]["lr"] == 0.5 and cfg["design"] == "9An{9,3}S" and cfg["augment"]["flip"] is False
    assert cfg["schedule"]["milestones"] == [1, 2]
    with pytest.raises(ValueError, match="'optimizer.lrr': unknown"):
        resolve("cards-ssdlite", parse_overrides(["optimizer.lrr=1"]))
    with pytest.raises(ValueError, match="recipe 'nope'"):
        load_recipe("nope")


@pytest.mark.parametrize("args, message", [
    (["train", "--recipe", "nope", "--data", "x"], "recipe 'nope'"),
    (["train", "--data", "/no/such/dir", "--max-steps", "1"], "dataset not found"),
    (["train", "--data", str(CARDS), "--design", "9An{7,3}S", "--max-steps", "1", "--set", "num_workers=0"], "9An{7,3}S"),
    (["train", "--data", str(CARDS), "--set", "optimizer.lrr=1"], "'optimizer.lrr': unknown"),
    (["train", "--data", str(CARDS), "--set", "nokey"], "expected KEY=VALUE"),
    (["train", "--data", str(CARDS), "--model", "ssd300_vgg16", "--set", "image_size=200", "--set", "num_workers=0"],
     "ssd300_vgg16 takes a fixed input"),
    (["train", "--data", str(CARDS), "--set", "image_size=[200,320]", "--set", "num_workers=0"],
     "ssdlite320_efficientnet_lite0 takes a square input"),
    (["train", "--data", str(CARDS), "--set", "image_size=abc"], "image_size='abc': expected a whole number >= 1"),
    (["train", "--data", str(CARDS), "--batch-size", "1", "--max-steps", "1", "--set", "num_workers=0"],
     "batch_size=1: ssdlite320_efficientnet_lite0 trains batch-norm layers, which need at least 2 images a step"),
    (["train", "--data", str(CARDS), "--out", "/tmp/hierhead-none", "--resume"], "nothing to resume"),
    (["eval", "--checkpoint", "/no/such.ckpt", "--data", str(CARDS / "test")], "file not found"),
    (["predict", "--checkpoint", "/no/such.ckpt", "x.jpg", "--out", "/tmp/p"], "file not found"),
    (["fold", "--checkpoint", __file__, "--out", "/tmp/f"], "cannot be read (not the zip archive torch.save writes: "
                                                           "another kind of file, or a truncated checkpoint)"),
])
def test_bad_cli_arguments_are_one_line(args, message, capsys):
    if str(CARDS) in args and not CARDS.is_dir():
        pytest.skip("cards not present")
    code, _, err = _cli(args, capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_empty_dataset_is_an_error(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    code, _, err = _cli(["train", "--data", str(tmp_path), "--max-steps", "1"], capsys)
    assert code == 2 and "empty" in err and len(err.strip().splitlines()) == 1


def test_gpu_out_of_memory_is_one_line(capsys, monkeypatch):
    import hierhead.cli as cli

    def oom(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(cli, "_train", oom)
    code, _, err = _cli(["train", "--data", "x"], capsys)
    assert code == 3 and "GPU out of memory; lower --batch-size" in err and len(err.strip().splitlines()) == 1


def test_drawn_boxes_threshold_then_best_first():
    from hierhead.engine.infer import drawn_boxes, predict

    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    assert drawn_boxes(scores, 0.3).tolist() == [1, 3, 2, 4]
    assert drawn_boxes(scores, 0.3, max_boxes=2).tolist() == [1, 3]
    assert drawn_boxes(scores, 0.95).tolist() == []
    with pytest.raises(ValueError, match="max_boxes=0: must be >= 1"):
        predict(torch.nn.Identity(), [], "/tmp/unused", [], max_boxes=0)


def test_voc_recipe_trains_on_a_standard_07_12_devkit_and_warns_once(tmp_path, capsys):
    """voc-ssd300 on VOC2007 (trainval + test) + VOC2012 (trainval only): trains on 07+12 trainval,
    validates on 07 test, and says once that the paper's numbers need a pretrained backbone."""
    from test_data import make_devkit

    root = make_devkit(tmp_path / "VOCdevkit", {"2007": {"trainval": ["a1", "a2"], "test": ["t1", "t2"]},
                                                 "2012": {"trainval": ["b1", "b2"]}})
    from hierhead.engine.trainer import PaperSettingWarning

    with pytest.warns(PaperSettingWarning, match="reproduces the paper's IV-C VOC-SSD300, which fine-tuned an "
                                                 "ImageNet-pretrained backbone") as caught:
        code, out, err = _cli(["train", "--recipe", "voc-ssd300", "--data", str(root), "--max-steps", "1",
                               "--batch-size", "2", "--out", str(tmp_path / "out"), "--set", "val_every_n_steps=1",
                               *QUICK], capsys)
    assert code == 0 and "trained 1 step of global batch 2" in out, err
    assert sum(w.category is PaperSettingWarning for w in caught) == 1
    config = (tmp_path / "out" / "config.yaml").read_text()
    assert "train_split: 2007/trainval+2012/trainval" in config and "val_split: 2007/test" in config


@needs_cards
def test_checkpoint_labels_and_user_files_are_never_silently_changed(trained, capsys, tmp_path):
    """eval --classes cannot relabel a checkpoint; predict never writes over its input images."""
    ckpt = str(trained / "out" / "checkpoints" / "last.ckpt")
    val = str(trained / "val")
    _, plain, _ = _cli(["eval", "--checkpoint", ckpt, "--data", val], capsys)
    names = "ace,jack,king,nine,queen,ten"
    code, reordered, _ = _cli(["eval", "--checkpoint", ckpt, "--data", val, "--classes", ",".join(reversed(names.split(",")))], capsys)
    assert code == 0 and reordered == plain  # the checkpoint's order labels its outputs
    code, _, err = _cli(["eval", "--checkpoint", ckpt, "--data", val, "--classes", "ace,jack"], capsys)
    assert code == 2 and "the checkpoint was trained on ace,jack,king,nine,queen,ten" in err and err.count("\n") == 1
    folder = tmp_path / "mine"
    folder.mkdir()
    image = next(p for p in (trained / "val").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    (folder / "a.png").write_bytes(_png_of(image))
    before = (folder / "a.png").read_bytes()
    code, _, err = _cli(["predict", "--checkpoint", ckpt, str(folder), "--out", str(folder)], capsys)
    assert code == 2 and "would write over or into this command's input" in err and (folder / "a.png").read_bytes() == before
    assert not (folder / "detections.json").exists()
    code, out, err = _cli(["predict", "--checkpoint", ckpt, str(folder), "--out", str(tmp_path / "p"), "--score", "2"],
                          capsys)
    assert code == 0 and err == "" and "1 annotated images" in out  # nothing to draw is not a warning
    assert "(0 boxes drawn at score >= 2; top score 0." in out  # says why nothing was drawn
    (folder / "b.png").write_bytes(before[: len(before) // 2])  # a truncated image
    code, _, err = _cli(["predict", "--checkpoint", ckpt, str(folder), "--out", str(tmp_path / "q")], capsys)
    assert code == 2 and "b.png' cannot be decoded" in err and "--skip-bad skips it" in err and err.count("\n") == 1
    code, out, err = _cli(["predict", "--checkpoint", ckpt, str(folder), "--out", str(tmp_path / "q"), "--skip-bad"],
                          capsys)
    assert code == 0 and "1 annotated images" in out and "skipped 1 image(s)" in err and "b.png" in err
    assert (tmp_path / "q" / "detections.json").is_file() and not (tmp_path / "q" / "b.png").exists()


def _png_of(path: Path) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


@needs_cards
def test_train_draws_its_pictures_and_records_its_code(trained):
    import yaml

    from hierhead.provenance import provenance

    out = trained / "out"
    for name in ("results.png", "PR_curve.png", "confusion_matrix.png", "val_predictions.jpg"):
        assert (out / name).stat().st_size > 1000, name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["provenance"] == provenance() and config["provenance"]["version"]


@needs_cards
def test_eval_draws_into_a_new_folder_beside_the_run(trained, capsys, tmp_path):
    ckpt = str(trained / "out" / "checkpoints" / "last.ckpt")
    folders = []
    for _ in range(2):  # a second eval never replaces the first's pictures
        code, _, err = _cli(["eval", "--checkpoint", ckpt, "--data", str(trained / "val")], capsys)
        assert code == 0, err
        folders.append(err.strip().splitlines()[-1].rsplit(" in ", 1)[1])
    assert folders[0] != folders[1] and all(Path(f).parent == trained / "out" for f in folders)
    assert all((Path(f) / "confusion_matrix.png").is_file() for f in folders)
    code, _, err = _cli(["eval", "--checkpoint", ckpt, "--data", str(trained / "val"), "--out", folders[0]], capsys)
    assert code != 0 and "PR_curve.png' exists (from an earlier run?)" in err and err.count("\n") == 1
    code, _, err = _cli(["eval", "--checkpoint", ckpt, "--data", str(trained / "val"), "--json", folders[0] + "/r.json"],
                        capsys)
    assert code == 0, err
    code, _, err = _cli(["eval", "--checkpoint", ckpt, "--data", str(trained / "val"), "--json", folders[0] + "/r.json"],
                        capsys)
    assert code == 2 and "r.json' exists" in err and "--overwrite" in err, err


@needs_cards
def test_a_log_file_gets_lines_not_a_bar(tmp_path, capsys):
    code = main(["train", "--model", "ssdlite320_mobilenet_v3", "--data", str(CARDS / "train"), "--max-steps", "2",
                 "--batch-size", "2", "--out", str(tmp_path / "run"), "--set", "image_size=96", "--set",
                 "num_workers=0", "--set", "validate=false", "--set", "plots=false",
                 "--set", "pretrained_backbone=false"])
    out = capsys.readouterr().out
    assert code == 0 and "\r" not in out
    assert re.search(r"^step 1/2  epoch 0  loss \d+\.\d+  lr \S+  [\d.]+ images/s  \d+:\d\d elapsed, ~\d+:\d\d left$",
                     out, re.M), out
    assert re.search(r"^step 2/2  epoch 0  loss \d+\.\d+  lr \S+  [\d.]+ images/s  \d+:\d\d elapsed$", out, re.M), out


@needs_cards
def test_ema_is_validated_checkpointed_evaluated_and_resumed_exactly(tmp_path):
    """EMA (Lightning's WeightAveraging): val mAP and the checkpoint's weights are the average's, the trained
    weights travel beside them, and a killed run resumed ends with both equal to an uninterrupted run's."""
    from lightning.pytorch.callbacks import Callback

    from hierhead.engine.averaging import ema_decay
    from hierhead.engine.infer import mean_ap_of_model
    from hierhead.engine.trainer import train
    from hierhead.engine.data import open_config_splits

    assert ema_decay(0.999, 100, 0) == 0 and ema_decay(0.999, 100, 100) == pytest.approx(0.999 * (1 - math.exp(-1)))

    class Crash(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 4:
                raise RuntimeError("killed")

    def config(out):
        return resolve(None, {"model": "ssdlite320_mobilenet_v3", "data": {"path": str(CARDS), "fraction": 0.05},
                              "max_steps": 6, "batch_size": 2, "checkpoint_every_n_steps": 3, "val_every_n_steps": 6,
                              "deterministic": True, "num_workers": 0, "progress": False, "plots": False,
                              "out": str(out), "seed": 1, "image_size": 96, "pretrained_backbone": False,
                              "ema": {"enabled": True, "decay": 0.9, "tau": 2}})

    done = train(config(tmp_path / "a"))
    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    assert any(not torch.equal(a["state_dict"][k], a["current_model_state"][k]) for k in a["state_dict"])
    model, _ = load_checkpoint(tmp_path / "a/checkpoints/last.ckpt")  # what eval, fold and export load: the EMA
    assert all(torch.equal(v, a["state_dict"]["model." + k]) for k, v in model.state_dict().items())
    _, val = open_config_splits(config(tmp_path / "a"))
    assert mean_ap_of_model(model, val)["mAP"] == pytest.approx(done["val_mAP"], abs=1e-6)  # validated the EMA
    with pytest.raises(RuntimeError, match="killed"):
        train(config(tmp_path / "b"), callbacks=[Crash()])
    train(config(tmp_path / "b"), resume=True)
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    for key in ("state_dict", "current_model_state"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_todays_defaults_stay_runnable_as_a_recipe():
    """issue 43: the defaults of 2026-12-06 pinned as `defaults-2026-12`, whatever the built-ins become."""
    pinned = resolve("defaults-2026-12")
    assert (pinned["model"], pinned["design"], pinned["image_size"], pinned["batch_size"], pinned["max_steps"]) == (
        "ssdlite320_efficientnet_lite0", "9An{9}", None, 8, 600)
    assert (pinned["optimizer"]["name"], pinned["optimizer"]["lr"], pinned["optimizer"]["backbone_lr_scale"],
            pinned["schedule"]["name"], pinned["schedule"]["warmup_steps"], pinned["ema"]["enabled"]) == (
        "adamw", 0.003, 0.1, "cosine", 50, False)
    assert pinned["augment"] == {"flip": True, "iou_crop": True, "zoom_out": False, "photometric": True, "mosaic": 0.0}
    assert pinned["anchor_s_min"] is None  # the paper's 0.2
