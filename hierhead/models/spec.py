"""The model spec: what rebuilds a detector, checked into one frozen dataclass and kept on the model.

Every place that rebuilds a model reads this one record: :func:`hierhead.models.build_from_spec`,
training checkpoints, ``fold``'s ``model.json`` (read back by ``load_model.py`` as plain JSON),
the safetensors metadata of :func:`hierhead.models.save`, and the engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..design import GENERAL

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """A detector as hierhead builds it.

    Attributes:
        model: a registered name (:func:`hierhead.models.names`).
        num_classes: classes including background.
        design: the head design (Table I name); the general head ``9An{9}`` is a stock head.
        soft: a learnable real-valued M (the paper's future work).
        pretrained_backbone: the architecture of a pretrained backbone (frozen batch norm, full tail).
        options: the torchvision detector's keyword arguments (``nms_thresh``, ``image_size``, ``loss``).
        classes: the class names (index 1.. in the model's labels), when known.
        image_size: ``[h, w]`` the model was trained at, when it is not the architecture's own.
        anchors: the stock generator's anchors of a folded model (``model.json``).
        folded: True for a folded model (plain convs; :func:`hierhead.models.fold`).
    """

    model: str
    num_classes: int
    design: str = GENERAL
    soft: bool = False
    pretrained_backbone: bool = False
    options: dict = field(default_factory=dict)
    classes: list[str] | None = None
    image_size: list[int] | None = None
    anchors: dict | None = None
    folded: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        """The spec of a dict written by :meth:`to_dict` (or by an older hierhead: unknown keys, such as
        a checkpoint's training settings, are ignored; ``design: null`` is the general head)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __post_init__(self) -> None:
        if self.design is None:  # "no design" (a recipe's or an old file's null) is the general head
            object.__setattr__(self, "design", GENERAL)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, the same keys as the dataclass."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)
