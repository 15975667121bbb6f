"""The pictures of train and eval show what their numbers say: the PR curves' AP is the AP printed, the
confusion matrix's counts are the matches; a short train and an eval write them; runs record their code."""

import numpy as np
import pytest
import torch

from hierhead.metrics import confusion_matrix, mean_ap, voc_ap


def det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def gt(boxes, labels, difficult=None):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
            "difficult": torch.tensor(difficult or [False] * len(labels))}


PREDS = [det([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 9, 9]], [0.9, 0.8, 0.7, 0.1], [1, 2, 1, 1]),
         det([[0, 0, 10, 10], [40, 40, 50, 50]], [0.6, 0.5], [2, 2])]
TARGETS = [gt([[0, 0, 10, 10], [20, 20, 30, 31], [70, 70, 80, 80]], [1, 1, 2]),
           gt([[0, 0, 10, 10], [40, 40, 50, 50]], [2, 1], [False, True])]


def test_confusion_matrix_counts_the_matches():
    m = confusion_matrix(PREDS, TARGETS, 3, score_threshold=0.25)
    # image 0: (1 on 1) match, (2 on a true 1) confusion, the 1 at 50,50 invented, the true 2 at 70,70 missed,
    # the 0.1 detection below the threshold; image 1: (2 on 2) match, the detection on a difficult box ignored
    expected = np.array([[0, 0, 1],
                         [1, 1, 0],
                         [0, 1, 1]])
    assert (m == expected).all(), m
    assert m[:, 1:].sum(0).tolist() == [2, 2]  # each column: the class's non-difficult boxes
    # at score 0 the 0.1 detection counts too: it overlaps a box already matched, so it is a false alarm
    assert confusion_matrix(PREDS, TARGETS, 3, score_threshold=0.0)[1, 0] == 2


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_pr_curves_give_the_printed_ap(tmp_path, metric):
    from hierhead.engine.pictures import plot_pr_curves
    from hierhead.metrics import voc_map

    printed = mean_ap(PREDS, TARGETS, metric, ["a", "b"])
    result = voc_map(PREDS, TARGETS, 3, use_07=metric == "voc07", class_names=["a", "b"], curves=True)
    curves = plot_pr_curves(result, tmp_path / "pr.png")
    assert (tmp_path / "pr.png").stat().st_size > 1000
    for name, (recall, precision) in curves.items():
        assert voc_ap(recall, precision, metric == "voc07") == pytest.approx(printed["AP"][name])
    assert set(curves) == {"a", "b"} and printed["AP"]["a"] > 0


def test_pr_curves_of_many_classes_get_distinct_colours_and_the_legend_beside_them(tmp_path, monkeypatch):
    """13 classes (chess): tab10 repeated its colours past 10, and the legend covered the curves."""
    import matplotlib.axes
    from PIL import Image

    from hierhead.engine.pictures import plot_pr_curves

    drawn, real = [], matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, *a, **k: drawn.append(k) or real(ax, *a, **k))
    names = [f"class{k}" for k in range(13)]
    result = {"metric": "voc07", "mAP": 0.5, "AP": dict.fromkeys(names, 0.5),
              "curves": {n: (np.array([0.5, 1.0]), np.array([1.0, 0.5])) for n in names}}
    plot_pr_curves(result, tmp_path / "pr.png")
    assert len({k["color"] for k in drawn}) == 13 and Image.open(tmp_path / "pr.png").size == (840, 520)


def test_write_pictures_on_a_dataset(tmp_path):
    from hierhead.data import open_dataset
    from hierhead.engine.pictures import write_pictures
    from tests.test_data import make_folder

    root = make_folder(tmp_path / "d", {"a": [("cat", (1, 2, 30, 40), False)], "b": [("dog", (5, 5, 40, 30), False)]})
    ds = open_dataset(root)
    preds = [det([[1, 2, 30, 40]], [0.9], [1]), det([[5, 5, 40, 30], [0, 0, 8, 8]], [0.8, 0.4], [1, 2])]
    drawn = write_pictures(tmp_path / "out", preds, [ds.target(i) for i in range(2)], ds, ds.classes)
    assert [p.split("/")[-1] for p in drawn["paths"]] == ["PR_curve.png", "confusion_matrix.png", "val_predictions.jpg"]
    assert all((tmp_path / "out" / p).stat().st_size > 1000 for p in ("PR_curve.png", "confusion_matrix.png"))
    assert drawn["drawn"] == 3  # every detection scoring >= 0.25
    # a: cat on cat; b: cat predicted on the dog, and a dog invented at 0,0
    assert drawn["matrix"].tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 0]]


def test_results_png_from_metrics_csv(tmp_path):
    from hierhead.engine.pictures import plot_results

    (tmp_path / "metrics.csv").write_text("epoch,lr-AdamW,step,train/loss,train/classification,val/mAP\n"
                                          ",0.001,0,,,\n0,,0,5.0,3.0,\n0,,1,4.0,2.5,\n0,,1,,,0.25\n")
    drawn = plot_results(tmp_path / "metrics.csv", tmp_path / "results.png")
    assert drawn["train/loss"] == ([0, 1], [5.0, 4.0]) and drawn["val/mAP"] == ([1], [0.25])
    assert drawn["lr-AdamW"] == ([0], [0.001]) and (tmp_path / "results.png").stat().st_size > 1000


def test_provenance_names_the_commit_of_a_checkout():
    import subprocess
    from pathlib import Path

    from hierhead import __version__
    from hierhead.provenance import provenance

    p = provenance()
    here = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert p["version"] == __version__
    assert p["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
