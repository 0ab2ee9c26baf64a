"""Shared parts of the benchmark scripts: the target-checking runner of ``core.py`` and ``fashion.py``, and the
set parsing, thread set-up and summary tail that the other scripts share.

Each benchmark is trained with its DEFAULT config (the preset) through the library's trainer;
one line per benchmark (TIL avg acc, BWT, worst-case metrics, CIL, wall time, PASS/FAIL) and a
final summary line are printed. The process is set up as the CLI does
(:func:`hinterval.runtime.configure_process`): the OpenMP wait policy is chosen by the load at
start (spinning threads are 1.8x faster on a quiet CPU and several times slower on an
oversubscribed one; the summary line says which was used), and glibc keeps freed memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from hinterval.config import make_config
from hinterval.errors import UserError
from hinterval.runtime import configure_process




def code_commit() -> str:
    """The commit the benchmark runs (``+ changes`` when the tree differs from it), for result pages."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return rev + (" + uncommitted changes" if dirty else "")


def configure_threads(threads: int) -> str:
    """Set the process up as ``hinterval train`` does for a CPU run with ``threads`` torch threads
    (:func:`hinterval.runtime.configure_process`; call before torch loads); return the OpenMP policy."""
    return configure_process(make_config(dict(device="cpu", num_threads=threads))).omp_wait_policy


#: config keys every benchmark script sets itself -> the script flag (or fact) that sets them; ``--set``
#: may not give them (``dict(seed=..., **sets)`` would fail with "got multiple values for keyword")
SCRIPT_KEYS = {"benchmark": "the script's --benchmarks chooses the benchmarks", "seed": "use the script's --seed",
               "device": "the benchmark scripts run on the CPU", "num_threads": "use the script's --threads"}


def parse_sets(items: Sequence[str], owned: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """``--set KEY=VALUE`` items as config overrides (``-`` in keys read as ``_``); values stay text
    for :func:`hinterval.config.make_config` to check.

    Keys must be config keys, and not ones the script sets itself (:data:`SCRIPT_KEYS` plus
    ``owned``): each is refused with one line naming the script's own flag.
    """
    from hinterval.config import FIELDS

    taken = {**SCRIPT_KEYS, **(owned or {})}
    over: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UserError(f"--set needs KEY=VALUE, got {item!r}"[:200])
        if key not in FIELDS:
            raise UserError(f"--set: unknown config key {key!r}"[:120] + f"; valid keys: {', '.join(sorted(FIELDS))}")
        if key in taken:
            raise UserError(f"--set {key}: this script sets it itself ({taken[key]})")
        if not value.strip():
            raise UserError(f"--set {key}= needs a value, e.g. --set {key}=VALUE")
        over[key] = value.strip()
    return over


def parse_list(text: str, kind: Callable[[str], Any], flag: str) -> List[Any]:
    """A comma-separated flag value (``--seeds 0,1,2``) as a list of ``kind``; a bad item is one
    :class:`UserError` naming the flag, not a ``ValueError`` traceback."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag} is empty")
    try:
        return [kind(t) for t in items]
    except ValueError:
        bad = next(t for t in items if not _parses(kind, t))
        raise UserError(f"{flag}: {bad[:40]!r} is not a valid {getattr(kind, '__name__', 'value')}") from None


def _parses(kind: Callable[[str], Any], text: str) -> bool:
    try:
        kind(text)
        return True
    except ValueError:
        return False


def run_script(main: Callable[[], int], script: str) -> None:
    """Exit with ``main()``'s status; bad input (:class:`UserError`: a bad ``--set``, an unknown
    benchmark) is one line ``SCRIPT: error: message`` and exit status 2, Ctrl-C one line and 130,
    as the ``hinterval`` command does."""
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{script}: interrupted", file=sys.stderr)
        sys.exit(130)


def finish(suite: str, ok: bool, threads: int, policy: str, report: Any, json_path: Optional[str]) -> int:
    """Print the summary line of a benchmark script, write its JSON report; 0 iff every row passed."""
    import torch

    print(f"{suite} benchmark: {'PASS' if ok else 'FAIL'} (threads={threads}, OMP_WAIT_POLICY={policy}, "
          f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if ok else 1


def nearest_certified(trainer: Any) -> float:
    """The certified test accuracy of a trained run with the round-to-nearest bounds taken as they
    come (no rounding bound): what its rounding-safe ``worst_avg_acc`` would have been without it."""
    from hinterval.evaluation import evaluate_tasks

    seen = list(range(trainer.tasks_done))
    res = evaluate_tasks(trainer.method.predictor(seen), trainer.benchmark, seen, split="test",
                         batch_size=trainer.cfg.eval_batch_size, scenarios=("worst",), rounding_safe=False)
    return sum(res["worst"]) / len(seen)


def run_suite(suite: str, targets: Dict[str, Dict[str, float]], doc: str, argv: Optional[List[str]] = None) -> int:
    """Parse ``--benchmarks/--threads/--seed``, run each benchmark, print lines; 0 iff all pass.

    ``targets[name]`` holds ``avg_acc`` (min TIL avg acc), ``bwt`` (min BWT) and ``seconds``.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(targets))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cfgs = [make_config(dict(benchmark=name, device="cpu", seed=args.seed, num_threads=args.threads))
            for name in args.benchmarks.split(",")]
    policy = configure_threads(args.threads)  # before torch loads its OpenMP runtime
    import torch

    from hinterval.trainer import train_continual

    ok = True
    for cfg in cfgs:
        name = cfg.benchmark
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
          f"OMP_WAIT_POLICY={policy}, torch {torch.__version__})")
    return 0 if ok else 1
