#!/usr/bin/env bash
# Issue 41's GPU goal, prepared for a session that is lent a device (device `status`: can_start_another true):
# the engine against a plain fp32 / bf16 eager loop of the default detector on the GPU (images/s, interleaved
# rounds; benchmarks/train_throughput.py), once per precision, in one call.
#
# Here, once (wheels the device image lacks, and cards, into two git-ignored folders; about 60 MiB in all):
#   make device-carry
# There (the `device` tool's run, about 5 minutes of the 15):
#   run(command="bash benchmarks/device_check.sh", carry=[".whl", ".gpudata"], timeout_s=540)
# Its output comes back in $OUT (throughput-<precision>.txt, nvidia-smi.txt); commit the figures to
# docs/benchmarks.md with the device's name. Tried on the CPU first: DEVICE=cpu STEPS=6 ROUNDS=1 WHEELS=none
# OUT=/tmp/out PATH=.venv/bin:$PATH bash benchmarks/device_check.sh (the wheels are the device's Python 3.12's).
set -euo pipefail
OUT=${OUT:?a folder for the output}
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
(nvidia-smi || echo "no nvidia-smi") > "$OUT/nvidia-smi.txt" 2>&1
for precision in 32-true bf16-mixed; do
    python3 benchmarks/train_throughput.py --device "$DEVICE" --precision "$precision" --data .gpudata/cards \
        --steps "${STEPS:-40}" --rounds "${ROUNDS:-2}" --warmup "${WARMUP:-5}" | tee "$OUT/throughput-$precision.txt"
done
