"""Robustness grid: does any task collapse to chance off the presets' beaten path?

Trains HyperInterval over a grid of large boxes and short budgets -- gamma in {0.5, 1, 2},
kappa_min 0.5, 200 and 500 iterations per task, seeds 0-3 -- on split-digits and split-fashion
(5 two-class tasks each; every other setting from the benchmark's preset), once with the guarded
warm-up (``--ramp guarded``, the default) and once with the paper's fixed schedule
(``--ramp fixed``) in the same run, and prints one line per run: per-task final TIL and certified
(worst-case) accuracy, the number of collapsed tasks, the wall time. Targets (guarded runs):

    no task ends below 0.90 TIL (chance is 0.5)
    mean certified accuracy over the grid >= the fixed schedule's

Usage::

    .venv/bin/python benchmarks/robust.py [--benchmarks split-digits,split-fashion] [--seeds 0,1,2,3]
        [--gammas 0.5,1,2] [--iters 200,500] [--ramps guarded,fixed] [--jobs 2] [--json FILE]

Runs go to ``--jobs`` worker processes with one torch thread each.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import parse_list, run_script  # noqa: E402
from hinterval.errors import UserError  # noqa: E402

MIN_TIL = 0.90


def _config(job: Dict[str, Any]) -> Any:
    """The config of one grid point (raises :class:`UserError` for a bad value)."""
    from hinterval.config import make_config

    return make_config(dict(benchmark=job["benchmark"], gamma=job["gamma"], kappa_min=0.5, iters_per_task=job["iters"],
                            seed=job["seed"], ramp=job["ramp"], device="cpu", num_threads=1))


def run_one(job: Dict[str, Any]) -> Dict[str, Any]:
    """Train one grid point in this worker; return its per-task figures."""
    from hinterval.runtime import configure_process

    cfg = _config(job)
    configure_process(cfg)
    from hinterval.trainer import train_continual

    t0 = time.perf_counter()
    res = train_continual(cfg, progress=False)
    return {**job, "til": res["til"]["final_accs"], "worst": res["worst"]["final_accs"],
            "collapsed": len(res["collapsed_tasks"]), "ramp_reached": [r["ramp_reached"] for r in res["tasks"]],
            "wall_s": time.perf_counter() - t0}


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default="split-digits,split-fashion")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--gammas", default="0.5,1,2")
    ap.add_argument("--iters", default="200,500", help="iterations per task")
    ap.add_argument("--ramps", default="guarded,fixed", help="warm-up modes to compare")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    ap.add_argument("--json", help="also write every run's figures to this file")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # several single-thread workers share the CPU
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    grid = [dict(benchmark=b, gamma=g, iters=i, seed=s, ramp=r)
            for b, g, i, s, r in itertools.product(parse_list(args.benchmarks, str, "--benchmarks"),
                                                   parse_list(args.gammas, float, "--gammas"),
                                                   parse_list(args.iters, int, "--iters"), parse_list(args.seeds, int, "--seeds"),
                                                   parse_list(args.ramps, str, "--ramps"))]
    for job in grid:  # every bad value before the first worker starts
        _config(job)
    t0 = time.perf_counter()
    rows = []
    fmt = lambda xs: "[" + " ".join(f"{x:.3f}" for x in xs) + "]"
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap(run_one, grid):
            rows.append(r)
            print(f"{r['benchmark']} gamma {r['gamma']:g} iters {r['iters']} seed {r['seed']} ramp {r['ramp']}: "
                  f"til {fmt(r['til'])} certified {fmt(r['worst'])} collapsed {r['collapsed']} "
                  f"min_til {min(r['til']):.3f} wall {r['wall_s']:.1f}s", flush=True)
    ok = True
    summary = {}
    for ramp in args.ramps.split(","):
        mine = [r for r in rows if r["ramp"] == ramp]
        low = [r for r in mine if min(r["til"]) < MIN_TIL]
        cert = statistics.mean(x for r in mine for x in r["worst"])
        summary[ramp] = dict(runs=len(mine), runs_below=len(low), collapsed_tasks=sum(r["collapsed"] for r in mine),
                             mean_certified=cert, mean_til=statistics.mean(x for r in mine for x in r["til"]))
        print(f"ramp {ramp}: {len(mine)} runs, {len(low)} with a task below {MIN_TIL} TIL, "
              f"{summary[ramp]['collapsed_tasks']} collapsed tasks, mean TIL {summary[ramp]['mean_til']:.4f}, "
              f"mean certified {cert:.4f}")
    if "guarded" in summary:
        g = summary["guarded"]
        ok = g["runs_below"] == 0 and all(g["mean_certified"] >= s["mean_certified"] for s in summary.values())
    print(f"robust benchmark: {'PASS' if ok else 'FAIL'} ({len(rows)} runs, {time.perf_counter() - t0:.0f} s, "
          f"{args.jobs} workers x 1 thread, load average at end {os.getloadavg()[0]:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    run_script(main, "robust.py")
