"""The allocator setting that keeps the CPU step free of page faults (hinterval/runtime.py)."""
import resource
import sys

import pytest
import torch

from hinterval import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_stops_page_faults_of_repeated_large_tensors():
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True  # idempotent

    def faults_per_round():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            a = torch.ones(2_000_000)  # 8 MB: above glibc's default mmap threshold
            b = a * 2
            del a, b
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

    faults_per_round()  # warm the heap
    # 2 x 8 MB fresh pages would be ~4,000 faults per round; kept memory needs (almost) none
    assert faults_per_round() < 200


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setattr(runtime, "_configured", False)
    monkeypatch.setenv("HINTERVAL_KEEP_FREED_MEMORY", "0")
    assert runtime.keep_freed_memory() is False
