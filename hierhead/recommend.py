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

__all__ = ["recommend", "design_for", "variation", "shown", "SMALL", "EVIDENCE", "AGREEMENT"]

#: What our measurements say, printed with every recommendation. The tables between the ``study`` markers are
#: written by ``hierhead study report`` from the committed rows (studies/pretrained-p2.yaml, -p1.yaml), never by
#: hand; a test checks they are current.
EVIDENCE = """Our evidence (pre-registered, docs/results/plan-pretrained.md; every run from the ImageNet backbone;
design minus the general head, VOC07 mAP points on the test split, paired 95 % intervals, Holm across the designs).
The whole detector fine-tuned (the paper's protocol), 100 % of train, 10 seeds:
<!-- study: pretrained-p2/p2 compact -->
| design | cards | microcontrollers |
|---|---|---|
| `9An{9,3}As` | +1.92 [-0.48, +4.33] inconclusive | +0.39 [-0.23, +1.02] no effect within +-1.5 |
| `9An{9,3,1}S` | **+3.59 [+1.45, +5.73] better** | +0.77 [+0.01, +1.54] inconclusive |
| `9An{9,1}Both` | +2.22 [-1.74, +6.18] inconclusive | +0.09 [-1.11, +1.28] inconclusive |
<!-- /study -->
The backbone frozen (extra blocks and head trained), 100 % of train, 30 seeds:
<!-- study: pretrained-p1/full compact -->
| design | cards | microcontrollers |
|---|---|---|
| `9An{9,1}Both` | -0.80 [-1.63, +0.03] inconclusive | -1.10 [-2.30, +0.11] inconclusive |
| `9An{9,3}S` | -0.77 [-2.00, +0.45] inconclusive | -1.00 [-2.06, +0.06] inconclusive |
| `9An{9,3}As` | -1.11 [-2.13, -0.09] inconclusive | **-1.64 [-2.59, -0.68] worse** |
| `9An{9,3,1}S` | -1.29 [-2.52, -0.06] inconclusive | **-2.50 [-3.97, -1.02] worse** |
| `9An{9,3,1}As` | -0.89 [-1.95, +0.17] inconclusive | **-1.94 [-3.21, -0.68] worse** |
<!-- /study -->
So the paper's claim (a design better on both datasets) was not confirmed, and the general head stays the default.
Sharing as a prior (NAME@prior0.1) beat the general head with no design at 100 %; at 25 % of train the plain L2 of
the prior on the general head alone did, and no prior design beat it (docs/research.md). The frozen protocol
ranked the designs in reverse of the fine-tuned one (docs/research.md), so it is no screen: compare on your data
with --protocol imagenet (the whole detector fine-tuned), the protocol of the model you ship."""
#: How the heuristic fared against our sweeps (generated as above).
AGREEMENT = """How the paper's heuristic agreed with our sweeps: it picks 9An{9,3,1}S on cards and on microcontrollers.
The whole detector fine-tuned:
<!-- study: pretrained-p2/p2 wins -->
Seeds in which the design had the best mAP of the 4 (chance: 1 in 4):

| design | cards | microcontrollers |
|---|---|---|
| `9An{9}` | 2 of 10 | 1 of 10 |
| `9An{9,3}As` | 1 of 10 | 3 of 10 |
| `9An{9,3,1}S` | 5 of 10 | 4 of 10 |
| `9An{9,1}Both` | 2 of 10 | 2 of 10 |
<!-- /study -->
The backbone frozen:
<!-- study: pretrained-p1/full wins -->
Seeds in which the design had the best mAP of the 6 (chance: 1 in 6):

| design | cards | microcontrollers |
|---|---|---|
| `9An{9}` | 7 of 30 | 11 of 30 |
| `9An{9,1}Both` | 4 of 30 | 5 of 30 |
| `9An{9,3}S` | 5 of 30 | 4 of 30 |
| `9An{9,3}As` | 4 of 30 | 1 of 30 |
| `9An{9,3,1}S` | 5 of 30 | 6 of 30 |
| `9An{9,3,1}As` | 5 of 30 | 3 of 30 |
<!-- /study -->
(From-scratch studies: docs/results.md, "In short", and docs/results-history.md.)"""
def shown(text: str) -> str:
    """EVIDENCE or AGREEMENT as printed: without the report's block markers."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(("<!-- study", "<!-- /study")))


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
