"""Item ``e2e``: wall time of whole default runs, and profiles of the trainer at work.

Full ``permuted-digits`` and ``split-digits`` runs with their presets (skipped with ``--quick``);
a cProfile of a short ``permuted-digits`` run; and a ``torch.profiler`` window of the trainer's
steps in task 2, where the regulariser runs (:class:`hinterval.profiling.StepProfiler`).
"""
from __future__ import annotations

import cProfile
import io
import pstats
import time
from typing import Any, Dict

from hinterval.config import make_config
from hinterval.data.registry import load_benchmark
from hinterval.profiling import StepProfiler
from hinterval.trainer import train_continual
from speed_items.common import Timer, header


def run(args: Any, timer: Timer) -> Dict[str, Any]:
    header("5. end to end (default configs) and profile")
    device = timer.device
    results: Dict[str, Any] = {}
    if not args.quick:
        for name in ("permuted-digits", "split-digits"):
            cfg = make_config(dict(benchmark=name, device=device.type))
            w0, c0 = time.perf_counter(), time.process_time()
            res = train_continual(cfg, progress=False)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            steps = cfg.iters_per_task * res["num_tasks"]
            print(f"  {name}: wall {wall:.1f} s (process CPU {cpu:.1f} s) for {steps} steps + validation/evaluation, "
                  f"TIL avg acc {res['avg_acc']:.4f}, BWT {res['bwt']:.4f}, worst avg acc {res['worst_avg_acc']:.4f}, "
                  f"CIL avg acc {res['cil']['avg_acc']:.4f}", flush=True)
            results[name] = dict(wall_s=wall, cpu_s=cpu, steps=steps, avg_acc=res["avg_acc"], bwt=res["bwt"],
                                 worst_avg_acc=res["worst_avg_acc"], cil_avg_acc=res["cil"]["avg_acc"])

    # cProfile of a short permuted-digits run; a 1-step run first so that lazy imports are not profiled
    tasks, iters = (2, 100) if args.quick else (3, 200)
    cfg = make_config(dict(benchmark="permuted-digits", device=device.type, num_tasks=tasks, iters_per_task=iters))
    bench = load_benchmark("permuted-digits", num_tasks=tasks, seed=0)
    train_continual(cfg.replace(iters_per_task=1, num_tasks=1), progress=False)
    prof = cProfile.Profile()
    w0 = time.perf_counter()
    prof.enable()
    train_continual(cfg, benchmark=bench, progress=False)
    prof.disable()
    wall = time.perf_counter() - w0
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    print(f"  cProfile: permuted-digits {tasks} tasks x {iters} steps (+ validation and evaluation), wall {wall:.1f} s; "
          "top by own time:")
    for ln in lines[start : start + 13]:
        print("    " + ln[:150])
    results["cprofile_top"] = lines[start : start + 13]

    # torch.profiler over one window of the trainer's steps in task 2 (with the regulariser)
    profiler = StepProfiler(task_id=1, start_report=1)
    train_continual(cfg.replace(num_tasks=2, iters_per_task=76, val_every=76), benchmark=load_benchmark(
        "permuted-digits", num_tasks=2, seed=0), callbacks=[profiler], progress=False)
    table = profiler.profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print(f"  torch.profiler: {profiler.steps} training steps of permuted-digits task 2 (with the regulariser), top ops:")
    for ln in table.splitlines():
        print("    " + ln[:130])
    results["torch_profiler_top"] = table.splitlines()
    return results
