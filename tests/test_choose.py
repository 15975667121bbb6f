"""Settings chosen from the training boxes: the best possible recall of an SSD's anchors, image_size / anchor_s_min
auto, and a run that says what it chose and keeps it in its model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.ops import box_iou

from hierhead.cli import main
from hierhead.engine import load_checkpoint, resolve
from hierhead.engine.choose import _grids, best_possible_recall, choose
from hierhead.models.builders import paper_anchors

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
LITE0 = "ssdlite320_efficientnet_lite0"
needs_shared = pytest.mark.skipif(not (SHARED / "chess").is_dir(), reason="../shared/datasets not present")


@pytest.mark.parametrize("side, s_min", [(320, 0.2), (320, 0.07), (512, 0.1), (416, 0.15)])
def test_best_possible_recall_equals_comparing_every_anchor(side, s_min):
    g = torch.Generator().manual_seed(side)
    centre, size = torch.rand(400, 2, generator=g), torch.rand(400, 2, generator=g) ** 2 * 0.6 + 0.01
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1).clamp(0, 1)
    gen = paper_anchors(LITE0, s_min)
    d = gen._grid_default_boxes([list(x) for x in _grids(LITE0, side, ())], [side, side])
    anchors = torch.cat([d[:, :2] - d[:, 2:] / 2, d[:, :2] + d[:, 2:] / 2], 1)
    every = float((box_iou(boxes, anchors).max(1).values >= 0.5).float().mean())
    assert best_possible_recall(LITE0, side, s_min, boxes) == pytest.approx(every, abs=1e-9)
    assert 0 < every < 1


@needs_shared
def test_auto_takes_a_larger_input_and_smaller_anchors_for_small_objects_only():
    from hierhead.data import open_dataset

    auto = resolve(None, {"image_size": "auto", "anchor_s_min": "auto"})
    chess, lines = choose(auto, open_dataset(SHARED / "chess", split="train"))
    assert (chess["image_size"], chess["anchor_s_min"]) == (512, 0.1)
    assert lines[0].startswith("image_size 512 (auto): anchors reach 97% of the training boxes at IoU 0.5 (320: 62%")
    assert "median object 8 % of the image side" in lines[0]
    assert lines[1] == ("anchor_s_min 0.1 (auto, Eq. 3's smallest anchor scale): reaches 97% of the training boxes "
                        "at 512 px (the paper's 0.2: 39%)")
    cards, _ = choose(auto, open_dataset(SHARED / "cards", split="train"))
    assert (cards["image_size"], cards["anchor_s_min"]) == (320, 0.2)  # every box reached already: the paper's
    fixed, lines = choose({**auto, "anchor_s_min": None}, open_dataset(SHARED / "chess", split="train"))
    assert fixed["anchor_s_min"] is None and len(lines) == 1 and "(320: 29%, 512: 39%)" in lines[0]  # the paper's 0.2
    assert fixed["image_size"] == 416  # the smallest side within 5 points of the best (512)
    assert choose(resolve(None, {}), None) == (resolve(None, {}), [])  # nothing auto: nothing read


@pytest.mark.parametrize("key, value, message", [
    ("anchor_s_min", 1.5, "anchor_s_min=1.5: expected Eq. 3's smallest anchor scale in (0, 0.95), or auto"),
    ("anchor_s_min", "small", "anchor_s_min='small'"),
    ("image_size", "big", "image_size='big': expected a whole number >= 1 (a square side), [height, width] or auto"),
    ("max_steps", "long", "max_steps='long': expected a whole number >= 1 or auto"),
])
def test_bad_choices_are_refused_by_name(key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve(None, {key: value})


def test_auto_is_for_ssd_anchors():
    with pytest.raises(ValueError, match="retinanet_resnet50_fpn has FPN anchors: give numbers"):
        choose(resolve(None, {"model": "retinanet_resnet50_fpn", "anchor_s_min": "auto"}), None)
    with pytest.raises(ValueError, match="anchor_s_min: an option of the SSD models"):
        paper_anchors("retinanet_resnet50_fpn", 0.1)


@needs_shared
def test_train_says_what_it_chose_and_the_model_keeps_it(tmp_path, capsys):
    from hierhead.models.builders import spec_of

    out = tmp_path / "run"
    code = main(["train", "--data", str(SHARED / "chess"), "--max-steps", "1", "--batch-size", "2", "--out", str(out),
                 "--set", "image_size=auto", "--set", "anchor_s_min=auto", "--set", "validate=false",
                 "--set", "progress=false", "--set", "plots=false"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "image_size 512 (auto): anchors reach 97%" in printed.out and "anchor_s_min 0.1 (auto" in printed.out
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["image_size"], saved["anchor_s_min"]) == (512, 0.1)  # the numbers, so a resume trains the same
    model, spec = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert spec.image_size == [512, 512] and spec.options["anchor_s_min"] == 0.1
    assert model.anchor_generator.s_min == 0.1 and spec_of(model).options["anchor_s_min"] == 0.1


def test_auto_steps_give_a_larger_dataset_its_epochs_and_a_smaller_one_the_defaults_steps():
    """``max_steps: auto``: at least 16 epochs at the run's batch, never fewer than 600; resolved from the run's
    training split (its fraction included) and said in one line."""
    from hierhead.engine.choose import auto_steps, resolve_auto

    config = resolve(None, {"max_steps": "auto"})
    assert [auto_steps(config, n)[0] for n in (104, 296, 448)] == [600, 600, 896]  # micro, cards, aquarium
    assert auto_steps(config, 448)[1] == "max_steps 896 (auto): 16 epochs of 448 training images at batch 8"
    data = {"path": "synthetic:classes=2,train=100,test=4,size=64", "fraction": 0.5}
    chosen, lines = resolve_auto(resolve(None, {"max_steps": "auto", "batch_size": 1, "data": data, "seed": 3}))
    assert chosen["max_steps"] == 800 and lines == ["max_steps 800 (auto): 16 epochs of 50 training images at batch 1"]
    assert resolve_auto(resolve(None, {"max_steps": 7}))[0]["max_steps"] == 7  # a number stays as given
