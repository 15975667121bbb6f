"""Forward+backward cost of the SSD300 head alone: general conv vs HierarchicalConv2d vs literal Eq. 2.

Feature maps 38, 19, 10, 5, 3, 1 with 512/1024/512/256/256/256 channels, 9 anchors,
21 classes + 4 box outputs, batch 8. Medians over repeated runs, interleaved, as ratios to
the general head measured in the same run.

    python benchmarks/head_overhead.py [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hierhead import PRESETS, Design, HierarchicalConv2d

MAPS = [(38, 512), (19, 1024), (10, 512), (5, 256), (3, 256), (1, 256)]


class Literal(nn.Module):
    """Eq. 2 as written: J+1 convolutions, unit outputs added to the joined anchors."""

    def __init__(self, layer: HierarchicalConv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ly = self.layer
        k = ly.num_outputs_per_anchor
        n, _, h, w = x.shape
        out = F.conv2d(x, ly.anchor_weight, ly.anchor_bias, padding=ly.padding).view(n, ly.num_anchors, k, h, w)
        if ly.num_units:
            units = F.conv2d(x, ly.unit_weight, ly.unit_bias, padding=ly.padding).view(n, ly.num_units, k, h, w)
            out = out + torch.einsum("ja,njkhw->nakhw", ly.matrix, units)
        return out.reshape(n, -1, h, w)


def heads(kind: str, design: Design) -> nn.ModuleList:
    mods = nn.ModuleList()
    for _, c in MAPS:
        for k_out in (21, 4):
            if kind == "general":
                mods.append(nn.Conv2d(c, 9 * k_out, 3, padding=1))
            else:
                layer = HierarchicalConv2d(c, design, k_out)
                mods.append(layer if kind == "hierarchical" else Literal(layer))
    return mods


def step(mods: nn.ModuleList, feats: list[torch.Tensor]) -> None:
    loss = sum(m(f).square().mean() for m, f in zip(mods, [f for f in feats for _ in (0, 1)]))
    loss.backward()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    feats = [torch.randn(args.batch, c, s, s) for s, c in MAPS]
    configs = {"general": heads("general", Design.parse("9An{9}"))}
    for name in PRESETS[1:]:
        configs[f"hier {name}"] = heads("hierarchical", Design.parse(name))
        configs[f"literal {name}"] = heads("literal", Design.parse(name))
    times: dict[str, list[float]] = {k: [] for k in configs}
    for m in configs.values():  # warm-up
        step(m, feats)
    for _ in range(args.repeats):
        for name, m in configs.items():  # interleaved, so drift hits every config alike
            m.zero_grad(set_to_none=True)
            t = time.perf_counter()
            step(m, feats)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["general"])
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {args.repeats} repeats")
    print(f"{'head':28s} {'median ms':>10s} {'/ general':>10s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:28s} {med * 1e3:10.1f} {med / base:10.3f}")


if __name__ == "__main__":
    main()
