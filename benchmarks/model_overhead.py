"""Whole-model cost of the hierarchical head on CPU, as ratios to the general head in one run.

(a) one training step (forward, losses, backward, SGD step), batch 4, every preset / general;
(b) inference latency of the folded model / the general model, with parameter counts.

To separate the head's cost from noise, every model is the same general model with its head
convs hierarchized (`hierarchize`, units at 0) and the optimiser's lr is 0: all models compute
the same function on the same batch, so matching, hard-negative mining and NMS do identical
work, and the only difference is the weight-space composition of Eq. 2. Steps are interleaved
(round-robin over the models) and the median over repeats is reported.

    python benchmarks/model_overhead.py [--models ssdlite320_mobilenet_v3 ssd300_vgg16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from hierhead import PRESETS
from hierhead.models import build, fold, hierarchize


def batch(n: int) -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 300, 300, generator=g) for _ in range(n)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 150.0, 200.0], [100.0, 80.0, 280.0, 170.0]]),
                "labels": torch.tensor([1, 2])} for _ in range(n)]
    return images, targets


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["ssdlite320_mobilenet_v3", "ssd300_vgg16"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, targets = batch(args.batch)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {args.repeats} repeats")
    for name in args.models:
        models, opts = {}, {}
        torch.manual_seed(0)
        general = build(name, num_classes=7, design=None).train()
        for design in PRESETS:
            models[design] = general if design == PRESETS[0] else hierarchize(copy.deepcopy(general), design)
            opts[design] = torch.optim.SGD(models[design].parameters(), lr=0.0)

        def train_step(design: str) -> None:
            losses = models[design](images, targets)
            opts[design].zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opts[design].step()

        for _ in range(2):
            for d in PRESETS:
                train_step(d)  # warm-up
        times = {d: [] for d in PRESETS}
        for _ in range(args.repeats):
            for d in PRESETS:
                times[d] += timed(lambda: train_step(d), 1)
        base = statistics.median(times[PRESETS[0]])
        print(f"\n{name}: training step (general {base * 1e3:.0f} ms)")
        for d in PRESETS:
            print(f"  {d:14s} {statistics.median(times[d]) / base:.3f}")

        general = models[PRESETS[0]].eval()
        folded = fold(models["9An{9,3,1}S"]).eval()
        counts = [sum(p.numel() for p in m.parameters()) for m in (general, folded)]
        inf = {"general": [], "folded": []}
        with torch.inference_mode():
            for m in (general, folded):
                m(images)
            for _ in range(args.repeats * 2):
                inf["general"] += timed(lambda: general(images), 1)
                inf["folded"] += timed(lambda: folded(images), 1)
        ratio = statistics.median(inf["folded"]) / statistics.median(inf["general"])
        print(f"  inference folded 9An{{9,3,1}}S / general: {ratio:.3f} "
              f"(general {statistics.median(inf['general']) * 1e3:.0f} ms; params general {counts[0]:,}, "
              f"folded {counts[1]:,}, equal: {counts[0] == counts[1]})")


if __name__ == "__main__":
    main()
