"""Lightning data module around any reader: splits, the paper's augmentation, resumable sampling.

Augmentation (paper IV-C): random horizontal flip and SSD-style random crop (``RandomIoUCrop``),
optionally zoom-out and photometric distortion, resize to the model size, boxes sanitised.
Every sample's augmentation is seeded by (seed, epoch, index), the sampler's order by
(seed, epoch), and the train loader is stateful (Lightning saves its position in the
checkpoint): a run resumed mid-epoch sees the same batches as one never stopped, with any
number of workers.
"""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path
from typing import Iterator, Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from ..data.readers import DetectionDataset
from ..data.sources import find_splits, open_dataset
from ..data.records import DataError

__all__ = ["DetectionDataModule", "open_splits", "train_transforms", "EpochSampler", "collate"]


def open_splits(path: str | Path, format: str | None = None, val: str | Path | None = None,
                train_split: str | None = None, val_split: str | None = None, val_fraction: float = 0.1,
                seed: int = 0, skip_bad: bool = False, resplit: float | None = None,
                classes: list[str] | None = None) -> tuple[DetectionDataset, DetectionDataset]:
    """(train, val) datasets: an explicit ``val`` path, the format's named splits, the root's own train and
    held-out splits (:func:`~hierhead.data.sources.find_splits`: the first of ``val|valid|validation|test``),
    or else a seeded ``val_fraction`` of the images.
    ``resplit``: pool both splits and hold out a seeded fraction instead (tiny test sets).
    ``classes``: the class list (its order gives the labels; default: the training split's own);
    the val split is always read with the training split's classes."""
    if resplit:
        train, val = open_splits(path, format, val, train_split, val_split, val_fraction, seed, skip_bad,
                                 classes=classes)
        pooled = DetectionDataset(train.records + val.records, train.classes, f"{train.name} + {val.name}",
                                  train.problems)
        return _split(pooled, resplit, seed)
    if str(path).startswith("synthetic:"):
        from ..data.synthetic import open_synthetic
        return open_synthetic(str(path))
    path = Path(path)
    if val is not None:
        train = open_dataset(path, format, classes, skip_bad, **({"split": train_split} if train_split else {}))
        return train, open_dataset(val, format, classes=train.classes, skip_bad=skip_bad, part="test",
                                   **({"split": val_split} if val_split else {}))
    if train_split and val_split:
        train = open_dataset(path, format, classes, skip_bad, split=train_split)
        return train, open_dataset(path, format, classes=train.classes, skip_bad=skip_bad, split=val_split)
    found = find_splits(path, format)
    if found.train is not None and found.held_out is not None:  # the data's own split, in any layout
        train = found.train.open(classes, skip_bad)
        return train, found.held_out.open(train.classes, skip_bad)
    return _split(open_dataset(path, format, classes, skip_bad), val_fraction, seed)


def _pick(ds: DetectionDataset, n: int, seed: int) -> tuple[DetectionDataset, DetectionDataset]:
    """(n seeded-random images, the rest), each in the dataset's order."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    return ds.subset(sorted(order[:n])), ds.subset(sorted(order[n:]))


def _split(full: DetectionDataset, val_fraction: float, seed: int) -> tuple[DetectionDataset, DetectionDataset]:
    if not 0 < val_fraction < 1:
        raise DataError(f"{full.name}: val fraction {val_fraction} is not in (0, 1)")
    val, train = _pick(full, max(1, round(len(full) * val_fraction)), seed)
    val.name = f"{full.name} (a seeded {val_fraction:.0%} held out for validation, split_seed {seed})"
    train.name = f"{full.name} (the rest, {1 - val_fraction:.0%})"
    return train, val


def open_config_splits(config: dict) -> tuple[DetectionDataset, DetectionDataset]:
    """(train, val) of a resolved config's ``data`` section (the split does not depend on the run seed).
    ``holdout``: a seeded fraction of the training split becomes the val split (the real val / test
    split is not scored: settings are chosen on this one)."""
    d = config["data"]
    if not d.get("path"):
        raise DataError("no training data: give --data PATH (or data.path in the recipe)")
    train, val = open_splits(d["path"], d.get("format"), d.get("val"), d.get("train_split"), d.get("val_split"),
                             d.get("val_fraction", 0.1), int(d.get("split_seed") or 0), d.get("skip_bad", False),
                             d.get("resplit"), d.get("classes"))
    if d.get("holdout"):
        return _split(train, float(d["holdout"]), int(d.get("split_seed") or 0))
    return train, val


def fraction_indices(n: int, fraction: float, seed: int) -> list[int]:
    """The indices (in order) of a seeded ``fraction`` of ``n`` training images."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction}: must be in (0, 1]")
    if fraction == 1:
        return list(range(n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + seed)).tolist()
    return sorted(order[:max(1, round(n * fraction))])


