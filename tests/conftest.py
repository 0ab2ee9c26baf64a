"""Shared fixtures: a tiny synthetic benchmark (fast) and deterministic torch settings."""
from __future__ import annotations

import pytest
import torch

from hinterval.data.base import Benchmark, Split, Task


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(1)
    yield


def make_synthetic_benchmark(num_tasks: int = 3, classes: int = 2, features: int = 16, n: int = 64, seed: int = 0) -> Benchmark:
    """Linearly separable Gaussian blobs per task: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(num_tasks):
        means = torch.randn(classes, features, generator=g) * 2

        def split(m: int) -> Split:
            y = torch.arange(m) % classes
            return Split(means[y] + 0.3 * torch.randn(m, features, generator=g), y)

        tasks.append(Task(task_id=t, classes=list(range(t * classes, (t + 1) * classes)),
                          train=split(n), val=split(n // 2), test=split(n // 2)))
    return Benchmark("synthetic", tasks, input_shape=(features,), classes_per_task=classes, num_classes=classes * num_tasks)


@pytest.fixture
def synthetic_benchmark() -> Benchmark:
    return make_synthetic_benchmark()
