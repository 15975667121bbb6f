#!/bin/sh
# The head-protocol study of docs/results.md (issue 15), resumable: run it again after any stop.
#   sh benchmarks/study_head.sh [cards|micro] [adamw|sgd|rmsprop]     (default: cards micro, adamw)
# Makes the shared start when it is missing (benchmarks/make_start.sh), then one sweep folder per
# (dataset, optimiser) under runs/study/head-DATASET-OPTIMISER: the general head, the 5 Table I
# designs in the paper's form and with optimizer.unit_lr_scale=auto (@auto), the general head at 3x
# the lr (@lr3, a control for the units' extra step size), SEEDS seeds, 25 % and
# 100 % of the training split. The features are cached once per dataset in $HIERHEAD_CACHE
# (~3.2 GiB for cards). Then `.venv/bin/python benchmarks/collect_study.py` refreshes docs/results.md.
# Learning rates: benchmarks/head_pilot.py (lowest final training loss of the general head).
set -e
#   env: SEEDS (10), FRACTIONS (0.25,1), DESIGNS (below), LR (the optimiser's lr from the pilot)
SEEDS=${SEEDS:-10}
FRACTIONS=${FRACTIONS:-0.25,1}
DATA=${DATA:-../shared/datasets}
ALL='9An{9,1}Both,9An{9,3}S,9An{9,3}As,9An{9,3,1}S,9An{9,3,1}As'
ALL="$ALL,9An{9,1}Both@auto,9An{9,3}S@auto,9An{9,3}As@auto,9An{9,3,1}S@auto,9An{9,3,1}As@auto"
ALL="$ALL,9An{9}@lr3"  # control: the general head at 3x the lr (the units' extra step size, up to 3x)
DESIGNS=${DESIGNS:-$ALL}
sets=${1:-cards micro}
opts=${2:-adamw}
lr_of() { [ -n "$LR" ] && { echo "$LR"; return; }; case $1 in adamw) echo 0.003 ;; sgd) echo 0.03 ;; rmsprop) echo 0.001 ;; esac; }
mkdir -p runs/study
.venv/bin/python benchmarks/collect_study.py --restore $(for s in $sets; do for o in $opts; do echo head-$s-$o; done; done)
for name in $sets; do
  sh benchmarks/make_start.sh "$name"
  case $name in
    cards) data="$DATA/cards"; extra="" ;;
    micro) data="$DATA/microcontrollers"; extra="--set data.resplit=0.3" ;;
  esac
  for opt in $opts; do
    for i in 0 1; do  # two 1-thread shards share the 2 cores (1.2x one 2-thread process)
    OMP_NUM_THREADS=1 .venv/bin/hierhead sweep --recipe cards-ssdlite --data "$data" --protocol head \
      --init "runs/start/$name/checkpoints/last.ckpt" --designs "$DESIGNS" --seeds "$SEEDS" --fractions "$FRACTIONS" \
      --out "runs/study/head-$name-$opt" --set head.optimizer.name=$opt --set head.optimizer.lr=$(lr_of $opt) \
      --shard $i/2 $extra > "runs/study/head-$name-$opt.shard$i.log" 2>&1 &
    done
    wait
  done
done