def fraction_subset(ds: DetectionDataset, fraction: float, seed: int) -> DetectionDataset:
    """A seeded ``fraction`` of the training images (the small-data experiments, Tables III-V)."""
    indices = fraction_indices(len(ds), fraction, seed)
    return ds if len(indices) == len(ds) else ds.subset(indices)


def train_transforms(size: tuple[int, int] | None, flip: bool = True, iou_crop: bool = True,
                     zoom_out: bool = False, photometric: bool = True) -> T.Compose:
    """The paper's training augmentation (IV-C), then resize to the model size and sanitise boxes."""
    steps: list = []
    if zoom_out:
        steps.append(T.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0}))
    if iou_crop:
        steps.append(T.RandomIoUCrop())
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if size is not None:
        steps.append(T.Resize(size, antialias=True))
    if photometric:  # after the resize: the same distortion at a fraction of the cost
        steps.append(T.RandomPhotometricDistort(p=0.5))
    steps += [T.ClampBoundingBoxes(), T.SanitizeBoundingBoxes(labels_getter=_labels_and_difficult),
              T.ToDtype(torch.float32, scale=True)]
    return T.Compose(steps)


def eval_transforms() -> T.Compose:
    """Evaluation: the image as it is (the detector resizes and maps boxes back)."""
    return T.Compose([T.ToDtype(torch.float32, scale=True)])


def _labels_and_difficult(inputs):
    """Every per-box tensor SanitizeBoundingBoxes must filter with the boxes (COCO's ``area`` too)."""
    target = inputs[1]
    return (target["labels"], target["difficult"]) + ((target["area"],) if "area" in target else ())


class EpochSampler(Sampler):
    """Indices in a (seed, epoch)-seeded order, each paired with its epoch for seeded augmentation.

    ``rank``/``world_size`` take every world_size-th index (DDP); ``start`` skips the first
    samples of an epoch that a resumed run has already seen (``len`` stays the whole epoch's).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch, self.start = 0, 0

    def order(self) -> list[int]:
        if not self.shuffle:
            idx = list(range(self.n))
        else:
            idx = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)).tolist()
        per_rank = -(-self.n // self.world_size)
        idx = (idx * 2)[: per_rank * self.world_size] if self.shuffle else idx  # equal share per rank
        return idx[self.rank:: self.world_size]

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start, self.start = self.start, 0
        return iter([(i, self.epoch) for i in self.order()[start:]])

    def __len__(self) -> int:
        return len(self.order())


def worker_init(worker_id: int, rank: int = 0) -> None:
    """A loader worker's start: Lightning's per-worker seeding (what it adds itself to a loader without a
    ``worker_init_fn`` when ``seed_everything(workers=True)`` ran), and SIGTERM / SIGINT ignored. A signal
    sent to the process group (SLURM's and systemd's SIGTERM, a terminal's Ctrl-C) reaches the workers
    too; killed by it, they crashed the run ("DataLoader worker is killed by signal") before the main
    process could stop at the step's end and save. Workers still end with the main process (PyTorch's
    watchdog)."""
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function
        pl_worker_init_function(worker_id, rank=rank)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` that Lightning checkpoints (epoch, batches seen)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._seen = 0

    def __iter__(self):
        self._seen = self.sampler.start // self.batch_size
        for batch in super().__iter__():
            self._seen += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self._seen}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.epoch = int(state["epoch"])
        self.sampler.start = int(state["batches"]) * self.batch_size


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[(index, epoch)]`` with the transforms' randomness seeded by (seed, epoch, index).

    ``mosaic``: the probability that a sample is a mosaic (:func:`mosaic`) of its image and three others drawn
    from the same seeded generator, before the transforms; 0 draws nothing, so a run without it is unchanged."""

    def __init__(self, dataset: DetectionDataset, transforms, seed: int, mosaic: float = 0.0,
                 tile: tuple[int, int] | None = None) -> None:
        self.dataset, self.transforms, self.seed = dataset, transforms, seed
        self.mosaic, self.tile = float(mosaic), tile

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image, target = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            if self.mosaic and float(torch.rand(())) < self.mosaic:
                others = torch.randint(len(self.dataset), (3,)).tolist()
                image, target = mosaic([(image, target)] + [self.dataset[j] for j in others], self.tile)
            return self.transforms(image, target)


