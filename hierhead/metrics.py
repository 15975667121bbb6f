"""Detection metrics: PASCAL VOC mAP (the devkit's algorithm, vectorised) and COCO AP (pycocotools).

Inputs are per-image lists: ``predictions[i] = {"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,)}``
and ``targets[i] = {"boxes", "labels", optional "difficult" / "iscrowd"}`` (tensors or arrays).

VOC, as the official devkit (``VOCevaldet.m`` / ``voc_eval.py``): per class, detections are
sorted by decreasing score (a stable sort: ties keep their input order, as MATLAB's ``sort``);
each is matched to the ground-truth box of its image with the highest IoU; it is a true
positive when that IoU is strictly greater than the threshold (0.5), the box is not
``difficult`` and not yet matched; a match to a ``difficult`` box is ignored (neither true nor
false positive); everything else is a false positive. Recall is over non-difficult boxes.
AP: ``voc07`` the 11-point interpolation, ``voc12`` the area under the monotone precision
envelope (VOC2010+). Pixel convention: ``pixel_offset=1`` (default) is the devkit's
inclusive-pixel ``x2 - x1 + 1`` widths; ``pixel_offset=0`` treats boxes as continuous.

The greedy matching is vectorised exactly: a detection's best ground truth does not depend on
earlier matches, so a detection is a true positive iff it is the first (in score order) to
reach that non-difficult box above the threshold.

VOC AP is kept by hand because no library here computes it: pycocotools and torchmetrics'
``MeanAveragePrecision`` compute COCO's 101-point AP over IoU 0.5:0.95 with ``iscrowd``, not the
devkit's 11-point / envelope AP with ``difficult`` boxes and inclusive pixels. COCO AP is pycocotools'.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Sequence

import numpy as np

__all__ = ["voc_ap", "voc_map", "coco_map", "mean_ap", "confusion_matrix", "format_table", "to_json"]


def _np(x, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07: bool) -> float:
    """AP from a precision/recall curve: 11-point (VOC2007) or area (VOC2010+)."""
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = precision[recall >= t]
            ap += (p.max() if p.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_map(predictions: Sequence[dict], targets: Sequence[dict], num_classes: int | None = None,
            iou_threshold: float = 0.5, use_07: bool = True, pixel_offset: float = 1.0,
            class_names: Sequence[str] | None = None, curves: bool = False) -> dict:
    """VOC mAP; ``{"mAP", "AP": {class: ap}, "num_gt": {class: n}}``. Classes with no
    non-difficult ground truth are left out of the mean (their AP is NaN), as in the devkit.
    ``curves``: also ``"curves": {class: (recall, precision)}``, the arrays each AP is computed from."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    (g_img, g_box, g_lab, g_dif), (d_img, d_box, d_lab, d_sco) = _flatten(predictions, targets)
    if num_classes is None:
        num_classes = int(max(g_lab.max(initial=0), d_lab.max(initial=0))) + 1
    aps, counts, pr = {}, {}, {}
    for c in range(1, num_classes):
        name = class_names[c - 1] if class_names else str(c)
        gm, dm = g_lab == c, d_lab == c
        npos = int((~g_dif[gm]).sum())
        counts[name] = npos
        order = np.argsort(-d_sco[dm], kind="stable")
        tp, fp = _match(d_img[dm][order], d_box[dm][order], g_img[gm], g_box[gm], g_dif[gm], len(predictions),
                        iou_threshold, pixel_offset)
        if npos == 0:
            aps[name] = float("nan")
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / npos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        aps[name] = voc_ap(recall, precision, use_07)
        pr[name] = (recall, precision)
    valid = [v for v in aps.values() if v == v]
    return {"mAP": float(np.mean(valid)) if valid else float("nan"), "AP": aps, "num_gt": counts,
            "metric": "voc07" if use_07 else "voc12", **({"curves": pr} if curves else {})}


