"""``hierhead demo``: does the hierarchical head help? Anchor-transfer data, every run from ImageNet, CPU minutes.

The demo is a packaged study plan (``OUT/plan.yaml``: :func:`hierhead.study.sweep.sweep_plan`, run by the study
runner, resumable, one row per run in ``OUT/rows.csv``) plus its fold check and pictures:

1. The frozen-backbone protocol (:mod:`hierhead.study.protocols`, ``frozen``): the ImageNet
   EfficientNet-Lite0 that ships with hierhead, frozen; its features of every training image
   computed once. There is no trained start: every run starts from the same ImageNet weights
   (the file's checksum is pinned by a test), so no result hangs on a start that differs between
   machines (the earlier demo trained one from scratch, and its sign flipped between machines).
2. The anchor-transfer split (``mode=ratio``: each class seen in training at one aspect ratio
   only, tested at all): for each seed, the extra blocks and the head are drawn from that seed
   (the same draw for both heads, the units at 0) and trained on the cached features, so the
   paired difference measures the design alone. Section III-A's mechanism predicts the
   hierarchical head wins on the shapes a class was never trained at (the "unseen shapes"
   score, where seen shapes are marked difficult), scored from each run's kept test detections.
3. The mean paired difference with its 95 % t interval over the seeds and the verdict of every study
   (:func:`hierhead.comparison.decide`), whatever it says; the folded model's detections checked identical,
   parameters and latency at deploy; a picture of general vs hierarchical detections on the same test images
   and per-class AP with intervals.
"""

from __future__ import annotations

import statistics
import textwrap
import time
from pathlib import Path

import torch

from .comparison import decide, interval_text, paired_interval
from .design import GENERAL
from .engine.infer import drawn_boxes, run_model
from .metrics import mean_ap
from .models import fold
from .models.deploy import match_fraction

__all__ = ["run"]

DATA = "synthetic:mode=ratio,classes=3,train=240,test=60,size=160,palette=class"
#: What class c was trained at in each synthetic mode: c mod 3 indexes SIZES / PAPER_RATIOS (1, 1/2, 2 as h / w).
TRAINED_AT = {"ratio": ("aspect ratio", ("square", "wide", "tall")), "size": ("size", ("small", "medium", "large"))}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _latency(model: torch.nn.Module, image: torch.Tensor, repeats: int = 7) -> float:
    run_model(model, [image])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_model(model, [image])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _verdict(diffs: list[float]) -> str:
    """The verdict of every study (:func:`hierhead.comparison.decide`, one comparison) in words."""
    if len(diffs) < 2:
        return "one seed: no interval"
    v = decide({"design": diffs})["design"]
    if v["verdict"] in ("better", "worse"):
        return f"the hierarchical head is {v['verdict']}"
    return f"no detectable difference (the interval excludes effects beyond {max(-v['low'], v['high']):.1f} points)"


MODEL = "ssdlite320_efficientnet_lite0"  # its ImageNet weights ship with hierhead


