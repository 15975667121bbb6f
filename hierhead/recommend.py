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
EVIDENCE = ("Our evidence (docs/results.md, 2026-12-03): in the paper's setting (every run from the ImageNet "
            "backbone; pre-registered, docs/results/plan-pretrained.md), backbone frozen, extra blocks and head "
            "trained, 100 % of train, 30 paired seeds: no Table I design was better than the general head; on cards "
            "(296 images) -0.77 to -1.29 mAP points, none decided after Holm's correction; on microcontrollers (104 "
            "images) -1.00 to -2.50, three designs worse (9An{9,3}As -1.64 [-2.59, -0.68], 9An{9,3,1}S -2.50 "
            "[-3.97, -1.02], 9An{9,3,1}As -1.94 [-3.21, -0.68]); at 25 % of train (30 seeds) no design was "
            "better either (cards: 9An{9,3}As worse, -1.80 [-2.86, -0.74]; microcontrollers: the same three "
            "worse). Sharing as a prior (NAME@prior0.1: coupled L2 on each anchor's own weights, none on the "
            "units), 100 % of train, 30 seeds: no design better than the general head without it on either "
            "dataset (cards: 9An{9,1}Both@prior0.1 +1.36 [+0.19, +2.54], not decided after Holm; "
            "microcontrollers: 9An{9,3,1}S and 9An{9,3,1}As with the prior worse); at 25 % the same L2 on the "
            "general head alone was better than it (cards +4.14 [+3.08, +5.19], microcontrollers +2.82 [+1.49, "
            "+4.15]) and no prior design beat that control. The whole detector "
            "fine-tuned (the paper's protocol) is still being measured. Train the general head unless a sweep "
            "on your data (hierhead sweep --protocol frozen) shows a design ahead.")
#: How the heuristic fared against our sweeps (benchmarks/analyse_pretrained.py agreement, benchmarks/collect_study.py;
#: docs/results.md).
AGREEMENT = ("How the paper's heuristic agreed with our sweeps: in the paper's setting (ImageNet backbone frozen, "
             "100 % of train, 30 seeds) it picks 9An{9,3,1}S on cards and on microcontrollers, which ranked last of "
             "the six heads by mean on both and was the best head of a seed in 5 of 30 and 6 of 30, about chance "
             "(1 in 6); from scratch, 3 of 18 (dataset, fraction, seed) cells and 2 of 20 on the head protocol.")
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