def confusion_matrix(predictions: Sequence[dict], targets: Sequence[dict], num_classes: int,
                     score_threshold: float = 0.25, iou_threshold: float = 0.5) -> np.ndarray:
    """Counts of (predicted class, true class) over every image, index 0 the background, as
    Ultralytics draws it: the detections scoring at least ``score_threshold`` and the ground-truth
    boxes are paired one to one, highest IoU first, among pairs above ``iou_threshold`` whatever
    their classes; a pair counts at ``[predicted, true]``, an unpaired detection at
    ``[predicted, 0]`` (a false alarm), an unpaired box at ``[0, true]`` (missed). ``difficult``
    boxes are left out, with the detections paired to them. Each column ``c > 0`` sums to the
    number of (non-difficult) boxes of class ``c``; the background row and column hold what the
    detector missed and invented. Kept by hand: torchmetrics' and sklearn's matrices are for
    classification and have no boxes to pair."""
    m = np.zeros((num_classes, num_classes), np.int64)
    for p, t in zip(predictions, targets):
        keep = _np(p["scores"]).reshape(-1) >= score_threshold
        db, dl = _np(p["boxes"]).reshape(-1, 4)[keep], _np(p["labels"], np.int64).reshape(-1)[keep]
        gb, gl = _np(t["boxes"]).reshape(-1, 4), _np(t["labels"], np.int64).reshape(-1)
        dif = t.get("difficult", t.get("iscrowd"))
        gd = _np(dif, bool).reshape(-1) if dif is not None else np.zeros(len(gb), bool)
        iou = _iou(db, gb)
        pairs = np.argwhere(iou > iou_threshold)
        pairs = pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")] if len(pairs) else pairs
        used_d, used_g = set(), set()
        for d, g in pairs:
            if d in used_d or g in used_g:
                continue
            used_d.add(d)
            used_g.add(g)
            if not gd[g]:
                m[dl[d], gl[g]] += 1
        for d in set(range(len(db))) - used_d:
            m[dl[d], 0] += 1
        for g in set(range(len(gb))) - used_g:
            if not gd[g]:
                m[0, gl[g]] += 1
    return m


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of xyxy boxes (continuous coordinates)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, np.finfo(np.float64).eps)