def run(out: str | Path = "hierhead-demo", design: str = "9An{9,3,1}As", seeds: int = 5, steps: int = 300,
        data: str = DATA, image_size: int = 160, progress: bool = True, log=None) -> dict:
    """Run the demo; returns its numbers (the table is also written to ``out/results.md``).

    Args:
        out: output folder (the plan and its rows, pictures, ``results.md``, every run's scores in ``results.csv``).
        design: the hierarchical design compared with the general head.
        seeds: seeds 0..seeds-1 (each draws the extra blocks and head, the same for both heads, and
            the batch order).
        steps: training steps of each run (extra blocks and head on the cached ImageNet features).
        data: the anchor-transfer dataset.
        image_size: square input size of the SSDLite.
        progress: each run's line as it ends.
        log: a function given each step's line and the table (e.g. ``print``); None: silent.
    """
    from .data.synthetic import parse_spec
    from .study.sweep import sweep_plan

    log = log or (lambda _: None)
    spec = parse_spec(data)  # a bad spec fails before any training
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails before any training
    t0 = time.perf_counter()
    # the demo's own settings, fixed with its rows (docs/results/demo.csv); the study's validated ones are the
    # `frozen` defaults
    settings = {"model": MODEL, "image_size": image_size, "num_workers": 0,
                "frozen": {"steps": steps, "views": 2, "batch_size": 32, "optimizer": {"lr": 0.003},
                           "schedule": {"warmup_steps": 20}, "keep": True}}
    plan = sweep_plan("synthetic-ssdlite", data, [design], seeds, (1.0,), out, settings, protocol="frozen",
                      name="demo", question="Does the hierarchical head transfer to the shapes a class never had in "
                                            "training? (hierhead demo)", stage="rows")
    log(f"1/3 the ImageNet backbone ({MODEL}, frozen): features of 2 views of every training image of {data} "
        f"({_split_text(spec['mode'])}), cached once")
    log(f"2/3 {GENERAL} vs {design}, {seeds} seeds, each run from ImageNet: the extra blocks and head drawn "
        f"from the seed (the same for both), {steps} steps on the cached features (the plan: {plan.path})")
    results, models, unseen = _head_runs(plan, design, progress, log)
    log(f"3/3 fold, check and draw ({time.perf_counter() - t0:.0f} s so far)")
    general, hier = models[GENERAL], models[design]
    images = [unseen[i][0] for i in range(min(8, len(unseen)))]
    deployed = _deploy(general, hier, images)
    table = _table(results, design, deployed)
    log("\n" + table)
    classes = unseen.classes
    plot = _plot_ap(results, (GENERAL, design), classes, class_labels(spec["mode"], classes), _split_text(spec["mode"]),
                    out / "per_class_ap.png")
    side = _side_by_side(general, hier, _with_unseen(unseen, 4), classes, (GENERAL, design), out / "side_by_side.png")
    (out / "results.md").write_text(table + "\n")
    _write_rows(results, classes, out / "results.csv")
    log(f"\npictures: {side} (same test images, seed 0), {plot}; table in {out / 'results.md'}, "
        f"every run's scores in {out / 'results.csv'} (study rows: {out / 'rows.csv'}); "
        f"{time.perf_counter() - t0:.0f} s in all")
    return {"mAP": _means(results, "mAP"), "unseen": _means(results, "unseen"),
            "diff": paired_interval(_diffs(results, design, "mAP")), "same_detections": deployed["same"],
            "params": deployed["params"], "latency": deployed["latency"]}


def _head_runs(plan, design: str, progress: bool, log):
    """Step 2: the plan's runs (both heads at every seed on the same cached features), then each run's kept test
    detections scored on all shapes (per-class AP) and on unseen ones. Returns per-design rows (mAP, per-class
    AP, mAP on unseen shapes; in %), the seed-0 models, and the test set with the shapes each class was trained
    at marked difficult (:func:`unseen_only`)."""
    from .data.synthetic import open_synthetic, unseen_only
    from .study.protocols import kept
    from .study.runner import run as run_plan

    # in this process, with torch's threads (the machine's cores): thread counts change float sums, so runs of
    # one seed repeat exactly only at the same count; the rows record it
    failed = run_plan(plan, workers=0, threads=torch.get_num_threads(), log=log if progress else (lambda _: None))
    if failed:
        raise RuntimeError(f"{failed} demo run(s) failed; their lines above name why (rerun to resume)")
    train_set, test_set = open_synthetic(plan.datasets[0].root)
    unseen = unseen_only(train_set, test_set)
    targets = [test_set.target(i) for i in range(len(test_set))]
    unseen_targets = [unseen.target(i) for i in range(len(unseen))]
    results: dict[str, list[dict]] = {GENERAL: [], design: []}
    models: dict[str, torch.nn.Module] = {}
    for job in plan.jobs():  # seed by seed, the general head first
        model, detections = kept(plan.runs / job.key)
        scores = mean_ap(detections, targets, "voc07", train_set.classes)
        hidden = mean_ap(detections, unseen_targets, "voc07", train_set.classes)
        results[job.arm].append({"mAP": scores["mAP"] * 100, "AP": {c: v * 100 for c, v in scores["AP"].items()},
                                 "unseen": hidden["mAP"] * 100})
        if job.seed == 0:
            models[job.arm] = model
    return results, models, unseen


