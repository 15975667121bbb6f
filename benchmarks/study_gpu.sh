#!/bin/bash
# The cards sweep on one GPU within a fixed wall-clock budget (docs/results.md, "GPU").
# P sweep shards share the GPU. A short probe (P runs of the general head, PROBE_STEPS steps each,
# concurrently) measures the steps per second that one shard gets (from the logged images/s, warm-up
# excluded) and the start-up + evaluation time of a run; the sweep's schedule (max_steps,
# the same for every run) is then sized so that ceil(jobs / P) waves of runs fit the time left.
# Whatever finished by the deadline is summarised and packed into $OUT (the device tool's folder) or OUTDIR.
#   DATA=.gpudata/cards bash benchmarks/study_gpu.sh          # the dataset copied into an ignored folder
#   STEPS=900 RUNS=runs/study-gpu-900 DATA=.gpudata/cards bash benchmarks/study_gpu.sh   # a fixed schedule, no probe
set -u
START=$(date +%s)
BUDGET=${BUDGET:-540}            # seconds for the whole script
P=${P:-9}                        # concurrent sweep shards
PROBE_STEPS=${PROBE_STEPS:-60}
MIN_STEPS=${MIN_STEPS:-500}      # never shorter than the CPU recipe
MAX_STEPS=${MAX_STEPS:-5000}
DATA=${DATA:-.gpudata/cards}
DESIGNS=${DESIGNS:-all}
SEEDS=${SEEDS:-3}
FRACTIONS=${FRACTIONS:-1}
WORKERS=${WORKERS:-1}
RUNS=${RUNS:-runs/study-gpu}
DEST=${OUT:-${OUTDIR:-runs/study-gpu-out}}
HH="python3 -m hierhead"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$RUNS" "$DEST"
now() { echo $(( $(date +%s) - START )); }
. "$(dirname "$0")/deadline.sh"
shards() {  # shards OUTDIR EXTRA...: P concurrent sweep shards, killed at the deadline
  local dir=$1; shift
  local pids=""
  for i in $(seq 0 $((P - 1))); do
    $HH sweep --recipe cards-ssdlite --data "$DATA" --out "$dir" --shard "$i/$P" \
      --set num_workers="$WORKERS" --set progress=false "$@" > "$dir.shard$i.log" 2>&1 &
    pids="$pids $!"
  done
  wait_or_stop $((BUDGET - 25)) $pids
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
python3 -c "import torch, torchvision, lightning; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"

# 1. probe: P general-head runs of PROBE_STEPS steps at once (skipped when STEPS is given)
if [ -z "${STEPS:-}" ]; then
shards "$RUNS/probe" --designs '9An{9}' --seeds "$P" --fractions 1 --max-steps "$PROBE_STEPS" \
  --set checkpoint_every_n_steps=100000
PROBE_WALL=$(now)
read -r RATE OVERHEAD < <(python3 - "$RUNS/probe" "$PROBE_STEPS" "$PROBE_WALL" <<'EOF'
import csv, pathlib, statistics, sys, yaml
# the steady rate: the logged images/s (one GPU) after the first 20 steps (start-up and CUDA warm-up excluded)
rates = []
for run in pathlib.Path(sys.argv[1]).glob("runs/*/*/*"):
    if not (run / "result.json").is_file():
        continue
    batch = yaml.safe_load((run / "config.yaml").read_text())["batch_size"]
    img_s = [float(r["train/device/samples_per_sec"]) for r in csv.DictReader(open(run / "logs" / "metrics.csv"))
             if r.get("train/device/samples_per_sec") and int(r["step"]) >= 20]
    if img_s:
        rates.append(statistics.median(img_s) / batch)
if not rates:
    print("0 0"); sys.exit()
rate = statistics.median(rates)
print(f"{rate:.3f} {max(0.0, float(sys.argv[3]) - int(sys.argv[2]) / rate):.1f}")
EOF
)
echo "probe: $P runs at once, ${RATE} steps/s each, ${OVERHEAD} s of start and evaluation per run ($(now) s so far)"
if [ "$RATE" = "0" ]; then tail -30 "$RUNS"/probe.shard0.log; exit 1; fi
fi

# 2. the sweep, sized to the time left
JOBS=$(python3 -c "from hierhead.design import split_names; from hierhead.engine.sweep import jobs
print(len(jobs('all' if '$DESIGNS' == 'all' else split_names('$DESIGNS'), $SEEDS, [float(f) for f in '$FRACTIONS'.split(',')])))")
WAVES=$(( (JOBS + P - 1) / P ))
[ -n "${STEPS:-}" ] || STEPS=$(python3 -c "
left = $BUDGET - $(now) - 40
per_run = left / $WAVES - $OVERHEAD
s = int(0.85 * $RATE * per_run / 100) * 100
print(max($MIN_STEPS, min($MAX_STEPS, s)))")
echo "sweep: $JOBS runs in $WAVES waves of $P, max_steps=$STEPS ($(now) s so far)"
shards "$RUNS/cards" --designs "$DESIGNS" --seeds "$SEEDS" --fractions "$FRACTIONS" --max-steps "$STEPS" \
  --set checkpoint_every_n_steps=100000
echo "finished runs: $(ls "$RUNS"/cards/runs/*/*/*/result.json 2>/dev/null | wc -l) of $JOBS at $(now) s"

# 3. pack what finished (no checkpoints)
python3 -c "from hierhead.engine.sweep import summarise; summarise('$RUNS/cards')" || true
cp "$RUNS"/cards/results.* "$DEST"/ 2>/dev/null
tar czf "$DEST/study-gpu.tar.gz" --exclude='*.ckpt' --exclude='tensorboard' "$RUNS" 2>/dev/null
cat "$RUNS"/cards/results.md 2>/dev/null
echo "done at $(now) s"
