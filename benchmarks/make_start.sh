#!/bin/sh
# The shared start of the head and fine-tune protocols (docs/results.md, issue 15): a general head
# (9An{9}) trained from scratch on the train split only, with the cards-ssdlite recipe for longer.
# Seeded: the same command recreates the same start, so checkpoints are never committed.
#   sh benchmarks/make_start.sh [cards|micro ...]     -> runs/start/NAME/checkpoints/last.ckpt
# A finished start is kept (the script skips it); a stopped one resumes.
set -e
DATA=${DATA:-../shared/datasets}
STEPS=${START_STEPS:-1000}
for name in ${@:-cards micro}; do
  case $name in
    cards) data="$DATA/cards"; extra="" ;;
    micro) data="$DATA/microcontrollers"; extra="--set data.resplit=0.3" ;;  # seeded 70/30 re-split
    *) echo "make_start.sh: unknown dataset $name (cards or micro)" >&2; exit 2 ;;
  esac
  out="runs/start/$name"
  [ -f "$out/done" ] && continue
  resume=""; [ -f "$out/checkpoints/last.ckpt" ] && resume="--resume"
  .venv/bin/hierhead train --recipe cards-ssdlite --data "$data" --design '9An{9}' --out "$out" \
    --set max_steps=$STEPS --set val_every_n_steps=250 --set checkpoint_every_n_steps=100 --set seed=0 \
    --set progress=false $extra $resume
  touch "$out/done"
done
