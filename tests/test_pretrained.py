"""ImageNet backbones offline: the shipped EfficientNet-Lite0 weights, their mapping onto timm, the
pretrained default, timm-backbone detectors folded and loaded without hierhead, fine-tuning's lr groups."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hierhead.layers import HierarchicalConv2d
from hierhead.models import build
from hierhead.models.builders import backbone_body
from hierhead.models.pretrained import packaged_weights, timm_state_dict

LITE0 = "ssdlite320_efficientnet_lite0"


@pytest.fixture(scope="module")
def shipped():
    path = packaged_weights("tf_efficientnet_lite0")
    return path, torch.load(path, map_location="cpu", weights_only=True)


def test_mapped_timm_network_computes_the_reference_logits(shipped):
    """The package's own reference implementation (efficientnet_pytorch naming) and timm's network with
    the mapped weights give the same ImageNet logits: a wrong mapping (two tensors swapped, a block
    shifted) changes them."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    path, state = shipped
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state)
    net = timm.create_model("tf_efficientnet_lite0")
    net.load_state_dict(timm_state_dict(state, "tf_efficientnet_lite0", "test"))
    torch.manual_seed(0)
    x = torch.rand(2, 3, 224, 224) * 2 - 1  # the weights' preprocessing: mean = std = 0.5
    with torch.no_grad():
        want, got = reference.eval()(x), net.eval()(x)
    assert want.shape == (2, 1000)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_the_default_detector_holds_exactly_the_shipped_backbone(shipped):
    from hierhead.engine import resolve
    from hierhead.engine.module import DetectorModule
    from hierhead.engine.from_config import backbone_weights
    from hierhead.models import ModelSpec

    path, state = shipped
    config = resolve(None, {})
    assert config["model"] == LITE0 and backbone_weights(config) == str(path)
    module = DetectorModule(ModelSpec(model=LITE0, num_classes=3), backbone_weights=backbone_weights(config))
    body = backbone_body(module.model)
    assert module.model.hierhead_spec.pretrained_backbone
    # the file's tensors in the file's order are timm's full network's in its order (checked above against the
    # reference); the detector's body must hold each of them exactly
    import timm

    order = dict(zip(timm.create_model("tf_efficientnet_lite0").state_dict(), state.values()))
    own = body.state_dict()
    assert len(own) == 240 and all(torch.equal(own[k], order[k]) for k in own)
    frozen = [type(m).__name__ for m in body.modules() if "BatchNorm" in type(m).__name__]
    assert frozen and all(n.startswith("Frozen") for n in frozen)  # frozen batch norm, as torchvision's bodies

    scratch = resolve(None, {"pretrained_backbone": False})
    assert backbone_weights(scratch) is None
    fresh = DetectorModule(ModelSpec(model=LITE0, num_classes=3), backbone_weights=backbone_weights(scratch)).model
    assert not fresh.hierhead_spec.pretrained_backbone
    assert not torch.equal(backbone_body(fresh).state_dict()["conv_stem.weight"], own["conv_stem.weight"])
    assert not any(type(m).__name__.startswith("Frozen") for m in backbone_body(fresh).modules())
    with pytest.raises(ValueError, match="pretrained_backbone=true: no ImageNet weights ship for 'ssdlite320_mobilenet_v3'"):
        backbone_weights(resolve(None, {"model": "ssdlite320_mobilenet_v3", "pretrained_backbone": True}))
    assert backbone_weights(resolve(None, {"model": "ssdlite320_mobilenet_v3"})) is None  # none ships: scratch


def test_a_weights_file_of_another_network_is_one_line_naming_the_tensor(shipped, tmp_path):
    import timm

    path, state = shipped
    timm.create_model("resnet18")  # another network in timm's naming
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match=r"resnet18.pth'.*not tf_efficientnet_lite0's weights .*first missing tensor "
                                         r"conv_stem.weight"):
        build(LITE0, 3, backbone_weights=tmp_path / "resnet18.pth")
    wider = dict(state)  # the package's naming, one block of another width (e.g. another Lite variant)
    wider["_blocks.3._expand_conv.weight"] = torch.zeros(48, 24, 1, 1)
    torch.save(wider, tmp_path / "wider.pth")
    with pytest.raises(ValueError, match=r"tensor 54 _blocks.3._expand_conv.weight \(48, 24, 1, 1\) maps to "
                                         r"blocks.2.0.conv_pw.weight, tf_efficientnet_lite0 has "
                                         r"blocks.2.0.conv_pw.weight \(144, 24, 1, 1\) there"):
        build(LITE0, 3, backbone_weights=tmp_path / "wider.pth")
    shifted = {k: v for k, v in state.items() if not k.startswith("_blocks.0.")}  # a block missing
    torch.save(shifted, tmp_path / "shifted.pth")
    with pytest.raises(ValueError, match=r"tensor 6 _blocks.1._expand_conv.weight .* maps to blocks.1.0.conv_pw.weight, "
                                         r"tf_efficientnet_lite0 has blocks.0.0.conv_dw.weight"):
        build(LITE0, 3, backbone_weights=tmp_path / "shifted.pth")
    # timm's own naming (e.g. a file saved from timm) loads as it is
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in timm_state_dict(state, "tf_efficientnet_lite0", "test").items()},
              str(tmp_path / "timm.safetensors"))
    a = build(LITE0, 3, backbone_weights=tmp_path / "timm.safetensors")
    b = build(LITE0, 3, backbone_weights=path)
    assert all(torch.equal(x, y) for x, y in zip(backbone_body(a).state_dict().values(),
                                                 backbone_body(b).state_dict().values()))


