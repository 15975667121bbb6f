"""A wall-clock budget (``--time``): the run measures its steps, shortens max_steps to what fits and ends its
cosine schedule there; the plan survives a resume. Time is a fake clock here (one second a step), so the
test asserts the plan, never a timing."""

from __future__ import annotations

import re

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from hierhead.engine import resolve
from hierhead.engine.budget import TimeBudget, parse_time
from hierhead.engine.trainer import train


class Ticker(Callback):
    """The fake clock: one second per finished step (runs after the budget in each hook)."""
    t = 0.0

    def on_train_batch_end(self, trainer, *args):
        Ticker.t = float(trainer.global_step)


class Crash(Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 30:
            raise RuntimeError("killed")


def _config(out, **over):
    return resolve(None, {"model": "ssdlite320_mobilenet_v3", "pretrained_backbone": False, "image_size": 64,
                          "data": {"path": "synthetic:classes=2,train=8,test=4,size=64"}, "batch_size": 2,
                          "max_steps": 200, "time": "40s", "val_every_n_steps": 1000, "checkpoint_every_n_steps": 10,
                          "schedule": {"warmup_steps": 10}, "num_workers": 0, "progress": False, "plots": False,
                          "out": str(out), "seed": 1, **over})


@pytest.fixture(autouse=True)
def _fake_clock(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HIERHEAD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    Ticker.t = 0.0
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(lambda: Ticker.t))


def test_a_budget_shortens_the_run_and_finishes_its_schedule(tmp_path):
    lines = []
    result = train(_config(tmp_path / "a"), callbacks=[Ticker()], log=lines.append)
    # probe steps 5..25 at 1 s each; 24 s spent; 0.95 x 40 - 24 = 14 more steps fit: 39 of 200
    assert lines[-1] == "time 0.666667 min: 39 of 200 steps fit (1.00 s a step); the schedule ends at step 39"
    assert result["steps"] == 39
    last = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == 39
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-12) for g in last["optimizer_states"][0]["param_groups"])
    assert last["callbacks"]["TimeBudget"]["planned"] == 39
    # killed after the plan, then resumed: the plan holds and the run ends where the uninterrupted one did
    Ticker.t = 0.0
    with pytest.raises(RuntimeError, match="killed"):
        train(_config(tmp_path / "b"), callbacks=[Ticker(), Crash()])
    assert torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)["global_step"] == 30
    resumed = train(_config(tmp_path / "b"), resume=True, callbacks=[Ticker()])
    assert resumed["steps"] == 39
    b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    for k in last["state_dict"]:
        assert torch.equal(last["state_dict"][k], b["state_dict"][k]), k


def test_a_budget_that_fits_the_run_changes_nothing(tmp_path):
    lines = []
    result = train(_config(tmp_path, max_steps=30, time="10h"), callbacks=[Ticker()], log=lines.append)
    assert result["steps"] == 30 and not any(line.startswith("time ") for line in lines)


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("90s", 90), ("1.5h", 5400), ("20", 1200), (" 2m ", 120),
                                           ("1h30m", 5400), ("2h 20m", 8400), ("1m30s", 90)])
