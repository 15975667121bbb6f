"""``hierhead demo``: the preset designs, and folding proved exact on a real detector."""

from __future__ import annotations

import torch

from .design import PRESETS, Design
from .models import build, fold


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(model_name: str = "ssdlite320_mobilenet_v3", design: str = "9An{9,3,1}S", seed: int = 0) -> dict:
    """Print the presets, then train-time vs folded parameters and the folded model's exactness."""
    torch.manual_seed(seed)
    print("Preset designs (Table I), J units per head:")
    for name in PRESETS:
        print(f"  {name:14s} J={Design.parse(name).num_units}")
    print()
    print(Design.parse(design).table())
    print()
    general = build(model_name, num_classes=4, design=None).eval()
    model = build(model_name, num_classes=4, design=design).eval()
    with torch.no_grad():  # random non-zero units: folding must still be exact
        for name, p in model.named_parameters():
            if name.endswith(("unit_weight", "unit_bias")):
                p.normal_(std=0.05)
    folded = fold(model).eval()
    images = [torch.rand(3, 240, 320), torch.rand(3, 320, 200)]
    with torch.no_grad():
        raw, raw_folded = (m.head(list(m.backbone(m.transform(images)[0].tensors).values())) for m in (model, folded))
        dets, dets_folded = model(images), folded(images)
    max_diff = max((raw[k] - raw_folded[k]).abs().max().item() for k in raw)
    same = all(torch.equal(a["labels"], b["labels"]) and torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
               for a, b in zip(dets, dets_folded))
    out = {"model": model_name, "design": design, "params_general": _count(general),
           "params_train": _count(model), "params_folded": _count(folded), "max_abs_diff": max_diff,
           "same_detections": same}
    print(f"{model_name} with {design}, random non-zero units:")
    print(f"  parameters: general head {out['params_general']:,} | hierarchical (train) {out['params_train']:,}"
          f" | folded (deploy) {out['params_folded']:,}")
    print(f"  max |hierarchical - folded| over head outputs: {max_diff:.2e}; same detections: {same}")
    return out
