"""Acceptance benchmark for the core library (issue: Core).

Runs ``split-digits`` and ``permuted-digits`` with their DEFAULT configs (presets) through the
library's trainer and prints one line per benchmark (TIL avg acc, BWT, worst-case metrics, wall
time) and a final PASS/FAIL line against the targets:

    split-digits    TIL avg acc >= 0.99, BWT >= -0.005, <= 120 s
    permuted-digits TIL avg acc >= 0.95, BWT >= -0.005, <= 120 s

Usage::

    .venv/bin/python benchmarks/core.py [--benchmarks split-digits,permuted-digits] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from hinterval.config import make_config
from hinterval.trainer import train_continual

TARGETS = {
    "split-digits": dict(avg_acc=0.99, bwt=-0.005, seconds=120.0),
    "permuted-digits": dict(avg_acc=0.95, bwt=-0.005, seconds=120.0),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(TARGETS))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ok = True
    for name in args.benchmarks.split(","):
        cfg = make_config(dict(benchmark=name, device="cpu", seed=args.seed))
        t0 = time.perf_counter()
        res = train_continual(cfg, progress=False)
        wall = time.perf_counter() - t0
        tgt = TARGETS.get(name)
        passed = tgt is None or (res["avg_acc"] >= tgt["avg_acc"] and res["bwt"] >= tgt["bwt"] and wall <= tgt["seconds"])
        ok &= passed
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        print(f"{name}: til_avg_acc {fmt(res['avg_acc'])} bwt {fmt(res['bwt'])} worst_avg_acc {fmt(res['worst_avg_acc'])} "
              f"worst_bwt {fmt(res['worst_bwt'])} cil_avg_acc {fmt(res['cil']['avg_acc'])} wall {wall:.1f}s "
              f"[{'PASS' if passed else 'FAIL'}]", flush=True)
    print(f"core benchmark: {'PASS' if ok else 'FAIL'} (threads={args.threads}, torch {torch.__version__})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
