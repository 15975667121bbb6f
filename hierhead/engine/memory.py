"""The peak memory a training run will need, estimated before it starts, so that a run too large for the
machine is refused with the estimate instead of being killed by the kernel partway (``image_size=10000``
ran until the OOM killer ended it).

The estimate measures, rather than models: one training forward pass of the run's own detector at a
small probe size, with ``torch.autograd.graph.saved_tensors_hooks`` summing the storage of every tensor
autograd keeps for the backward pass (each storage once). Those activations grow with the pixels of the
batch, so they are scaled by ``batch x (size / probe)^2``; the weights count four times (weights,
gradients, two optimiser moments), the batch of float images once. Against the measured peak of the
default detector at batch 8 (docs/benchmarks.md) it is conservative where it matters, at large sizes:
4.7 GiB estimated for 640 px where the whole process peaked at 4.65 GiB (1.2 vs 2.05 GiB at 320 px,
where the ~1 GiB of libraries it leaves out dominates). Kept by hand: neither torch nor Lightning
estimates a CPU run's memory ahead of it."""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

__all__ = ["training_bytes", "available_bytes", "check_fits"]

PROBE = 128  # px: small enough to cost a fraction of a second, large enough for every feature map


@contextlib.contextmanager
def _input_size(model: nn.Module, side: int):
    """A torchvision detector's ``GeneralizedRCNNTransform`` resizing to ``side`` x ``side`` inside the block,
    its own sizes restored after it."""
    t = model.transform
    before = (t.min_size, t.max_size, getattr(t, "fixed_size", None))
    t.min_size, t.max_size = (side,), side
    if before[2] is not None:
        t.fixed_size = (side, side)
    try:
        yield
    finally:
        t.min_size, t.max_size = before[:2]
        if before[2] is not None:
            t.fixed_size = before[2]


def training_bytes(model: nn.Module, batch: int, size: tuple[int, int], probe: int = PROBE) -> int | None:
    """Estimated peak bytes of a training step of ``model`` (a torchvision detector) on ``batch`` images
    of ``size`` (h, w), from one forward pass at ``probe`` px (see the module docstring); a network
    that only takes its own input size (SSD300's VGG: its last blocks need 300 px) is probed at that
    size. None when neither forward pass runs."""
    for side in dict.fromkeys((probe, min(size))):
        try:
            return _probe(model, batch, size, side)
        except RuntimeError:  # a feature map smaller than a kernel
            continue
    return None


def _probe(model: nn.Module, batch: int, size: tuple[int, int], probe: int) -> int:
    seen: set = set()
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:  # views and repeats of one tensor count once
            seen.add(storage.data_ptr())
            saved += storage.nbytes()
        return t

    mode = model.training
    buffers = {k: v.clone() for k, v in model.named_buffers()}  # batch norm's running statistics
    n = 2  # batch norm in training mode needs two values per channel on a 1 x 1 map
    try:
        model.train()
        with _input_size(model, probe), torch.random.fork_rng(devices=[]):  # the run's random stream unchanged
            images = [torch.rand(3, probe, probe) for _ in range(n)]
            targets = [{"boxes": torch.tensor([[2.0, 2.0, probe / 2, probe / 2]]), "labels": torch.tensor([1])}] * n
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                model(images, targets)
    finally:
        model.train(mode)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
    saved /= n
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    scale = batch * size[0] * size[1] / probe ** 2
    return int(saved * scale + 4 * weights + batch * 3 * size[0] * size[1] * 4)


def available_bytes() -> int | None:
    """The memory the system can give a new process now (``MemAvailable``), None where it cannot say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(model: nn.Module, batch: int, size: tuple[int, int] | None, fraction: float = 0.8) -> int | None:
    """Raise ``ValueError`` naming the estimate when a CPU training step would need more than ``fraction``
    of the available memory; returns the estimate (None without a fixed input size)."""
    if size is None or next(model.parameters()).device.type != "cpu":
        return None
    need = training_bytes(model, batch, size)
    have = available_bytes()
    if need is not None and have is not None and need > fraction * have:
        raise ValueError(f"a training step at image_size {size[0]}x{size[1]}, batch {batch}, needs about "
                          f"{need / 2**30:.1f} GiB (estimated), over {fraction:.0%} of the {have / 2**30:.1f} GiB "
                          f"available; lower image_size or --batch-size")
    return need
