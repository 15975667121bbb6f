"""The ``hierhead`` command line: parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .design import PRESETS, Design, paper_order, torchvision_order

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

    run()
    return 0


def _open(args: argparse.Namespace):
    from .data import open_dataset

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    return open_dataset(args.data, format=args.format, classes=classes, skip_bad=args.skip_bad)


def _stats(args: argparse.Namespace) -> int:
    from .data.stats import format_stats, plot_shapes, table_two

    ds = _open(args)
    size = args.image_size or None
    s = table_two(ds, size)
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    if args.plot:
        anchors = None
        if args.model:
            from .anchors import pixel_shapes
            from .models import build
            from .models.convert import _generator

            anchors = pixel_shapes(_generator(build(args.model, num_classes=2, design=None)), size or 300)
        path = plot_shapes(ds, args.plot, size, anchors, title=f"{ds.name}" + (f" vs {args.model} anchors" if args.model else ""))
        print(f"plot written to {path}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_predictions
    from .metrics import format_table, to_json

    ds = _open(args)
    result = evaluate_predictions(ds, args.predictions, args.metric)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            f.write(to_json(result))
    return 0


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from .data import FORMATS

    p.add_argument("--data", required=True, help="dataset folder (or COCO .json file)")
    p.add_argument("--format", choices=list(FORMATS), help="dataset format (guessed when omitted)")
    p.add_argument("--classes", help="comma-separated class list (default: from the dataset, sorted)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad files / boxes instead of failing")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hierhead", description="Hierarchical detection heads (Agarwal & Jurie 2021).")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("designs", help="list preset designs or print one design's matrix M",
                       epilog=EPILOG_DESIGNS, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("name", nargs="?", help="a design name such as '9An{9,3,1}As' or a .json/.txt file with M")
    d.add_argument("--sizes", type=int, default=3, help="anchor sizes per location (default 3)")
    d.add_argument("--ratios", type=int, default=3, help="aspect ratios per location (default 3)")
    d.add_argument("--order", choices=["torchvision", "paper"], default="torchvision",
                   help="anchor order inside a location: torchvision (size fastest) or paper (ratio fastest)")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=_designs)
    st = sub.add_parser("stats", help="dataset statistics as in the paper's Table II",
                        epilog="examples:\n  hierhead stats --data ../shared/datasets/cards/train\n"
                               "  hierhead stats --data DIR --image-size 512 --json\n"
                               "  hierhead stats --data DIR --plot shapes.png --model ssd300_vgg16",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(st)
    st.add_argument("--image-size", type=int, default=300, help="resize to this square size first (0: keep)")
    st.add_argument("--json", action="store_true", help="print JSON (includes 'classes')")
    st.add_argument("--plot", help="write a PNG of box width/height (log axes)")
    st.add_argument("--model", help="overlay this model's anchor shapes on the plot")
    st.set_defaults(func=_stats)
    ev = sub.add_parser("eval", help="evaluate a COCO-results predictions file (VOC07 / VOC12 / COCO)",
                        epilog="examples:\n  hierhead eval --data DIR --predictions preds.json --metric voc07\n"
                               "  hierhead eval --data instances.json --predictions preds.json --metric coco "
                               "--json out.json\n\nimage_id: the file stem (COCO: the dataset's id); category_id: "
                               "1 + class index (COCO: the dataset's id).",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_args(ev)
    ev.add_argument("--predictions", required=True, help="COCO results JSON: image_id, category_id, bbox, score")
    ev.add_argument("--metric", choices=["voc07", "voc12", "coco"], default="voc07")
    ev.add_argument("--json", help="write the result as JSON here")
    ev.set_defaults(func=_eval)
    demo = sub.add_parser("demo", help="show the presets and prove folding exact on a real detector")
    demo.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"hierhead {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hierhead {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for users; HIERHEAD_DEBUG=1 shows the traceback
        if os.environ.get("HIERHEAD_DEBUG"):
            raise
        print(f"hierhead {args.command}: internal error: {type(e).__name__}: {e} (HIERHEAD_DEBUG=1 for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
