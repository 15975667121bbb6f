#!/bin/sh
# The anchor-transfer study of docs/results.md (resumable: run it again to continue).
# Each class is trained at one aspect ratio only (mode=ratio) or at all shapes (mode=all, the control);
# the demo's data and recipe (synthetic-ssdlite: 160-pixel SSDLite, batch 16), STEPS per run, seeds 0..SEEDS-1.
# PALETTE=class gives each class its own colours (an easier task); runs go to runs/study/transfer-class-s$STEPS-*.
# UNIT_LR=0.25 trains the units at a quarter of the lr (optimizer.unit_lr_scale); the name gets -unitlr0.25.
set -e
STEPS=${STEPS:-300}
SEEDS=${SEEDS:-3}
PALETTE=${PALETTE:-random}
UNIT_LR=${UNIT_LR:-1}
NAME=transfer-s$STEPS
[ "$PALETTE" = random ] || NAME=transfer-$PALETTE-s$STEPS
[ "$UNIT_LR" = 1 ] || NAME=$NAME-unitlr$UNIT_LR
OUT=${OUT:-runs/study/$NAME}
.venv/bin/python benchmarks/collect_study.py --restore "$NAME-ratio" "$NAME-all"  # fresh checkout
for N in $(seq 1 "$SEEDS"); do  # seed by seed, so that every mode has as many seeds as possible
  for MODE in ratio all; do
    .venv/bin/hierhead sweep --recipe synthetic-ssdlite \
      --data "synthetic:mode=$MODE,classes=3,train=240,test=60,size=160,palette=$PALETTE" \
      --designs '9An{9,3,1}As' --seeds "$N" --max-steps "$STEPS" --out "$OUT-$MODE" --set num_workers=1 --set progress=false \
      --set "optimizer.unit_lr_scale=$UNIT_LR"
  done
done
