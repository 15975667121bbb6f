"""The shared start (--init), the head and fine-tune protocols, and the units' step size (issue 15)."""
from __future__ import annotations

import csv
import json

import pytest
import yaml
import torch

from hierhead.cli import main
from hierhead.engine import load_checkpoint, resolve, train
from hierhead.engine.checkpoint import load_start_model
from hierhead.engine.data import open_config_splits
from hierhead.engine.head import LiveViews, cache_test, cache_views, head_model, mean_ap_of_head, pool_of, train_head
from hierhead.engine.infer import mean_ap_of_model, run_model
from hierhead.engine.module import DetectorModule
from hierhead.engine.optim import make_optimizer
from hierhead.layers import HierarchicalConv2d
from hierhead.models import build, head_convs, load_start

DATA = "synthetic:mode=all,classes=2,train=12,test=6,size=96,seed=3"
SIZE = 96
QUICK = {"num_workers": 0, "progress": False, "validate": False, "image_size": SIZE, "batch_size": 4,
         "checkpoint_every_n_steps": None}
HEAD = {"views": 2, "steps": 3, "batch_size": 4}  # the head and frozen sections, small


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HIERHEAD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A general head trained 3 steps on tiny synthetic data: the start of every run here."""
    out = tmp_path_factory.mktemp("start")
    mp = pytest.MonkeyPatch()
    mp.setenv("HIERHEAD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    config = resolve("synthetic-ssdlite", {**QUICK, "data": {"path": DATA}, "design": "9An{9}", "max_steps": 3,
                                           "out": str(out)})
    result = train(config)
    mp.undo()
    return config, result["last"]


def _config(start, **over):
    config, ckpt = start
    return resolve("synthetic-ssdlite", {**QUICK, "data": {"path": DATA}, "init": ckpt, **over})


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in ("boxes", "scores", "labels"))


def test_init_starts_every_design_at_the_start_detections(start):
    config, ckpt = start
    reference, spec = load_checkpoint(ckpt)
    _, test = open_config_splits(config)
    images = [test[i][0] for i in range(3)]
    expected = run_model(reference, images)
    assert sum(len(d["boxes"]) for d in expected) > 0
    for design in ("9An{9}", "9An{9,3,1}As", "9An{9,1}Both"):
        spec_d = spec.replace(design=design)
        module = DetectorModule(spec_d, {"name": "sgd", "lr": 0.01}, init=ckpt)
        layers = [m for m in module.model.modules() if isinstance(m, HierarchicalConv2d)]
        assert (len(layers) > 0) == (design != "9An{9}")
        assert all(not m.unit_weight.any() and not m.unit_bias.any() for m in layers)
        assert _same(run_model(module.model, images), expected), design


def test_init_refuses_another_class_list_model_or_anchor_grid(start, tmp_path, capsys):
    config, ckpt = start
    code = main(["train", "--recipe", "synthetic-ssdlite", "--data", "synthetic:classes=3,train=8,test=4,size=96",
                 "--init", ckpt, "--out", str(tmp_path / "x"), "--max-steps", "1", "--set", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "--init" in err and "classes=['class0', 'class1']" in err and "class2" in err
    assert len(err.strip().splitlines()) == 1
    spec = load_checkpoint(ckpt)[1]
    with pytest.raises(ValueError, match="trained with model='ssdlite320_mobilenet_v3'"):
        load_start_model(ckpt, spec.replace(model="ssd300_vgg16"))
    trained, _ = load_checkpoint(ckpt)
    other = build("ssdlite320_mobilenet_v3", 4, design=None, image_size=SIZE)
    with pytest.raises(ValueError, match="weights do not match"):
        load_start(other, trained)
    other = build("ssdlite320_mobilenet_v3", 3, design=None, image_size=SIZE)
    other.anchor_generator._wh_pairs[0] = other.anchor_generator._wh_pairs[0] * 1.1
    with pytest.raises(ValueError, match="another anchor grid"):
        load_start(other, trained)


def test_head_protocol_trains_only_the_prediction_convs(start):
    config, ckpt = start
    trained, _ = load_checkpoint(ckpt)
    train_set, _ = open_config_splits(config)
    cache = cache_views(trained, train_set, 2, (SIZE, SIZE), config["augment"])
    model = head_model(trained, "9An{9,3,1}As", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_head(model, cache, pool_of(cache, range(len(train_set))), 3, 4, {"name": "adamw", "lr": 0.01})
    head_keys = {f"{k}.{p}" if k else p
                 for parent, name, *_ in head_convs(model)
                 for k in [_path(model, parent, name)]
                 for p in ("anchor_weight", "anchor_bias", "unit_weight", "unit_bias")}
    after = model.state_dict()
    frozen = [k for k in before if k not in head_keys]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # bit-identical
    assert all(not torch.equal(before[k], after[k]) for k in head_keys if k.endswith("weight"))
    # every design of a seed starts as the same general head; another seed draws another one
    a, b = head_model(trained, "9An{9}", seed=0), head_model(trained, "9An{9}", seed=1)
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(before[k], sa[k]) for k in frozen)


def _path(model, parent, name) -> str:
    for path, module in model.named_modules():
        if module is parent:
            return f"{path}.{name}" if path else name
    raise AssertionError("parent not in model")


def test_cached_run_equals_uncached_run_and_cached_eval_equals_the_model(start):
    config, ckpt = start
    trained, _ = load_checkpoint(ckpt)
    train_set, test = open_config_splits(config)
    cache = cache_views(trained, train_set, 2, (SIZE, SIZE), config["augment"])
    live = LiveViews(trained, train_set, 2, (SIZE, SIZE), config["augment"])
    pool = pool_of(cache, range(0, len(train_set), 2))
    assert pool == pool_of(live, range(0, len(train_set), 2))
    runs = []
    for source in (cache, live):
        model = head_model(trained, "9An{9,3}S", seed=4)
        r = train_head(model, source, pool, 4, 4, {"name": "sgd", "lr": 0.01, "unit_lr_scale": "auto"}, seed=4)
        runs.append((model, r))
    (m1, r1), (m2, r2) = runs
    assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-5)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)
    scores = mean_ap_of_head(m1, cache_test(trained, test), "voc07", train_set.classes)
    assert scores["mAP"] == pytest.approx(mean_ap_of_model(m1, test, "voc07")["mAP"], abs=1e-9)


def _one_step(design: str, opt: dict):
    torch.manual_seed(0)
    model = build("ssdlite320_mobilenet_v3", 3, design=design, image_size=SIZE)
    layer = next(m for m in model.modules() if isinstance(m, HierarchicalConv2d))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in layer.parameters():
        p.requires_grad_(True)
    before = layer.unit_weight.detach().clone()
    optimizer = make_optimizer(model, opt)
    torch.manual_seed(1)
    x = torch.randn(2, layer.in_channels, 4, 4)
    (layer(x) * torch.randn(2, layer.out_channels, 4, 4)).sum().backward()
    grad = layer.unit_weight.grad.clone()
    optimizer.step()
    return layer, before, grad


@pytest.mark.parametrize("name", ["sgd", "adamw", "rmsprop", "tf_rmsprop"])
def test_unit_lr_scale_auto_is_each_units_lr_over_its_anchor_count(name):
    base = {"name": name, "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}
    layer, before, grad = _one_step("9An{9,3,1}As", {**base, "unit_lr_scale": 1.0})
    plain = layer.unit_weight.detach() - before
    layer, before, _ = _one_step("9An{9,3,1}As", {**base, "unit_lr_scale": "auto"})
    scaled = layer.unit_weight.detach() - before
    joined = layer.matrix.sum(1)  # anchors per unit: 9 (global), then 3, 3, 3
    assert joined.tolist() == [9.0, 3.0, 3.0, 3.0]
    rows = (1 / joined).repeat_interleave(layer.num_outputs_per_anchor).view(-1, 1, 1, 1)
    torch.testing.assert_close(scaled, plain * rows, rtol=1e-5, atol=1e-9)
    if name == "sgd":  # the update written out: -lr / n_j * gradient
        torch.testing.assert_close(scaled, -0.01 * grad * rows, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="unit_lr_scale='half'"):
        _one_step("9An{9,3}S", {**base, "unit_lr_scale": "half"})


def test_tf_rmsprop_follows_tensorflows_update_rule():
    """tf.train.RMSPropOptimizer written out (ms from 1, eps inside the sqrt, lr inside the momentum),
    over 5 steps with an lr drop after the third, as the paper's milestones do; torch's RMSprop differs."""
    from hierhead.engine.optim import TFRMSprop

    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(6, generator=g)
    grads = [torch.randn(6, generator=g) for _ in range(5)]
    lrs, decay, momentum, eps, wd = [0.1, 0.1, 0.1, 0.03, 0.03], 0.9, 0.9, 1.0, 0.01
    p, ms, mom = p0.clone(), torch.ones(6), torch.zeros(6)
    for lr, grad in zip(lrs, grads):
        gt = grad + wd * p
        ms = decay * ms + (1 - decay) * gt ** 2
        mom = momentum * mom + lr * gt / torch.sqrt(ms + eps)
        p = p - mom
    for cls, kwargs in ((TFRMSprop, {"decay": decay}), (torch.optim.RMSprop, {"alpha": decay})):
        param = torch.nn.Parameter(p0.clone())
        opt = cls([param], lr=lrs[0], momentum=momentum, eps=eps, weight_decay=wd, **kwargs)
        for lr, grad in zip(lrs, grads):
            opt.param_groups[0]["lr"] = lr
            param.grad = grad.clone()
            opt.step()
        if cls is TFRMSprop:
            torch.testing.assert_close(param.detach(), p, rtol=1e-6, atol=1e-7)
        else:
            assert (param.detach() - p).abs().max() > 1e-3  # not the paper's optimiser
    from hierhead.engine.optim import make_optimizer

    opt = make_optimizer(torch.nn.Linear(2, 2), {"name": "tf_rmsprop", "lr": 0.1, "eps": 0.0, "decay": None})
    assert (opt.param_groups[0]["eps"], opt.param_groups[0]["decay"]) == (0.0, 0.9)  # a given 0 is kept, None: default
    with pytest.raises(ValueError, match="tf_rmsprop: lr=0.1, decay=1.0"):
        TFRMSprop([torch.nn.Parameter(p0)], lr=0.1, decay=1.0)


def test_sweep_head_and_finetune_protocols(start, tmp_path, capsys):
    config, ckpt = start
    common = ["sweep", "--recipe", "synthetic-ssdlite", "--data", DATA, "--designs", "9An{9,3,1}As", "--seeds", "2",
              "--fractions", "0.5", "--set", f"image_size={SIZE}", "--set", "num_workers=0",
              "--set", "progress=false", "--set", "batch_size=4"]
    head = [*common, "--designs", "9An{9,3,1}As,9An{9,3,1}As@auto", "--protocol", "head", "--init", ckpt,
            "--out", str(tmp_path / "head"),
            *(x for k, v in HEAD.items() for x in ("--set", f"head.{k}={v}")), "--set", "head.optimizer.name=sgd"]
    assert main(head) == 0
    rows = list(csv.DictReader(open(tmp_path / "head" / "results.csv")))
    settings = {r["arm"]: json.loads(r["settings"]) for r in rows}
    assert len(rows) == 6 and {r["protocol"] for r in rows} == {"head"}
    assert {a: (s["head"]["optimizer"]["name"], s["head"]["optimizer"].get("unit_lr_scale")) for a, s in settings.items()} == {
        "9An{9}": ("sgd", None), "9An{9,3,1}As": ("sgd", None), "9An{9,3,1}As@auto": ("sgd", "auto")}
    assert {r["design"] for r in rows} == {"9An{9}", "9An{9,3,1}As"}  # the label is the arm, the design the head
    assert {r["train_images"] for r in rows} == {"6"} and {r["steps"] for r in rows} == {"3"}
    assert all(0 <= float(r["mAP"]) <= 100 for r in rows)
    assert yaml.safe_load((tmp_path / "head" / "plan.yaml").read_text())["protocol"] == "head"
    table = (tmp_path / "head" / "results.md").read_text()  # each label its own line (a variant is not its design)
    assert all(f"| {label} |" in table for label in ("9An{9}", "9An{9,3,1}As", "9An{9,3,1}As@auto"))
    capsys.readouterr()
    # the same folder with other settings, and a protocol without its start, are one-line errors
    assert main([*head[:-2], "--set", "head.optimizer.name=adamw"]) == 2
    assert "holds a sweep with other settings" in capsys.readouterr().err
    assert main([*common, "--protocol", "head", "--out", str(tmp_path / "y")]) == 2
    assert "--init" in capsys.readouterr().err
    assert main([*common, "--protocol", "finetune", "--init", ckpt, "--max-steps", "1",
                 "--out", str(tmp_path / "ft"), "--seeds", "1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "ft" / "results.csv")))
    assert len(rows) == 2 and {r["protocol"] for r in rows} == {"finetune"} and {r["steps"] for r in rows} == {"1"}


def test_init_takes_a_saved_model_file_and_names_a_bad_one(start, tmp_path):
    from hierhead.models import save

    config, ckpt = start
    trained, spec = load_checkpoint(ckpt)
    path = save(trained, tmp_path / "start.safetensors")
    again = load_start_model(path, spec)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))
    (tmp_path / "bad.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"--init .*bad.safetensors.*cannot be read"):
        load_start_model(tmp_path / "bad.safetensors", spec)
    with pytest.raises(ValueError, match=r"--init .*missing.ckpt.*file not found"):
        load_start_model(tmp_path / "missing.ckpt", spec)


def _near(a: list[dict], b: list[dict]) -> bool:
    """The same detections up to float order (cached features are batched and laid out differently)."""
    return all(len(x["scores"]) == len(y["scores"]) and torch.allclose(x["scores"], y["scores"], atol=1e-4)
               and torch.allclose(x["boxes"], y["boxes"], atol=1e-2) for x, y in zip(a, b))


def _lite0_start(size: int = 96):
    """The frozen-backbone protocol's start: Lite0 SSDLite with the shipped ImageNet body."""
    from hierhead.models.pretrained import packaged_weights

    model = build("ssdlite320_efficientnet_lite0", 3, backbone_weights=packaged_weights("tf_efficientnet_lite0"),
                  image_size=size)
    model.hierhead_spec = model.hierhead_spec.replace(classes=["class0", "class1"])
    return model


