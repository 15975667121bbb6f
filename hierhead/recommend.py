"""Recommend a design from a dataset's Table II statistics, following the paper's reading (IV-C).

IV-C: "VOC-SSD300 has more variation over different aspect ratios than different sizes (Table
II) ... sharing anchors over different aspect ratios seems to work better for it. In case of
VOC-SSD512, there is more variation over scale and sharing over different scales works better."
The two VOC rows have the same aspect-ratio counts; only the sizes move (towards large at 512).
So the paper's "variation" of a 3-bucket histogram is how *unequal* its counts are, and we measure
it as ``variation = 1 - normalised entropy`` (0: evenly spread over the 3 buckets, 1: every object
in one bucket). Share across the dimension with more variation: aspect ratios -> ``As`` (one unit
per anchor size, joining its 3 ratios), sizes -> ``S`` (one unit per ratio, joining its 3 sizes).
On Table II this gives VOC-SSD300 -> As (0.13 vs 0.05), VOC-SSD512 -> S (0.13 vs 0.24) and
FlickrLogos-47 -> S (0.02 vs 0.26), the paper's best designs (Tables III-IV).

The global unit ({9,3,1}) helped most on the smallest dataset (Table IV vs Tables III and V), so it
is added below ``SMALL`` training objects. This is the paper's heuristic, not a measurement;
``AGREEMENT`` and ``EVIDENCE`` say how it fared in our studies.
"""

from __future__ import annotations

import math

from .data.readers import DetectionDataset
from .data.stats import table_two

__all__ = ["recommend", "design_for", "variation", "SMALL", "EVIDENCE", "AGREEMENT"]

#: What our measurements say (docs/results.md), printed with every recommendation.
EVIDENCE = ("Our evidence (docs/results.md, 2026-12-03; pre-registered, docs/results/plan-pretrained.md; every run "
            "from the ImageNet backbone; design minus the general head, VOC07 mAP points, paired 95 % intervals, Holm's "
            "correction). The whole detector fine-tuned (the paper's protocol), 100 % of train, 10 seeds: on cards "
            "(296 images) 9An{9,3,1}S was better, +3.59 [+1.45, +5.73] (9An{9,3}As +1.92 [-0.48, +4.33], "
            "9An{9,1}Both +2.22 [-1.74, +6.18], undecided); on microcontrollers (104 images) none was decided "
            "(9An{9,3,1}S +0.77 [+0.01, +1.54]; 9An{9,3}As +0.39 [-0.23, +1.02], no effect within +-1.5), so the "
            "paper's claim (a design better on both datasets) was not confirmed. The backbone frozen (extra blocks "
            "and head trained), 30 seeds: no Table I design was better, at 100 % or 25 % of train, on either "
            "dataset; on microcontrollers 9An{9,3}As, 9An{9,3,1}S and 9An{9,3,1}As were worse (-1.64 to -2.50 at "
            "100 %). Sharing as a prior (NAME@prior0.1), frozen backbone, 30 seeds: no design better than the "
            "general head without it at 100 %; at 25 % of train the plain L2 of the prior on the general head "
            "alone was better than the general head (cards +4.14 [+3.08, +5.19], microcontrollers +2.82 [+1.49, "
            "+4.15]) and no prior design beat it. The general head stays the default. The frozen protocol ranked "
            "the designs in reverse of the fine-tuned one (Spearman -0.8 cards, -1.0 microcontrollers), so it is "
            "no screen: compare on your data with --protocol imagenet (the whole detector fine-tuned; about 19 min "
            "a run on one CPU thread).")
#: How the heuristic fared against our sweeps (benchmarks/analyse_pretrained.py agreement, benchmarks/collect_study.py;
#: docs/results.md).
AGREEMENT = ("How the paper's heuristic agreed with our sweeps: it picks 9An{9,3,1}S on cards and on microcontrollers. "
             "With the whole detector fine-tuned from ImageNet (100 % of train, 10 seeds) that design had the best "
             "mean of the four heads on both and was the best head of a seed in 5 of 10 and 4 of 10 (chance: 1 in "
             "4); with the backbone frozen (30 seeds, 100 % of train) it ranked last of the six heads by mean on both "
             "(at 25 %, 9An{9,3}As did) and was the "
             "best of a seed in 5 of 30 and 6 of 30, about chance (1 in 6); from scratch, 3 of 18 (dataset, "
             "fraction, seed) cells and 2 of 20 on the head protocol.")
SMALL = 20_000  # objects: VOC07+12 trainval has ~47k, FlickrLogos-47 ~2k, COCO ~860k


def variation(counts: list[int]) -> float:
    """How unequal a 3-bucket histogram is: ``1 - normalised entropy`` (0 = evenly spread, 1 = one bucket)."""
    n = sum(counts)
    if n == 0:
        return 0.0
    return 1.0 + sum(c / n * math.log(c / n) for c in counts if c) / math.log(len(counts))


def design_for(stats: dict) -> dict:
    """The paper's reading of one Table II row (``data.stats.table_two``'s keys); see the module docstring."""
    ratio = variation([stats["vertical"], stats["square"], stats["horizontal"]])
    size = variation([stats["small"], stats["medium"], stats["large"]])
    share = "As" if ratio > size else "S"
    small = stats["objects"] < SMALL
    design = f"9An{{9,3,1}}{share}" if small else f"9An{{9,3}}{share}"
    across, other = ("aspect ratios", "sizes") if share == "As" else ("sizes", "aspect ratios")
    reason = (f"objects vary more across {across} (variation {max(ratio, size):.2f}) than across {other} "
              f"({min(ratio, size):.2f}; variation = 1 - normalised entropy of the 3 Table II buckets): "
              f"share units across {across} ({share}), as the paper reads Table II (IV-C).\n"
              + (f"{stats['objects']:,} training objects is small data (< {SMALL:,}): add the global unit "
                 f"({{9,3,1}}), which helped most on the paper's smallest dataset (FlickrLogos-47)."
                 if small else f"{stats['objects']:,} training objects is not small data: no global unit."))
    return {"design": design, "reason": reason, "ratio_variation": ratio, "size_variation": size,
            "objects": stats["objects"]}


def recommend(ds: DetectionDataset, image_size: int | None = 300) -> dict:
    """``{"design", "reason", "ratio_variation", "size_variation", "objects", "images"}`` for ``ds``, its
    boxes measured after resizing to ``image_size`` (the paper's Table II is after the experiments' resize)."""
    s = table_two(ds, image_size)
    return {**design_for(s), "images": s["images"]}