def test_durations(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("over, message", [
    ({"time": "soon"}, "time 'soon': expected a duration such as 15m, 900s, 1.5h or 1h30m (a plain number is minutes)"),
    ({"time": "0m"}, "time '0m': expected a duration"),
    ({"time": "30m1h"}, "time '30m1h': expected a duration"),
    ({"time": "1m1m"}, "time '1m1m': expected a duration"),
    ({"time": "15m", "schedule": {"name": "multistep"}}, "time='15m': a budget shortens a step-based run with a "
                                                          "cosine or constant schedule (this one: multistep)"),
])
def test_bad_budgets_are_refused_by_name(over, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve(None, over)


def test_cached_images_train_the_same_run_and_are_decoded_once(tmp_path, monkeypatch):
    """cache_images (issue 41): the training images decoded once, the run unchanged bit for bit."""
    from hierhead.data import readers

    decoded = []
    real = readers.load_image
    monkeypatch.setattr(readers, "load_image", lambda path: decoded.append(path) or real(path))
    over = {"time": None, "max_steps": 12, "validate": False}  # 12 steps of batch 2 on 8 images: 3 epochs
    plain = train(_config(tmp_path / "plain", cache_images=False, **over))
    reads = len(decoded)
    decoded.clear()
    said = []
    cached = train(_config(tmp_path / "cached", cache_images=True, **over), log=said.append)
    assert reads == 24 and len(decoded) == 8  # every image once, however many epochs
    assert said[-1].endswith("/train (decoded once, 0 MiB kept in memory); no validation"), said
    a, b = (torch.load(r["last"], weights_only=True)["state_dict"] for r in (plain, cached))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_default_caches_when_it_can_and_says_why_not_only_when_asked(tmp_path, monkeypatch, recwarn):
    """cache_images: auto (the default) keeps the images when they fit and the workers fork, quietly otherwise;
    true says why not; any other value is refused by name."""
    import multiprocessing

    from hierhead.engine.trainer import prepare

    over = {"num_workers": 2, "validate": False}
    assert _config(tmp_path / "a")["cache_images"] == "auto"
    assert prepare(_config(tmp_path / "a", **over))[1].train_set.decoded is not None
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda *a, **k: "spawn")
    assert prepare(_config(tmp_path / "a", **over))[1].train_set.decoded is None
    assert not [w for w in recwarn if "cache_images" in str(w.message)]
    with pytest.warns(UserWarning, match=r"cache_images: not kept \(the loader's workers are not forked"):
        prepare(_config(tmp_path / "a", cache_images=True, **over))
    with pytest.raises(ValueError, match="cache_images='always': expected true, false or auto"):
        prepare(_config(tmp_path / "a", cache_images="always", **over))


def test_mosaic_tiles_four_samples_with_their_boxes_and_is_seeded():
    from hierhead.data.synthetic import open_synthetic
    from hierhead.engine.data import SeededSamples, mosaic

    train, _ = open_synthetic("synthetic:classes=2,train=8,test=2,size=64,seed=2")
    samples = [train[i] for i in range(4)]
    image, target = mosaic(samples, (32, 48))
    assert image.shape == (3, 64, 96) and target["boxes"].canvas_size == (64, 96)
    counts = [len(t["boxes"]) for _, t in samples]
    assert len(target["boxes"]) == len(target["labels"]) == len(target["difficult"]) == sum(counts)
    second = target["boxes"][counts[0]:counts[0] + counts[1]]  # the second sample: top right, scaled 48/64, 32/64
    expected = samples[1][1]["boxes"].as_subclass(torch.Tensor) * torch.tensor([0.75, 0.5, 0.75, 0.5]) + torch.tensor(
        [48.0, 0, 48.0, 0])
    torch.testing.assert_close(second.as_subclass(torch.Tensor), expected)
    keep = lambda image, target: (image, target)  # noqa: E731 - no augmentation: the raw mosaic
    always = SeededSamples(train, keep, seed=3, mosaic=1.0, tile=(32, 32))
    a, b = always[(5, 1)], always[(5, 1)]
    assert a[0].shape == (3, 64, 64) and torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    never = SeededSamples(train, keep, seed=3)  # mosaic 0: the sample as it is, no random draw spent on it
    assert torch.equal(never[(5, 1)][0], train[5][0])


def test_a_run_with_mosaic_trains(tmp_path):
    result = train(_config(tmp_path, time=None, max_steps=3, validate=False, augment={"mosaic": 1.0}))
    assert result["steps"] == 3


def test_a_budget_inside_the_warm_up_shortens_the_warm_up_too(tmp_path):
    lines = []
    result = train(_config(tmp_path, time="20s", schedule={"warmup_steps": 30}), callbacks=[Ticker()], log=lines.append)
    # planned at step 5 (1 s a step since step 1, 4 s spent): 0.95 x 20 - 4 = 15 more steps: 20, inside the warm-up
    assert lines[-1] == ("time 0.333333 min: 20 of 200 steps fit (1.00 s a step); the schedule ends at step 20, "
                         "its warm-up shortened to 6 steps")
    last = torch.load(result["last"], weights_only=True)
    assert result["steps"] == 20
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-12) for g in last["optimizer_states"][0]["param_groups"])
