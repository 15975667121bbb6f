"""Read a training checkpoint back: the model spec travels in it, so nothing else is needed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

from ..models import ModelSpec, build_from_spec

__all__ = ["load_checkpoint", "load_start_model", "load_saved_model", "checked_spec", "saved_spec", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a hierhead checkpoint."""


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True`` (a checkpoint is untrusted input)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: file not found")
    if not zipfile.is_zipfile(path):  # torch.save (and so Lightning) writes a zip archive; torch.load's error on
        # anything else is an unpickler's ("list index out of range" for a text file)
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot be read (not the zip archive torch.save writes: "
                              "another kind of file, or a truncated checkpoint)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights-only errors alike
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot be read ({_first_sentence(e)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or saved_spec(ckpt) is None:
        raise CheckpointError(f"checkpoint {str(path)!r}: not a hierhead training checkpoint (no model spec)")
    return ckpt


def saved_spec(ckpt: dict):
    """The model spec a checkpoint holds, unchecked: its hyper-parameters' ``spec``, or (written before
    hierhead used Lightning's hyper-parameters) the ``hierhead`` entry; None if neither."""
    hparams = ckpt.get("hyper_parameters")
    if isinstance(hparams, dict) and "spec" in hparams:
        return hparams["spec"]
    return ckpt.get("hierhead")


#: Spec options that name files or downloads: a file must never choose what the machine reads or fetches.
_REFUSED_OPTIONS = {"weights", "weights_backbone", "backbone_weights", "torchvision_weights", "start", "progress",
                    "pretrained", "pretrained_backbone", "num_classes", "anchor_generator", "head"}
# the only options whose value is text; ``backbone`` (a timm model name) is built only if timm's own registry
# lists it (hierhead.models.stock.timm_body), without weights: it never makes a command read or fetch
_TEXT_OPTIONS = {"loss", "box_loss", "backbone"}


def checked_spec(spec, where: str) -> ModelSpec:
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
    size = spec.get("image_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise CheckpointError(f"{where}: image_size {size!r} is not [height, width]")
    spec = ModelSpec.from_dict(spec)
    return spec.replace(anchors=None, folded=False)  # a checkpoint holds the trainable model


def load_checkpoint(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """(model in eval mode, its spec) from a ``hierhead train`` checkpoint."""
    ckpt = read_checkpoint(path)
    spec = checked_spec(saved_spec(ckpt), f"checkpoint {str(path)!r}")
    model = build_from_spec(spec)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r}: weights do not match model {spec.model!r} "
                              f"with design {spec.design!r} (e.g. {sorted(missing)[0]} missing)")
    model.load_state_dict(state, strict=True)
    return model.eval(), model.hierhead_spec


def load_saved_model(path: str | Path, where: str | None = None) -> tuple[nn.Module, ModelSpec]:
    """(model in eval mode, its spec) from a whole-model ``.safetensors`` written by :func:`hierhead.models.save`
    (its spec in the metadata, checked as a checkpoint's); ``where`` names it in errors."""
    from ..models.weights import _file_spec

    where = where or f"model file {str(path)!r}"
    try:
        saved = _file_spec(Path(path))
    except Exception as e:  # truncated or not a safetensors file
        raise CheckpointError(f"{where}: cannot be read ({_first_sentence(e)})") from None
    if not saved or "model" not in saved or "num_classes" not in saved:
        raise CheckpointError(f"{where}: not a model file saved by hierhead (no spec in its metadata)")
    spec = checked_spec(saved, where)
    model = build_from_spec(spec, weights=path)
    return model.eval(), model.hierhead_spec


def load_start_model(path: str | Path, spec: ModelSpec) -> nn.Module:
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
        model, saved = load_saved_model(path, f"--init {str(path)!r}")
    else:
        model, saved = load_checkpoint(path)
    checks = [("model", saved.model, spec.model)]
    if saved.classes is not None:
        checks.append(("classes", saved.classes, spec.classes))
    else:
        checks.append(("num_classes", saved.num_classes, spec.num_classes))
    for key, theirs, ours in checks:
        if theirs != ours:
            raise CheckpointError(f"--init {str(path)!r}: trained with {key}={theirs!r}, this run has {key}={ours!r}")
    return model


def _first_sentence(e: Exception) -> str:
    """torch.load's errors run to paragraphs of advice: keep the first sentence."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text.split(". ")[0].rstrip(".")
