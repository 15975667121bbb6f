#!/bin/sh
# The mechanism test of docs/results.md ("Mechanism: which sharing transfers"), resumable: a finished
# run (its results.csv) is skipped; each run's rows are copied to docs/results/mechanism-*.csv. Section III-A predicts a design helps a class on the anchor shapes
# it never had in training only if its units join those shapes to the trained ones: on `mode=ratio`
# data (each class trained at one aspect ratio) the `As` designs (units across the ratios of one size)
# should transfer and the `S` designs (units across the sizes of one ratio) should not; on `mode=size`
# data the reverse. Each run is `hierhead demo` (since 2026-12-02 every run from the shipped ImageNet
# backbone, frozen, extra blocks and head drawn from the seed: no trained start; SEEDS seeds, general head vs
# the design, scored on all test shapes and on each class's unseen ones). The rows of the one start trained
# from scratch (before 2026-12-02, runs/mech) are kept as docs/results/mechanism-scratch-*.csv.
#   SEEDS (10)   sh benchmarks/study_mechanism.sh
set -e
mkdir -p runs/mech-imagenet
SEEDS=${SEEDS:-10}
SPEC='classes=3,train=240,test=60,size=160,palette=class'
for mode in ratio size; do
  for design in '9An{9,3}As' '9An{9,3}S'; do
    name=$(echo "$mode-$design" | tr -d '{}' | tr ',' '-')
    out="runs/mech-imagenet/$name"
    if [ ! -f "$out/results.csv" ]; then
      .venv/bin/hierhead demo --out "$out" --seeds "$SEEDS" --design "$design" \
        --data "synthetic:mode=$mode,$SPEC" --no-progress > "runs/mech-imagenet/$name.log" 2>&1
    fi
    cp "$out/results.csv" "docs/results/mechanism-$name.csv"  # every (design, seed) row, committed
  done
done
