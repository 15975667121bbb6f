"""Loading and saving weights from local files only (``weights_only=True``, safetensors)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_state_dict", "load_model_weights", "save", "state_mismatch"]


def load_state_dict(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """A state_dict from a .safetensors file or a torch file read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r}: not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} file {str(path)!r}: the file is empty")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or not a weights file
        first = (str(e).splitlines() or [""])[0]  # some errors have no message at all
        raise ValueError(f"{what} file {str(path)!r}: cannot be read ({type(e).__name__}" + (f": {first})" if first
                                                                                          else ")")) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} file {str(path)!r}: not a state_dict of tensors")
    return state


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_spec(path: Path) -> dict | None:
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["hierhead_spec"]) if "hierhead_spec" in meta else None
    return None


def save(model: nn.Module, path: str | Path) -> Path:
    """Save a built model's weights as safetensors, with its spec in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    spec = getattr(model, "hierhead_spec", None)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"hierhead_spec": json.dumps(spec.to_dict() if spec is not None else {})})
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates its file 0600: the mode of any file written here
    tmp.replace(path)
    return path


def state_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """How ``state`` fails to load into a model whose state_dict is ``own`` (None: it loads strictly)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{k} is {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model")
    if missing:
        parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    return "; ".join(parts) or None


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    """Load whole-model weights; a file for another model, classes or design fails naming both sides."""
    path = Path(path)
    state = load_state_dict(path, what="model weights")
    spec = getattr(model, "hierhead_spec", None)
    if path.suffix == ".safetensors" and spec is not None:
        saved = _file_spec(path)
        if saved:
            for key in ("model", "num_classes", "design"):
                if key in saved and saved[key] != getattr(spec, key):
                    raise ValueError(f"model weights {str(path)!r}: saved for {key}={saved[key]!r}, "
                                     f"this model has {key}={getattr(spec, key)!r}")
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise ValueError(f"model weights {str(path)!r}: do not match the model: {mismatch}")
    model.load_state_dict(state, strict=True)
