#!/bin/sh
# The whole CPU study of docs/results.md, resumable: run it again after any stop and it continues.
# Two sweep processes of one thread each share the 2 cores (1.2x the throughput of one 2-thread process);
# cards first, then microcontrollers (seeded 70/30 re-split: its shipped test split has 7 images).
# Then `.venv/bin/python benchmarks/collect_study.py` refreshes docs/results.md.
set -e
DATA=${DATA:-../shared/datasets}
run() {  # run NAME DATA [--set ...]
  name=$1; data=$2; shift 2
  for i in 0 1; do
    OMP_NUM_THREADS=1 .venv/bin/hierhead sweep --recipe cards-ssdlite --data "$data" --designs all --seeds 3 \
      --fractions 0.25,1,0.5 --out "runs/study/$name" --shard "$i/2" --set num_workers=1 --set progress=false \
      "$@" > "runs/study/$name.shard$i.log" 2>&1 &
    pids="$pids $!"
  done
  for p in $pids; do wait "$p" || { echo "$name: a shard failed, see runs/study/$name.shard*.log" >&2; exit 1; }; done
  pids=""
}
mkdir -p runs/study
.venv/bin/python benchmarks/collect_study.py --restore cards micro  # a fresh checkout has no runs/
run cards "$DATA/cards"
run micro "$DATA/microcontrollers" --set data.resplit=0.3
