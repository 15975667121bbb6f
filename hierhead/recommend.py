"""Recommend a design from a dataset's Table II statistics, following the paper's reading (IV-C).

More variation of the objects across aspect ratios than across sizes -> share across aspect
ratios (As: one unit per anchor size, joining its 3 ratios); more across sizes -> share across
sizes (S: one unit per aspect ratio, joining its 3 sizes). The global unit ({9,3,1}) helps most
on the smallest datasets (Tables III-IV vs V), so it is added below ``SMALL`` training objects.
"""

from __future__ import annotations

import math

from .data.readers import DetectionDataset
from .data.stats import table_two

__all__ = ["recommend", "spread", "SMALL", "EVIDENCE"]

#: What our measurements say (docs/results.md, head protocol), printed with every recommendation.
EVIDENCE = ("Our evidence (docs/results.md, head protocol, 2026-11-26): on the cards dataset no Table I design differed "
            "from the general head (+0.06 to +0.44 mAP points at 74 training images, 10 seeds; +0.34 to +0.98 at 296, "
            "5 seeds; every 95 % interval contains 0); on anchor-transfer data, where each "
            "class is trained at one aspect ratio, 9An{9,3,1}As was better (+1.5 mAP [+0.7, +2.2] on all shapes, "
            "+3.4 [+2.0, +4.8] on the unseen ones, 5 seeds).")
SMALL = 20_000  # objects: VOC07+12 trainval has ~47k, FlickrLogos-47 ~2k, COCO ~860k


def spread(counts: list[int]) -> float:
    """Normalised entropy of a 3-bin histogram: 0 = all objects in one bin, 1 = evenly spread."""
    n = sum(counts)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log(c / n) for c in counts if c) / math.log(len(counts))


def recommend(ds: DetectionDataset, image_size: int | None = 300) -> dict:
    """``{"design", "reason", "ratio_spread", "size_spread", "objects"}`` for ``ds``."""
    s = table_two(ds, image_size)
    ratio = spread([s["vertical"], s["square"], s["horizontal"]])
    size = spread([s["small"], s["medium"], s["large"]])
    share = "As" if ratio > size else "S"
    small = s["objects"] < SMALL
    design = f"9An{{9,3,1}}{share}" if small else f"9An{{9,3}}{share}"
    across = "aspect ratios" if share == "As" else "sizes"
    reason = (f"objects vary more across {across} (spread {max(ratio, size):.2f}) than across "
              f"{'sizes' if share == 'As' else 'aspect ratios'} ({min(ratio, size):.2f}): share units across {across} "
              f"({share}).\n"
              + (f"{s['objects']:,} training objects is small data (< {SMALL:,}): add the global unit "
                 f"({{9,3,1}}), which helped most on the paper's smallest datasets."
                 if small else f"{s['objects']:,} training objects is not small data: no global unit."))
    return {"design": design, "reason": reason, "ratio_spread": ratio, "size_spread": size,
            "objects": s["objects"], "images": s["images"]}
