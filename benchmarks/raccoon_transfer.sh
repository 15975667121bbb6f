#!/usr/bin/env bash
# Does the pretrained default carry over to a domain nobody tuned on? raccoon (160 train / 40 test web
# photos, 1 class; kept out of all tuning) with the built-in defaults (no --recipe: the pretrained
# EfficientNet-Lite0 SSDLite, backbone at 0.1 x lr, 600 steps) against the same detector from scratch
# at the same 600 steps (pretrained_backbone=false, every layer at the lr: the from-scratch recipe's
# form). One run each, seed 0; VOC07 mAP of the last checkpoint on raccoon/test. Resumable: a finished
# run is skipped. Rows: docs/results/pretrained-default-raccoon.csv.
# Usage: bash benchmarks/raccoon_transfer.sh [OUT=runs/raccoon]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/raccoon}; data=../shared/datasets/raccoon
hh=.venv/bin/hierhead
run() {  # name backbone extra...
  local name=$1 backbone=$2; shift 2
  if [ ! -f "$out/$name/checkpoints/last.ckpt" ]; then
    $hh train --data $data --out "$out/$name" --set progress=false "$@" | tail -1
  fi
  map=$($hh eval --checkpoint "$out/$name/checkpoints/last.ckpt" --data $data/test | tail -1 | awk '{print $NF}')
  echo "raccoon,$name,$backbone,600,160,$map" >> "$out/rows.csv"
}
rm -f "$out/rows.csv"; mkdir -p "$out"
run default imagenet
run scratch scratch --set pretrained_backbone=false --set optimizer.backbone_lr_scale=1
{ echo "dataset,run,backbone,steps,train_images,mAP"; cat "$out/rows.csv"; } > docs/results/pretrained-default-raccoon.csv
cat docs/results/pretrained-default-raccoon.csv
