"""The ``hierhead`` command line: parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

from .design import PRESETS, Design, paper_order, split_names, torchvision_order

EPILOG_DESIGNS = """examples:
  hierhead designs                          # list the presets (Table I)
  hierhead designs '9An{9,3,1}As'           # print M, anchors in torchvision's order
  hierhead designs '9An{9,3}S' --order paper --json
  hierhead designs '12An{12,4,1}As' --sizes 4 --ratios 3
"""


def _designs(args: argparse.Namespace) -> int:
    order = paper_order if args.order == "paper" else torchvision_order
    anchors = order(args.sizes, args.ratios)
    names = [args.name] if args.name else list(PRESETS)
    designs = [Design.parse(n, anchors=anchors) for n in names]
    if args.json:
        out = [d.to_dict() for d in designs]
        print(json.dumps(out[0] if args.name else out))
    elif args.name:
        print(designs[0].table())
    else:
        for d in designs:
            print(f"{d.name:16s} {d.num_units} units")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    keys = ("design", "seeds", "steps", "data", "image_size")
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    r = run(args.out, progress=not args.no_progress, log=lambda line: print(line, flush=True),
            **given)  # defaults live in hierhead.demo.run
    return 0 if r["same_detections"] else 1


def _sweep(args: argparse.Namespace) -> int:
    from .engine import parse_overrides
    from .study.sweep import sweep

    designs = "all" if args.designs == "all" else split_names(args.designs)
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError:
        raise ValueError(f"--fractions {args.fractions!r}: expected comma-separated numbers in (0, 1], "
                         "e.g. 0.25,0.5,1") from None
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers}: 0 (runs one after another in this process) or more")
    over = parse_overrides(args.set or [])
    if args.max_steps is not None:
        over["max_steps"] = args.max_steps
    rows, failed = sweep(args.recipe, args.data, designs, args.seeds, fractions, args.out, over,
                         protocol=args.protocol, init=args.init, workers=args.workers, threads=args.threads,
                         log=lambda m: print(m, flush=True))
    out = Path(args.out)
    print(f"{len(rows)} runs; results.csv, results.md and results.png in {args.out} (the plan: {out / 'plan.yaml'})")
    print((out / "results.md").read_text() if rows else "")
    return 1 if failed else 0


def _recommend(args: argparse.Namespace) -> int:
    from .models import input_size
    from .recommend import recommend

    size = input_size(args.model)  # an unknown model fails before the dataset is read
    r = recommend(_open(args), size)
    print(f"{r['design']}\n{r['reason']}")
    from .recommend import AGREEMENT, EVIDENCE, shown

    from .engine import resolve
    from .engine.from_config import backbone_weights

    data = shlex.quote(str(args.data))
    if backbone_weights(resolve(None, {"model": args.model})):  # ImageNet weights ship: every run from them
        # the whole detector fine-tuned, the protocol of the model you ship: the frozen one ranked the designs in
        # reverse on our rows (docs/research.md), so it is not offered as a screen
        cost = "about 20 min a run at 320 px on one CPU thread, minutes on a GPU"
        how = (f"  hierhead sweep --data {data} --set model={args.model} --protocol imagenet "
               f"--designs '{r['design']}' --seeds 10 --out runs/designs-imagenet")
    else:  # no shipped weights: the head protocol, from a general head trained once
        cost = "a sweep of the head protocol takes minutes"
        how = (f"  hierhead train --data {data} --model {args.model} --design '9An{{9}}' --out runs/start\n"
               f"  hierhead sweep --data {data} --set model={args.model} --protocol head "
               f"--init runs/start/checkpoints/last.ckpt --designs '{r['design']}' --seeds 10 --out runs/head")
    print(f"This is the paper's heuristic, not a measurement. {shown(AGREEMENT)}\n{shown(EVIDENCE)}\nCompare on your data (the "
          f"sweep always runs the general head 9An{{9}} too; {cost}):\n{how}")
    return 0


def _class_list(text: str | None) -> list[str] | None:
    """``--classes a,b,c`` -> ["a", "b", "c"] (None when not given); empty or repeated names are errors."""
    if not text:
        return None
    names = [c.strip() for c in text.split(",")]
    if "" in names or len(set(names)) != len(names):
        raise ValueError(f"--classes {text!r}: expected distinct, non-empty comma-separated names")
    return names


def _open(args: argparse.Namespace, classes=None, part: str = "train"):
    """The dataset of ``--data``. ``classes``: a checkpoint's class list, which labels its outputs:
    ``--classes`` may then only repeat it (in any order), never reorder or rename its labels."""
    from .data import open_dataset

    given = _class_list(getattr(args, "classes", None))
    if given and classes and sorted(given) != sorted(classes):
        raise ValueError(f"--classes {','.join(given)}: the checkpoint was trained on {','.join(classes)}; "
                         f"its labels follow that list (omit --classes)")
    return open_dataset(args.data, format=args.format, classes=classes or given, skip_bad=args.skip_bad, part=part,
                        split=getattr(args, "split", None))


def _read(ds) -> str:
    """What a command read, for its closing line: the images, where, which split."""
    split = getattr(ds, "split", None)
    return f"{len(ds)} images of {ds.name}" + (f" (split {split})" if split else "")


def _never_over_inputs(flag: str, out: str | Path, inputs: list, dataset=None) -> None:
    """A command never writes over or into its own inputs: ``out`` (a file it writes, or its output folder)
    may not be an input file, lie inside an input folder, or lie in a folder holding the dataset's images
    (a plot written there would become a dataset image). One rule for every command; nothing is written."""
    target = Path(out).resolve()
    sources = [Path(str(p)).resolve() for p in inputs if p and not str(p).startswith("synthetic:")]
    if dataset is not None:
        sources += sorted({r.image_path.resolve().parent for r in dataset.records})
    for source in sources:
        if target == source or source in target.parents or (source.is_file() and target in source.parents):
            raise ValueError(f"{flag} {str(out)!r}: would write over or into this command's input {str(source)!r} "
                             f"(inputs are never replaced); choose a path outside it")


def _stats(args: argparse.Namespace) -> int:
    from .data.stats import format_stats, plot_shapes, table_two

    ds = _open(args)
    if args.plot:
        _never_over_inputs("--plot", args.plot, [args.data], ds)
        _not_over("--plot", [Path(args.plot)], args.overwrite)
    if args.image_size is None:  # the model's own input size (an SSDLite's 320), else the paper's SSD300
        from .models import input_size
        args.image_size = (input_size(args.model) if args.model else None) or 300
    size = args.image_size or None
    s = table_two(ds, size)
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    print(f"hierhead stats: {_read(ds)}", file=sys.stderr)
    if args.plot:
        anchors = None
        if args.model:
            from .anchors import pixel_shapes
            from .models.builders import paper_anchors

            anchors = pixel_shapes(paper_anchors(args.model), size or 300)  # no detector built for its anchors
        path = plot_shapes(ds, args.plot, size, anchors, title=f"{ds.name}" + (f" vs {args.model} anchors" if args.model else ""))
        print(f"plot written to {path}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .predictions import mean_ap_of_file
    from .metrics import format_table, to_json

    detections: list = []
    if args.checkpoint:
        from .engine.infer import mean_ap_of_model

        model, spec = _checkpoint(args.checkpoint)
        ds = _open(args, spec.classes, "test")
        out = _eval_outputs(args, ds)
        result = mean_ap_of_model(model, ds, args.metric, detections=detections)
    elif args.predictions:
        ds = _open(args, None, "test")
        out = _eval_outputs(args, ds)
        result = mean_ap_of_file(ds, args.predictions, args.metric, detections=detections)
    else:
        raise ValueError("give --checkpoint CKPT (run the model) or --predictions FILE (COCO results)")
    print(f"hierhead eval: {_read(ds)}", file=sys.stderr)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            f.write(to_json(result))
    if out is not None:
        from .engine.pictures import write_pictures

        drawn = write_pictures(out, detections, [ds.target(i) for i in range(len(ds))], ds, ds.classes,
                               "voc12" if args.metric == "voc12" else "voc07")
        print(f"hierhead eval: pictures {', '.join(Path(p).name for p in drawn['paths'])} in {out}", file=sys.stderr)
    return 0


def _eval_outputs(args: argparse.Namespace, ds) -> Path | None:
    """Where eval draws its pictures: ``--out``, else a new folder beside its input (``RUN/eval-SPLIT`` of a
    checkpoint in ``RUN/checkpoints``, ``NAME-eval`` beside a predictions file), numbered so that no
    earlier eval's pictures are replaced; None with ``--no-plots``. Outputs never go into the inputs."""
    from .engine.pictures import PICTURES

    if args.json:
        _never_over_inputs("--json", args.json, [args.data, args.checkpoint, args.predictions], ds)
        _not_over("--json", [Path(args.json)], args.overwrite)
    if args.no_plots:
        return None
    if args.out:
        out = Path(args.out)
        _not_over("--out", [out / p for p in PICTURES], args.overwrite)
    else:
        source = Path(args.checkpoint or args.predictions)
        if args.checkpoint:
            run = source.parent.parent if source.parent.name == "checkpoints" else source.parent
            base = run / f"eval-{getattr(ds, 'split', None) or Path(str(args.data)).name}"
        else:
            base = source.parent / f"{source.stem}-eval"
        out = next(p for k in range(1, 10_000) if not (p := base if k == 1 else Path(f"{base}-{k}")).exists())
    _never_over_inputs("--out", out, [args.data, args.checkpoint, args.predictions], ds)
    return out


