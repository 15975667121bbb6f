#!/usr/bin/env bash
# The pretrained study of docs/results/plan-pretrained.md (issue 25), stage by stage, resumable: run it
# again after any stop (finished runs are skipped; on a fresh checkout the committed rows are restored
# first). Rows: docs/results/pretrained-STAGE.csv (benchmarks/collect_pretrained.py).
#   bash benchmarks/study_pretrained.sh STAGE [DATASET ...]      (datasets: cards micro)
# Stages (in the plan's order; the val-* stages score a 20 % holdout of the training split, never test):
#   val-settings  P1's lr x steps grid, the general head, seeds 0-2, 100 %
#   val-pilot     P1 at LR/STEPS: 9An{9}, 9An{9,3}As, 9An{9,3,1}S, seeds 0-4, 25 % and 100 % (sets SEEDS)
#   val-prior     the prior's anchor_l2 grid on 9An{9,3}As and the general head, seeds 0-2, 100 %
#   frozen        P1 on test: the six heads, SEEDS seeds, 25 % and 100 %
#   prior         P1 on test with @priorPRIOR: the five presets and the general head (the L2 control)
#   val-size      P2's size check: the general head, seed 0, 100 %, image_size 256 and 320 (holdout)
#   imagenet      P2 on test: 9An{9}, 9An{9,3}As, 9An{9,3,1}S, 9An{9,1}Both, seeds 0-9, 100 %, SIZE (256 or 320)
# env: LR, STEPS (P1's, from val-settings), SEEDS (from val-pilot), PRIOR (from val-prior), SIZE (from
#      val-size), SHARDS (2), THREADS (per shard; default 2 / SHARDS), P2_SHARDS (P2's processes, 1)
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$1; shift
sets=${*:-cards micro}
hh=.venv/bin/hierhead
PRESETS=('9An{9,1}Both' '9An{9,3}S' '9An{9,3}As' '9An{9,3,1}S' '9An{9,3,1}As')  # Table I's five
join() { local IFS=,; echo "$*"; }  # names -> the sweep's comma list (a name's braces hold commas of their own)
SHARDS=${SHARDS:-2}
mkdir -p runs/pretrained
.venv/bin/python benchmarks/collect_pretrained.py --restore "$stage"
. benchmarks/pretrained_data.sh  # dataset NAME -> data, recipe (the caller's locals)
sweep() {  # dataset folder-suffix designs seeds fractions lr steps [--set ...]
  local name=$1 suffix=$2 designs=$3 seeds=$4 fractions=$5 lr=$6 steps=$7; shift 7
  local data recipe
  dataset "$name"
  local out="runs/pretrained/$stage-$name$suffix"
  for ((i = 0; i < SHARDS; i++)); do  # 1-thread shards share the cores (one feature cache, made by each)
    OMP_NUM_THREADS=${THREADS:-$((2 / SHARDS > 0 ? 2 / SHARDS : 1))} $hh sweep --recipe $recipe --data $data --protocol frozen \
      --designs "$designs" --seeds "$seeds" --fractions "$fractions" --out "$out" --shard $i/$SHARDS \
      --set frozen.views=4 --set frozen.batch_size=16 --set frozen.optimizer.name=adamw --set frozen.optimizer.lr="$lr" \
      --set frozen.steps="$steps" --set frozen.schedule.name=cosine --set frozen.schedule.warmup_steps=50 \
      --set frozen.schedule.warmup_start_lr=0.00001 --set model_kwargs.frozen_stages=0 "$@" > "$out.shard$i.log" 2>&1 &
  done
  wait
  tail -n 3 "$out.shard0.log"
}
imagenet() {  # P2: dataset folder-suffix designs seeds [--set ...]; the plan's schedule (cards-ssdlite's round 1:
  # 600 steps, whole backbone at 0.1x; the recipe's later round-2 frozen_stages is pinned off);
  # P2_SHARDS processes (default 1, with torch's own thread count; 2: one thread each)
  local name=$1 suffix=$2 designs=$3 seeds=$4; shift 4
  local data recipe shards=${P2_SHARDS:-1}
  dataset "$name"
  local out="runs/pretrained/$stage-$name$suffix"
  for ((i = 0; i < shards; i++)); do
    ( [ "$shards" -gt 1 ] && export OMP_NUM_THREADS=$((2 / shards > 0 ? 2 / shards : 1))
      exec $hh sweep --recipe $recipe --data $data --protocol imagenet --designs "$designs" --seeds "$seeds" \
        --fractions 1 --out "$out" --shard $i/$shards --set progress=false --max-steps 600 \
        --set model_kwargs.frozen_stages=0 "$@" > "$out.shard$i.log" 2>&1 ) &
  done
  wait
  tail -n 3 "$out.shard0.log"
}
for name in $sets; do
  case $stage in
    val-settings)
      for lr in 0.001 0.003 0.01; do for steps in 500 1000; do
        sweep "$name" "-lr$lr-s$steps" '9An{9}' 3 1 "$lr" "$steps" --set data.holdout=0.2
      done; done ;;
    val-pilot) sweep "$name" "" '9An{9},9An{9,3}As,9An{9,3,1}S' 5 0.25,1 "$LR" "$STEPS" --set data.holdout=0.2 ;;
    val-prior) sweep "$name" "" '9An{9,3}As,9An{9,3}As@prior0.001,9An{9,3}As@prior0.01,9An{9,3}As@prior0.1,9An{9,3}As@prior1,9An{9}@prior0.001,9An{9}@prior0.01,9An{9}@prior0.1,9An{9}@prior1' \
                 3 1 "$LR" "$STEPS" --set data.holdout=0.2 ;;
    frozen) sweep "$name" "" "$(join "${PRESETS[@]}")" "$SEEDS" 1,0.25 "$LR" "$STEPS" ;;  # 100 % first: the decision column
    prior)  # the general head without prior is the frozen stage's run of the same seed: copied, not rerun
      for f in runs/pretrained/frozen-"$name"/runs/f*/9An_9/seed*/result.json; do
        [ -f "$f" ] || continue
        to=runs/pretrained/prior-"$name"/${f#runs/pretrained/frozen-"$name"/}
        [ -f "$to" ] || { mkdir -p "$(dirname "$to")"; cp "$f" "$to"; }
      done
      sweep "$name" "" "$(join "${PRESETS[@]/%/@prior$PRIOR}" "9An{9}@prior$PRIOR")" \
             "$SEEDS" 1,0.25 "$LR" "$STEPS" ;;
    val-size) for size in 256 320; do
        imagenet "$name" "-s$size" '9An{9}' 1 --set image_size=$size --set data.holdout=0.2
      done ;;
    imagenet) imagenet "$name" "" '9An{9,3}As,9An{9,3,1}S,9An{9,1}Both' 10 --set image_size="$SIZE" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
  .venv/bin/python benchmarks/collect_pretrained.py "$stage"
done
