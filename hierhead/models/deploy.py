"""Deployment: a folded model as stock torchvision weights + a JSON spec, and ONNX export.

The folded head is the general head (Section III-B.c), so what is written here loads with
torch, torchvision and safetensors alone (``load_model.py``, a copy of :mod:`.stock`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator

from . import stock
from .convert import _generator, fold
from .weights import save

__all__ = ["deploy_spec", "save_folded", "export_onnx", "match_fraction", "SNIPPET"]

SNIPPET = """\
import json, torch
from safetensors.torch import load_file
from load_model import stock_model  # torchvision only; written beside the weights
model = stock_model(json.load(open("model.json")))
model.load_state_dict(load_file("model.safetensors")); model.eval()"""


def deploy_spec(model: nn.Module) -> dict:
    """What :func:`stock.stock_model` needs to rebuild ``model``'s architecture and anchors."""
    spec = dict(getattr(model, "hierhead_spec", None) or {})
    if "model" not in spec:
        raise ValueError("model was not built by hierhead.models.build (no spec)")
    gen = _generator(model)
    if isinstance(gen, DefaultBoxGenerator):
        anchors = {"wh_pairs": [p.tolist() for p in gen._wh_pairs]}
    elif isinstance(gen, AnchorGenerator):
        anchors = {"sizes": [list(s) for s in gen.sizes], "aspect_ratios": [list(r) for r in gen.aspect_ratios]}
    else:
        raise TypeError(f"unsupported anchor generator {type(gen).__name__}")
    return {**spec, "anchors": anchors}


def save_folded(model: nn.Module, out: str | Path, extra: dict | None = None) -> nn.Module:
    """Fold ``model``, write ``model.safetensors``, ``model.json`` and ``load_model.py`` to ``out``,
    and return the folded model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folded = fold(model)
    spec = {**deploy_spec(folded), **(extra or {})}
    folded.hierhead_spec = spec
    save(folded, out / "model.safetensors")
    tmp = out / "model.json.tmp"
    tmp.write_text(json.dumps(spec, indent=2))
    tmp.replace(out / "model.json")
    shutil.copyfile(stock.__file__, out / "load_model.py")
    return folded


def export_onnx(model: nn.Module, path: str | Path, image_size: tuple[int, int], opset: int = 17,
                check: bool = True) -> dict:
    """Export the folded model to ONNX (one image in, boxes / scores / labels out).

    With onnxruntime installed and ``check``, runs both on a random image: raises if the number
    of detections or their sorted scores (to 1e-4) differ, and reports the share of identical
    boxes (``matched``, see :func:`match_fraction`).
    """
    path = Path(path)
    folded = fold(model).eval()
    h, w = image_size
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, h, w, generator=g)

    class _Wrapped(nn.Module):
        def __init__(self, det: nn.Module) -> None:
            super().__init__()
            self.det = det

        def forward(self, x: torch.Tensor):
            out = self.det([x])[0]
            return out["boxes"], out["scores"], out["labels"]

    wrapped = _Wrapped(folded).eval()
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        torch.onnx.export(wrapped, (image,), str(tmp), opset_version=opset, input_names=["image"],
                          output_names=["boxes", "scores", "labels"], dynamo=False,
                          dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"},
                                        "scores": {0: "n"}, "labels": {0: "n"}})
    tmp.replace(path)
    result = {"onnx": str(path), "checked": False}
    if not check:
        return result
    try:
        import onnxruntime as ort
    except ImportError:
        return result
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = [torch.from_numpy(a) for a in sess.run(None, {"image": image.numpy()})]
    with torch.no_grad():
        want = list(wrapped(image))
    if len(got[0]) != len(want[0]) or (len(got[1]) and
                                       (got[1].sort().values - want[1].sort().values).abs().max() > 1e-4):
        raise RuntimeError(f"ONNX {str(path)!r}: detections differ from PyTorch "
                           f"({len(got[0])} vs {len(want[0])} boxes, or their scores)")
    result.update(checked=True, detections=int(len(want[0])), matched=match_fraction(got, want))
    return result


def match_fraction(a: tuple, b: tuple, box_tol: float = 1e-2, score_tol: float = 1e-4) -> float:
    """The fraction of ``a``'s (boxes, scores, labels) found in ``b`` (same label, box and score to
    the tolerances). Near-ties in score can make NMS keep another of two overlapping boxes, so an
    untrained model's detections may differ in a few boxes while its numbers agree."""
    if len(a[0]) == 0:
        return 1.0 if len(b[0]) == 0 else 0.0
    if len(b[0]) == 0:
        return 0.0
    box_d = (a[0][:, None, :] - b[0][None, :, :]).abs().amax(-1)
    score_d = (a[1][:, None] - b[1][None, :]).abs()
    ok = (box_d <= box_tol) & (score_d <= score_tol) & (a[2][:, None] == b[2][None, :])
    return float(ok.any(1).float().mean())
