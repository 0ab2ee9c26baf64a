#!/usr/bin/env bash
# The prepared GPU check: ONE python script, benchmarks/gpu_check.py, on a GPU machine whose python
# already has hinterval's dependencies (nothing is installed). Under 8 minutes on one H100.
#
#   on a GPU machine:        bash scripts/gpu_check.sh                  -> results/gpu/cuda.{txt,json}
#   rehearsal on the CPU:    DEVICE=cpu bash scripts/gpu_check.sh       -> results/gpu/rehearsal-cpu.{txt,json}
#
# Steps (benchmarks/gpu_check.py's docstring has the details): step (images/s of the interval and
# point steps per preset target, and a watch for operators computing on the CPU), memory (peak
# memory per trial, the --gpus-per-trial that fits), train (one short `hinterval train` per
# target), sweep (2 trials with --gpus-per-trial 0.5). The first step that fails ends the check:
# "GPU CHECK FAILED at step <name>" and exit status 1. DEVICE=cpu runs the rehearsal sizes
# (--quick), niced, with one torch thread. Environment: DEVICE (cuda), PY (python3), OUT
# (results/gpu), NAME (cuda, or rehearsal-cpu), WORK (run directories; /tmp/hinterval-gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
OUT=${OUT:-results/gpu}
WORK=${WORK:-/tmp/hinterval-gpu-check}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
    NAME=${NAME:-cuda}
    FLAGS=()
    RUN=(timeout 480)
else
    NAME=${NAME:-rehearsal-cpu}
    FLAGS=(--quick)
    RUN=(nice -n 10)
    export OMP_NUM_THREADS=1
fi
{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "# uptime at start: $(uptime)"
    if [ "$DEVICE" = cuda ]; then nvidia-smi -L; fi
} | tee "$OUT/$NAME.txt"
status=0
"${RUN[@]}" "$PY" benchmarks/gpu_check.py --device "$DEVICE" "${FLAGS[@]}" --work "$WORK" --json "$OUT/$NAME.json" \
    2>&1 | tee -a "$OUT/$NAME.txt" || status=$?
echo "# uptime at end: $(uptime)" | tee -a "$OUT/$NAME.txt"
if [ "$status" -ne 0 ]; then
    echo "scripts/gpu_check.sh: FAILED (exit $status; 124 = past the 8-minute limit); see $OUT/$NAME.txt" >&2
fi
exit "$status"
