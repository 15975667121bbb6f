import math

import pytest
import torch

from hierhead import HierarchicalConv2d
from hierhead.anchors import anchor_shapes, ssd_scales
from hierhead.models import anchor_generator_of, build, fold, hierarchize, level_designs, names, save, spec_of

SMALL = {  # keep the two-stage / RetinaNet inputs tiny; SSDs resize to their fixed size
    "retinanet_resnet50_fpn": {"min_size": 128, "max_size": 128, "score_thresh": 0.0},
    "retinanet_resnet50_fpn_nosubnet": {"min_size": 128, "max_size": 128, "score_thresh": 0.0},
    "fasterrcnn_resnet50_fpn": {"min_size": 128, "max_size": 128, "box_score_thresh": 0.0},
}
DESIGN = "9An{9,3,1}S"


def _build(name, design=DESIGN, **kw):
    return build(name, num_classes=3, design=design, **{**SMALL.get(name, {}), **kw})


def _images(n=2):
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 96, 128, generator=g), torch.rand(3, 120, 80, generator=g)][:n]


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0], [30.0, 5.0, 120.0, 40.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[5.0, 5.0, 70.0, 100.0]]), "labels": torch.tensor([2])},
    ]


def _count(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module", params=names())
def built(request):
    torch.manual_seed(0)
    return request.param, _build(request.param)


def test_every_builder_trains(built):
    name, model = built
    model.train()
    n = 1 if "vgg" in name else 2  # VGG at 300 / 512 px: one image
    losses = model(_images(n), _targets()[:n])
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    layers = [m for m in model.modules() if isinstance(m, HierarchicalConv2d)]
    for k_out in {m.num_outputs_per_anchor for m in layers} | {4}:  # classifier and regressor both
        units = [m.unit_weight for m in layers if m.num_outputs_per_anchor == k_out]
        assert units and all(u.grad is not None for u in units)
        assert sum(u.grad.abs().sum() for u in units) > 0  # levels without positives get none
    model.zero_grad(set_to_none=True)


def test_folded_and_stock_models_detect_identically(built):
    name, model = built
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, HierarchicalConv2d):
                m.unit_weight.normal_(std=0.02)
                m.unit_bias.normal_(std=0.1)
    model.eval()
    folded = fold(model).eval()
    assert type(folded) is type(model)
    assert not any(isinstance(m, HierarchicalConv2d) for m in folded.modules())
    assert type(anchor_generator_of(folded)).__module__.startswith("torchvision.")
    stock = _build(name, design=None).eval()
    stock.load_state_dict(folded.state_dict(), strict=True)
    assert _count(folded) == _count(stock)  # (c) exactly the general head's size
    with torch.no_grad():
        outs = [m(_images(1 if "vgg" in name else 2)) for m in (model, folded, stock)]  # VGG at 300/512: one image
    assert sum(len(d["boxes"]) for d in outs[0]) > 0
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a["labels"], b["labels"])
            torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-4, rtol=0)
            torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=0)


def test_anchors_satisfy_the_design(built):
    name, model = built
    gen = anchor_generator_of(model)
    for design in ("9An{9,3}As", "9An{9,3}S", "9An{9,2}Or"):
        for level, (d, shapes) in enumerate(zip(level_designs(model, design), anchor_shapes(gen))):
            assert len(shapes) == 9
            for row in d.rows:
                joined = [shapes[i] for i, v in enumerate(row) if v]
                sizes = [math.sqrt(w * h) for w, h in joined]
                ratios = [h / w for w, h in joined]
                if design.endswith("As"):  # one area, three aspect ratios
                    assert max(sizes) / min(sizes) < 1.05 and max(ratios) / min(ratios) > 3
                elif design.endswith("S"):  # one aspect ratio, three sizes
                    assert max(ratios) / min(ratios) < 1.1 and max(sizes) / min(sizes) > 1.4
                else:  # orientation: all vertical or all horizontal
                    assert all(r > 1.1 for r in ratios) or all(r < 0.9 for r in ratios)


