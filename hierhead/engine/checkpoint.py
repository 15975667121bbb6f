"""Read a training checkpoint back: the model spec travels in it, so nothing else is needed."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models import build

__all__ = ["load_checkpoint", "load_start_model", "checked_spec", "CheckpointError"]


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


#: Spec options that name files or downloads: a file must never choose what the machine reads or fetches.
_REFUSED_OPTIONS = {"weights", "weights_backbone", "backbone_weights", "torchvision_weights", "start", "progress",
                    "pretrained", "pretrained_backbone", "num_classes", "backbone", "anchor_generator", "head"}
_TEXT_OPTIONS = {"loss", "box_loss"}  # the only options whose value is text


def checked_spec(spec, where: str) -> dict:
    """The model spec of an untrusted file (checkpoint, model file), limited to known keys and plain
    values: a registered model, an integer class count, option values that are numbers, booleans or
    lists of numbers (``loss`` / ``box_loss``: text). An option that names weights, a download or
    a module is refused: the file could otherwise make every command read a path or fetch a URL."""
    from ..models import names

    def plain(v) -> bool:
        return isinstance(v, (int, float, bool)) or (isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))

    if not isinstance(spec, dict) or spec.get("model") not in names():
        raise CheckpointError(f"{where}: unknown model {spec.get('model') if isinstance(spec, dict) else spec!r}")
    n = spec.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise CheckpointError(f"{where}: num_classes={n!r} is not an integer >= 2")
    options = spec.get("options", {})
    if not isinstance(options, dict):
        raise CheckpointError(f"{where}: options {options!r} are not a mapping")
    for key, value in options.items():
        if key in _REFUSED_OPTIONS or not isinstance(key, str):
            raise CheckpointError(f"{where}: option {key!r} is not accepted from a file")
        if not (plain(value) or (key in _TEXT_OPTIONS and isinstance(value, str))):
            raise CheckpointError(f"{where}: option {key}={value!r} is not a plain number or list of numbers")
    for key, kind in (("design", str), ("soft", bool), ("pretrained_backbone", bool)):
        if spec.get(key) is not None and not isinstance(spec[key], kind):
            raise CheckpointError(f"{where}: {key}={spec[key]!r} is not a {kind.__name__}")
    classes = spec.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{where}: classes {classes!r} are not a list of names")
    return spec


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, spec) from a ``hierhead train`` checkpoint."""
    ckpt = read_checkpoint(path)
    spec = checked_spec(ckpt["hierhead"], f"checkpoint {str(path)!r}")
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
        saved = checked_spec(saved, f"--init {str(path)!r}")
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