def test_frozen_backbone_protocol_trains_all_but_the_imagenet_body_from_each_seeds_draw():
    from hierhead.engine.head import backbone_model, detect_cached
    from hierhead.models.builders import backbone_body

    start = _lite0_start()
    config = resolve("synthetic-ssdlite", {**QUICK, "data": {"path": DATA}})
    train_set, test_set = open_config_splits(config)
    views = cache_views(start, train_set, 2, (SIZE, SIZE), config["augment"], cut="body")
    test = cache_test(start, test_set, cut="body")
    assert views.cut == test.cut == "body" and [f.shape[1] for f in views.features] == [112, 320]  # strides 16, 32
    images = [test_set[i][0] for i in range(len(test_set))]
    general, hier = (backbone_model(start, d, seed=5) for d in ("9An{9}", "9An{9,3,1}As"))
    other = backbone_model(start, "9An{9}", seed=6)
    body = backbone_body(start).state_dict()
    for m in (general, hier, other):  # every run starts from the ImageNet body
        assert all(torch.equal(body[k], v) for k, v in backbone_body(m).state_dict().items())
    a, b, c = (run_model(m, images) for m in (general, hier, other))
    assert _same(a, b) and not _same(a, c)  # one seed, one draw for every design (units at 0); seeds differ
    assert _near(detect_cached(general, test), a)  # the cache scores what model(images) detects
    before = {k: v.clone() for k, v in hier.state_dict().items()}
    r = train_head(hier, views, pool_of(views, list(range(len(train_set)))), 3, 4,
                   {"name": "adamw", "lr": 0.01, "weight_decay": 0.0}, {"name": "cosine"}, seed=5)
    after = hier.state_dict()
    assert r["steps"] == 3 and not hier.training
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in after if not torch.equal(before[k], after[k])}
    assert changed == {"backbone.extra", "head.classification_head", "head.regression_head"}  # BN stats too
    assert _near(detect_cached(hier, test), run_model(hier, images))
    with pytest.raises(ValueError, match="needs a timm-backbone SSDLite"):
        cache_test(build("ssdlite320_mobilenet_v3", 3, image_size=SIZE), test_set, cut="body")