def _flatten(predictions: Sequence[dict], targets: Sequence[dict]) -> tuple[tuple, tuple]:
    """Ground truth (image, box, label, difficult) and detections (image, box, label, score) of every
    image, concatenated."""
    g_img, g_box, g_lab, g_dif = [], [], [], []
    d_img, d_box, d_lab, d_sco = [], [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        tb = _np(t["boxes"]).reshape(-1, 4)
        g_img.append(np.full(len(tb), i))
        g_box.append(tb)
        g_lab.append(_np(t["labels"], np.int64).reshape(-1))
        dif = t.get("difficult", t.get("iscrowd"))
        g_dif.append(_np(dif, bool).reshape(-1) if dif is not None else np.zeros(len(tb), bool))
        pb = _np(p["boxes"]).reshape(-1, 4)
        d_img.append(np.full(len(pb), i))
        d_box.append(pb)
        d_lab.append(_np(p["labels"], np.int64).reshape(-1))
        d_sco.append(_np(p["scores"]).reshape(-1))
    return (tuple(np.concatenate(a) for a in (g_img, g_box, g_lab, g_dif)),
            tuple(np.concatenate(a) for a in (d_img, d_box, d_lab, d_sco)))


def _match(di: np.ndarray, db: np.ndarray, gi: np.ndarray, gb: np.ndarray, gd: np.ndarray, n_img: int,
           iou_threshold: float, pixel_offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(true positive, false positive) flags of one class's detections, given in decreasing score
    order, by the devkit's greedy matching (vectorised: see the module docstring)."""
    nd = len(di)
    tp, fp = np.zeros(nd), np.zeros(nd)
    if not nd:
        return tp, fp
    # ground truth of each image, padded to G columns
    g_order = np.argsort(gi, kind="stable")
    gb_s, gd_s = gb[g_order], gd[g_order]
    per_img = np.bincount(gi[g_order], minlength=n_img)
    start = np.concatenate(([0], np.cumsum(per_img)[:-1]))
    width = int(per_img.max(initial=0))
    if width == 0:
        fp[:] = 1
        return tp, fp
    slot = np.arange(width)
    idx = start[di][:, None] + slot[None, :]  # (D, G) positions into the sorted gt
    valid = slot[None, :] < per_img[di][:, None]
    idx = np.where(valid, idx, 0)
    gbx = gb_s[idx]  # (D, G, 4)
    ixmin = np.maximum(gbx[..., 0], db[:, None, 0])
    iymin = np.maximum(gbx[..., 1], db[:, None, 1])
    ixmax = np.minimum(gbx[..., 2], db[:, None, 2])
    iymax = np.minimum(gbx[..., 3], db[:, None, 3])
    iw = np.maximum(ixmax - ixmin + pixel_offset, 0.0)
    ih = np.maximum(iymax - iymin + pixel_offset, 0.0)
    inter = iw * ih
    area_d = (db[:, 2] - db[:, 0] + pixel_offset) * (db[:, 3] - db[:, 1] + pixel_offset)
    area_g = (gbx[..., 2] - gbx[..., 0] + pixel_offset) * (gbx[..., 3] - gbx[..., 1] + pixel_offset)
    iou = np.where(valid, inter / (area_d[:, None] + area_g - inter), -np.inf)
    jmax = iou.argmax(1)  # first maximum, as the devkit
    ovmax = iou[np.arange(nd), jmax]
    hit = ovmax > iou_threshold
    gt_pos = idx[np.arange(nd), jmax]
    difficult = hit & gd_s[gt_pos]
    candidate = hit & ~difficult
    first = np.zeros(nd, bool)
    cand_idx = np.nonzero(candidate)[0]
    _, first_pos = np.unique(gt_pos[cand_idx], return_index=True)
    first[cand_idx[first_pos]] = True
    tp[first] = 1
    fp[~hit | (candidate & ~first)] = 1
    return tp, fp


def coco_map(predictions: Sequence[dict], targets: Sequence[dict], num_classes: int | None = None,
             class_names: Sequence[str] | None = None, image_ids: Sequence[int] | None = None,
             category_ids: Sequence[int] | None = None) -> dict:
    """COCO AP, AP50, AP75, APs/m/l and AR@1/10/100 from pycocotools' own COCOeval, plus per-class AP."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    n_img = len(targets)
    image_ids = list(image_ids) if image_ids is not None else list(range(1, n_img + 1))
    if num_classes is None:
        num_classes = 1 + max([int(_np(t["labels"], np.int64).max(initial=0)) for t in targets] + [0])
    cat_ids = list(category_ids) if category_ids is not None else list(range(1, num_classes))
    names = list(class_names) if class_names else [str(c) for c in cat_ids]
    anns, dets = [], []
    for img_id, p, t in zip(image_ids, predictions, targets):
        crowd = t.get("iscrowd", t.get("difficult"))
        crowd = _np(crowd, bool).reshape(-1) if crowd is not None else None
        area = _np(t["area"]).reshape(-1) if t.get("area") is not None else None  # COCO's, else the box's
        for k, (b, lab) in enumerate(zip(_np(t["boxes"]).reshape(-1, 4), _np(t["labels"], np.int64).reshape(-1))):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat_ids[lab - 1],
                         "bbox": [float(b[0]), float(b[1]), w, h], "area": float(area[k]) if area is not None else w * h,
                         "iscrowd": int(crowd[k]) if crowd is not None else 0})
        for b, s, lab in zip(_np(p["boxes"]).reshape(-1, 4), _np(p["scores"]).reshape(-1),
                             _np(p["labels"], np.int64).reshape(-1)):
            dets.append({"image_id": img_id, "category_id": cat_ids[lab - 1],
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)})
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in image_ids], "annotations": anns,
                  "categories": [{"id": c, "name": n} for c, n in zip(cat_ids, names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        if not dets:
            dt.dataset = {"images": gt.dataset["images"], "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    out = {k: float(v) for k, v in zip(keys, ev.stats)}
    per_class = {}
    prec = ev.eval["precision"][:, :, :, 0, -1]  # iou, recall, class, area=all, maxDets=100
    for k, name in enumerate(names):
        p = prec[:, :, k]
        p = p[p > -1]
        per_class[name] = float(p.mean()) if p.size else float("nan")
    out["per_class_AP"] = per_class
    out["metric"] = "coco"
    return out


def mean_ap(predictions: Sequence[dict], targets: Sequence[dict], metric: str = "voc07",
             class_names: Sequence[str] | None = None, image_ids: Sequence[int] | None = None,
             category_ids: Sequence[int] | None = None) -> dict:
    """VOC07 (11-point), VOC12 (area) or COCO metrics; labels are 1 + class index."""
    num_classes = len(class_names) + 1 if class_names else None
    if metric == "coco":
        return coco_map(predictions, targets, num_classes, class_names, image_ids=image_ids, category_ids=category_ids)
    if metric not in ("voc07", "voc12"):
        raise ValueError(f"metric {metric!r}: choose voc07, voc12 or coco")
    return voc_map(predictions, targets, num_classes, use_07=metric == "voc07", class_names=class_names)


def format_table(result: dict) -> str:
    """A per-class table followed by the summary numbers."""
    per = result.get("AP") if isinstance(result.get("AP"), dict) else result.get("per_class_AP", {})
    lines = [f"{'class':24s} {'AP':>7s}"]
    for name, ap in per.items():
        lines.append(f"{name:24s} {ap * 100:7.2f}" if ap == ap else f"{name:24s} {'n/a':>7s}")
    if result.get("metric") == "coco":
        # pycocotools reports -1 for a size bucket without boxes: n/a, as a class without boxes above
        lines.append("  ".join(f"{k} {result[k] * 100:.2f}" if result[k] >= 0 else f"{k} n/a"
                               for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
    else:
        lines.append(f"{'mAP (' + result['metric'] + ')':24s} {result['mAP'] * 100:7.2f}")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, default=lambda v: None)
