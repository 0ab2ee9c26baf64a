"""Acceptance benchmark for the core library.

Runs ``split-digits`` and ``permuted-digits`` with their DEFAULT configs (presets) through the
library's trainer and prints one line per benchmark (TIL avg acc, BWT, worst-case metrics, wall
time) and a final PASS/FAIL line against the targets:

    split-digits    TIL avg acc >= 0.99, BWT >= -0.005, <= 120 s
    permuted-digits TIL avg acc >= 0.95, BWT >= -0.005, <= 120 s

Usage::

    .venv/bin/python benchmarks/core.py [--benchmarks split-digits,permuted-digits] [--threads 2]
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_script, run_suite  # noqa: E402  (chooses the OpenMP wait policy before torch loads)

TARGETS = {
    "split-digits": dict(avg_acc=0.99, bwt=-0.005, seconds=120.0),
    "permuted-digits": dict(avg_acc=0.95, bwt=-0.005, seconds=120.0),
}


if __name__ == "__main__":
    run_script(lambda: run_suite("core", TARGETS, __doc__), "core.py")