def _train(args: argparse.Namespace) -> int:
    from .engine import parse_overrides, resolve, train

    over = parse_overrides(args.set or [])
    flags = {"model": args.model, "design": args.design, "epochs": args.epochs, "max_steps": args.max_steps,
             "time": args.time, "batch_size": args.batch_size, "out": args.out, "seed": args.seed, "devices": args.devices,
             "num_nodes": args.num_nodes, "strategy": args.strategy, "accelerator": args.accelerator,
             "precision": args.precision, "num_workers": args.workers,
             "deterministic": True if args.deterministic else None,
             "backbone_weights": args.backbone_weights, "init": args.init}
    over.update({k: v for k, v in flags.items() if v is not None})
    if args.epochs is not None and args.max_steps is None:
        over["max_steps"] = None
    data = {"path": args.data, "format": args.format, "val": args.val, "fraction": args.fraction,
            "classes": _class_list(args.classes)}
    over["data"] = {**over.get("data", {}), **{k: v for k, v in data.items() if v is not None}}
    if args.skip_bad:
        over["data"]["skip_bad"] = True
    config = resolve(args.recipe, over)
    _never_over_inputs("--out", config["out"], [config["data"]["path"], config["data"].get("val"), config.get("init"),
                                                config.get("backbone_weights")])
    result = train(config, resume=args.resume, log=lambda line: print(line, flush=True))
    if result["rank"] != 0:  # under DDP every process returns here; one summary
        return 0
    mAP = f"{result['val_mAP'] * 100:.2f} %" if result["val_mAP"] is not None else "n/a"
    print(f"trained {result['steps']} step{'s' if result['steps'] != 1 else ''} of global batch {result['processes'] * result['batch_per_process']} "
          f"({result['processes']} process{'es' if result['processes'] > 1 else ''} x {result['batch_per_process']}); "
          f"val mAP {mAP}; last checkpoint {result['last']}"
          + (f"; best {result['best']}" if result["best"] else ""))
    return 0


