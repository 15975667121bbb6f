#!/usr/bin/env bash
# Choose the fine-tuning schedule of the pretrained SSDLite (ssdlite320_efficientnet_lite0) on a
# VALIDATION split carved from cards/train (a seeded 20 %: 237 train / 59 val images), never on cards/test.
# Candidates fit the recipe's budget (<= 15 min on 2 cores): the backbone frozen for 1000 steps
# (~0.7 s/step) or fine-tuned at backbone_lr_scale 0.1 / 0.03 for 600 steps (~1.25 s/step);
# AdamW lr 0.003, cosine, warm-up 50, batch 8, 320 px (the rest of cards-ssdlite). Resumable: a finished
# run (its last.ckpt) is skipped. Rows: docs/results/tune-finetune-cards.csv (val mAP every 100 steps).
# Rule: the highest val mAP at the run's last step gives the recipe's schedule (validation images only:
# cards/test is never read here).
# Usage: bash benchmarks/tune_finetune.sh [DATASET=cards] [OUT=runs/tune]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-cards}; out=${2:-runs/tune}
hh=.venv/bin/hierhead
run() {  # name steps backbone_lr_scale
  [ -f "$out/$data-$1/checkpoints/last.ckpt" ] && return 0
  $hh train --recipe cards-ssdlite --model ssdlite320_efficientnet_lite0 --data ../shared/datasets/$data/train \
    --out "$out/$data-$1" --max-steps "$2" --set optimizer.backbone_lr_scale="$3" --set data.val_fraction=0.2 \
    --set val_every_n_steps=100 --set progress=false 2>&1 | tail -1
}
run frozen-1000 1000 0
run bb0.1-600 600 0.1
run bb0.03-600 600 0.03
.venv/bin/python benchmarks/collect_tuning.py "$out" "$data" > docs/results/tune-finetune-$data.csv
cat docs/results/tune-finetune-$data.csv
