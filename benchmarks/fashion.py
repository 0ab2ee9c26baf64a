"""Acceptance benchmark on real Fashion-MNIST.

Runs ``split-fashion`` (5 x 2-way) and ``permuted-fashion`` (10 x 10-way) on the full data set
with their DEFAULT configs (the presets in :mod:`hinterval.presets`) through the library's trainer
on the CPU and prints one line per benchmark (TIL avg acc, BWT, worst-case metrics, wall time)
and a final PASS/FAIL line against the targets:

    split-fashion    TIL avg acc >= 0.97, BWT >= -0.01, <= 900 s
    permuted-fashion TIL avg acc >= 0.85, BWT >= -0.01, <= 900 s

Data: ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``) is found
automatically; see :mod:`hinterval.data.idx` for other layouts.

Threads: the OpenMP wait policy is chosen by the CPU load at start (see
:func:`hinterval.runtime.configure_process`): on a shared CPU, spinning OpenMP threads made
a 2-thread run several times slower (measured 260-520 ms/step instead of 40-80 ms/step).

Usage::

    .venv/bin/python benchmarks/fashion.py [--benchmarks split-fashion,permuted-fashion] [--threads 2] [--seed 0]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_script, run_suite  # noqa: E402  (chooses the OpenMP wait policy before torch loads)

TARGETS = {
    "split-fashion": dict(avg_acc=0.97, bwt=-0.01, seconds=900.0),
    "permuted-fashion": dict(avg_acc=0.85, bwt=-0.01, seconds=900.0),
}


if __name__ == "__main__":
    run_script(lambda: run_suite("fashion", TARGETS, __doc__), "fashion.py")
