"""Read a training checkpoint back: the model spec travels in it, so nothing else is needed."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models import build

__all__ = ["load_checkpoint", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a hierhead checkpoint."""


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True`` (a checkpoint is untrusted input)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights-only errors alike
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot be read ({_first_sentence(e)})") from None
    if not isinstance(ckpt, dict) or "hierhead" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {str(path)!r}: not a hierhead training checkpoint (no model spec)")
    return ckpt


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, spec) from a ``hierhead train`` checkpoint."""
    ckpt = read_checkpoint(path)
    spec = ckpt["hierhead"]
    model = build(spec["model"], spec["num_classes"], design=spec.get("design"), soft=spec.get("soft", False),
                  pretrained_backbone=bool(spec.get("pretrained_backbone")), **spec.get("options", {}))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r}: weights do not match model {spec['model']!r} "
                              f"with design {spec.get('design')!r} (e.g. {sorted(missing)[0]} missing)")
    model.load_state_dict(state, strict=True)
    model.hierhead_spec = {**model.hierhead_spec, "classes": spec.get("classes"), "image_size": spec.get("image_size")}
    return model.eval(), spec


def _first_sentence(e: Exception) -> str:
    """torch.load's errors run to paragraphs of advice: keep the first sentence."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text.split(". ")[0].rstrip(".")
