import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator

from hierhead import PRESETS, Design, HierarchicalConv2d
from hierhead.design import torchvision_order


def literal_eq2(layer: HierarchicalConv2d, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2 written out: J+1 separate convolutions, units added to the anchors M joins them to."""
    a, k = layer.num_anchors, layer.num_outputs_per_anchor
    own = F.conv2d(x, layer.anchor_weight, layer.anchor_bias, padding=layer.padding)
    outs = [own[:, i * k:(i + 1) * k] for i in range(a)]
    for j in range(layer.num_units):
        unit = F.conv2d(x, layer.unit_weight[j * k:(j + 1) * k], layer.unit_bias[j * k:(j + 1) * k],
                        padding=layer.padding)
        for i in range(a):
            if layer.design.rows[j][i]:
                outs[i] = outs[i] + unit
    return torch.cat(outs, dim=1)


def randomize(layer):
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


@pytest.mark.parametrize("name", PRESETS + ("9An{9,6,1}AsS", "9An{9,2}Or"))
@pytest.mark.parametrize("shape", [(1, 8, 5, 7), (3, 8, 4, 4)])
@pytest.mark.parametrize("kernel", [1, 3])
def test_forward_and_gradients_equal_the_literal_form(name, shape, kernel):
    torch.manual_seed(0)
    layer = randomize(HierarchicalConv2d(shape[1], Design.parse(name), 5, kernel_size=kernel).double())
    x = torch.randn(shape, dtype=torch.float64)
    grad = torch.randn(shape[0], 45, shape[2], shape[3], dtype=torch.float64)
    out = layer(x)
    grads = torch.autograd.grad((out * grad).sum(), list(layer.parameters()), allow_unused=True, materialize_grads=True)
    ref = literal_eq2(layer, x)
    ref_grads = torch.autograd.grad((ref * grad).sum(), list(layer.parameters()), allow_unused=True, materialize_grads=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_fold_is_exact_and_general_sized(name):
    torch.manual_seed(1)
    layer = randomize(HierarchicalConv2d(16, Design.parse(name), 4))
    conv = layer.fold()
    general = nn.Conv2d(16, 36, 3, padding=1)
    assert type(conv) is nn.Conv2d
    assert sum(p.numel() for p in conv.parameters()) == sum(p.numel() for p in general.parameters())
    general.load_state_dict(conv.state_dict(), strict=True)
    x = torch.randn(2, 16, 9, 11)
    torch.testing.assert_close(general(x), layer(x), atol=1e-5, rtol=1e-5)


def test_from_conv_starts_as_the_conv():
    conv = nn.Conv2d(8, 9 * 3, 3, padding=1)
    layer = HierarchicalConv2d.from_conv(conv, Design.parse("9An{9,3,1}S"), 3)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(layer(x), conv(x))
    with pytest.raises(ValueError, match="27 output channels.*needs 36"):
        HierarchicalConv2d.from_conv(conv, Design.parse("9An{9,3,1}S"), 4)


@pytest.mark.parametrize("name", PRESETS)
def test_init_matches_the_general_head_scale(name):
    torch.manual_seed(0)
    layer = HierarchicalConv2d(256, Design.parse(name), 20, std=0.01, bias=-4.59)
    weight, bias = layer.effective_weight_and_bias()
    per_anchor = weight.detach().reshape(9, -1).std(dim=1)
    torch.testing.assert_close(per_anchor, torch.full((9,), 0.01), atol=3e-4, rtol=0)
    assert torch.allclose(bias, torch.full_like(bias, -4.59))


def test_soft_matrix_learns_and_still_folds():
    torch.manual_seed(0)
    layer = randomize(HierarchicalConv2d(4, Design.parse("9An{9,3,1}As"), 2, soft=True))
    assert isinstance(layer.matrix, nn.Parameter)
    x = torch.randn(1, 4, 5, 5)
    layer(x).sum().backward()
    assert layer.matrix.grad is not None and layer.matrix.grad.abs().sum() > 0
    with torch.no_grad():
        layer.matrix.add_(0.3)
    torch.testing.assert_close(layer.fold()(x), layer(x), atol=1e-5, rtol=1e-5)


def test_design_semantics_on_torchvision_anchors():
    gen = AnchorGenerator(((32, 64, 128),), ((0.5, 1.0, 2.0),))
    boxes = gen.cell_anchors[0]  # one location, in torchvision's order
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # torchvision rounds the corners to pixels: compare log2 sizes and ratios (sizes 32..128, ratios 1/2..2)
    area, ratio = (w * h).sqrt().log2().round(), (h / w).log2().round()
    anchors = torchvision_order(3, 3)
    for name in ("9An{9,3}As", "9An{9,3,1}As"):
        for row in Design.parse(name, anchors=anchors).rows:
            idx = [i for i, v in enumerate(row) if v]
            if len(idx) == 3:
                assert len(set(area[idx].tolist())) == 1 and len(set(ratio[idx].tolist())) == 3
    for name in ("9An{9,3}S", "9An{9,3,1}S"):
        for row in Design.parse(name, anchors=anchors).rows:
            idx = [i for i, v in enumerate(row) if v]
            if len(idx) == 3:
                assert len(set(ratio[idx].tolist())) == 1 and len(set(area[idx].tolist())) == 3