def _with_unseen(unseen, n: int) -> list:
    """The first ``n`` test images holding an object at a shape its class never had in training (the
    first images if too few do), each with its target."""
    hold = [i for i in range(len(unseen)) if not bool(unseen.target(i)["difficult"].all())]
    picks = (hold + [i for i in range(len(unseen)) if i not in hold])[:n]
    return [unseen[i] for i in picks]


def _deploy(general: torch.nn.Module, hier: torch.nn.Module, images: list) -> dict:
    """Step 3: the folded model detects what the hierarchical one does; parameters and latency."""
    folded = fold(hier).eval()
    a, b = run_model(hier, images), run_model(folded, images)
    same = all(match_fraction(*[(d["boxes"], d["scores"], d["labels"]) for d in (x, y)]) == 1.0 for x, y in zip(a, b))
    return {"same": same, "params": {"general": _count(general), "train": _count(hier), "folded": _count(folded)},
            "latency": {"general": _latency(general, images[0]), "folded": _latency(folded, images[0])}}


def _write_rows(results: dict, classes: list[str], path: Path) -> None:
    """One row per (design, seed): mAP on all shapes and on unseen ones, each class's AP (%), and the code
    that ran (hierhead's version and git commit)."""
    import csv

    from .provenance import row_provenance

    code = row_provenance()

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["design", "seed", "mAP", "unseen_mAP", *(f"AP:{c}" for c in classes), "version", "commit"])
        for design, rows in results.items():
            for seed, r in enumerate(rows):
                w.writerow([design, seed, r["mAP"], r["unseen"], *(r["AP"][c] for c in classes), code["version"], code["commit"]])


def _means(results: dict, key: str) -> dict[str, float]:
    return {d: statistics.mean(r[key] for r in rows) for d, rows in results.items()}


def _diffs(results: dict, design: str, key: str) -> list[float]:
    """hierarchical - general, paired by seed."""
    return [h[key] - g[key] for g, h in zip(results[GENERAL], results[design])]


def _table(results: dict, design: str, deployed: dict) -> str:
    mean, unseen = _means(results, "mAP"), _means(results, "unseen")
    diffs, diffs_unseen = _diffs(results, design, "mAP"), _diffs(results, design, "unseen")
    params, latency = deployed["params"], deployed["latency"]
    return "\n".join([
        f"Frozen ImageNet backbone, every run from ImageNet, {len(results[GENERAL])} seeds, VOC07 mAP (%) on all test "
        "shapes and on the shapes each class "
        "was never trained at; difference = hierarchical - general, paired by seed, with its 95 % t interval.", "",
        "| head | mAP all shapes | mAP unseen shapes | parameters (train) | parameters (deploy) | latency (ms) |",
        "|---|---|---|---|---|---|",
        f"| general {GENERAL} | {mean[GENERAL]:.2f} | {unseen[GENERAL]:.2f} | {params['general']:,} | "
        f"{params['general']:,} | {latency['general'] * 1e3:.0f} |",
        f"| hierarchical {design} (folded) | {mean[design]:.2f} | {unseen[design]:.2f} | {params['train']:,} | "
        f"{params['folded']:,} | {latency['folded'] * 1e3:.0f} |",
        f"| difference | {interval_text(diffs)} | {interval_text(diffs_unseen)} | | | |", "",
        f"All shapes: {_verdict(diffs)}. Unseen shapes: {_verdict(diffs_unseen)}.",
        f"Folded detections identical to the hierarchical model's: {deployed['same']}. At deploy the hierarchical "
        "head costs nothing: the same parameters and the same latency as the general head.",
    ])


def _split_text(mode: str) -> str:
    return f"each class trained at one {TRAINED_AT[mode][0]}, tested at all" if mode in TRAINED_AT else \
        "every class trained and tested at every shape"


def class_labels(mode: str, classes: list[str]) -> list[str]:
    """Each class's name and what synthetic data of ``mode`` trained it at (``ratio``: its aspect
    ratio, ``size``: its size, ``all``: the name alone)."""
    if mode not in TRAINED_AT:
        return list(classes)
    return [f"{c}\n(trained {TRAINED_AT[mode][1][i % 3]} only)" for i, c in enumerate(classes)]