def _checkpoint(path: str):
    from .engine import load_checkpoint

    return load_checkpoint(path)


def _not_over(flag: str, files: list[Path], overwrite: bool) -> None:
    """No command writes over a file it did not create now unless told to: the first existing one is named."""
    held = next((f for f in files if f.exists()), None)
    if held is not None and not overwrite:
        raise FileExistsError(f"{flag}: {str(held)!r} exists (from an earlier run?); give another {flag}, or "
                              f"--overwrite to replace it")


def _predict(args: argparse.Namespace) -> int:
    from .engine.infer import image_paths, predict

    _never_over_inputs("--out", args.out, [args.checkpoint, *args.images])  # drawings beside the images they
    model, spec = _checkpoint(args.checkpoint)                             # draw would be read as data
    out = Path(args.out)
    _not_over("--out", [out / "detections.json", *(out / f"{p.stem}.png" for p in image_paths(args.images))],
              args.overwrite)
    r = predict(model, args.images, args.out, spec.classes or [], args.score, max_boxes=args.max_boxes,
                skip_bad=args.skip_bad)
    top = f"{r['top_score']:.4f}" if r["top_score"] is not None else "none"
    print(f"{r['images']} annotated images ({r['boxes_drawn']} boxes drawn at score >= {args.score:g}; top score "
          f"{top}) and detections.json ({r['detections']} detections, every score) in {r['out']}")
    if r["skipped"]:
        print(f"skipped {len(r['skipped'])} image(s) that cannot be decoded (--skip-bad): {', '.join(r['skipped'])}",
              file=sys.stderr)
    if r["ignored"]:  # counted by kind: a VOC folder's .xml beside its images is no surprise, a typo may be
        from collections import Counter

        kinds = Counter("subfolder" if Path(p).is_dir() else Path(p).suffix.lower() or "no suffix" for p in r["ignored"])
        print("not read (not images): " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), file=sys.stderr)
    return 0


