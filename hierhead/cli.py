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
