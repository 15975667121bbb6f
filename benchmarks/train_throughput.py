"""Training throughput of the engine vs a minimal plain-PyTorch loop, and of the data loader alone.

Same model (``ssdlite320_mobilenet_v3``, 9An{9,3,1}S), same data (cards/train with the same
augmentation and loader), batch 8, CPU. Also the engine with ``channels_last: false`` (NCHW), to
measure the recipe default. Runs alternate (plain, engine, engine NCHW, plain, ...) and
the median images/s of each is compared; the first steps of each run are warm-up.

    python benchmarks/train_throughput.py [--steps 30] [--rounds 2] [--data ../shared/datasets/cards]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from lightning.pytorch.callbacks import Callback

from hierhead.engine import resolve
from hierhead.engine.trainer import prepare, train


class StepTimes(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def rate(times: list[float], batch: int, warmup: int) -> float:
    t = times[warmup:]
    return batch * (len(t) - 1) / (t[-1] - t[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/datasets/cards")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    over = {"data": {"path": args.data}, "max_steps": args.steps, "batch_size": args.batch, "validate": False,
            "num_workers": args.workers, "progress": False, "checkpoint_every_n_steps": None, "seed": 0}
    config = resolve("cards-ssdlite", over)

    # the data loader alone
    _, dm = prepare(config)
    loader = dm.train_dataloader()
    stamps = []
    for i, _ in enumerate(loader):
        stamps.append(time.perf_counter())
        if i >= args.steps:
            break
    loader_rate = rate(stamps, args.batch, args.warmup)

    plain, engine, nchw = [], [], []
    for _ in range(args.rounds):
        # minimal plain-PyTorch loop: same module (model + optimiser + schedule) and same loader
        torch.manual_seed(0)
        module, dm = prepare(config)
        opt_cfg = module.configure_optimizers()
        opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
        module.model.train()
        stamps = []
        for step, (images, targets) in enumerate(dm.train_dataloader()):
            losses = module.model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
            sched.step()
            stamps.append(time.perf_counter())
            if step + 1 >= args.steps:
                break
        plain.append(rate(stamps, args.batch, args.warmup))

        for layout, rates in ((True, engine), (False, nchw)):  # the recipe's channels_last, then without it
            cb = StepTimes()
            with tempfile.TemporaryDirectory() as tmp:
                train({**config, "out": tmp, "channels_last": layout}, callbacks=[cb])
            rates.append(rate(cb.times, args.batch, args.warmup))

    p, e = statistics.median(plain), statistics.median(engine)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} steps "
          f"({args.warmup} warm-up), {args.workers} workers, {args.rounds} rounds")
    print(f"plain loop   {p:6.2f} img/s  (runs: {', '.join(f'{x:.2f}' for x in plain)})")
    print(f"hierhead     {e:6.2f} img/s  (runs: {', '.join(f'{x:.2f}' for x in engine)})")
    n = statistics.median(nchw)
    print(f"hierhead, channels_last off {n:6.2f} img/s  (runs: {', '.join(f'{x:.2f}' for x in nchw)})")
    print(f"engine / plain: {e / p:.3f}; channels_last on / off: {e / n:.3f}")
    print(f"data loader alone {loader_rate:6.1f} img/s = {loader_rate / p:.1f}x the training step rate")


if __name__ == "__main__":
    main()