def test_general_design_is_exactly_the_stock_head():
    a = build("ssdlite320_mobilenet_v3", 3, design="9An{9}")
    b = build("ssdlite320_mobilenet_v3", 3, design=None)
    assert not any(isinstance(m, HierarchicalConv2d) for m in a.modules())
    assert list(a.state_dict()) == list(b.state_dict())


def test_paper_ssd_anchors_follow_eq3():
    model = build("ssd300_vgg16", 3, design=None)
    scales = ssd_scales(6)
    assert scales[0] == pytest.approx(0.2) and scales[-1] == pytest.approx(0.95)
    for k, shapes in enumerate(anchor_shapes(model.anchor_generator)):
        sizes = sorted({round(math.sqrt(w * h), 6) for w, h in shapes})
        expected = sorted(round(scales[k] * 2 ** -e, 6) for e in (0, 0.33, 0.66))
        assert sizes == pytest.approx(expected)
        assert sorted({round(h / w, 6) for w, h in shapes}) == pytest.approx([0.5, 1.0, 2.0])


def test_hierarchize_keeps_the_function_and_refuses_twice():
    torch.manual_seed(0)
    model = build("ssdlite320_mobilenet_v3", 3, design=None).eval()
    images = _images(1)
    with torch.no_grad():
        before = model(images)[0]
        hierarchize(model, "9An{9,1}Both")
        after = model(images)[0]
    torch.testing.assert_close(before["scores"], after["scores"])
    with pytest.raises(ValueError, match="already hierarchical"):
        hierarchize(model, "9An{9,1}Both")


def test_bad_design_for_the_anchors():
    with pytest.raises(ValueError, match="these anchors have 3 sizes"):
        build("ssdlite320_mobilenet_v3", 3, design="9An{9,4}As")
    with pytest.raises(ValueError, match="unknown; choose one of"):
        build("yolo", 3)


def test_weights_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    model = build("ssdlite320_mobilenet_v3", 3, design=DESIGN)
    path = save(model, tmp_path / "m.safetensors")
    again = build("ssdlite320_mobilenet_v3", 3, design=DESIGN, weights=path)
    for (k, v), w in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k
    assert spec_of(again).design == DESIGN
    with pytest.raises(ValueError, match=r"saved for design='9An\{9,3,1\}S', this model has design='9An\{9,1\}Both'"):
        build("ssdlite320_mobilenet_v3", 3, design="9An{9,1}Both", weights=path)
    with pytest.raises(ValueError, match="saved for num_classes=3, this model has num_classes=5"):
        build("ssdlite320_mobilenet_v3", 5, design=DESIGN, weights=path)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    with pytest.raises(ValueError, match=r"m.pth'.*do not match the model.*in the file.*in the model"):
        build("ssdlite320_mobilenet_v3", 5, design=DESIGN, weights=tmp_path / "m.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth'.*cannot be read"):
        build("ssdlite320_mobilenet_v3", 3, design=DESIGN, weights=tmp_path / "junk.pth")


def _folded_round_trip(model, folder):
    """(the model ``hierhead fold`` writes and ``load_model.py`` loads, its detections, ``model``'s),
    with random units so that folding has something to fold."""
    from hierhead.models.deploy import save_folded
    from hierhead.models.stock import load

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, HierarchicalConv2d):
                m.unit_weight.normal_(std=0.02)
    save_folded(model, folder)
    stock = load(folder)
    with torch.no_grad():
        return stock, model(_images()), stock(_images())


def test_ssdlite_takes_any_square_input_and_deploys_at_it(tmp_path):
    torch.manual_seed(0)
    model = _build("ssdlite320_mobilenet_v3", "9An{9,3,1}As", image_size=160).eval()
    assert model.transform.fixed_size == (160, 160) and model.hierhead_spec.options["image_size"] == 160
    stock, a, b = _folded_round_trip(model, tmp_path)
    assert stock.transform.fixed_size == (160, 160) and _count(stock) == _count(_build("ssdlite320_mobilenet_v3", None))
    for x, y in zip(a, b):
        assert torch.equal(x["labels"], y["labels"])
        torch.testing.assert_close(x["boxes"], y["boxes"], atol=1e-4, rtol=0)