def test_prior_penalty_is_separate_coupled_l2_on_anchor_weights_and_units():
    from hierhead.engine.optim import prior_penalty
    from hierhead.models import fold, prediction_convs

    model = build("ssdlite320_mobilenet_v3", 3, design="9An{9,3}As", image_size=SIZE)
    convs = [c for c, *_ in prediction_convs(model)]
    anchors = sum(c.anchor_weight.pow(2).sum() for c in convs)
    units = sum(c.unit_weight.pow(2).sum() for c in convs)
    assert prior_penalty(model, {"anchor_l2": 0.0}) == 0.0
    assert torch.allclose(prior_penalty(model, {"anchor_l2": 0.5, "unit_l2": 0.1}), 0.25 * anchors + 0.05 * units)
    general = build("ssdlite320_mobilenet_v3", 3, image_size=SIZE)
    plain = sum(c.weight.pow(2).sum() for c, *_ in prediction_convs(general))
    assert torch.allclose(prior_penalty(general, {"anchor_l2": 2.0, "unit_l2": 7.0}), plain)  # no units: plain L2
    prior = prior_penalty(model, {"anchor_l2": 1.0, "unit_l2": 0.0})
    prior.backward()  # coupled: the gradient of the loss, on the anchor weights only
    assert torch.allclose(convs[0].anchor_weight.grad, convs[0].anchor_weight)
    assert convs[0].unit_weight.grad is None or not convs[0].unit_weight.grad.any()
    folded = fold(model)  # training only: the fold is the same function
    x = [torch.rand(3, SIZE, SIZE)]
    assert _same(run_model(model, x), run_model(folded, x))
    with pytest.raises(ValueError, match=r"optimizer.unit_l2=-1: expected a number >= 0"):
        make_optimizer(model, {"name": "adamw", "lr": 0.1, "unit_l2": -1})


