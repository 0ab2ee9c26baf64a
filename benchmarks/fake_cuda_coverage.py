"""Which lines of ``hinterval/`` a GPU run executes that the fake-CUDA tests do not.

Records the executed lines of ``hinterval/`` (``sys.settrace``, standard library only) twice in
one process: while ``pytest tests/test_fake_cuda.py`` runs, and while ``hinterval train`` runs
what ``benchmarks/gpu_check.py``'s train step runs (split-digits, 2 tasks, each preset target, on
the CPU: the same Python lines a CUDA run takes, except those behind a ``device.type == "cuda"``
test). Prints, per file, the lines the training ran and the fake tests did not.

Usage::

    python benchmarks/fake_cuda_coverage.py --iters 5 > results/gpu/coverage.txt
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parent.parent
PACKAGE = str(REPO / "hinterval") + "/"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def traced(run) -> Dict[str, Set[int]]:
    """Lines of ``hinterval/`` executed while ``run()`` runs, by file."""
    lines: Dict[str, Set[int]] = defaultdict(set)

    def local(frame, event, arg):
        if event == "line":
            lines[frame.f_code.co_filename].add(frame.f_lineno)
        return local

    def glob(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(PACKAGE) else None

    sys.settrace(glob)
    threading.settrace(glob)
    try:
        run()
    finally:
        sys.settrace(None)
        threading.settrace(None)
    return lines


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=5, help="iterations per task of each training run (default 5)")
    args = ap.parse_args(argv)
    import pytest
    import torch

    from gpu_check import TARGETS
    from hinterval.cli import main as cli_main

    torch.set_num_threads(1)
    fake = traced(lambda: pytest.main(["-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_fake_cuda.py")]))

    def train_all() -> None:
        with tempfile.TemporaryDirectory() as d:
            for label, _, flags in TARGETS:
                code = cli_main(["train", "--benchmark", "split-digits", "--num-tasks", "2", "--iters-per-task",
                                 str(args.iters), "--val-every", str(args.iters), "--device", "cpu", "--num-threads", "1",
                                 "--out", f"{d}/{label.split(',')[0].replace(' ', '-')}", "--no-progress", *flags])
                if code:
                    raise SystemExit(f"hinterval train for {label} exited {code}")

    run = traced(train_all)
    total_run = sum(len(v) for v in run.values())
    missing = {f: sorted(run[f] - fake.get(f, set())) for f in sorted(run)}
    n_missing = sum(len(v) for v in missing.values())
    print(f"\nhinterval/ lines run by `hinterval train` (4 targets): {total_run}; also run by the fake-CUDA tests: "
          f"{total_run - n_missing} ({(total_run - n_missing) / total_run:.1%}); not: {n_missing}")
    for f, rows in missing.items():
        if rows:
            src = Path(f).read_text().splitlines()
            print(f"\n{Path(f).relative_to(REPO)}: {len(rows)} of {len(run[f])} lines not run by the fake-CUDA tests")
            for n in rows:
                print(f"  {n:5d}  {src[n - 1].strip()[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