def test_a_stride_8_first_map_trains_folds_and_deploys(tmp_path):
    """first_stride 8: the SSDLite's finest map at stride 8 (the VGG SSD300's conv4_3 is there), six maps still
    (Eq. 3's anchors unchanged), the coarsest extra block dropped; the option travels in the spec, so the
    deployed stock model is the same network; the ImageNet weights load into the three-map body."""
    from hierhead.models.pretrained import packaged_weights

    def grids(model, side=160):
        with torch.no_grad():
            return [tuple(f.shape[-2:]) for f in model.eval().backbone(torch.zeros(1, 3, side, side)).values()]

    torch.manual_seed(0)
    name = "ssdlite320_efficientnet_lite0"
    model = _build(name, "9An{9,3,1}S", first_stride=8, image_size=160)
    assert grids(_build(name, None, image_size=160)) == [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    assert grids(model) == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert model.hierhead_spec.options["first_stride"] == 8
    model.train()
    losses = model(_images(), _targets())
    assert all(torch.isfinite(v) for v in losses.values())
    stock, a, b = _folded_round_trip(model.eval(), tmp_path)
    assert grids(stock) == grids(model) and _count(stock) == _count(_build(name, None, first_stride=8, image_size=160))
    for x, y in zip(a, b):
        assert torch.equal(x["labels"], y["labels"])
        torch.testing.assert_close(x["boxes"], y["boxes"], atol=1e-4, rtol=0)
    pretrained = build(name, 3, first_stride=8, backbone_weights=packaged_weights(name))
    assert grids(pretrained, 320)[0] == (40, 40)
    with pytest.raises(ValueError, match=r"first_stride=4: the finest SSD map's stride, 16 \(SSDLite's\) or 8"):
        build(name, 3, first_stride=4)


def test_size_options_per_architecture():
    from hierhead.models.stock import size_options

    assert size_options("retinanet_resnet50_fpn", (512, 768)) == {"min_size": 512, "max_size": 768,
                                                                   "fixed_size": [768, 512]}
    assert size_options("ssdlite320_mobilenet_v3", (160, 160)) == {"image_size": 160}
    with pytest.raises(ValueError, match=r"image_size=\[300, 300\]: ssd512_vgg16 takes a fixed input"):
        size_options("ssd512_vgg16", (300, 300))


@pytest.mark.parametrize("name,size", [("retinanet_resnet50_fpn_nosubnet", (64, 96)),
                                       ("fasterrcnn_resnet50_fpn", (96, 96)), ("ssdlite320_mobilenet_v3", (96, 96))])
def test_train_and_eval_see_the_same_box_geometry(name, size):
    """A w/h = 2 box reaches the model with the same shape in training (our Resize, then the model's
    transform) and in evaluation (the model's transform alone): the paper's squash to image_size."""
    from hierhead.engine.data import train_transforms
    from hierhead.models.stock import size_options
    from torchvision import tv_tensors

    model = _build(name, None, **size_options(name, size))
    image = torch.rand(3, 100, 200)  # h 100, w 200
    box = torch.tensor([[20.0, 20.0, 60.0, 40.0]])  # w/h = 2 in the image
    target = {"boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(100, 200)),
              "labels": torch.tensor([1]), "difficult": torch.tensor([False])}
    image_t, target_t = train_transforms(size, flip=False, iou_crop=False, photometric=False)(
        tv_tensors.Image((image * 255).to(torch.uint8)), target)
    shapes = []
    for mode, (img, boxes) in (("train", (image_t, target_t["boxes"])), ("eval", (image, box))):
        model.train(mode == "train")
        batch, targets = model.transform([img], [{"boxes": boxes.as_subclass(torch.Tensor), "labels": torch.tensor([1])}])
        b = targets[0]["boxes"][0]
        shapes.append((tuple(batch.image_sizes[0]), round(float((b[2] - b[0]) / (b[3] - b[1])), 3)))
    assert shapes[0] == shapes[1] == (size, round(size[1] / size[0], 3)), shapes  # 2 * (w/200) / (h/100)


def test_sigmoid_ssd_loss_and_scores_follow_the_rule_written_out(tmp_path):
    """loss=sigmoid (the paper's): per-anchor sum of per-class BCE on one-hot targets (background a
    column), positives + the 3x hardest negatives over the positives; scores sigmoid(logit)."""
    from hierhead.models.stock import SigmoidSSD

    model = _build("ssdlite320_mobilenet_v3", DESIGN, loss="sigmoid", image_size=96)
    assert isinstance(model, SigmoidSSD) and model.hierhead_spec.options["loss"] == "sigmoid"
    g = torch.Generator().manual_seed(0)
    n, c = 12, 3
    logits, deltas = torch.randn(2, n, c, generator=g), torch.randn(2, n, 4, generator=g)
    anchors = [torch.tensor([[0.0, 0, 10, 10]]).repeat(n, 1) + torch.arange(n).view(-1, 1) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 15, 15]]), "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    matched = [torch.tensor([0, -1, 1, -1, -1, -1, 0, -1, -1, -1, -1, -1]), torch.full((n,), -1)]
    losses = model.compute_loss(targets, {"cls_logits": logits, "bbox_regression": deltas}, anchors, matched)
    total = 0.0
    for img in range(2):
        per = []
        for a in range(n):
            label = int(targets[img]["labels"][matched[img][a]]) if matched[img][a] >= 0 else 0
            per.append((label, sum(float(-math.log(torch.sigmoid(x if k == label else -x))) for k, x in
                                   enumerate(logits[img, a]))))
        pos = [v for lab, v in per if lab > 0]
        neg = sorted((v for lab, v in per if lab == 0), reverse=True)[: 3 * len(pos)]
        total += sum(pos) + sum(neg)
    assert losses["classification"].item() == pytest.approx(total / 3, rel=1e-5)  # 3 positives
    model.eval()
    model.score_thresh = 0.0
    out = model.postprocess_detections({"cls_logits": logits[:1], "bbox_regression": torch.zeros(1, n, 4)},
                                       anchors[:1], [(100, 100)])[0]
    assert out["scores"].max().item() == pytest.approx(torch.sigmoid(logits[0, :, 1:]).max().item())
    stock, a, b = _folded_round_trip(model, tmp_path)
    assert type(stock) is SigmoidSSD
    for x, y in zip(a, b):
        assert torch.equal(x["labels"], y["labels"]) and len(x["labels"]) > 0
        torch.testing.assert_close(x["scores"], y["scores"], atol=1e-5, rtol=0)
    model.train()
    loss = model(_images(), [{"boxes": torch.tensor([[5.0, 5, 40, 60]]), "labels": torch.tensor([2])}] * 2)
    sum(loss.values()).backward()  # trains end to end
    assert all(torch.isfinite(v) for v in loss.values())
    with pytest.raises(ValueError, match="loss='focal': unknown; choose softmax"):
        _build("ssdlite320_mobilenet_v3", None, loss="focal")