def _fold(args: argparse.Namespace) -> int:
    from .models.deploy import DEPLOY_FILES, SNIPPET, save_folded

    targets = [Path(args.out) / name for name in DEPLOY_FILES]
    for target in targets:
        _never_over_inputs("--out", target, [args.checkpoint])
    _not_over("--out", targets, args.overwrite)
    model, spec = _checkpoint(args.checkpoint)
    folded = save_folded(model, args.out)
    print(f"folded {spec.model} ({spec.design}) -> stock torchvision weights in "
          f"{args.out}/model.safetensors (spec: model.json). Load it without hierhead:\n\n{SNIPPET}")
    count = [sum(p.numel() for p in m.parameters()) for m in (model, folded)]
    print(f"\nparameters: training {count[0]:,}, deployed {count[1]:,}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .models.deploy import export_onnx

    _never_over_inputs("--onnx", args.onnx, [args.checkpoint])
    _not_over("--onnx", [Path(args.onnx)], args.overwrite)
    model, spec = _checkpoint(args.checkpoint)
    size = spec.image_size or [args.image_size, args.image_size]
    r = export_onnx(model, args.onnx, tuple(size), check=not args.no_check)
    check = (f"checked with onnxruntime: prediction convs equal to {r['raw_error']:.0e} (relative), "
             f"{r['detections']} detections, {r['matched'] * 100:.0f} % identical"
             if r["checked"] else "not checked (--no-check, or onnxruntime missing)")
    print(f"exported the folded model to {r['onnx']}; {check}")
    return 0


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    from .data import FORMAT_NAMES

    p.add_argument("--data", required=required,
                   help="dataset root or folder, COCO .json or synthetic:...; of a root with splits, eval reads "
                        "the first of val|valid|validation|test, stats and recommend train (--split picks another)")
    p.add_argument("--split", help="the split of the root to read: train, val (valid), test, or any split it has")
    p.add_argument("--format", choices=FORMAT_NAMES, help="dataset format (guessed when omitted)")
    p.add_argument("--classes", help="comma-separated class list (default: from the dataset, sorted)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad files / boxes instead of failing")


EPILOG_TRAIN = """examples:
  hierhead train --recipe cards-ssdlite --data ../shared/datasets/cards --out runs/cards
  hierhead train --recipe cards-ssdlite --data ../shared/datasets/cards --design '9An{9}' --max-steps 200
  hierhead train --recipe voc-ssd300 --data VOCdevkit --set optimizer.lr=0.002 --devices 4 --precision 16-mixed
  hierhead train --recipe cards-ssdlite --data DIR --out runs/cards --resume      # continue runs/cards
  torchrun --nproc-per-node 4 $(which hierhead) train --recipe voc-ssd300 --data VOCdevkit --devices 4 --strategy ddp

--data: a dataset root (YOLO, COCO or VOC XML exports with train and val|valid|test splits; trains on
train, validates on the first of val|valid|validation|test), a VOC devkit (trainval/test), or any folder
(a seeded 10 % is held out); --val gives the validation set explicitly. Every recipe value
can be overridden with --set KEY=VALUE (dotted keys: optimizer.lr=0.01, augment.flip=false).
Recipes: """


def _add_train_parser(sub) -> None:
    from .engine.recipes import recipes

    t = sub.add_parser("train",
                       help="train a detector on your data (the general head; --design for a hierarchical one)",
                       epilog=EPILOG_TRAIN + ", ".join(recipes()), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(t, required=False)
    t.add_argument("--val", help="validation dataset (default: the dataset's own val/test split)")
    t.add_argument("--recipe", help="recipe name or YAML file (default: the built-in defaults)")
    t.add_argument("--model", help="model name (see hierhead.models.names())")
    t.add_argument("--design", help="head design, e.g. '9An{9,3,1}S' or '9An{9}' for the general head")
    t.add_argument("--epochs", type=int, help="train for this many epochs (instead of --max-steps)")
    t.add_argument("--max-steps", type=int, help="train for this many optimizer steps (default: the recipe's; "
                   "without --recipe, 16 passes over the training images and at least 600)")
    t.add_argument("--time", help="a wall-clock budget for training (15m, 900s, 1.5h, 1h30m): max-steps shortened "
                   "to what fits, the schedule finished there")
    t.add_argument("--batch-size", type=int,
                   help="images a training step (default: the recipe's; 8 in the built-in defaults)")
    t.add_argument("--fraction", type=float, help="train on a seeded fraction of the training images")
    t.add_argument("--out", help="run folder (checkpoints, logs, config.yaml)")
    t.add_argument("--seed", type=int, help="the run's seed: start draw, data order, augmentation (default 0)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    t.add_argument("--backbone-weights", help="local backbone state_dict (.pth / .safetensors)")
    t.add_argument("--init", metavar="CKPT", help="start from this trained model (a train checkpoint or a "
                   "models.save .safetensors of the same model and classes): any design starts as exactly its "
                   "function, the units at 0")
    t.add_argument("--devices", help="devices per node (int or 'auto')")
    t.add_argument("--num-nodes", type=int)
    t.add_argument("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, ...")
    t.add_argument("--accelerator", help="cpu, gpu, auto")
    t.add_argument("--precision", help="32-true, 16-mixed, bf16-mixed")
    t.add_argument("--workers", type=int, help="data loader workers")
    t.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible runs)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any recipe value")
    t.set_defaults(func=_train)


def _add_deploy_parsers(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    pr = sub.add_parser("predict", help="detect objects in images: annotated PNGs + COCO-results JSON",
                        epilog="examples:\n  hierhead predict --checkpoint runs/cards/checkpoints/best.ckpt "
                               "../shared/datasets/cards/test --out preds/", formatter_class=raw)
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--score", type=float, default=0.3, help="draw boxes scoring at least this (JSON has all)")
    pr.add_argument("--max-boxes", type=int, help="draw at most this many boxes per image, the best (default all)")
    pr.add_argument("--skip-bad", action="store_true", help="skip and count images that cannot be decoded")
    pr.add_argument("--overwrite", action="store_true", help="replace the drawings and detections.json of an earlier run")
    pr.set_defaults(func=_predict)
    fo = sub.add_parser("fold", help="fold the hierarchical head: stock torchvision weights + JSON spec",
                        epilog="examples:\n  hierhead fold --checkpoint runs/cards/checkpoints/best.ckpt --out deploy/",
                        formatter_class=raw)
    fo.add_argument("--checkpoint", required=True)
    fo.add_argument("--out", required=True, help="output folder")
    fo.add_argument("--overwrite", action="store_true", help="replace the files of an earlier fold there")
    fo.set_defaults(func=_fold)
    ex = sub.add_parser("export", help="export the folded model to ONNX (checked with onnxruntime if installed)",
                        epilog="examples:\n  hierhead export --checkpoint runs/cards/checkpoints/best.ckpt "
                               "--onnx cards.onnx", formatter_class=raw)
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--onnx", required=True, help="output .onnx file")
    ex.add_argument("--image-size", type=int, default=800, help="example input size (models without a fixed size)")
    ex.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --onnx file")
    ex.set_defaults(func=_export)


def _add_designs_parser(sub) -> None:
    """``hierhead designs``."""
    d = sub.add_parser("designs", help="list preset designs or print one design's matrix M",
                       epilog=EPILOG_DESIGNS, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("name", nargs="?", help="a design name such as '9An{9,3,1}As' or a .json/.txt file with M")
    d.add_argument("--sizes", type=int, default=3, help="anchor sizes per location (default 3)")
    d.add_argument("--ratios", type=int, default=3, help="aspect ratios per location (default 3)")
    d.add_argument("--order", choices=["torchvision", "paper"], default="torchvision",
                   help="anchor order inside a location: torchvision (size fastest) or paper (ratio fastest)")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=_designs)


def _add_stats_parser(sub) -> None:
    """``hierhead stats``."""
    st = sub.add_parser("stats", help="dataset statistics as in the paper's Table II",
                        epilog="examples:\n  hierhead stats --data ../shared/datasets/cards/train\n"
                               "  hierhead stats --data DIR --image-size 512 --json\n"
                               "  hierhead stats --data DIR --plot shapes.png --model ssd300_vgg16",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(st)
    st.add_argument("--image-size", type=int, help="resize to this square size first (0: keep; default: the "
                    "--model's input size, else 300)")
    st.add_argument("--json", action="store_true", help="print JSON (includes 'classes')")
    st.add_argument("--plot", help="write a PNG of box width/height (log axes)")
    st.add_argument("--model", help="overlay this model's anchor shapes on the plot")
    st.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    st.set_defaults(func=_stats)


def _add_eval_parser(sub) -> None:
    """``hierhead eval``."""
    ev = sub.add_parser("eval", help="evaluate a checkpoint or a COCO-results file (VOC07 / VOC12 / COCO)",
                        epilog="examples:\n  hierhead eval --checkpoint runs/cards/checkpoints/best.ckpt "
                               "--data ../shared/datasets/cards/test\n"
                               "  hierhead eval --data DIR --predictions preds.json --metric voc07\n"
                               "  hierhead eval --data instances.json --predictions preds.json --metric coco "
                               "--json out.json\n\nimage_id: the file stem (COCO: the dataset's id); category_id: "
                               "1 + class index (COCO: the dataset's id).",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(ev)
    ev.add_argument("--checkpoint", help="a hierhead train checkpoint: run it on the data")
    ev.add_argument("--predictions", help="COCO results JSON: image_id, category_id, bbox, score")
    ev.add_argument("--metric", choices=["voc07", "voc12", "coco"], default="voc07")
    ev.add_argument("--json", help="write the result as JSON here")
    ev.add_argument("--out", help="folder for the pictures (PR curves, confusion matrix, predictions); default "
                    "RUN/eval-SPLIT beside the checkpoint's run, or NAME-eval beside the predictions file")
    ev.add_argument("--no-plots", action="store_true", help="draw no pictures")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --json file or --out pictures")
    ev.set_defaults(func=_eval)


def _add_sweep_parser(sub) -> None:
    """``hierhead sweep``."""
    sw = sub.add_parser("sweep", help="train and evaluate designs x seeds x training-set fractions (resumable)",
                        epilog="examples:\n  hierhead sweep --data ../shared/datasets/cards --protocol imagenet "
                               "--designs '9An{9,3,1}S' --seeds 10 --workers 2 --threads 1 --out runs/designs-cards\n"
                               "  hierhead sweep --recipe cards-ssdlite --data ../shared/datasets/cards "
                               "--protocol frozen --designs all --seeds 10 --fractions 0.25,1 --out runs/frozen-cards\n"
                               "  hierhead sweep --recipe cards-ssdlite --data ../shared/datasets/cards "
                               "--designs all --seeds 3 --fractions 0.25,0.5,1 --out runs/sweep-cards\n"
                               "  hierhead sweep --recipe cards-ssdlite --data synthetic:mode=ratio "
                               "--designs '9An{9,3,1}As,9An{9,3}S' --seeds 2 --out runs/transfer\n"
                               "  hierhead sweep --recipe cards-ssdlite --data ../shared/datasets/cards --protocol head "
                               "--init runs/start/cards/checkpoints/last.ckpt --seeds 10 --fractions 0.25,1 "
                               "--out runs/head-cards\n\n"
                               "Run it again after a stop: finished runs are skipped, an unfinished one resumes.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("--recipe", help="recipe name or YAML file (default: the built-in defaults)")
    sw.add_argument("--data", required=True, help="dataset path or synthetic:...")
    sw.add_argument("--designs", default="all", help="'all' (Table I) or a comma-separated list; 9An{9} is always run")
    sw.add_argument("--seeds", type=int, default=3)
    sw.add_argument("--fractions", default="1.0", help="comma-separated fractions of the training set")
    sw.add_argument("--max-steps", type=int)
    sw.add_argument("--out", required=True)
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any recipe value")
    sw.add_argument("--protocol", choices=["scratch", "finetune", "head", "frozen", "imagenet"], default="scratch",
                    help="scratch: the recipe as it is (its own start: the ImageNet backbone where the model "
                         "ships one); finetune: the whole detector from --init; "
                         "head: only the prediction convs, on frozen features of --init cached once (seconds a run); "
                         "frozen: the ImageNet backbone frozen and cached, extra blocks and head drawn from each seed; "
                         "imagenet: the recipe from its ImageNet backbone (required), fine-tuned whole: the "
                         "paper's protocol and the model you ship (the frozen one ranked our designs in reverse)")
    sw.add_argument("--init", metavar="CKPT", help="the trained start of --protocol finetune / head")
    sw.add_argument("--workers", type=int, default=0, help="runs at once, each in its own process (0: one after "
                    "another in this one; e.g. 2 on 2 CPU cores with --threads 1, or several sharing a GPU)")
    sw.add_argument("--threads", type=int, help="CPU threads a run (default: all cores with --workers 0 or 1, "
                    "else 1)")
    sw.set_defaults(func=_sweep)


def _study(args: argparse.Namespace) -> int:
    from .study import load_plan

    wrong = (["--check"] if args.check else []) if args.action == "run" else \
        [f for f, given in (("--workers", args.workers != 1), ("--threads", args.threads is not None),
                            ("--dry-run", args.dry_run), ("--stop-after", args.stop_after)) if given]
    if wrong:
        raise ValueError(f"{wrong[0]} is an option of 'study {'report' if args.action == 'run' else 'run'}', "
                         f"not of 'study {args.action}'")
    plans = [load_plan(path) for path in args.plans]  # every plan checked before the first job runs
    if args.action == "run":
        import time

        from .engine.budget import parse_time
        from .provenance import uncommitted
        from .study.runner import run, run_queue

        say = lambda line: print(line, flush=True)  # noqa: E731
        stop_at = time.monotonic() + parse_time(args.stop_after) if args.stop_after else None  # the whole queue's
        for plan in plans:
            if state := uncommitted(plan.path):  # its rows would read as a registered plan's (sweeps, demos: no)
                say(f"{plan.name}: warning: {plan.path.name} is {state}: its rows will not follow a registered "
                    f"plan (commit it first)")
        if args.dry_run:
            return 1 if any([run(plan, args.workers, args.threads, dry_run=True, log=say) for plan in plans]) else 0
        paths = dict(zip(map(id, plans), args.plans))
        # one queue: a later plan's jobs start beside an earlier plan's last ones, so the cores never wait
        failed = run_queue(plans, args.workers, args.threads, log=say, stop_at=stop_at, ended=lambda plan: say(
            f"rows in {plan.rows}; tables: hierhead study report {paths[id(plan)]}"))
        return 1 if failed else 0
    from .study.report import write_report

    changed = [path for plan in plans for path in write_report(plan, check=args.check)]
    for path in changed:
        print(f"{'would change' if args.check else 'wrote'} {path}")
    return 1 if args.check and changed else 0


def _add_study_parser(sub) -> None:
    """``hierhead study``."""
    st = sub.add_parser("study", help="run a study plan (resumable, workers) or regenerate its report from the rows",
                        epilog="examples:\n  hierhead study run studies/defaults-rules.yaml --dry-run\n"
                               "  hierhead study run studies/defaults-rules.yaml --workers 2 --threads 1\n"
                               "  hierhead study run studies/defaults-rules.yaml studies/engine-speed.yaml --workers 2\n"
                               "  hierhead study report studies/defaults-rules.yaml --check\n\n"
                               "Run it again after a stop: jobs with rows are skipped, a killed one resumes.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("action", choices=["run", "report"])
    st.add_argument("plans", nargs="+", metavar="plan", help="the plan file (YAML; see hierhead/study/plan.py); "
                    "several: run as one queue (a later plan's jobs start beside an earlier one's last "
                    "ones) or reported one after another")
    st.add_argument("--workers", type=int, default=1, help="jobs at once, each in its own process (run; 0: one "
                    "after another in this process)")
    st.add_argument("--threads", type=int, help="CPU threads per job (run; default: the plan's)")
    st.add_argument("--dry-run", action="store_true", help="say what is pending, run nothing (run)")
    st.add_argument("--stop-after", metavar="TIME", help="stop after this long (8h, 90m; the whole queue): no job "
                    "starts after it and each running one saves its step, as on SIGTERM; the same command resumes "
                    "(run)")
    st.add_argument("--check", action="store_true", help="exit 1 if the report or a docs block is out of date "
                    "(report; nothing written)")
    st.set_defaults(func=_study)


def _add_recommend_parser(sub) -> None:
    """``hierhead recommend``."""
    rc = sub.add_parser("recommend", help="recommend a design from the dataset's Table II statistics",
                        epilog="examples:\n  hierhead recommend --data ../shared/datasets/cards/train "
                               "--model ssdlite320_mobilenet_v3", formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(rc)
    rc.add_argument("--model", default="ssd300_vgg16", help="the detector (its input size is used)")
    rc.set_defaults(func=_recommend)


def _add_demo_parser(sub) -> None:
    """``hierhead demo``."""
    demo = sub.add_parser("demo", help="does the head help? general vs hierarchical on anchor-transfer data, every "
                          "run from the ImageNet backbone (frozen), several seeds, with the interval; folded and compared", epilog="examples:\n  hierhead demo\n"
                          "  hierhead demo --seeds 10 --design '9An{9,3}As'", formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", default="hierhead-demo")
    demo.add_argument("--design", help="the hierarchical design (default 9An{9,3,1}As)")
    demo.add_argument("--seeds", type=int, help="paired seeds (default 5)")
    demo.add_argument("--steps", type=int, help="training steps of each run (default 300)")
    demo.add_argument("--data", help="default synthetic:mode=ratio,classes=3,train=240,test=60,size=160,palette=class")
    demo.add_argument("--image-size", type=int, help="square input size of the SSDLite (default 160)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hierhead", description="Train small object detectors on a CPU and ship them as "
                                "plain torchvision models; hierarchical detection heads (Agarwal & Jurie 2021).")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_designs_parser, _add_stats_parser, _add_eval_parser, _add_train_parser, _add_deploy_parsers,
                _add_sweep_parser, _add_study_parser, _add_recommend_parser, _add_demo_parser):
        add(sub)
    return p


def _quiet_libraries(command: str) -> None:
    """Hide library chatter that says nothing to a user (``--verbose`` shows it): :func:`quiet_libraries`, and
    the tracer's remarks on torchvision's code while exporting to ONNX (export checks the graph it writes)."""
    from .engine.quiet import quiet_libraries

    quiet_libraries()
    if command == "export":  # only export needs torch.jit; `hierhead designs` starts without torch
        from torch.jit import TracerWarning

        warnings.filterwarnings("ignore", category=TracerWarning)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    p.add_argument("--verbose", action="store_true", help="show library info lines and warnings")
    args = p.parse_args(argv)
    form = warnings.formatwarning
    with warnings.catch_warnings():  # restores the filters when main returns (and the format below)
        if not args.verbose:
            _quiet_libraries(args.command)
            warnings.formatwarning = lambda message, *_, **__: f"hierhead {args.command}: warning: {message}\n"
        try:
            return _run(args)
        finally:
            warnings.formatwarning = form


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except (ValueError, OSError, ArithmeticError) as e:  # bad input, files, a diverging run (non-finite loss)
        print(f"hierhead {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:
        print(f"hierhead {args.command}: error: out of memory ({e}); lower --batch-size", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:  # train (and a study) says at which step it stopped and what holds it
        print(f"hierhead {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return getattr(e, "code", 130)
    except Exception as e:  # one line for users; HIERHEAD_DEBUG=1 shows the traceback
        if type(e).__name__ == "TrainingStopped":  # SIGTERM: saved, resumable, and not a success
            print(f"hierhead {args.command}: {e}", file=sys.stderr)
            return 143
        if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
            print(f"hierhead {args.command}: error: GPU out of memory; lower --batch-size or use "
                  f"--precision 16-mixed ({str(e).splitlines()[0][:120]})", file=sys.stderr)
            return 3
        if os.environ.get("HIERHEAD_DEBUG"):
            raise
        print(f"hierhead {args.command}: internal error: {type(e).__name__}: {e} (HIERHEAD_DEBUG=1 for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
