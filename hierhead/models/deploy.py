"""Deployment: a folded model as stock torchvision weights + a JSON spec, and ONNX export.

The folded head is the general head (Section III-B.c), so what is written here loads with
torch, torchvision and safetensors alone (``load_model.py``, a copy of :mod:`.stock`), and timm for
a timm backbone (the default ``ssdlite320_efficientnet_lite0``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator

from . import stock
from .convert import anchor_generator_of, fold
from .spec import ModelSpec
from .weights import save

__all__ = ["deploy_spec", "save_folded", "export_onnx", "ExportCheckError", "check_image", "match_fraction", "SNIPPET"]


class ExportCheckError(ValueError):
    """The exported ONNX graph does not compute what the PyTorch model computes (nothing is written)."""

SNIPPET = """\
import json, torch
from safetensors.torch import load_file
from load_model import stock_model  # torch + torchvision (+ timm for timm backbones); beside the weights
model = stock_model(json.load(open("model.json")))
model.load_state_dict(load_file("model.safetensors")); model.eval()"""


def deploy_spec(model: nn.Module) -> ModelSpec:
    """What :func:`stock.stock_model` needs to rebuild ``model``'s architecture and anchors: its spec
    with the anchors written out (``_wh_pairs`` is torchvision's private list of an SSD's boxes,
    pinned by tests/test_models.py::test_private_torchvision_names_are_pinned)."""
    spec = getattr(model, "hierhead_spec", None)
    if not isinstance(spec, ModelSpec):
        raise ValueError("model was not built by hierhead.models.build (no spec)")
    gen = anchor_generator_of(model)
    if isinstance(gen, DefaultBoxGenerator):
        anchors = {"wh_pairs": [p.tolist() for p in gen._wh_pairs]}
    elif isinstance(gen, AnchorGenerator):
        anchors = {"sizes": [list(s) for s in gen.sizes], "aspect_ratios": [list(r) for r in gen.aspect_ratios]}
    else:
        raise TypeError(f"unsupported anchor generator {type(gen).__name__}")
    return spec.replace(anchors=anchors)


#: What :func:`save_folded` writes: the weights, the spec, the loader.
DEPLOY_FILES = ("model.safetensors", "model.json", "load_model.py")


def save_folded(model: nn.Module, out: str | Path) -> nn.Module:
    """Fold ``model``, write :data:`DEPLOY_FILES` to ``out``: ``model.safetensors``, ``model.json`` (its
    :class:`ModelSpec` with the anchors, classes and image size) and ``load_model.py``; return the folded model."""
    weights, spec_file, loader = (Path(out) / name for name in DEPLOY_FILES)
    weights.parent.mkdir(parents=True, exist_ok=True)
    folded = fold(model)
    spec = deploy_spec(folded)
    folded.hierhead_spec = spec
    save(folded, weights)
    tmp = spec_file.with_name(spec_file.name + ".tmp")
    tmp.write_text(json.dumps(spec.to_dict(), indent=2))
    tmp.replace(spec_file)
    shutil.copyfile(stock.__file__, loader)
    return folded


class _Detections(nn.Module):
    """One image in, the detector's boxes / scores / labels out (the exported interface)."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        self.det = det

    def forward(self, x: torch.Tensor):
        out = self.det([x])[0]
        return out["boxes"], out["scores"], out["labels"]


class _RawHead(nn.Module):
    """One image in, every raw output of the prediction convs out (before decoding, top-k and NMS):
    the part of the graph export must reproduce to float precision."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        self.det = det

    def forward(self, x: torch.Tensor):
        images, _ = self.det.transform([x])
        features = list(self.det.backbone(images.tensors).values())
        head = self.det.rpn.head if hasattr(self.det, "rpn") else self.det.head
        out = head(features)
        parts = list(out.values()) if isinstance(out, dict) else [t for level in out for t in level]
        return tuple(parts)


def check_image(h: int, w: int) -> torch.Tensor:
    """A deterministic image with structure (gradients and solid shapes): on uniform noise every score
    is a near-tie, so NMS order alone decides which boxes survive."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    image = torch.stack([x, y, 0.5 * (1 - x) + 0.25 * torch.sin(12 * y)]).clamp(0, 1)
    for k, (cy, cx, r, color) in enumerate([(0.3, 0.3, 0.12, (0.9, 0.1, 0.1)), (0.6, 0.7, 0.2, (0.1, 0.8, 0.2)),
                                            (0.75, 0.25, 0.08, (0.1, 0.2, 0.9))]):
        box = ((y - cy).abs() < r) & ((x - cx).abs() < r * (1 + k * 0.5))
        image[:, box] = torch.tensor(color).view(3, 1)
    return image


