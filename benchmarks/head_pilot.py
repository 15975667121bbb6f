"""How the head protocol's schedule was chosen (docs/results.md): training loss only, never the test set.

For the general head (or each of ``--designs``; seed 0, the whole training split) and each optimiser x lr given, trains
``--steps`` steps from the shared start's cached features and prints the mean training loss of
every tenth of the run, the relative change over the last tenth (the convergence criterion) and
the seconds per run. The lr of each optimiser is the one with the lowest final training loss
(per design, when several are given: each design at its own lr).

    .venv/bin/python benchmarks/head_pilot.py --data ../shared/datasets/cards \
        --init runs/start/cards/checkpoints/last.ckpt --steps 300 adamw:0.0003,0.001,0.003 sgd:0.003,0.01,0.03
    .venv/bin/python benchmarks/head_pilot.py ... --designs '9An{9,3}S,9An{9,3,1}As' --steps 200 sgd:0.01,0.03,0.1
"""

from __future__ import annotations

import argparse
import json
import time

from hierhead.design import GENERAL, split_names
from hierhead.engine import parse_overrides, resolve
from hierhead.engine.head import HeadProtocol, head_model, pool_of, train_head


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--recipe", default="cards-ssdlite")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--designs", default=GENERAL, help="comma-separated designs (default: the general head)")
    p.add_argument("grid", nargs="+", help="NAME:LR,LR,...")
    args = p.parse_args()
    over = parse_overrides(args.set)
    config = resolve(args.recipe, {**over, "init": args.init, "data": {**over.get("data", {}), "path": args.data}})
    protocol = HeadProtocol(config, log=print)
    from hierhead.engine.data import fraction_indices
    pool = pool_of(protocol.views, fraction_indices(len(protocol.train), args.fraction, 0))
    h = config["head"]
    for design, item in ((d, g) for d in split_names(args.designs) for g in args.grid):
        name, _, lrs = item.partition(":")
        for lr in map(float, lrs.split(",")):
            model = head_model(protocol.start, design, 0)
            opt = {**h["optimizer"], "name": name, "lr": lr}
            t0 = time.perf_counter()
            r = train_head(model, protocol.views, pool, args.steps, int(h["batch_size"]), opt, h["schedule"], 0)
            seconds = time.perf_counter() - t0
            tenth = max(1, args.steps // 10)
            curve = [sum(r["losses"][i:i + tenth]) / tenth for i in range(0, args.steps - tenth + 1, tenth)]
            print(json.dumps({"design": design, "optimizer": name, "lr": lr, "steps": args.steps, "fraction": args.fraction,
                              "loss_per_tenth": [round(c, 3) for c in curve],
                              "last_tenth_change": round((r["loss"] - r["loss_before"]) / r["loss_before"], 4),
                              "seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
