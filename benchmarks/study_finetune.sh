#!/bin/sh
# The fine-tune protocol study of docs/results.md (issue 15), resumable: run it again after any stop.
#   sh benchmarks/study_finetune.sh [cards|micro]
# Every design starts from the shared start (benchmarks/make_start.sh; units at 0, so every design
# starts as the same function) and the whole detector is fine-tuned: STEPS steps (100) of the
# cards-ssdlite recipe at a third of its lr (AdamW 0.001, cosine, 10 warm-up steps; not tuned),
# SEEDS seeds (5), the whole training split; DESIGNS: the general head and the recipe's design.
# ~4 min per run on 2 cores (two 1-thread shards). Then benchmarks/collect_study.py.
set -e
SEEDS=${SEEDS:-5}
STEPS=${STEPS:-100}
DATA=${DATA:-../shared/datasets}
DESIGNS=${DESIGNS:-'9An{9,3,1}S'}
mkdir -p runs/study
for name in ${@:-cards}; do
  .venv/bin/python benchmarks/collect_study.py --restore "finetune-$name"
  sh benchmarks/make_start.sh "$name"
  case $name in
    cards) data="$DATA/cards"; extra="" ;;
    micro) data="$DATA/microcontrollers"; extra="--set data.resplit=0.3" ;;
  esac
  for i in 0 1; do
    OMP_NUM_THREADS=1 .venv/bin/hierhead sweep --recipe cards-ssdlite --data "$data" --protocol finetune \
      --init "runs/start/$name/checkpoints/last.ckpt" --designs "$DESIGNS" --seeds "$SEEDS" --fractions 1 \
      --out "runs/study/finetune-$name" --set max_steps=$STEPS --set optimizer.lr=0.001 \
      --set schedule.warmup_steps=10 --set num_workers=1 --shard $i/2 $extra \
      > "runs/study/finetune-$name.shard$i.log" 2>&1 &
  done
  wait
done