def mosaic(samples: Sequence[tuple], tile: tuple[int, int] | None = None) -> tuple:
    """Four (image, target) samples as one: each resized to ``tile`` (h, w; default the first image's size) and
    placed in a 2 x 2 grid, their boxes moved with them, as the YOLOs' mosaic augmentation (Bochkovskiy et al.
    2020) before its random crop (here the paper's IoU crop and the resize that follow). Hand-written because
    torchvision's transforms.v2 has no multi-image transform. COCO ``area`` is dropped (training does not read it)."""
    first = samples[0][0]
    th, tw = tile or tuple(first.shape[-2:])
    resize = T.Resize((th, tw), antialias=True)
    canvas = torch.zeros((first.shape[0], 2 * th, 2 * tw), dtype=first.dtype)
    boxes, labels, difficult = [], [], []
    for k, (image, target) in enumerate(samples[:4]):
        image, target = resize(image, target)
        y, x = (k // 2) * th, (k % 2) * tw
        canvas[:, y:y + th, x:x + tw] = image
        boxes.append(target["boxes"].as_subclass(torch.Tensor) + torch.tensor([x, y, x, y], dtype=torch.float32))
        labels.append(target["labels"])
        difficult.append(target["difficult"])
    out = {k: v for k, v in samples[0][1].items() if k not in ("boxes", "labels", "difficult", "area")}
    out.update(boxes=tv_tensors.BoundingBoxes(torch.cat(boxes), format="XYXY", canvas_size=(2 * th, 2 * tw)),
               labels=torch.cat(labels), difficult=torch.cat(difficult))
    return tv_tensors.Image(canvas), out


#: the ``augment`` keys of the sample level (:class:`SeededSamples`); the rest are :func:`train_transforms`'
SAMPLE_AUGMENT = ("mosaic",)


def transform_augment(augment: dict) -> dict:
    """The ``augment`` section without the sample-level keys (what :func:`train_transforms` takes)."""
    return {k: v for k, v in augment.items() if k not in SAMPLE_AUGMENT}


def collate(batch: Sequence) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


class DetectionDataModule(pl.LightningDataModule):
    """Train / val loaders over any reader (or prepared datasets) with the paper's augmentation."""

    def __init__(self, train: DetectionDataset, val: DetectionDataset | None, batch_size: int,
                 image_size: tuple[int, int] | None, augment: dict | None = None, num_workers: int = 0,
                 seed: int = 0, val_batch_size: int | None = None) -> None:
        super().__init__()
        if len(train) == 0:
            raise DataError(f"{train.name}: the training set is empty")
        self.train_set, self.val_set = train, val
        self.batch_size, self.image_size, self.num_workers, self.seed = batch_size, image_size, num_workers, seed
        self.augment = dict(augment or {})
        self.val_batch_size = val_batch_size or batch_size

    @property
    def classes(self) -> list[str]:
        return self.train_set.classes

    def _loader(self, ds, sampler, batch_size: int, drop_last: bool, cls=DataLoader) -> DataLoader:
        return cls(ds, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                   collate_fn=collate, drop_last=drop_last, persistent_workers=False,
                   pin_memory=torch.cuda.is_available(), worker_init_fn=partial(worker_init, rank=self._rank()[0]))

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def per_process_batch(self, world: int) -> int:
        """``batch_size`` is the global batch (the paper's 32 or 16 whatever the number of GPUs):
        each of ``world`` processes loads an equal share."""
        if self.batch_size % world:
            raise DataError(f"batch_size {self.batch_size} is the global batch: it does not split evenly over "
                            f"{world} processes; use a multiple of {world}")
        return self.batch_size // world

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        per_process = self.per_process_batch(world)
        sampler = EpochSampler(len(self.train_set), self.seed, True, rank, world)
        if len(sampler) < per_process:
            raise DataError(f"{self.train_set.name}: {len(self.train_set)} training images for batch size "
                            f"{self.batch_size}: lower the batch size")
        ds = SeededSamples(self.train_set, train_transforms(self.image_size, **transform_augment(self.augment)),
                           self.seed, float(self.augment.get("mosaic") or 0.0), self.image_size)
        return self._loader(ds, sampler, per_process, drop_last=True, cls=ResumableLoader)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None or len(self.val_set) == 0:
            return []
        rank, world = self._rank()
        ds = SeededSamples(self.val_set, eval_transforms(), self.seed)
        sampler = EpochSampler(len(self.val_set), self.seed, False, rank, world)
        return self._loader(ds, sampler, self.val_batch_size, drop_last=False)