def _plot_ap(results: dict, designs: tuple[str, str], classes: list[str], labels: list[str], split: str,
             path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.38
    for k, d in enumerate(designs):
        means, errs = [], []
        for c in classes:
            vals = [r["AP"][c] for r in results[d]]
            m, lo, hi = paired_interval(vals)  # the t interval of the mean over seeds
            means.append(m)
            errs.append(0.0 if len(vals) < 2 else (hi - lo) / 2)
        ax.bar([i + (k - 0.5) * width for i in range(len(classes))], means, width, yerr=errs, capsize=3,
               label=f"{d}: mAP {statistics.mean(r['mAP'] for r in results[d]):.1f}")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("AP (%) on all shapes, 95 % interval")
    title = f"Frozen ImageNet backbone, {len(results[designs[0]])} seeds: {split}"
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=10)  # a long split description stays inside
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: How the side-by-side picture draws each kind of box: edge colour, line style, label colour.
STYLE = {"seen": ("limegreen", "--", "black"), "unseen": ("orange", "--", "black"), "detection": ("red", "-", "white")}


def panel_items(det: dict, target: dict, classes: list[str], score: float = 0.3, top: int = 6) -> list[dict]:
    """What one panel of the side-by-side picture draws: every ground-truth box, ``unseen`` where its
    class never had its shape in training (``target["difficult"]`` False in :func:`unseen_only`'s
    split, which marks the seen ones difficult) and ``seen`` otherwise, then the detections scoring at
    least ``score`` (best ``top``), each with its label text."""
    def name(label: int) -> str:
        return classes[label - 1] if 1 <= label <= len(classes) else str(label)

    items = [{"kind": "seen" if bool(hard) else "unseen", "box": [float(v) for v in box], "text": name(int(label))}
             for box, label, hard in zip(target["boxes"].tolist(), target["labels"].tolist(),
                                         target["difficult"].tolist())]
    for i in drawn_boxes(det["scores"], score, top).tolist():
        items.append({"kind": "detection", "box": det["boxes"][i].tolist(),
                      "text": f"{name(int(det['labels'][i]))} {float(det['scores'][i]):.2f}"})
    return items


def _side_by_side(general, hier, samples, classes, names, path: Path, score: float = 0.3) -> Path:
    """One row per head, one column per test image (``samples``: (image, target) of the unseen-shapes
    split): the ground truth dashed (green: a shape the class was trained at; orange: one it never had,
    what the "unseen shapes" score measures) and the detections scoring at least ``score`` (best 6) in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = [image for image, _ in samples]
    fig, axes = plt.subplots(2, len(images), figsize=(3.4 * len(images), 7.4), squeeze=False)
    for row, (model, name) in enumerate(zip((general, hier), names)):
        for col, ((image, target), det) in enumerate(zip(samples, run_model(model, images))):
            ax = axes[row][col]
            ax.imshow(image.permute(1, 2, 0).numpy())
            for item in panel_items(det, target, classes, score):
                edge, style, ink = STYLE[item["kind"]]
                x1, y1, x2, y2 = item["box"]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=edge, linestyle=style,
                                       linewidth=2.0))
                truth = item["kind"] != "detection"
                right = x1 > image.shape[-1] / 2  # a label in the right half ends at its box's right edge
                below = truth or y1 < image.shape[-2] / 10  # a detection's label above it, unless at the top
                ax.text(x2 if right else x1, y2 if truth else y1,
                        item["text"] + (" (unseen shape)" if item["kind"] == "unseen" else ""), color=ink,
                        fontsize=9, va="top" if below else "bottom", ha="right" if right else "left", clip_on=True,
                        bbox={"facecolor": edge, "alpha": 0.8, "pad": 1.5, "linewidth": 0})
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(("general " if row == 0 else "hierarchical ") + name, fontsize=11)
    fig.suptitle(f"Same test images, seed 0. Red: detections scoring >= {score}. Dashed ground truth: green at a "
                 "shape the class was trained at,\norange at a shape it never had in training (what the "
                 "'unseen shapes' mAP scores).", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
