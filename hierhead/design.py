"""Design matrices M of the hierarchical head (Section III-B, Table I).

A design joins J shared units to the |A| anchors of one feature-map location:
``M[j, a] = 1`` when unit R_j is added to anchor a (Eq. 2). M is always built from
each anchor's (size index, ratio index), never from fixed positions, because
libraries order the anchors of a location differently:

- torchvision / mmdetection: the size varies fastest (:func:`torchvision_order`);
- the paper and detectron2: the aspect ratio varies fastest (:func:`paper_order`).

Names follow the paper: ``{A}An{A}`` is the general head, ``{A}An{A,1}Both`` one global
unit, ``{A}An{A,n}As`` one unit per size (joining the anchors of that size across aspect
ratios), ``{A}An{A,n}S`` one unit per aspect ratio (across sizes), and ``{A}An{A,n,1}As|S``
the same plus the global unit. Beyond Table I: ``AsS`` (size and ratio units, n = sizes +
ratios) and ``Or`` (the orientation split of III-B.b: one unit for the vertical anchors,
one for the horizontal ones, n = 2).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch is imported where M becomes a tensor: `hierhead designs` starts without it
    import torch

__all__ = ["Design", "GENERAL", "PRESETS", "torchvision_order", "paper_order", "split_names", "PAPER_RATIOS"]

#: The paper's aspect ratios (Section IV-A), as height / width like torchvision.
PAPER_RATIOS: tuple[float, ...] = (1.0, 0.5, 2.0)
#: The general head (Table I): every anchor its own classifier and regressor, no units; a stock head.
GENERAL = "9An{9}"

#: The designs of Table I plus the general head, for a 3 sizes x 3 ratios grid.
PRESETS: tuple[str, ...] = (
    "9An{9}",
    "9An{9,1}Both",
    "9An{9,3}S",
    "9An{9,3}As",
    "9An{9,3,1}S",
    "9An{9,3,1}As",
)

_NAME = re.compile(r"^(\d+)An\{(\d+)((?:,\d+)*)\}(Both|AsS|As|S|Or)?$")


def torchvision_order(num_sizes: int, num_ratios: int) -> list[tuple[int, int]]:
    """(size, ratio) index of each anchor of a location, size varying fastest (torchvision)."""
    return [(a % num_sizes, a // num_sizes) for a in range(num_sizes * num_ratios)]


def paper_order(num_sizes: int, num_ratios: int) -> list[tuple[int, int]]:
    """(size, ratio) index of each anchor of a location, ratio varying fastest (paper, Table I)."""
    return [(a // num_ratios, a % num_ratios) for a in range(num_sizes * num_ratios)]


@dataclass(frozen=True)
class Design:
    """An immutable design: a name, the anchors it was built for and its J x |A| matrix M."""

    name: str
    anchors: tuple[tuple[int, int], ...]
    rows: tuple[tuple[float, ...], ...]
    ratios: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        num_anchors = len(self.anchors)
        if num_anchors == 0:
            raise ValueError(f"design {self.name!r}: needs at least one anchor")
        for a in self.anchors:
            if len(a) != 2 or any(int(i) != i or i < 0 for i in a):
                raise ValueError(f"design {self.name!r}: anchor {a!r} is not a (size index, ratio index) pair")
        if len(set(self.anchors)) != num_anchors:
            raise ValueError(f"design {self.name!r}: two anchors have the same (size, ratio) index")
        for j, row in enumerate(self.rows):
            if len(row) != num_anchors:
                raise ValueError(
                    f"design {self.name!r}: row {j} of M has {len(row)} entries, expected one per anchor ({num_anchors})"
                )
            bad = [v for v in row if v not in (0, 1)]
            if bad:
                raise ValueError(f"design {self.name!r}: row {j} of M holds {bad[0]!r}; entries must be 0 or 1")
            if not any(row):
                raise ValueError(f"design {self.name!r}: unit R{j + 1} is joined to no anchor (row {j} of M is all 0)")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def parse(
        cls,
        spec: str,
        num_sizes: int = 3,
        num_ratios: int = 3,
        anchors: Sequence[tuple[int, int]] | None = None,
        ratios: Sequence[float] | None = None,
    ) -> "Design":
        """Design from a paper name (``9An{9,3,1}As``) or a JSON / text file holding M.

        ``anchors`` gives each anchor's (size index, ratio index) in output order; by default
        the full ``num_sizes x num_ratios`` grid in torchvision's order. ``ratios`` (h / w of
        each ratio index) is needed only by ``Or`` and defaults to the paper's (1, 0.5, 2).
        """
        if anchors is None:
            anchors = torchvision_order(num_sizes, num_ratios)
        anchors = tuple((int(s), int(r)) for s, r in anchors)
        spec = spec.strip()
        if spec.endswith((".json", ".txt")) or Path(spec).is_file():
            return cls.load(spec, anchors=anchors)
        m = _NAME.match(spec.replace(" ", ""))
        if m is None:
            raise ValueError(
                f"design {spec!r}: not a design name; expected e.g. '9An{{9}}', '9An{{9,1}}Both', "
                f"'9An{{9,3}}As', '9An{{9,3,1}}S' (or a .json / .txt file holding M)"
            )
        lead, top = int(m.group(1)), int(m.group(2))
        counts = [int(c) for c in m.group(3).split(",")[1:]]
        kind = m.group(4)
        n = len(anchors)
        ratio_ids = sorted({r for _, r in anchors})
        if lead != n or top != n:
            raise ValueError(f"design {spec!r}: these anchors number {n} per location, expected '{n}An{{{n}...}}'")
        if kind is None:
            if counts:
                raise ValueError(f"design {spec!r}: units need a sharing type (Both, As, S, AsS, Or) after the braces")
            return cls(spec, anchors, (), _ratios(ratios, ratio_ids))
        if not counts:
            raise ValueError(f"design {spec!r}: sharing type {kind} needs a unit count, e.g. '{n}An{{{n},1}}Both'")
        if kind == "Both":
            if counts != [1]:
                raise ValueError(f"design {spec!r}: 'Both' has exactly one global unit, expected '{n}An{{{n},1}}Both'")
            return cls(spec, anchors, (tuple(1 for _ in anchors),), _ratios(ratios, ratio_ids))
        if len(counts) > 2 or (len(counts) == 2 and counts[1] != 1):
            raise ValueError(f"design {spec!r}: expected at most one middle level and a global level of 1 unit")
        rv = _ratios(ratios, ratio_ids)
        rows, expected, what = _middle_units(spec, kind, anchors, rv)
        if counts[0] != expected:
            raise ValueError(
                f"design {spec!r}: these anchors have {expected} {what}, so the middle level of '{kind}' "
                f"must have {expected} units: expected '{n}An{{{n},{expected}{',1' if len(counts) == 2 else ''}}}{kind}'"
            )
        if len(counts) == 2:
            rows = [tuple(1 for _ in anchors)] + rows
        return cls(spec, anchors, tuple(rows), rv)

    @classmethod
    def from_matrix(
        cls,
        matrix: Sequence[Sequence[float]] | torch.Tensor,
        anchors: Sequence[tuple[int, int]] | None = None,
        name: str = "custom",
        num_sizes: int = 3,
        num_ratios: int = 3,
    ) -> "Design":
        """A custom design from a nested list (or tensor) M of shape J x |A|."""
        if hasattr(matrix, "tolist"):  # a tensor or an array
            matrix = matrix.tolist()
        if anchors is None:
            anchors = torchvision_order(num_sizes, num_ratios)
        rows = []
        for j, row in enumerate(matrix):
            if not isinstance(row, (list, tuple)):
                raise ValueError(f"design {name!r}: M must be a list of rows, row {j} is {row!r}")
            rows.append(tuple(float(v) if not float(v).is_integer() else int(v) for v in row))
        return cls(name, tuple((int(s), int(r)) for s, r in anchors), tuple(rows))

    @classmethod
    def load(cls, path: str | Path, anchors: Sequence[tuple[int, int]] | None = None) -> "Design":
        """A custom design from a file: JSON (``{"matrix": [[...]], "anchors": ...}`` or a bare
        nested list) or text (one row of 0/1 per line)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ValueError(f"design file {str(path)!r}: cannot be read ({e.strerror})") from None
        try:
            if path.suffix == ".json":
                data = json.loads(text)
                if isinstance(data, dict):
                    if "anchors" in data and anchors is None:
                        anchors = [tuple(a) for a in data["anchors"]]
                    data = data["matrix"]
            else:
                data = [[float(v) for v in line.replace(",", " ").split()] for line in text.splitlines() if line.strip()]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"design file {str(path)!r}: malformed ({e})") from None
        return cls.from_matrix(data, anchors=anchors, name=path.name)

    # -- views ---------------------------------------------------------------------------------
    @property
    def matrix(self) -> torch.Tensor:
        """M as a float tensor of shape (J, |A|)."""
        import torch

        return torch.tensor(self.rows, dtype=torch.float32).reshape(len(self.rows), len(self.anchors))

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def num_units(self) -> int:
        return len(self.rows)

    @property
    def num_sizes(self) -> int:
        return len({s for s, _ in self.anchors})

    @property
    def num_ratios(self) -> int:
        return len({r for _, r in self.anchors})

    @property
    def is_general(self) -> bool:
        return not self.rows

    def rebuild(self, anchors: Sequence[tuple[int, int]]) -> "Design":
        """The same design for another anchor order (a preset is re-parsed; a custom M is permuted)."""
        anchors = tuple((int(s), int(r)) for s, r in anchors)
        if anchors == self.anchors:
            return self
        if _NAME.match(self.name):
            return Design.parse(self.name, anchors=anchors, ratios=self.ratios)
        if sorted(anchors) != sorted(self.anchors):
            raise ValueError(f"design {self.name!r}: built for anchors {list(self.anchors)}, not {list(anchors)}")
        perm = [self.anchors.index(a) for a in anchors]
        return Design(self.name, anchors, tuple(tuple(row[i] for i in perm) for row in self.rows), self.ratios)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "num_sizes": self.num_sizes,
            "num_ratios": self.num_ratios,
            "anchors": [list(a) for a in self.anchors],
            "matrix": [list(r) for r in self.rows],
        }

    def table(self) -> str:
        """M as text: rows = units R1..RJ, columns = anchors labelled s<size>r<ratio>."""
        labels = [f"s{s}r{r}" for s, r in self.anchors]
        width = max(len(x) for x in labels)
        head = " " * 4 + " ".join(x.rjust(width) for x in labels)
        lines = [f"{self.name}  ({self.num_anchors} anchors: {self.num_sizes} sizes x {self.num_ratios} ratios, "
                 f"{self.num_units} units)", head]
        for j, row in enumerate(self.rows):
            cells = " ".join(f"{v:g}".rjust(width) for v in row)
            lines.append(f"R{j + 1}".ljust(4) + cells)
        if not self.rows:
            lines.append("    (no units: the general head)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()



def _middle_units(spec: str, kind: str, anchors: tuple[tuple[int, int], ...],
                  rv: tuple[float, ...] | None) -> tuple[list[tuple[int, ...]], int, str]:
    """The middle level of a design name (Table I): (rows of M, how many units the name must give,
    what they are per). ``As``: one unit per size; ``S``: one per aspect ratio; ``AsS``: both; ``Or``:
    vertical and horizontal anchors (needs ``rv``, the h/w of each ratio index)."""
    sizes = sorted({s for s, _ in anchors})
    ratio_ids = sorted({r for _, r in anchors})
    if kind == "As":
        return [tuple(int(s == i) for s, _ in anchors) for i in sizes], len(sizes), "sizes"
    if kind == "S":
        return [tuple(int(r == i) for _, r in anchors) for i in ratio_ids], len(ratio_ids), "aspect ratios"
    if kind == "AsS":
        rows = [tuple(int(s == i) for s, _ in anchors) for i in sizes]
        rows += [tuple(int(r == i) for _, r in anchors) for i in ratio_ids]
        return rows, len(sizes) + len(ratio_ids), "sizes + aspect ratios"
    if rv is None:  # Or
        raise ValueError(f"design {spec!r}: 'Or' needs the h/w value of each ratio index (ratios=...)")
    rows = [tuple(int(rv[r] > 1 + 1e-6) for _, r in anchors), tuple(int(rv[r] < 1 - 1e-6) for _, r in anchors)]
    if not all(any(row) for row in rows):
        raise ValueError(f"design {spec!r}: 'Or' needs anchors with h/w > 1 and with h/w < 1, ratios are {rv}")
    return rows, 2, "orientations (vertical, horizontal)"

def _ratios(ratios: Sequence[float] | None, ratio_ids: list[int]) -> tuple[float, ...] | None:
    """The h / w value of every ratio index, defaulting to the paper's when there are three."""
    if ratios is None:
        if len(ratio_ids) == len(PAPER_RATIOS) and max(ratio_ids) < len(PAPER_RATIOS):
            return PAPER_RATIOS
        return None
    ratios = tuple(float(r) for r in ratios)
    if any(not math.isfinite(r) or r <= 0 for r in ratios) or max(ratio_ids) >= len(ratios):
        raise ValueError(f"ratios {ratios}: need a positive h/w value for every ratio index {ratio_ids}")
    return ratios


def split_names(text: str) -> list[str]:
    """``'9An{9,3}S, 9An{9}'`` -> ``['9An{9,3}S', '9An{9}']``: commas inside braces belong to a name."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]
