import contextlib
import io
import json

import numpy as np
import pytest
import torch

from hierhead.metrics import coco_map, voc_ap, voc_map


def reference_voc(preds, targets, cls, use_07, thr=0.5):
    """The devkit's voc_eval, written out plainly: one detection at a time, in score order."""
    gts = {}
    npos = 0
    for i, t in enumerate(targets):
        m = t["labels"] == cls
        gts[i] = {"boxes": t["boxes"][m], "difficult": t["difficult"][m], "det": [False] * int(m.sum())}
        npos += int((~t["difficult"][m]).sum())
    dets = [(float(s), i, b) for i, p in enumerate(preds) for b, s, l in zip(p["boxes"], p["scores"], p["labels"])
            if l == cls]
    dets.sort(key=lambda d: -d[0])  # Python's sort is stable
    tp, fp = [], []
    for _, i, bb in dets:
        g = gts[i]
        ovmax, jmax = -np.inf, -1
        for j, gb in enumerate(g["boxes"]):
            iw = max(min(bb[2], gb[2]) - max(bb[0], gb[0]) + 1.0, 0.0)
            ih = max(min(bb[3], gb[3]) - max(bb[1], gb[1]) + 1.0, 0.0)
            inter = iw * ih
            uni = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) + (gb[2] - gb[0] + 1.0) * (gb[3] - gb[1] + 1.0) - inter
            if inter / uni > ovmax:
                ovmax, jmax = inter / uni, j
        if ovmax > thr:
            if not g["difficult"][jmax]:
                if not g["det"][jmax]:
                    tp.append(1), fp.append(0)
                    g["det"][jmax] = True
                else:
                    tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return sum((prec[rec >= t].max() if (rec >= t).any() else 0.0) for t in np.arange(0, 1.1, 0.1)) / 11
    mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    return sum((mrec[k + 1] - mrec[k]) * mpre[k + 1] for k in range(len(mrec) - 1) if mrec[k + 1] != mrec[k])


def random_data(seed, n_img=40, n_cls=4):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_img):
        g = rng.integers(0, 6)
        xy = rng.uniform(0, 80, (g, 2))
        gb = np.concatenate([xy, xy + rng.uniform(5, 40, (g, 2))], 1).round()
        targets.append({"boxes": gb, "labels": rng.integers(1, n_cls, g), "difficult": rng.random(g) < 0.2})
        d = rng.integers(0, 10)
        src = gb[rng.integers(0, max(g, 1), d)] if g else rng.uniform(0, 100, (d, 4))
        db = src + rng.normal(0, 4, (d, 4))
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        scores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], d)  # many ties: the order rule matters
        preds.append({"boxes": db, "scores": scores, "labels": rng.integers(1, n_cls, d)})
    return preds, targets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_07", [True, False])
def test_equals_the_plain_devkit_algorithm(seed, use_07):
    preds, targets = random_data(seed)
    out = voc_map(preds, targets, 4, use_07=use_07)
    for c in range(1, 4):
        assert out["AP"][str(c)] == pytest.approx(reference_voc(preds, targets, c, use_07), abs=1e-12)


def box(*b):
    return np.array([b], dtype=float)


def test_hand_computed_cases():
    t = [{"boxes": np.array([[0, 0, 9, 9], [20, 20, 29, 29]], float), "labels": np.array([1, 1]),
          "difficult": np.array([False, True])}]
    # detection on the difficult box is ignored; a duplicate is a false positive
    p = [{"boxes": np.array([[20, 20, 29, 29], [0, 0, 9, 9], [0, 0, 9, 9]], float),
          "scores": np.array([0.9, 0.8, 0.7]), "labels": np.array([1, 1, 1])}]
    r = voc_map(p, t, 2, use_07=False)
    assert r["AP"]["1"] == pytest.approx(1.0) and r["num_gt"]["1"] == 1
    # a false positive ranked first: precision 1/2 at recall 1
    p = [{"boxes": np.array([[50, 50, 60, 60], [0, 0, 9, 9]], float), "scores": np.array([0.9, 0.8]),
          "labels": np.array([1, 1])}]
    assert voc_map(p, t, 2, use_07=False)["AP"]["1"] == pytest.approx(0.5)
    assert voc_map(p, t, 2, use_07=True)["AP"]["1"] == pytest.approx(0.5)
    # 11-point vs area differ: recall 0.5 at precision 1 -> area 0.5, 11-point 6/11
    t2 = [{"boxes": np.array([[0, 0, 9, 9], [30, 30, 39, 39]], float), "labels": np.array([1, 1])}]
    p2 = [{"boxes": box(0, 0, 9, 9), "scores": np.array([0.9]), "labels": np.array([1])}]
    assert voc_map(p2, t2, 2, use_07=False)["mAP"] == pytest.approx(0.5)
    assert voc_map(p2, t2, 2, use_07=True)["mAP"] == pytest.approx(6 / 11)
    # IoU exactly 0.5 is not a match (strict >), with the +1 pixel convention or without
    p3 = [{"boxes": box(0, 0, 19, 9), "scores": np.array([0.9]), "labels": np.array([1])}]
    t3 = [{"boxes": box(0, 0, 9, 9), "labels": np.array([1])}]
    assert voc_map(p3, t3, 2)["mAP"] == 0.0
    p4 = [{"boxes": box(0, 0, 20, 10), "scores": np.array([0.9]), "labels": np.array([1])}]
    t4 = [{"boxes": box(0, 0, 10, 10), "labels": np.array([1])}]
    assert voc_map(p4, t4, 2, pixel_offset=0.0)["mAP"] == 0.0
    # a class with no ground truth is NaN and left out of the mean
    r = voc_map(p2 + [{"boxes": box(0, 0, 5, 5), "scores": np.array([0.5]), "labels": np.array([2])}],
                t2 + [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], 3)
    assert np.isnan(r["AP"]["2"]) and r["mAP"] == pytest.approx(6 / 11)


def test_voc_ap_curve():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]), use_07=False) == pytest.approx(0.75)


def test_coco_equals_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    preds, targets = random_data(3, n_img=30)
    for t in targets:
        t.pop("difficult")
    ours = coco_map(preds, targets, 4)
    images = [{"id": i + 1, "width": 200, "height": 200} for i in range(len(targets))]
    anns, dets = [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        for b, l in zip(t["boxes"], t["labels"]):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(l), "iscrowd": 0,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s, l in zip(p["boxes"], p["scores"], p["labels"]):
            dets.append({"image_id": i + 1, "category_id": int(l), "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                  "categories": [{"id": c} for c in (1, 2, 3)]}))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    for k, v in zip(["AP", "AP50", "AP75", "APs", "APm", "APl"], ev.stats):
        assert ours[k] == pytest.approx(v, abs=1e-12)


def test_accepts_tensors():
    p = [{"boxes": torch.tensor([[0.0, 0, 9, 9]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    t = [{"boxes": torch.tensor([[0.0, 0, 9, 9]]), "labels": torch.tensor([1])}]
    assert voc_map(p, t)["mAP"] == pytest.approx(1.0) and coco_map(p, t)["AP50"] == pytest.approx(1.0)


def test_coco_table_says_n_a_for_a_size_without_boxes():
    from hierhead.metrics import format_table

    boxes = torch.tensor([[0.0, 0.0, 200.0, 200.0]])  # one large box: no small or medium ones
    p = [{"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    t = [{"boxes": boxes, "labels": torch.tensor([1])}]
    table = format_table(coco_map(p, t))
    assert "APs n/a" in table and "APm n/a" in table and "-100" not in table and "APl 100.00" in table
