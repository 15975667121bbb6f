#!/bin/sh
# The anchor-transfer study of docs/results.md (resumable: run it again to continue).
# Each class is trained at one aspect ratio only (mode=ratio) or at all shapes (mode=all, the control).
set -e
STEPS=${STEPS:-150}
SEEDS=${SEEDS:-2}
for N in $(seq 1 "$SEEDS"); do  # seed by seed, so that every mode has as many seeds as possible
  for MODE in ratio all; do
    .venv/bin/hierhead sweep --recipe cards-ssdlite --data "synthetic:mode=$MODE,classes=3,train=240,test=60" \
      --designs '9An{9,3,1}As' --seeds "$N" --max-steps "$STEPS" --out "runs/study/transfer-$MODE" \
      --set augment.iou_crop=false --set augment.photometric=false --set schedule.warmup_steps=20 \
      --set progress=false
  done
done
