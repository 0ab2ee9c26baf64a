#!/usr/bin/env bash
# The prepared GPU check: run it ON a GPU machine whose python3 already has torch, numpy,
# scikit-learn, pyyaml, tqdm and tensorboard (nothing is installed). ~4-8 min.
#
#   on the device (the `device` tool's run):  bash scripts/gpu_check.sh     (figures land in $OUT)
#   rehearsal on a CPU machine (~3 min):      DEVICE=cpu PY=.venv/bin/python bash scripts/gpu_check.sh
#
# 1. benchmarks/speed.py --quick on the device: regulariser batching, interval/point step cost
#    (MLP, ResNet-18 32x32 = split-cifar100 preset shapes, and on CUDA 64x64 = TinyImageNet preset
#    shapes; "throughput samples/s" is the images/s figure), CIL vectorisation.
# 2. benchmarks/trial_memory.py: torch.cuda.max_memory_allocated / max_memory_reserved of one sweep
#    trial per preset shape (the data set's real size on the device, the last task's training steps
#    and the full evaluation after it), the CUDA context, and the --gpus-per-trial fraction that fits
#    this GPU (memory.txt, memory.json). On the CPU it only rehearses the code path (--quick).
# 3. One real `hinterval train` on split-digits on the device (trainer, evaluation and checkpoint
#    paths on CUDA), result.json kept.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then nvidia-smi -L | tee "$OUT/gpu.txt"; fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
"$PY" benchmarks/speed.py --device "$DEVICE" --quick --items reg,step,cil --json "$OUT/speed.json" 2>&1 | tee "$OUT/speed.txt"
MEMORY_FLAGS=""
if [ "$DEVICE" != cuda ]; then MEMORY_FLAGS="--quick"; fi
"$PY" benchmarks/trial_memory.py --device "$DEVICE" $MEMORY_FLAGS --json "$OUT/memory.json" 2>&1 | tee "$OUT/memory.txt"
"$PY" -m hinterval train --benchmark split-digits --device "$DEVICE" --out "$OUT/run" --overwrite --no-progress \
    2>&1 | tee "$OUT/train.txt"
"$PY" - "$OUT/run/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"split-digits on {r['device']}: TIL {r['avg_acc']:.4f} BWT {r['bwt']:.4f} worst {r['worst_avg_acc']:.4f} "
      f"wall {r['wall_time_s']:.1f} s")
PY
