"""Training throughput of the engine vs a plain fp32 eager PyTorch loop of the same model, and of the data
loader alone (issue 41's goal: the engine's step <= 0.5x the plain loop's).

The built-in defaults' detector (``ssdlite320_efficientnet_lite0`` on its ImageNet backbone, the general
head, channels-last, AdamW with the backbone at 0.1x lr), batch 8, 320 px, CPU. The plain loop trains the
same module (same trainable parameters, optimiser and schedule; as built: the engine's rewrites of
``hierhead/engine/speed.py`` are its own speed-ups) on one synthetic batch (8 random 320 px images, two boxes
each: no data loading); the engine is ``hierhead train`` on cards/train with its loader
(2 workers), augmentation, logging and checkpoint callbacks. Runs alternate (plain, engine, plain, ...);
the median images/s of each is compared; the first steps of each run are warm-up.

    python benchmarks/train_throughput.py [--steps 25] [--rounds 2] [--data ../shared/datasets/cards]
                                          [--device cpu|cuda] [--precision 32-true|bf16-mixed|16-mixed]

``--device cuda`` runs both on the GPU (the plain loop moves the module and the batch there); ``--precision``
is the engine's (Lightning's) and the plain loop's autocast (bf16 / fp16 around the forward pass, fp32 weights),
so a ratio compares the same arithmetic. For a lent GPU (issue 41): run it once per precision in one call.
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
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's kernels finished, not only queued
        self.times.append(time.perf_counter())


def rate(times: list[float], batch: int, warmup: int) -> float:
    t = times[warmup:]
    return batch * (len(t) - 1) / (t[-1] - t[0])


def synthetic_batch(batch: int, size: int = 320) -> tuple[list, list]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 120.0, 200.0], [150.0, 60.0, 300.0, 180.0]]),
                "labels": torch.tensor([1, 2])} for _ in range(batch)]
    return images, targets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/datasets/cards")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed"], default="32-true")
    args = ap.parse_args()
    over = {"data": {"path": args.data}, "max_steps": args.steps, "batch_size": args.batch, "validate": False,
            "num_workers": args.workers, "progress": False, "plots": False, "checkpoint_every_n_steps": None,
            "seed": 0, "accelerator": "gpu" if args.device == "cuda" else "cpu", "devices": 1,
            "precision": args.precision}
    device = torch.device(args.device)
    autocast = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    config = resolve(None, over)  # the built-in defaults

    # the data loader alone
    _, dm = prepare(config)
    stamps = []
    for i, _ in enumerate(dm.train_dataloader()):
        stamps.append(time.perf_counter())
        if i >= args.steps:
            break
    loader_rate = rate(stamps, args.batch, args.warmup)

    plain, engine = [], []
    images, targets = synthetic_batch(args.batch)
    images = [x.to(device) for x in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    for _ in range(args.rounds):
        # plain eager loop: the same module (model, trainable parameters, optimiser, schedule), one batch
        torch.manual_seed(0)
        module, _ = prepare({**config, "fold_frozen_norms": False})  # the model as built, nothing rewritten
        module.model.to(device)
        opt_cfg = module.configure_optimizers()
        opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
        module.model.train()
        stamps = []
        for _step in range(args.steps):
            with torch.autocast(args.device, dtype=autocast, enabled=autocast is not None):
                losses = module.model(images, targets)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
            sched.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
        plain.append(rate(stamps, args.batch, args.warmup))

        cb = StepTimes()
        with tempfile.TemporaryDirectory() as tmp:
            train({**config, "out": tmp}, callbacks=[cb])
        engine.append(rate(cb.times, args.batch, args.warmup))

    p, e = statistics.median(plain), statistics.median(engine)
    where = (torch.cuda.get_device_name() if device.type == "cuda" else
             f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"torch {torch.__version__}, {where}, {args.precision}, {config['model']}, batch {args.batch}, "
          f"{args.steps} steps ({args.warmup} warm-up), {args.workers} workers, {args.rounds} rounds")
    print(f"plain loop   {p:6.2f} img/s = {args.batch / p:.3f} s a step  (runs: {', '.join(f'{x:.2f}' for x in plain)})")
    print(f"hierhead     {e:6.2f} img/s = {args.batch / e:.3f} s a step  (runs: {', '.join(f'{x:.2f}' for x in engine)})")
    print(f"engine step / plain step: {p / e:.3f} (issue 41's goal: <= 0.5)")
    print(f"data loader alone {loader_rate:6.1f} img/s = {loader_rate / e:.1f}x the engine's training rate")


if __name__ == "__main__":
    main()