def _onnx(module: nn.Module, image: torch.Tensor, path: Path, names: list[str], opset: int) -> None:
    with torch.no_grad():
        torch.onnx.export(module, (image,), str(path), opset_version=opset, input_names=["image"], output_names=names,
                          dynamo=False, dynamic_axes={"image": {1: "height", 2: "width"},
                                                      **{n: {0: "n"} for n in names if n in ("boxes", "scores", "labels")}})


#: What the exported graph takes and gives, written into its metadata (the README's Deploy section says it too).
ONNX_INTERFACE = ("input image: float32 [3, height, width], RGB in [0, 1], any size (the graph resizes); "
                  "outputs boxes: float32 [n, 4] x1 y1 x2 y2 in the input's pixels, scores: float32 [n], "
                  "labels: int64 [n], 1 + the index into classes (0 is the background)")


def _describe(path: Path, folded: nn.Module) -> None:
    """Write the model's class names, its hierhead spec and :data:`ONNX_INTERFACE` into the ONNX file's
    ``metadata_props`` (read with ``onnxruntime``'s ``get_modelmeta().custom_metadata_map``)."""
    import onnx

    proto = onnx.load(str(path))
    spec = deploy_spec(folded)
    meta = {"classes": json.dumps(list(spec.classes or [])), "hierhead_spec": json.dumps(spec.to_dict()),
            "interface": ONNX_INTERFACE}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def export_onnx(model: nn.Module, path: str | Path, image_size: tuple[int, int], opset: int = 17,
                check: bool = True, min_match: float = 0.9) -> dict:
    """Export the folded model to ONNX (one image in, boxes / scores / labels out).

    With onnxruntime installed and ``check``, on a structured image (:func:`check_image`): the raw
    outputs of the prediction convs (exported the same way to a scratch file) must agree to 1e-4
    relative, and the detections as far as ties allow (:func:`_detections_differ`). A failed check
    raises and leaves no file at ``path``; the folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folded = fold(model).eval()
    image = check_image(*image_size)
    wrapped = _Detections(folded).eval()
    tmp = path.with_name(path.name + ".tmp")
    try:
        _onnx(wrapped, image, tmp, ["boxes", "scores", "labels"], opset)
        _describe(tmp, folded)
        result = {"onnx": str(path), "checked": False}
        if check:
            result.update(_check(wrapped, _RawHead(folded).eval(), tmp, image, opset, min_match, path))
        tmp.replace(path)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def _check(wrapped: nn.Module, raw: nn.Module, onnx_path: Path, image: torch.Tensor, opset: int, min_match: float,
           path: Path) -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    run = lambda f: [torch.from_numpy(a) for a in  # noqa: E731
                     ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"image": image.numpy()})]
    raw_path = onnx_path.with_name(onnx_path.name + ".raw")
    try:
        with torch.no_grad():
            want_raw = raw(image)
        _onnx(raw, image, raw_path, [f"raw{k}" for k in range(len(want_raw))], opset)
        got_raw = run(raw_path)
    finally:
        raw_path.unlink(missing_ok=True)
    worst = max(float((g - w).abs().max() / w.abs().max().clamp(min=1e-6)) for g, w in zip(got_raw, want_raw))
    if worst > 1e-4:
        raise ExportCheckError(f"ONNX {str(path)!r}: the prediction convs' outputs differ from PyTorch "
                           f"(relative {worst:.1e} > 1e-4); nothing written")
    got = run(onnx_path)
    with torch.no_grad():
        want = list(wrapped(image))
    problem = _detections_differ(got, want, min_match)
    if problem:
        raise ExportCheckError(f"ONNX {str(path)!r}: {problem} (raw outputs agree to {worst:.1e}); nothing written")
    return {"checked": True, "detections": int(len(want[0])), "matched": match_fraction(got, want), "raw_error": worst}


def _detections_differ(got: list, want: list, min_match: float, tol: float = 1e-4) -> str | None:
    """What the exported detections can be held to once the raw outputs agree: near-tied scores let
    NMS keep a different one of two overlapping boxes (an untrained model's scores are nearly all
    ties), so the counts may differ by a few, the sorted scores by a hair, and only detections whose
    score is unique in their class (no other within ``tol``) must be found box for box."""
    n_got, n_want = len(got[0]), len(want[0])
    if abs(n_got - n_want) > max(2, 0.05 * n_want):
        return f"{n_got} vs {n_want} detections"
    k = min(n_got, n_want)
    if k and float((got[1].sort(descending=True).values[:k] - want[1].sort(descending=True).values[:k]).abs().max()) > 1e-3:
        return "the detection scores differ"
    same_label = want[2][:, None] == want[2][None, :]
    close = ((want[1][:, None] - want[1][None, :]).abs() <= tol) & same_label
    unique = close.sum(1) == 1
    if unique.any():
        found = match_fraction(tuple(t[unique] for t in want), got)
        if found < min_match:
            return f"only {found:.0%} of the {int(unique.sum())} unambiguous detections found"
    return None


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
