#!/usr/bin/env bash
# The rest of the pretrained study (docs/results/plan-pretrained.md) in the plan's order, one command a
# session; resumable (finished runs are skipped, committed rows restored first):
#   nohup bash benchmarks/study_pretrained_rest.sh > /tmp/study.log 2>&1 &
# then, before a stop: kill it (pkill -f '[s]tudy_pretrained'; pkill -f 'hierhead sweep'), collect the rows
# (.venv/bin/python benchmarks/collect_pretrained.py frozen prior val-size imagenet) and commit them.
# frozen, prior, then val-size, per dataset: cards and micro in two chains of one one-thread process each
# (P1: about a minute a run, 50-58 s of training: 2026-12-02), so a dataset that finishes a stage first goes
# on to its next instead of leaving a core idle (each dataset's prior stage needs only its own frozen general
# head; its val-size runs only its own holdout, one run at a time); then imagenet at the size val-size's rule
# picks from both datasets (P2_SHARDS processes).
set -euo pipefail
cd "$(dirname "$0")/.."
# the plan's picks, each printed by its rule: analyse_pretrained.py settings (LR, STEPS), seeds (SEEDS), prior (PRIOR)
export LR=0.01 STEPS=500 SEEDS=30 PRIOR=0.1 SHARDS=1 THREADS=1
# P2 as two one-thread processes: 1.18x the training steps per second of one two-thread process (docs/benchmarks.md)
export P2_SHARDS=2
chain() { for stage in frozen prior val-size; do bash benchmarks/study_pretrained.sh $stage "$1"; done; }
chain cards & a=$!
chain micro & b=$!
wait $a; wait $b
SIZE=$(.venv/bin/python benchmarks/analyse_pretrained.py size | sed -n 's/.*-> SIZE=//p')
[ -n "$SIZE" ] || { echo "val-size: the rule picked no size" >&2; exit 1; }
echo "P2 image_size: $SIZE (val-size's rule)"
SIZE=$SIZE bash benchmarks/study_pretrained.sh imagenet