def test_cli_refuses_a_wrong_backbone_file_in_one_line(tmp_path, capsys):
    from hierhead.cli import main

    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "w.pth")
    data = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cards" / "train"
    if not data.is_dir():
        pytest.skip("../shared/datasets/cards not present")
    code = main(["train", "--data", str(data), "--backbone-weights", str(tmp_path / "w.pth"),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "w.pth'" in err and "not tf_efficientnet_lite0's weights" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("name,options", [(LITE0, {}), ("ssdlite_timm", {"backbone": "resnet10t"}),
                                          ("ssdlite_timm", {"backbone": "resnet10t", "anchor_s_min": 0.1})])
def test_timm_detector_folds_and_loads_without_hierhead(name, options, shipped, tmp_path):
    """fold writes the same three files for a timm backbone; load_model.py (torch, torchvision, timm)
    gives the same detections in a process where hierhead cannot be imported (also with Eq. 3's s_min
    changed: the anchors travel as boxes in model.json)."""
    from hierhead.models.deploy import save_folded

    torch.manual_seed(0)
    weights = shipped[0] if name == LITE0 else None
    model = build(name, 4, design="9An{9,3,1}S", backbone_weights=weights, image_size=160, **options).eval()
    for m in model.modules():
        if isinstance(m, HierarchicalConv2d):
            torch.nn.init.normal_(m.unit_weight, std=0.05)
    save_folded(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["load_model.py", "model.json", "model.safetensors"]
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["model"] == name and spec["options"]["image_size"] == 160
    assert spec["pretrained_backbone"] == (weights is not None)
    smallest = min(min(w, h) for w, h in spec["anchors"]["wh_pairs"][0])
    assert smallest == pytest.approx(options.get("anchor_s_min", 0.2) * 2 ** -0.66 / math.sqrt(2), rel=1e-5)
    script = ("import sys, torch; sys.modules['hierhead'] = None\n"
              "from load_model import load\n"
              "m = load('.'); torch.manual_seed(0); x = [torch.rand(3, 200, 260)]\n"
              "with torch.no_grad(): out = m(x)\n"
              "torch.save([dict(d) for d in out], 'out.pt')\n")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    deployed = torch.load(tmp_path / "out.pt", weights_only=True)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        ours = model([torch.rand(3, 200, 260)])[0]
    assert len(ours["boxes"]) > 0
    assert torch.equal(ours["labels"], deployed["labels"])
    torch.testing.assert_close(ours["boxes"], deployed["boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours["scores"], deployed["scores"], atol=1e-5, rtol=0)


def test_an_unknown_timm_name_is_refused_without_fetching():
    with pytest.raises(ValueError, match="backbone 'hf-hub:someone/net': not a timm model name"):
        build("ssdlite_timm", 3, backbone="hf-hub:someone/net")
    with pytest.raises(ValueError, match="use --model ssdlite_timm --set model_kwargs.backbone=resnet18"):
        build(LITE0, 3, backbone="resnet18")


def test_backbone_lr_scale_groups_and_freezing():
    from hierhead.engine.module import DetectorModule
    from hierhead.engine.optim import make_optimizer
    from hierhead.models import ModelSpec

    spec = ModelSpec(model=LITE0, num_classes=3, design="9An{9,3,1}S", options={"image_size": 128})
    model = build(LITE0, 3, design="9An{9,3,1}S", image_size=128)
    body = {id(p) for p in backbone_body(model).parameters()}
    opt = make_optimizer(model, {"name": "adamw", "lr": 0.01, "backbone_lr_scale": 0.1, "unit_lr_scale": 0.5})
    lrs = [(g["lr"], {id(p) for p in g["params"]}) for g in opt.param_groups]
    assert [lr for lr, _ in lrs] == pytest.approx([0.01, 0.005, 0.001]) and lrs[2][1] == body
    # named, so Lightning logs lr-AdamW/backbone (results.png's legend), not lr-AdamW/pg3
    assert [g["name"] for g in opt.param_groups] == ["detector", "units", "backbone"]
    assert sum(len(ids) for _, ids in lrs) == sum(1 for _ in model.parameters())
    frozen = DetectorModule(spec, {"name": "adamw", "lr": 0.01, "backbone_lr_scale": 0})
    assert not any(p.requires_grad for p in backbone_body(frozen.model).parameters())
    opt = frozen.configure_optimizers()["optimizer"]
    frozen_body = {id(p) for p in backbone_body(frozen.model).parameters()}
    assert len(opt.param_groups) == 1 and not frozen_body & {id(p) for p in opt.param_groups[0]["params"]}
    with pytest.raises(ValueError, match=r"optimizer.backbone_lr_scale=-1: expected a number >= 0"):
        make_optimizer(model, {"name": "sgd", "lr": 0.01, "backbone_lr_scale": -1})


@pytest.mark.parametrize("name,options,first_trained", [(LITE0, {}, "blocks.2."),
                                                        ("ssdlite_timm", {"backbone": "resnet10t"}, "layer2.")])
def test_frozen_stages_freeze_the_body_through_that_level_and_nothing_else(name, options, first_trained):
    from hierhead.engine.optim import make_optimizer

    model = build(name, 3, frozen_stages=2, image_size=128, **options)
    body = backbone_body(model)
    names = [n for n, _ in body.named_parameters()]
    frozen = [n for n, p in body.named_parameters() if not p.requires_grad]
    first = next(i for i, n in enumerate(names) if n.startswith(first_trained))
    assert frozen == names[:first] and frozen  # the stem and stages 1-2, in order, and only them
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone.body."))
    opt = make_optimizer(model, {"name": "adamw", "lr": 0.01, "backbone_lr_scale": 0.1})
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not trained & {id(p) for n, p in body.named_parameters() if n in frozen}
    before = {n: t.clone() for n, t in body.state_dict().items()}
    model.train()
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([1])} for _ in range(2)]
    sum(model(images, targets).values()).backward()
    opt.step()
    after = body.state_dict()
    stem = [k for k in before if any(k.startswith(f.rsplit(".", 1)[0] + ".") for f in frozen)]
    assert stem and all(torch.equal(before[k], after[k]) for k in stem)  # weights and running stats kept
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith(first_trained))
    with pytest.raises(ValueError, match=r"frozen_stages=6: expected 0 to 5"):
        build(name, 3, frozen_stages=6, **options)


def test_freezing_is_a_training_policy_applied_by_the_engine_and_never_saved_with_the_model(tmp_path):
    """`frozen_stages` (a training setting) freezes cards-ssdlite's stem and first stages in training; the run's
    spec, its checkpoint and the model loaded from it carry no trace of it; the old model option, a random
    backbone and a torchvision backbone are one-line errors."""
    from hierhead.engine.checkpoint import load_checkpoint
    from hierhead.engine.recipes import resolve
    from hierhead.engine.trainer import prepare, train

    base = {"data": {"path": "synthetic:classes=2,train=4,test=2,size=64"}, "num_workers": 0, "image_size": 128,
            "progress": False, "validate": False, "plots": False, "max_steps": 1, "batch_size": 2}
    module, _ = prepare(resolve("cards-ssdlite", base))
    frozen = [n for n, p in backbone_body(module.model).named_parameters() if not p.requires_grad]
    assert frozen and all(not n.startswith("blocks.2.") for n in frozen)  # stem and stages 1-2 (stride 4)
    assert "frozen_stages" not in module.spec.options
    result = train(resolve("cards-ssdlite", {**base, "out": str(tmp_path / "run")}))
    model, spec = load_checkpoint(result["last"])
    assert "frozen_stages" not in spec.options and all(p.requires_grad for p in model.parameters())
    for over, message in (({"model_kwargs": {"frozen_stages": 2}}, "freezing is a training setting now"),
                          ({"frozen_stages": -1}, "frozen_stages=-1: expected a whole number"),
                          ({"pretrained_backbone": False}, "this backbone starts random"),
                          ({"model": "ssdlite320_mobilenet_v3"}, "not of ssdlite320_mobilenet_v3; set frozen_stages=0")):
        with pytest.raises(ValueError, match=re.escape(message)):
            prepare(resolve("cards-ssdlite", {**base, **over}))


def test_frozen_stages_on_a_torchvision_backbone_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"frozen_stages: an option of the timm-backbone models .* not of "
                                         r"ssdlite320_mobilenet_v3; set model_kwargs.frozen_stages=0"):
        build("ssdlite320_mobilenet_v3", 3, frozen_stages=2)
    build("ssdlite320_mobilenet_v3", 3, frozen_stages=0, image_size=128)  # 0 is nothing to do


@pytest.mark.parametrize("name,options,rewritten", [(LITE0, {}, {"fold_frozen_norms": 48}),
                                                  ("ssdlite_timm", {"backbone": "resnet10t"}, {"fold_frozen_norms": 13})])
def test_speed_rewrites_train_the_same_function_with_the_same_state(name, options, rewritten, shipped):
    """The body's frozen norms folded into their convs (the TF-'same' strided convs of EfficientNet-Lite0 among
    them): losses and gradients equal the model as built (float rounding aside), the state dict is the same, each
    rewrite is applied once, and a copy (EMA's) computes with its own weights, not the original's."""
    import copy

    from timm.layers import freeze_batch_norm_2d

    from hierhead.engine import speed

    torch.manual_seed(0)
    model = build(name, 3, image_size=128, backbone_weights=shipped[0] if name == LITE0 else None, **options).train()
    if name != LITE0:  # no weights ship for it: its batch norm frozen as a pretrained body's is
        model.backbone.body = freeze_batch_norm_2d(model.backbone.body)
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([1])} for _ in range(2)]

    def loss_and_grads():
        model.zero_grad()
        loss = sum(model(images, targets).values())
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    keys = list(model.state_dict())
    plain_loss, plain_grads = loss_and_grads()
    body = backbone_body(model)
    assert speed.apply(body, list(speed.REWRITES)) == rewritten
    assert speed.apply(body, list(speed.REWRITES)) == dict.fromkeys(rewritten, 0)  # once
    fast_loss, fast_grads = loss_and_grads()
    assert list(model.state_dict()) == keys and fast_grads.keys() == plain_grads.keys()
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-5)
    for n, g in plain_grads.items():
        assert torch.allclose(fast_grads[n], g, rtol=1e-2, atol=1e-5 * g.abs().max().item()), n
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in backbone_body(twin).parameters():
            p.mul_(0.5)
        x = torch.rand(1, 3, 96, 128)  # not square: each side's padding on its own
        halved = list(backbone_body(twin)(x))  # the body's feature maps
        speed.restore(backbone_body(twin))
        assert not any("forward" in vars(m) for m in backbone_body(twin).modules())
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(halved, backbone_body(twin)(x)))
        assert not torch.allclose(halved[-1], list(body.eval()(x))[-1])  # its own weights
    with pytest.raises(ValueError, match="speed rewrite 'fuse_everything': choose from fold_frozen_norms"):
        speed.apply(body, ["fuse_everything"])


