# Sourced by the GPU scripts (benchmarks/study_gpu.sh, study_pretrained_gpu.sh), which set START (date +%s).
# wait_or_stop LIMIT PID...: wait for the background jobs; once LIMIT seconds have passed since START,
# kill the PIDs (a sweep shard's finished runs stay; the one in flight is lost) and return.
wait_or_stop() {
  local limit=$1; shift
  while [ -n "$(jobs -r)" ]; do
    if [ $(( $(date +%s) - START )) -ge "$limit" ]; then
      echo "deadline: shards stopped at $(( $(date +%s) - START )) s"; kill "$@" 2>/dev/null; break
    fi
    sleep 2
  done
  wait
}
