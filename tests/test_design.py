import json

import pytest
import torch

from hierhead.design import PRESETS, Design, paper_order, torchvision_order

# Table I, in the paper's anchor order (ratio varying fastest)
TABLE_I = {
    "9An{9,3,1}S": [[1] * 9, [1, 0, 0] * 3, [0, 1, 0] * 3, [0, 0, 1] * 3],
    "9An{9,1}Both": [[1] * 9],
    "9An{9,3}As": [[1, 1, 1] + [0] * 6, [0] * 3 + [1, 1, 1] + [0] * 3, [0] * 6 + [1, 1, 1]],
    "9An{9,3}S": [[1, 0, 0] * 3, [0, 1, 0] * 3, [0, 0, 1] * 3],
    "9An{9,3,1}As": [[1] * 9, [1, 1, 1] + [0] * 6, [0] * 3 + [1, 1, 1] + [0] * 3, [0] * 6 + [1, 1, 1]],
}


@pytest.mark.parametrize("name", sorted(TABLE_I))
def test_table_one_in_paper_order(name):
    d = Design.parse(name, anchors=paper_order(3, 3))
    assert d.matrix.tolist() == [[float(v) for v in r] for r in TABLE_I[name]]


def test_general_head_has_no_units():
    d = Design.parse("9An{9}")
    assert d.num_units == 0 and d.matrix.shape == (0, 9) and d.is_general


@pytest.mark.parametrize("name", PRESETS)
def test_torchvision_order_is_a_permutation_of_the_paper(name):
    tv = Design.parse(name, anchors=torchvision_order(3, 3))
    pp = Design.parse(name, anchors=paper_order(3, 3))
    perm = [paper_order(3, 3).index(a) for a in torchvision_order(3, 3)]
    assert torch.equal(tv.matrix, pp.matrix[:, perm])
    # semantics: every As unit joins one size, every S unit one ratio
    for row in tv.rows:
        joined = [a for a, v in zip(tv.anchors, row) if v]
        if name.endswith("As") and len(joined) == 3:
            assert len({s for s, _ in joined}) == 1 and len({r for _, r in joined}) == 3
        if name.endswith("S") and not name.endswith("As") and len(joined) == 3:
            assert len({r for _, r in joined}) == 1 and len({s for s, _ in joined}) == 3


def test_general_grid_twelve_anchors():
    d = Design.parse("12An{12,4,1}As", num_sizes=4, num_ratios=3)
    assert d.matrix.shape == (5, 12) and d.matrix.sum().item() == 12 + 12
    d = Design.parse("12An{12,3}S", num_sizes=4, num_ratios=3)
    assert d.matrix.shape == (3, 12) and torch.all(d.matrix.sum(1) == 4)


def test_beyond_table_one():
    both = Design.parse("9An{9,6,1}AsS")
    assert both.num_units == 7 and torch.all(both.matrix.sum(0) == 3)
    orient = Design.parse("9An{9,2}Or")  # torchvision order, ratios (1, 0.5, 2) as h/w
    vertical = [a for a, v in zip(orient.anchors, orient.rows[0]) if v]
    horizontal = [a for a, v in zip(orient.anchors, orient.rows[1]) if v]
    assert {r for _, r in vertical} == {2} and {r for _, r in horizontal} == {1}
    assert orient.matrix.sum().item() == 6  # square anchors join no orientation unit


def test_custom_matrix_from_list_and_files(tmp_path):
    m = [[1, 1, 0, 0], [0, 0, 1, 1]]
    d = Design.from_matrix(m, anchors=torchvision_order(2, 2))
    assert d.matrix.tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    (tmp_path / "m.json").write_text(json.dumps({"matrix": m}))
    (tmp_path / "m.txt").write_text("1 1 0 0\n0 0 1 1\n")
    for f in ("m.json", "m.txt"):
        loaded = Design.parse(str(tmp_path / f), num_sizes=2, num_ratios=2)
        assert torch.equal(loaded.matrix, d.matrix)


def test_rebuild_follows_the_anchor_order():
    d = Design.parse("9An{9,3}As", anchors=paper_order(3, 3))
    again = d.rebuild(torchvision_order(3, 3))
    assert torch.equal(again.matrix, Design.parse("9An{9,3}As").matrix)
    custom = Design.from_matrix(TABLE_I["9An{9,3}As"], anchors=paper_order(3, 3))
    assert torch.equal(custom.rebuild(torchvision_order(3, 3)).matrix, again.matrix)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("9An{9,2}As", "3 sizes, so the middle level of 'As' must have 3 units"),
        ("9An{9,4,1}S", "3 aspect ratios, so the middle level of 'S' must have 3 units"),
        ("8An{8,3}S", "these anchors number 9 per location"),
        ("9An{8}", "these anchors number 9 per location"),
        ("9An{9,2}Both", "'Both' has exactly one global unit"),
        ("9An{9,3,2}As", "at most one middle level and a global level of 1 unit"),
        ("9An{9,3}", "units need a sharing type"),
        ("9An{9}As", "needs a unit count"),
        ("nine anchors", "not a design name"),
    ],
)
def test_bad_names(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{")):
        Design.parse(spec)


@pytest.mark.parametrize(
    "matrix, message",
    [
        ([[1, 0, 0, 0], [0, 0, 0, 0]], "unit R2 is joined to no anchor"),
        ([[1, 2, 0, 0]], "holds 2; entries must be 0 or 1"),
        ([[1, 0.5, 0, 0]], "holds 0.5; entries must be 0 or 1"),
        ([[1, 1, 1]], "row 0 of M has 3 entries, expected one per anchor \\(4\\)"),
    ],
)
def test_bad_matrices(matrix, message):
    with pytest.raises(ValueError, match=message):
        Design.from_matrix(matrix, anchors=torchvision_order(2, 2))


def test_bad_file(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        Design.parse(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*malformed"):
        Design.parse(str(tmp_path / "bad.json"))


def test_table_labels_units_and_anchors():
    text = str(Design.parse("9An{9,3,1}As"))
    lines = text.splitlines()
    assert lines[1].split() == [f"s{s}r{r}" for s, r in torchvision_order(3, 3)]
    assert [ln.split()[0] for ln in lines[2:]] == ["R1", "R2", "R3", "R4"]


def test_design_is_immutable():
    d = Design.parse("9An{9,1}Both")
    with pytest.raises(AttributeError):
        d.name = "x"
    d.matrix[0, 0] = 5  # a copy: the design is unchanged
    assert d.matrix[0, 0] == 1
