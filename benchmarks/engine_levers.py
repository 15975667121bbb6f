"""The engine's training step under each of issue 41's levers, side by side in one run: seconds an image relative
to the defaults of 2026-12-06 (below 1: faster).

Each variant is ``hierhead train --recipe defaults-2026-12`` (issue 41's baseline, pinned: cards/train, batch 8,
320 px, 2 loader workers; here no validation, no checkpoints) plus its overrides, one lever at a time; the
variants run one after another in every round, the rounds repeat, and each variant's median images/s over the
rounds is compared with the baseline's. The first ``--warmup`` steps of each run are not timed (a compiled
variant compiles in them: say so by raising it). What a variant computes: the same function (the rewrites of
``hierhead/engine/speed.py``, ``cache_images``, loader workers, ``compile``: the backbone's
forward compiled in place by ``torch.compile``, set up here by a callback, not an engine setting) or a cheaper
one (bf16 autocast, a smaller input, more of the backbone frozen), whose accuracy is a study's question
(studies/engine-speed.yaml), not this script's. ``batch 16`` compares seconds an image, not a step.

    python benchmarks/engine_levers.py [--steps 25] [--rounds 2] [--warmup 5] [--threads 2]
                                       [--only NAME ...] [--data ../shared/datasets/cards]

Not timed here: ``cache_images``' one decode before training (its table line is the steps it speeds up).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from lightning.pytorch.callbacks import Callback
from train_throughput import StepTimes, rate  # this folder: the throughput benchmark's step timer and rate

from hierhead.engine import parse_overrides, resolve
from hierhead.engine.trainer import train

VARIANTS: dict[str, list[str]] = {
    "defaults-2026-12": [],
    "frozen norms folded": ["fold_frozen_norms=true"],
    "bf16-mixed": ["precision=bf16-mixed"],
    "cache_images": ["cache_images=true"],
    "1 loader worker": ["num_workers=1"],
    "no loader workers": ["num_workers=0"],
    "compile backbone": [],  # CompileBackbone below
    "256 px": ["image_size=256"],
    "frozen_stages 2": ["frozen_stages=2"],
    "256 px + frozen_stages 2": ["image_size=256", "frozen_stages=2"],  # engine-speed's `all`, a step of it
    "batch 16": ["batch_size=16"],
    "stride-8 first map": ["model_kwargs.first_stride=8", "anchor_s_min=0.1"],  # defaults-stride8's arm, its cost
}


class CompileBackbone(Callback):
    """``torch.compile`` of the backbone's forward, in place (``nn.Module.compile``: the state dict keeps its keys)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.model.backbone.compile()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/datasets/cards")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants (the baseline always runs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = next(iter(VARIANTS))
    names = [base] + [n for n in (args.only or VARIANTS) if n != base]
    rates: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            over = parse_overrides([f"data.path={args.data}", f"max_steps={args.steps}", "validate=false",
                                    "progress=false", "plots=false", "checkpoint_every_n_steps=null", "seed=0",
                                    *VARIANTS[name]])
            config = resolve("defaults-2026-12", over)
            steps = StepTimes()
            callbacks = [steps] + ([CompileBackbone()] if name == "compile backbone" else [])
            with tempfile.TemporaryDirectory() as tmp:
                train({**config, "out": tmp}, callbacks=callbacks)
            rates[name].append(rate(steps.times, config["batch_size"], args.warmup))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; recipe defaults-2026-12 on {args.data}, {args.steps} steps "
          f"({args.warmup} warm-up), {args.rounds} rounds")
    print(f"| variant | images/s (median) | runs | seconds an image / {base}'s | the same, round by round |")
    print("| --- | ---: | --- | ---: | --- |")
    first = statistics.median(rates[base])
    for name in names:
        r = statistics.median(rates[name])
        paired = ", ".join(f"{b / x:.2f}" for b, x in zip(rates[base], rates[name]))  # drift between rounds cancels
        print(f"| {name} | {r:.2f} | {', '.join(f'{x:.2f}' for x in rates[name])} | {first / r:.2f} | {paired} |")


if __name__ == "__main__":
    main()
