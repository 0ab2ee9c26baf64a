"""Shared runner of the acceptance benchmarks (``core.py``, ``fashion.py``).

Each benchmark is trained with its DEFAULT config (the preset) through the library's trainer;
one line per benchmark (TIL avg acc, BWT, worst-case metrics, CIL, wall time, PASS/FAIL) and a
final summary line are printed. ``OMP_WAIT_POLICY=PASSIVE`` is set unless the environment sets
it: on a shared CPU, spinning OpenMP threads made 2-thread runs several times slower than
1-thread ones (measured 260-520 ms/step instead of 40-80 ms/step on permuted-fashion).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime

import argparse  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional  # noqa: E402

import torch  # noqa: E402

from hinterval.config import make_config  # noqa: E402
from hinterval.trainer import train_continual  # noqa: E402


def run_acceptance(suite: str, targets: Dict[str, Dict[str, float]], doc: str, argv: Optional[List[str]] = None) -> int:
    """Parse ``--benchmarks/--threads/--seed``, run each benchmark, print lines; 0 iff all pass.

    ``targets[name]`` holds ``avg_acc`` (min TIL avg acc), ``bwt`` (min BWT) and ``seconds``.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(targets))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ok = True
    for name in args.benchmarks.split(","):
        cfg = make_config(dict(benchmark=name, device="cpu", seed=args.seed))
        t0 = time.perf_counter()
        res = train_continual(cfg, progress=False)
        wall = time.perf_counter() - t0
        tgt = targets.get(name)
        passed = tgt is None or (res["avg_acc"] >= tgt["avg_acc"] and res["bwt"] is not None
                                 and res["bwt"] >= tgt["bwt"] and wall <= tgt["seconds"])
        ok &= passed
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        print(f"{name}: til_avg_acc {fmt(res['avg_acc'])} bwt {fmt(res['bwt'])} worst_avg_acc {fmt(res['worst_avg_acc'])} "
              f"worst_bwt {fmt(res['worst_bwt'])} cil_avg_acc {fmt(res['cil']['avg_acc'])} wall {wall:.1f}s "
              f"[{'PASS' if passed else 'FAIL'}]", flush=True)
    print(f"{suite} benchmark: {'PASS' if ok else 'FAIL'} (threads={args.threads}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, torch {torch.__version__})")
    return 0 if ok else 1