def test_export_check_holds_detections_to_what_ties_allow():
    """Near-tied scores may let NMS keep another box: counts may differ by a few, scores by a hair;
    a detection whose score is unique in its class must be found box for box."""
    from hierhead.models.deploy import _detections_differ

    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]])
    want = (boxes, torch.tensor([0.9, 0.5, 0.5, 0.2]), torch.tensor([1, 1, 1, 1]))
    swapped = (boxes[[0, 2, 1, 3]], want[1], want[2])  # the two tied boxes in the other order
    assert _detections_differ(swapped, want, 0.9) is None
    tie_moved = (torch.cat([boxes[:1], boxes[1:2] + 5, boxes[2:]]), want[1], want[2])  # a tied box elsewhere
    assert _detections_differ(tie_moved, want, 0.9) is None
    moved = (torch.cat([boxes[:1] + 5, boxes[1:]]), want[1], want[2])  # the unambiguous 0.9 box moved
    assert _detections_differ(moved, want, 0.9) == "only 50% of the 2 unambiguous detections found"
    assert _detections_differ(tuple(t[:1] for t in want), want, 0.9) == "1 vs 4 detections"
    rescored = (boxes, torch.tensor([0.9, 0.5, 0.5, 0.1]), want[2])
    assert _detections_differ(rescored, want, 0.9) == "the detection scores differ"


