"""A resolved config to the model it trains: the input size, the ImageNet backbone weights it starts from,
and the :class:`~hierhead.models.ModelSpec` (model, design, options, classes). Read by the trainer, the cached
protocols (:mod:`.head`), sweeps and studies, so none of them imports the trainer for it."""

from __future__ import annotations

from ..models import ModelSpec, input_size
from ..models.stock import size_options

__all__ = ["image_size", "backbone_weights", "config_spec"]


def image_size(config: dict) -> tuple[int, int] | None:
    size = config.get("image_size")
    if size == "auto":
        raise ValueError("image_size=auto is chosen from the data when train starts (engine/choose.py); "
                         "this protocol needs a number")
    if size is None:
        size = input_size(config["model"])
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def backbone_weights(config: dict) -> str | None:
    """The backbone weights file a run starts from: ``backbone_weights`` if given, else (unless
    ``pretrained_backbone: false``, a download or an ``--init`` start) the ImageNet weights shipped with
    hierhead for the model's backbone; ``pretrained_backbone: true`` without any is an error."""
    given, wanted = config.get("backbone_weights"), config.get("pretrained_backbone")
    if given or config.get("torchvision_weights"):
        if wanted is False:
            raise ValueError("pretrained_backbone=false: contradicts the backbone_weights / torchvision_weights given")
        return given
    if config.get("init"):  # the start holds the weights (and decides the backbone's architecture)
        return None
    if wanted is False:
        return None
    from ..models.builders import timm_backbone
    from ..models.pretrained import PACKAGED, packaged_weights

    name = timm_backbone(config["model"], config.get("model_kwargs"))
    if name in PACKAGED:
        return str(packaged_weights(name))
    if wanted:
        raise ValueError(f"pretrained_backbone=true: no ImageNet weights ship for {config['model']!r} "
                         f"(hierhead ships them for {', '.join(PACKAGED)}); give --backbone-weights FILE")
    return None


def config_spec(config: dict, classes: list[str]) -> ModelSpec:
    """The :class:`ModelSpec` a resolved config trains (model, design, options, image size) for ``classes``."""
    size = image_size(config)
    options = dict(config.get("model_kwargs") or {})
    if config.get("image_size") is not None:
        options = {**size_options(config["model"], size), **options}
    if config.get("anchor_s_min") == "auto":
        raise ValueError("anchor_s_min=auto is chosen from the data when train starts (engine/choose.py); "
                         "this protocol needs a number")
    if config.get("anchor_s_min") is not None:
        options["anchor_s_min"] = float(config["anchor_s_min"])
    return ModelSpec(model=config["model"], num_classes=len(classes) + 1, classes=classes, design=config["design"],
                     soft=bool(config.get("soft")), options=options, image_size=list(size) if size else None)