def test_a_rewrite_that_would_change_the_function_is_undone():
    """Module order is not data flow: a conv whose output also bypasses the norm after it is not folded."""
    from torchvision.ops import FrozenBatchNorm2d

    from hierhead.engine import speed

    class Bypass(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = torch.nn.Conv2d(3, 4, 3, padding=1), FrozenBatchNorm2d(4)
            self.norm.weight.fill_(2.0)

        def forward(self, x):
            y = self.conv(x)
            return self.norm(y) + y

    net = Bypass()
    x = torch.rand(1, 3, 8, 8)
    before = net(x)
    assert speed.fold_frozen_norms(net, check=(1, 3, 8, 8)) == 0 and "forward" not in vars(net.conv)
    assert "forward" not in vars(net.norm) and torch.equal(net(x), before)


def test_the_defaults_train_with_folded_norms_and_the_pinned_recipe_of_2026_12_without():
    from hierhead.engine.recipes import resolve
    from hierhead.engine.trainer import prepare

    base = {"data": {"path": "synthetic:classes=2,train=4,test=2,size=64"}, "num_workers": 0, "image_size": 128,
            "validate": False}

    def rewritten(module):
        return {flag: sum(flag in vars(m) for m in backbone_body(module.model).modules())
                for flag in ("_hierhead_norm", "_hierhead_folded")}

    assert rewritten(prepare(resolve(None, base))[0]) == {"_hierhead_norm": 48, "_hierhead_folded": 48}
    assert rewritten(prepare(resolve("defaults-2026-12", base))[0]) == {"_hierhead_norm": 0, "_hierhead_folded": 0}
