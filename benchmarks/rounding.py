"""How much the certified figures move when they are made safe against floating-point rounding.

Trains each benchmark with its preset (optionally fewer tasks or iterations, a target or a scope
via ``--set``) and prints its certified test accuracy twice: rounding-safe (the reported
``worst_avg_acc``: every bound grown by the rounding error of its computation, a strict margin)
and with the round-to-nearest bounds taken as they come; and the difference in test samples.

Usage::

    .venv/bin/python benchmarks/rounding.py [--benchmarks split-digits,split-fashion] [--num-tasks N]
        [--iters N] [--set key=value ...] [--threads 1] [--seed 0] [--json FILE]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import configure_threads, finish, nearest_certified, parse_sets, run_script  # noqa: E402


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default="split-digits,split-fashion")
    ap.add_argument("--num-tasks", type=int, default=None, help="first N tasks only (default: all)")
    ap.add_argument("--iters", type=int, default=None, help="iterations per task (default: the preset's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    sets = parse_sets(args.set, {"num_tasks": "use --num-tasks", "iters_per_task": "use --iters"})
    policy = configure_threads(args.threads)
    from hinterval.config import make_config
    from hinterval.trainer import ContinualTrainer

    rows = []
    for name in args.benchmarks.split(","):
        over = dict(benchmark=name, device="cpu", num_threads=args.threads, seed=args.seed, **sets)
        if args.num_tasks:
            over["num_tasks"] = args.num_tasks
        if args.iters:
            over["iters_per_task"] = args.iters
        cfg = make_config(over)
        t0 = time.perf_counter()
        trainer = ContinualTrainer(cfg, progress=False)
        res = trainer.fit()
        if not res["certified"]:
            print(f"{name}: certifies nothing ({cfg.method}, interval mode {cfg.interval_mode})", flush=True)
            continue
        nearest = nearest_certified(trainer)
        test_samples = sum(len(trainer.benchmark.tasks[t].test) for t in range(trainer.tasks_done))
        moved = round((nearest - res["worst_avg_acc"]) * test_samples / trainer.tasks_done)
        wall = time.perf_counter() - t0
        print(f"{name} ({cfg.target}, scope {cfg.interval_scope}, {trainer.tasks_done} tasks x {cfg.iters_per_task} it): "
              f"til_avg_acc {res['avg_acc']:.4f} certified rounding-safe {res['worst_avg_acc']:.4f} "
              f"round-to-nearest {nearest:.4f} (about {moved} of {test_samples} test samples apart) "
              f"box_size {res['box_size']:.4f} wall {wall:.0f}s", flush=True)
        rows.append(dict(benchmark=name, target=cfg.target, interval_scope=cfg.interval_scope, avg_acc=res["avg_acc"],
                         certified=res["worst_avg_acc"], certified_nearest=nearest, samples_apart=moved,
                         box_size=res["box_size"], iters_per_task=cfg.iters_per_task, wall_s=wall))
    return finish("rounding", True, args.threads, policy, rows, args.json)


if __name__ == "__main__":
    run_script(main, "rounding.py")
