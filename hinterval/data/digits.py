"""The embedded default benchmarks, built from scikit-learn's bundled 8x8 digits (no download).

scikit-learn ships 1,797 real handwritten digits inside its wheel, so these benchmarks run on
any machine, offline, in seconds: ``split-digits`` (5 tasks x 2 classes) and
``permuted-digits`` (10 tasks x 10 classes, pixel permutations). The digits have no official
test split; a stratified 25% test split is drawn with a fixed seed (0) so all runs agree.
"""
from __future__ import annotations

import torch

from hinterval.data.base import Benchmark, permuted_tasks, split_by_classes, stratified_split

TEST_FRACTION = 0.25
_TEST_SEED = 0


def _digits_arrays():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8), values 0..16
    y = torch.tensor(d.target, dtype=torch.long)
    train, test = stratified_split(y, TEST_FRACTION, torch.Generator().manual_seed(_TEST_SEED))
    return x[train], y[train], x[test], y[test]


def split_digits(*, num_tasks: int = 5, seed: int = 0, val_fraction: float = 0.1) -> Benchmark:
    """Split digits: task ``t`` is classes ``{2t, 2t+1}``, labels 0/1 within the task."""
    xtr, ytr, xte, yte = _digits_arrays()
    tasks = split_by_classes(
        xtr, ytr, xte, yte, classes_per_task=2, num_tasks=num_tasks, val_fraction=val_fraction, seed=seed, scale=16.0
    )
    return Benchmark("split-digits", tasks, input_shape=(64,), classes_per_task=2, num_classes=2 * num_tasks)


def permuted_digits(*, num_tasks: int = 10, seed: int = 0, val_fraction: float = 0.1) -> Benchmark:
    """Permuted digits: every task is all 10 digits under its own fixed pixel permutation."""
    xtr, ytr, xte, yte = _digits_arrays()
    tasks = permuted_tasks(
        xtr, ytr, xte, yte, num_tasks=num_tasks, num_features=64, val_fraction=val_fraction, seed=seed, scale=16.0
    )
    return Benchmark("permuted-digits", tasks, input_shape=(64,), classes_per_task=10, num_classes=10 * num_tasks)
