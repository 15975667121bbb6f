"""Read a training checkpoint back: the model spec travels in it, so nothing else is needed."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models import build

__all__ = ["load_checkpoint", "load_start_model", "CheckpointError"]


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


def load_start_model(path: str | Path, spec: dict) -> nn.Module:
    """The start of an ``--init`` run: a trained model of ``spec``'s detector and classes.

    ``path``: a ``hierhead train`` checkpoint, or a whole-model ``.safetensors`` written by
    :func:`hierhead.models.save` (its spec is in the metadata). Another model or class list is a
    one-line error naming both; the anchor grid is checked when the weights are loaded
    (:func:`hierhead.models.load_start`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--init {str(path)!r}: file not found")
    if path.suffix == ".safetensors":
        from ..models.weights import _file_spec
        try:
            saved = _file_spec(path)
        except Exception as e:  # truncated or not a safetensors file
            raise CheckpointError(f"--init {str(path)!r}: cannot be read ({_first_sentence(e)})") from None
        if not saved or "model" not in saved or "num_classes" not in saved:
            raise CheckpointError(f"--init {str(path)!r}: not a model file saved by hierhead (no spec in its metadata)")
        model = build(saved["model"], saved["num_classes"], design=saved.get("design"),
                      pretrained_backbone=bool(saved.get("pretrained_backbone")), weights=path,
                      **saved.get("options", {}))
    else:
        model, saved = load_checkpoint(path)
    checks = [("model", saved.get("model"), spec.get("model"))]
    if saved.get("classes") is not None:
        checks.append(("classes", saved.get("classes"), spec.get("classes")))
    else:
        checks.append(("num_classes", saved.get("num_classes"), spec.get("num_classes")))
    for key, theirs, ours in checks:
        if theirs != ours:
            raise CheckpointError(f"--init {str(path)!r}: trained with {key}={theirs!r}, this run has {key}={ours!r}")
    return model


def _first_sentence(e: Exception) -> str:
    """torch.load's errors run to paragraphs of advice: keep the first sentence."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text.split(". ")[0].rstrip(".")
