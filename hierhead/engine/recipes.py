"""Training recipes: YAML files selected by name (``--recipe voc-ssd300``), every value overridable.

A recipe is merged over :data:`DEFAULTS`; overrides use dotted keys (``optimizer.lr=0.01``).
Unknown keys are an error naming the key, so a typo never trains silently with a default.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "recipes", "load_recipe", "resolve", "parse_overrides"]

DEFAULTS: dict[str, Any] = {
    "model": "ssdlite320_efficientnet_lite0",  # ImageNet backbone shipped with hierhead: fine-tuned, never from scratch
    "design": "9An{9}",  # the general head: no design better on both our small datasets (docs/results.md)
    "soft": False,
    "paper": None,  # the paper setting a recipe reproduces (e.g. "IV-C VOC-SSD300"): warns without pretrained weights
    "data": {"path": None, "format": None, "classes": None, "val": None, "train_split": None, "val_split": None,
             "val_fraction": 0.1, "resplit": None, "split_seed": 0, "fraction": 1.0, "skip_bad": False,
             # a seeded fraction of the training split scored instead of the val / test split (choosing
             # settings without scoring the test images)
             "holdout": None},
    # the input side (None: the model's own); "auto" chooses it from the training boxes (engine/choose.py)
    "image_size": None,
    # Eq. 3's smallest anchor scale of an SSD (None: the paper's 0.2); "auto" chooses it from the training boxes
    "anchor_s_min": None,
    "batch_size": 8,
    "val_batch_size": None,
    "epochs": None,
    # the defaults fine-tune the ImageNet backbone with cards-ssdlite's round-1 schedule (chosen on a validation
    # split of cards/train: docs/results/tune-finetune-cards.csv; the recipe's round 2 adds a timm-only frozen_stages: 2 and
    # 850 steps); the paper recipes set their own optimiser and schedule
    # auto: at least 16 passes over the training images, and never fewer than 600 (engine/choose.py); adopted from
    # defaults-steps' holdout verdict (+0.18 [-0.32, +0.69] over fixed 600 steps, six domains x 3 seeds:
    # docs/results/defaults-steps/report.md); 600 on cards, raccoon, chess, microcontrollers
    "max_steps": "auto",
    # a wall-clock budget for training ("15m", "900s", "1.5h", "1h30m"; null: none): max_steps shortened to what fits,
    # the cosine schedule ending there (engine/budget.py)
    "time": None,
    "optimizer": {"name": "adamw", "lr": 0.003, "momentum": 0.9, "weight_decay": 0.0001, "unit_lr_scale": 1.0,
                  "backbone_lr_scale": 0.1,  # the backbone body's lr = this x lr; 0 freezes it
                  # sharing as a prior: coupled L2 on the prediction convs' anchor weights / units (optim.prior_penalty);
                  # off: the pre-registered rule read the 100 % columns, where no design with it beat the general
                  # head (studies/pretrained-prior.yaml; at 25 % the plain L2 alone helped: one strength, a lead)
                  "anchor_l2": 0.0, "unit_l2": 0.0,
                  "decay": None, "eps": None},  # decay / eps: RMSprop's (default 0.9 / 1.0); eps also Adam's
    "schedule": {"name": "cosine", "milestones": [], "gamma": 0.1, "step_size": 0, "warmup_steps": 50,
                 "warmup_start_lr": 0.0001},
    # mosaic: the probability of a 4-image mosaic sample (engine/data.py), 0: none (the paper's augmentation)
    "augment": {"flip": True, "iou_crop": True, "zoom_out": False, "photometric": True, "mosaic": 0.0},
    "model_kwargs": {},
    # the backbone body frozen from its input through this feature level, weights and batch norm (timm backbones;
    # 0: none): a training policy (engine/freezing.py), never saved into the model
    "frozen_stages": 0,
    # the head protocol (hierhead sweep --protocol head): prediction convs only, on cached frozen features;
    # 200 steps of 32 views at AdamW lr 0.003, the paper's weight decay: chosen by the general head's final training loss, docs/results-history.md
    "head": {"views": 4, "steps": 200, "batch_size": 32,
             "optimizer": {"name": "adamw", "lr": 0.003, "momentum": 0.9, "weight_decay": 0.00004,
                           "unit_lr_scale": 1.0, "anchor_l2": 0.0, "unit_l2": 0.0},
             "schedule": {"name": "cosine", "milestones": [], "gamma": 0.1, "step_size": 0, "warmup_steps": 20,
                          "warmup_start_lr": 0.00001},
             # keep each run's trained model and test detections in its folder (model.safetensors, detections.pt)
             "keep": False},
    # the frozen-backbone protocol (hierhead sweep --protocol frozen): the ImageNet body frozen and cached, the
    # extra blocks and head trained from each seed's draw; the same keys as ``head``. lr and steps chosen on a
    # 20 % holdout of cards and microcontrollers by the plan's rule (docs/results/plan-pretrained.md, stage
    # val-settings; rows docs/results/pretrained-val-settings.csv)
    "frozen": {"views": 4, "steps": 500, "batch_size": 16,
               "optimizer": {"name": "adamw", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.00004,
                             "unit_lr_scale": 1.0, "anchor_l2": 0.0, "unit_l2": 0.0},
               "schedule": {"name": "cosine", "milestones": [], "gamma": 0.1, "step_size": 0, "warmup_steps": 50,
                            "warmup_start_lr": 0.00001},
               "keep": False},
    # null: the ImageNet weights that ship with hierhead where the model has them (EfficientNet-Lite0), else
    # none; true: require ImageNet weights (shipped, --backbone-weights or torchvision_weights); false: scratch
    "pretrained_backbone": None,
    "backbone_weights": None,
    "init": None,
    "torchvision_weights": False,
    "metric": "voc07",
    "validate": True,
    "val_every_n_epochs": 1,
    "val_every_n_steps": 200,
    "checkpoint_every_n_steps": 200,
    # an exponential moving average of the weights (engine.averaging.EMA, Lightning's WeightAveraging): validated,
    # checkpointed as the model's weights, evaluated, folded and exported; decay ramps up as
    # decay * (1 - exp(-step / tau)) (Ultralytics' form). Off: defaults-rules did not adopt it (-0.16 [-0.44, +0.13]
    # pooled over six domains' holdouts); its effect on the spread between seeds: studies/ema-spread.yaml
    "ema": {"enabled": False, "decay": 0.999, "tau": 100},
    "gradient_clip": None,
    "precision": "32-true",
    "channels_last": True,
    # the backbone's frozen batch norms folded into the convs before them while training (engine/speed.py): the
    # same function (float rounding aside) in fewer passes, 0.86x the step at 2 threads (docs/benchmarks.md)
    "fold_frozen_norms": True,
    "deterministic": False,
    "seed": 0,
    "num_workers": 2,
    # keep the training images decoded in memory (RGB uint8; the same tensors, so the same run): 0.87x the step at
    # 2 threads (docs/benchmarks.md). auto: when they fit in a quarter of the free memory and the loader's workers
    # fork, else quietly not; true: the same, saying why when not; false: never
    "cache_images": "auto",
    "accelerator": "auto",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "out": "runs/train",
    "progress": True,
    "log_every_n_steps": 10,
    # results.png, PR_curve.png, confusion_matrix.png and val_predictions.jpg in the run folder (engine.pictures)
    "plots": True,
}


def recipes() -> list[str]:
    """The recipe names shipped with hierhead."""
    return sorted(p.name[:-5] for p in resources.files("hierhead.engine").joinpath("recipes").iterdir()
                  if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | Path) -> dict:
    """A recipe by name or a YAML file path (not yet merged with the defaults)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    elif str(name_or_path) in recipes():
        text = resources.files("hierhead.engine").joinpath("recipes", f"{name_or_path}.yaml").read_text()
    else:
        raise ValueError(f"recipe {str(name_or_path)!r}: not a YAML file or one of {', '.join(recipes())}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"recipe {str(name_or_path)!r}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"recipe {str(name_or_path)!r}: expected a mapping of settings")
    data.pop("provenance", None)  # a run's config.yaml records the code that ran it: not a setting
    return data


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{where}{key}"
        if key not in base:
            raise ValueError(f"setting {name!r}: unknown; known here: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key != "model_kwargs":
            if not isinstance(value, dict):
                raise ValueError(f"setting {name!r}: expected a mapping, got {value!r}")
            out[key] = _merge(base[key], value, name + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: list[str]) -> dict:
    """``["optimizer.lr=0.01", "design=9An{9,3}S"]`` -> nested dict; values parsed as YAML."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected KEY=VALUE (e.g. optimizer.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def resolve(recipe: str | Path | None = None, overrides: dict | None = None) -> dict:
    """DEFAULTS <- recipe <- overrides, checked for unknown keys."""
    config = _merge(DEFAULTS, load_recipe(recipe)) if recipe else copy.deepcopy(DEFAULTS)
    config = _merge({**config, "recipe": str(recipe) if recipe else None}, overrides or {})
    for key in ("max_steps", "epochs", "batch_size", "val_batch_size", "val_every_n_steps", "checkpoint_every_n_steps",
                "val_every_n_epochs", "log_every_n_steps"):
        value = config.get(key)
        if key == "max_steps" and value == "auto":  # chosen from the training set's size (engine/choose.py)
            continue
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key}={value!r}: expected a whole number >= 1"
                             + (" or auto" if key == "max_steps" else ""))
    if config.get("cache_images") not in (True, False, None, "auto"):
        raise ValueError(f"cache_images={config['cache_images']!r}: expected true, false or auto")
    size = config.get("image_size")
    sizes = size if isinstance(size, list) and len(size) == 2 else [size]
    if size not in (None, "auto") and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise ValueError(f"image_size={size!r}: expected a whole number >= 1 (a square side), [height, width] or auto")
    if config.get("time") is not None:
        from .budget import parse_time

        parse_time(config["time"])
        if config.get("epochs") or (config.get("schedule") or {}).get("name") not in ("cosine", "constant"):
            raise ValueError(f"time={config['time']!r}: a budget shortens a step-based run with a cosine or constant "
                             f"schedule (this one: {'epochs' if config.get('epochs') else config['schedule']['name']})")
    if "frozen_stages" in (config.get("model_kwargs") or {}):
        raise ValueError("model_kwargs.frozen_stages: freezing is a training setting now, not a model option "
                         f"saved with it: set frozen_stages={config['model_kwargs']['frozen_stages']!r}")
    from .freezing import check_frozen_stages

    check_frozen_stages(config.get("frozen_stages") or 0)
    s_min = config.get("anchor_s_min")
    if s_min not in (None, "auto") and (isinstance(s_min, bool) or not isinstance(s_min, (int, float))
                                        or not 0 < s_min < 0.95):
        raise ValueError(f"anchor_s_min={s_min!r}: expected Eq. 3's smallest anchor scale in (0, 0.95), or auto")
    if config.get("num_workers") is not None and (not isinstance(config["num_workers"], int) or config["num_workers"] < 0):
        raise ValueError(f"num_workers={config['num_workers']!r}: expected a whole number >= 0")
    return config