def test_sweep_frozen_protocol_with_the_prior_on_a_holdout(tmp_path, capsys):
    common = ["sweep", "--data", DATA, "--designs", "9An{9,3}As,9An{9,3}As@prior0.1,9An{9}@prior0.1", "--seeds", "1",
              "--set", f"image_size={SIZE}", "--set", "num_workers=0", "--set", "progress=false",
              "--set", "data.holdout=0.25", *(x for k, v in HEAD.items() for x in ("--set", f"frozen.{k}={v}"))]
    assert main([*common, "--protocol", "frozen", "--out", str(tmp_path / "fz")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "fz" / "results.csv")))
    prior = {r["arm"]: json.loads(r["settings"])["frozen"].get("optimizer", {}).get("anchor_l2") for r in rows}
    assert prior == {"9An{9}": None, "9An{9,3}As": None, "9An{9,3}As@prior0.1": 0.1, "9An{9}@prior0.1": 0.1}
    assert {r["protocol"] for r in rows} == {"frozen"} and all(0 <= float(r["mAP"]) <= 100 for r in rows)
    # scored on a 25 % holdout of the 12 training images (drawn with the seed), trained on the other 9
    assert {(r["train_images"], r["scored_images"], r["split"]) for r in rows} == {
        ("9", "3", "holdout 25% of train (split_seed 0)")}
    # the frozen section's settings, not the head protocol's: 3 steps (head: 200)
    assert {r["steps"] for r in rows} == {"3"}
    assert main([*common, "--set", "frozen.steps=4", "--protocol", "frozen", "--out", str(tmp_path / "fz")]) == 2
    assert "holds a sweep with other settings" in capsys.readouterr().err  # other settings: another folder
    assert main([*common, "--protocol", "frozen", "--init", "x.ckpt", "--out", str(tmp_path / "y")]) == 2
    assert "has no trained start" in capsys.readouterr().err
    imagenet = ["sweep", "--data", DATA, "--designs", "9An{9,3}As", "--seeds", "1", "--set", f"image_size={SIZE}",
                "--set", "num_workers=0", "--set", "progress=false", "--max-steps", "1", "--set", "batch_size=4",
                "--protocol", "imagenet"]
    assert main([*imagenet, "--out", str(tmp_path / "im")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "im" / "results.csv")))
    assert [(r["design"], r["protocol"], r["steps"]) for r in rows] == [("9An{9}", "imagenet", "1"),
                                                                        ("9An{9,3}As", "imagenet", "1")]
    capsys.readouterr()
    assert main([*imagenet, "--set", "model=ssdlite320_mobilenet_v3", "--out", str(tmp_path / "mb")]) == 2
    err = capsys.readouterr().err
    assert "pretrained_backbone" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match=r"@priorX needs a strength X > 0"):
        from hierhead.study.sweep import variant
        variant("9An{9}@prior0")
