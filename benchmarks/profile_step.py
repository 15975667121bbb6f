"""Where a whole-detector run's time goes (issue 41, point 1): the built-in defaults on cards (SSDLite320 on the
ImageNet EfficientNet-Lite0, batch 8, 320 px, channels-last, AdamW, the backbone at 0.1x lr), one training
step split into its phases, the per-run costs (validation, checkpoints) and the engine's own overhead, and
the step's achieved FLOP/s against this CPU's fp32 GEMM rate measured in the same process.

    python benchmarks/profile_step.py [--steps 20] [--warmup 3] [--threads 2] [--data ../shared/datasets/cards]
                                      [--ops 15] [--set KEY=VALUE ...]

``--ops N``: besides, the N operators with the most self CPU time in 3 compute steps (torch.profiler), ms a
step and share; ``--set``: settings over the built-in defaults (``fold_frozen_norms=false``:
the step before that rewrite).

Phases of a step (each timed with perf_counter around the same calls torchvision's SSD.forward makes, on
real batches decoded and augmented beforehand, so that the data's own cost is timed apart):
data (decode + augment + collate of one batch, in one process; the engine does it in 2 loader workers),
transform (normalise + resize), backbone body, extra blocks, head, anchors + matching + loss, backward,
optimiser step + schedule. Per run: one validation (cards/test, 67 images: the defaults validate at steps
200, 400, 600) and one checkpoint write (the defaults write 4-5). The engine's overhead: its measured step
(Lightning, callbacks, the loader) minus the sum of the compute phases.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torchvision.ops import boxes as box_ops
from train_throughput import StepTimes  # this folder: the engine's step timer of the throughput benchmark


def gemm_rate(n: int = 1024, repeats: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matrix product (the machine's practical peak for dense work)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def forward_flops(model, images, targets) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(images, targets)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/datasets/cards")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", type=int, default=0, help="also the N operators with the most self CPU time")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings over the defaults")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hierhead.engine import parse_overrides, resolve
    from hierhead.engine.infer import run_model
    from hierhead.engine.trainer import prepare, train
    from hierhead.metrics import mean_ap

    config = resolve(None, {"data": {"path": args.data}, "max_steps": args.steps + args.warmup, "num_workers": 0,
                            "validate": False, "progress": False, "plots": False, "checkpoint_every_n_steps": None,
                            "seed": 0, **parse_overrides(args.set)})
    module, dm = prepare({**config, "validate": True})  # its val set: the validation timed below
    model = module.model.train()
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    n = args.warmup + args.steps

    times: dict[str, list[float]] = defaultdict(list)
    batches, loader = [], iter(dm.train_dataloader())
    for _ in range(n):
        t = time.perf_counter()
        batches.append(next(loader))
        times["data"].append(time.perf_counter() - t)

    flops = None
    for k, (images, targets) in enumerate(batches):
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        if flops is None:
            flops = forward_flops(model, images, targets)
            opt.zero_grad(set_to_none=True)
        mark = [time.perf_counter()]

        def lap(name: str) -> None:
            mark.append(time.perf_counter())
            if k >= args.warmup:
                times[name].append(mark[-1] - mark[-2])

        tensors, targets_t = model.transform(images, targets)
        lap("transform")
        body = model.backbone.body(tensors.tensors)
        lap("backbone body")
        features = list(model.backbone.extend(body).values())
        lap("extra blocks")
        head = model.head(features)
        lap("head")
        anchors = model.anchor_generator(tensors, features)
        matched = [model.proposal_matcher(box_ops.box_iou(t["boxes"], a)) for a, t in zip(anchors, targets_t)]
        losses = model.compute_loss(targets_t, head, anchors, matched)
        lap("anchors + matching + loss")
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        lap("backward")
        opt.step()
        sched.step()
        lap("optimiser + schedule")

    # per run: one validation, one checkpoint
    val = dm.val_set
    t = time.perf_counter()
    preds = run_model(model.eval(), (val[i][0] for i in range(len(val))), 8)
    mean_ap(preds, [val.target(i) for i in range(len(val))], "voc07", val.classes)
    validation = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        torch.save({"state_dict": module.state_dict(), "optimizer": opt.state_dict()}, Path(tmp) / "c.ckpt")
        checkpoint = time.perf_counter() - t

    # the engine's step, same settings (validation and checkpoints off), loader workers as the defaults
    cb = StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        train({**config, "out": tmp, "num_workers": 2}, callbacks=[cb])
    engine = statistics.median(b - a for a, b in zip(cb.times[args.warmup:], cb.times[args.warmup + 1:]))

    compute = [name for name in times if name != "data"]
    med = {name: statistics.median(v) for name, v in times.items()}
    step = sum(med[c] for c in compute)
    peak = gemm_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, batch {config['batch_size']}, {args.steps} steps "
          f"({args.warmup} warm-up), medians")
    print("| phase | ms a step | share of the compute step |")
    print("| --- | ---: | ---: |")
    for name in compute:
        print(f"| {name} | {1000 * med[name]:.0f} | {med[name] / step:.1%} |")
    print(f"| **compute step (sum)** | **{1000 * step:.0f}** | 100 % |")
    print(f"| data: decode + augment + collate of a batch, one process | {1000 * med['data']:.0f} | "
          f"({med['data'] / step:.0%} of the compute step; the engine's 2 workers share the 2 cores with it) |")
    print(f"| engine step (Lightning, 2 loader workers) | {1000 * engine:.0f} | overhead over the compute "
          f"step {engine / step - 1:+.1%} |")
    print(f"| one validation ({len(val)} images) | {1000 * validation:.0f} | x3 a default run: "
          f"{3 * validation:.0f} s |")
    print(f"| one checkpoint write | {1000 * checkpoint:.0f} | |")
    train_flops = 3 * flops  # forward + backward (about 2x the forward)
    print(f"forward {flops / 1e9:.2f} GFLOP a batch (FlopCounterMode); a training step about 3x: "
          f"{train_flops / 1e9:.1f} GFLOP -> {train_flops / step / 1e9:.1f} GFLOP/s achieved in the compute step, "
          f"{train_flops / engine / 1e9:.1f} in the engine's; fp32 GEMM 1024 here: {peak:.0f} GFLOP/s "
          f"({train_flops / engine / 1e9 / peak:.0%} of it)")
    print(f"a default run (600 steps, 3 validations, ~5 checkpoints) from these: "
          f"{(600 * engine + 3 * validation + 5 * checkpoint) / 60:.1f} min")
    if args.ops:
        operators(model.train(), opt, batches[:3], args.ops)


def operators(model, opt, batches, top: int) -> None:
    """The ``top`` operators by self CPU time over the compute steps of ``batches`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for images, targets in batches:
            losses = model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print("| operator | calls a step | ms a step | share of self CPU time |")
    print("| --- | ---: | ---: | ---: |")
    for e in events[:top]:
        print(f"| `{e.key}` | {e.count / len(batches):.0f} | {e.self_cpu_time_total / 1000 / len(batches):.0f} | "
              f"{e.self_cpu_time_total / total:.1%} |")


if __name__ == "__main__":
    main()
