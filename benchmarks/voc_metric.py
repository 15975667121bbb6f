"""VOC mAP speed: hierhead.metrics.voc_map (vectorised) vs the devkit's per-class, per-detection loop.

5,000 images x 20 classes x 100 detections per image (about 2.9 ground-truth boxes per image,
as VOC), both run in this process on the same data; the results must agree.

    python benchmarks/voc_metric.py [--images 5000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hierhead.metrics import voc_ap, voc_map


def devkit_loop(preds, targets, num_classes, use_07=True):
    """voc_eval.py's algorithm: per class, detections in score order, numpy IoU against the image's gt."""
    aps = []
    for c in range(1, num_classes):
        recs, npos = {}, 0
        for i, t in enumerate(targets):
            m = t["labels"] == c
            recs[i] = (t["boxes"][m], t["difficult"][m], np.zeros(int(m.sum()), bool))
            npos += int((~t["difficult"][m]).sum())
        ids, conf, bbs = [], [], []
        for i, p in enumerate(preds):
            m = p["labels"] == c
            ids += [i] * int(m.sum())
            conf.append(p["scores"][m])
            bbs.append(p["boxes"][m])
        conf, bbs = np.concatenate(conf), np.concatenate(bbs)
        order = np.argsort(-conf, kind="stable")
        bbs, ids = bbs[order], [ids[k] for k in order]
        tp, fp = np.zeros(len(ids)), np.zeros(len(ids))
        for d, i in enumerate(ids):
            gb, dif, det = recs[i]
            bb = bbs[d]
            ovmax = -np.inf
            if gb.size:
                iw = np.maximum(np.minimum(gb[:, 2], bb[2]) - np.maximum(gb[:, 0], bb[0]) + 1.0, 0.0)
                ih = np.maximum(np.minimum(gb[:, 3], bb[3]) - np.maximum(gb[:, 1], bb[1]) + 1.0, 0.0)
                inter = iw * ih
                uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                       + (gb[:, 2] - gb[:, 0] + 1.0) * (gb[:, 3] - gb[:, 1] + 1.0) - inter)
                ov = inter / uni
                ovmax, jmax = ov.max(), ov.argmax()
            if ovmax > 0.5:
                if not dif[jmax]:
                    if not det[jmax]:
                        tp[d], det[jmax] = 1.0, True
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        aps.append(voc_ap(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps), use_07))
    return float(np.mean(aps))


def data(n_img, n_cls=21, per_img=100, seed=0):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_img):
        g = rng.integers(1, 6)
        xy = rng.uniform(0, 400, (g, 2))
        gb = np.concatenate([xy, xy + rng.uniform(10, 200, (g, 2))], 1)
        targets.append({"boxes": gb, "labels": rng.integers(1, n_cls, g), "difficult": rng.random(g) < 0.1})
        src = gb[rng.integers(0, g, per_img)]
        db = src + rng.normal(0, 15, (per_img, 4))
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        preds.append({"boxes": db, "scores": rng.random(per_img), "labels": rng.integers(1, n_cls, per_img)})
    return preds, targets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    args = ap.parse_args()
    preds, targets = data(args.images)
    t = time.perf_counter()
    fast = voc_map(preds, targets, 21)["mAP"]
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    slow = devkit_loop(preds, targets, 21)
    t_slow = time.perf_counter() - t
    print(f"{args.images} images x 20 classes x 100 detections/image")
    print(f"hierhead voc_map: {t_fast:.2f} s   devkit loop: {t_slow:.2f} s   speed-up {t_slow / t_fast:.1f}x")
    print(f"mAP equal: {abs(fast - slow) < 1e-12} ({fast:.6f} vs {slow:.6f})")


if __name__ == "__main__":
    main()
