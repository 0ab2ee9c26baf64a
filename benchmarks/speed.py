"""Speed benchmark: the library's hot paths against the reference-style way of doing the same.

Every item runs LIBRARY code (the trainer, the methods, evaluation, the data loaders) next to a
reference-style baseline written out in the item, in the same process, interleaved (ours, ref,
ours, ref, ...), and prints OUR figure, the REFERENCE-STYLE figure and their RATIO. On a noisy
shared CPU the ratios are the result; absolute times are indicative. Times are best-of-N (the
least disturbed run); ``--json`` also writes medians. Measured figures, with the machine and its
load: ``results/speed/README.md``.

Items (one module each in ``benchmarks/speed_items/``):

1. ``reg``  -- regulariser cost per training step as the number of earlier tasks t grows:
   ``training_loss`` (all earlier tasks in one batched hypernetwork pass) against one
   hypernetwork forward per earlier task.
2. ``step`` -- the trainer's training step, ``hyperinterval`` against ``finetune`` (a plain
   network of the same target) for the MLP and the slim ResNet-18, timed by a step-timing
   callback; where the interval step's time goes (a ``torch.profiler`` window); the target alone.
3. ``cil``  -- class-incremental inference by entropy: ``evaluate_tasks(..., scenarios=("cil",))``
   against a per-sample, per-task Python loop; their per-task accuracies must agree.
4. ``data`` -- whole data sets as tensors indexed in batches against a ``DataLoader`` over a
   per-sample dataset (real Fashion-MNIST); TinyImageNet's cached array load against decoding
   every task's JPEGs (a generated miniature folder).
5. ``e2e``  -- wall time of full ``permuted-digits`` and ``split-digits`` runs with their presets
   (skipped with ``--quick``), a cProfile of a short run and a ``torch.profiler`` window of the
   trainer's steps.

Usage::

    .venv/bin/python benchmarks/speed.py --quick            # a few minutes on a 2-core CPU
    .venv/bin/python benchmarks/speed.py                    # full sizes (15-20 min on 2 cores)
    .venv/bin/python benchmarks/speed.py --items reg,cil --threads 2 --json /tmp/speed.json
    .venv/bin/python benchmarks/speed.py --device cuda
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

from hinterval.config import make_config
from hinterval.runtime import configure_process

ITEMS = ("reg", "step", "cil", "data", "e2e")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default=",".join(ITEMS), help=f"comma-separated subset of {', '.join(ITEMS)}")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, no end-to-end runs")
    ap.add_argument("--unchunked-full", action="store_true",
                    help="item reg also with the UNCHUNKED 205.6M-parameter hnet for the 2M-weight target (t = 1, 10; slow)")
    ap.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                    help="cpu = process CPU time, wall = wall clock; auto: cpu for 1 thread on CPU, else wall")
    ap.add_argument("--json", help="write all figures to this JSON file")
    args = ap.parse_args()
    items = [s for s in args.items.split(",") if s]
    bad = [s for s in items if s not in ITEMS]
    if bad:
        ap.error(f"unknown item(s) {bad}; choose from {ITEMS}")
    clock = args.clock if args.clock != "auto" else ("cpu" if args.threads == 1 and args.device == "cpu" else "wall")
    if clock == "cpu" and (args.threads > 1 or args.device == "cuda"):
        ap.error("--clock cpu needs --threads 1 on --device cpu (CPU time of several threads or a GPU is not a duration)")
    # the process as `hinterval train` sets it up, before torch loads (OpenMP policy, threads, allocator)
    settings = configure_process(make_config(dict(device=args.device, num_threads=args.threads)))

    import torch

    from speed_items import cil, common, data, e2e, reg, step

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU here")
    timer = common.Timer(torch.device(args.device), clock)
    print(f"speed benchmark: device {args.device}, threads {settings.torch_threads} "
          f"(OMP_WAIT_POLICY={settings.omp_wait_policy}), clock {clock}, torch {torch.__version__}, "
          f"{'quick' if args.quick else 'full'} sizes; times are best-of-N, interleaved", flush=True)
    report: Dict[str, Any] = {}
    t0 = time.perf_counter()
    runners = {"reg": reg.run, "step": step.run, "cil": cil.run, "data": data.run, "e2e": e2e.run}
    for item in items:
        report[item] = runners[item](args, timer)
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s")
    report["meta"] = dict(device=args.device, threads=settings.torch_threads, omp_wait_policy=settings.omp_wait_policy,
                          clock=clock, quick=args.quick, torch=torch.__version__, total_s=total)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import run_script

    run_script(main, "speed.py")