def test_private_torchvision_names_are_pinned():
    """hierhead and the deployed load_model.py lean on names torchvision keeps private; a release that
    renames one, or changes what it computes, fails here rather than in a user's deployment."""
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.ssd import _vgg_extractor  # noqa: F401  (stock.ssd300_vgg16 / ssd512_vgg16)
    from torchvision.models.detection.ssdlite import _mobilenet_extractor, _normal_init  # noqa: F401  (SSDLite)
    from torchvision.models.detection.ssdlite import _extra_block  # noqa: F401  (SSDLite on timm backbones)

    from hierhead.anchors import PaperBoxGenerator, retinanet_anchor_generator
    from hierhead.models import stock

    paper = PaperBoxGenerator(6)
    torch.testing.assert_close(paper._wh_pairs[0][:4], torch.tensor([[0.2, 0.2], [0.1591073, 0.1591073],
                                                                     [0.1265757, 0.1265757], [0.2828427, 0.1414214]]))
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    features = [torch.zeros(1, 1, s, s) for s in (19, 10, 5, 3, 2, 1)]
    anchors = paper(images, features)[0]
    assert anchors.shape == (4500, 4)  # 9 per location over 19^2 + 10^2 + 5^2 + 3^2 + 2^2 + 1 locations
    assert anchors[0].tolist() == pytest.approx([-22.105265, -22.105265, 37.894737, 37.894737], abs=1e-4)
    assert anchors[-1].tolist() == pytest.approx([86.229462, 22.458931, 213.770538, 277.541077], abs=1e-4)
    # load_model.py rebuilds the generator from model.json's pairs through the private _wh_pairs: same boxes
    rebuilt = stock._ssd_generator({"wh_pairs": [p.tolist() for p in paper._wh_pairs]})
    assert torch.equal(rebuilt(images, features)[0], anchors)
    grid = retinanet_anchor_generator()
    assert grid.cell_anchors[0][:3].tolist() == [[-16, -16, 16, 16], [-13, -13, 13, 13], [-10, -10, 10, 10]]
    assert grid.cell_anchors[4][-1].tolist() == [-115, -229, 115, 229]
    assert det_utils._topk_min(torch.arange(5.0), 3, 0) == 3  # SigmoidSSD's top-k per class
    model = build("retinanet_resnet50_fpn", 3, design=None, box_loss="smooth_l1")
    assert model.head.regression_head._loss_type == "smooth_l1"  # the box_loss option sets it


def test_registry_refuses_a_duplicate_and_fold_needs_no_architecture():
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    from hierhead.anchors import PaperBoxGenerator
    from hierhead.design import Design
    from hierhead.models import architecture

    with pytest.raises(ValueError, match="model 'ssd300_vgg16': already registered"):
        architecture("ssd300_vgg16", backbone="vgg16", anchors="ssd", maps=6)(lambda *a, **k: None)
    assert names() == sorted(["ssd300_vgg16", "ssd512_vgg16", "ssdlite320_mobilenet_v3", "retinanet_resnet50_fpn",
                              "retinanet_resnet50_fpn_nosubnet", "fasterrcnn_resnet50_fpn",
                              "ssdlite320_efficientnet_lite0", "ssdlite_timm"])
    # any module tree: every HierarchicalConv2d and hierhead anchor generator is swapped for its stock form
    layer = HierarchicalConv2d(8, Design.parse("9An{9,3,1}S"), 4)
    torch.nn.init.normal_(layer.unit_weight)
    tree = torch.nn.ModuleDict({"head": torch.nn.Sequential(torch.nn.ReLU(), layer), "anchors": PaperBoxGenerator(2)})
    folded = fold(tree)
    assert type(folded["head"][1]) is torch.nn.Conv2d and type(folded["anchors"]) is DefaultBoxGenerator
    assert isinstance(tree["head"][1], HierarchicalConv2d)  # the original is untouched
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(folded["head"](x), tree["head"](x), atol=1e-5, rtol=1e-5)
