"""hinterval.transfer.to_host: every tensor's numbers in one copy, shapes and integer counts kept."""
from __future__ import annotations

import torch

from hinterval.transfer import to_host


def test_to_host_keeps_shapes_exact_counts_and_other_values() -> None:
    out = to_host({"loss": torch.tensor(0.25), "counts": torch.tensor([[3, 2**40], [0, 7]]), "flag": torch.tensor(True),
                   "kappa": 0.5, "cube": torch.arange(8.0).reshape(2, 2, 2)})
    assert out["loss"] == 0.25 and out["kappa"] == 0.5 and out["flag"] == 1.0
    assert out["counts"] == [[3, 2**40], [0, 7]]
    assert out["cube"] == torch.arange(8.0).reshape(2, 2, 2).tolist()


def test_to_host_without_tensors_copies_nothing() -> None:
    assert to_host({"step": 3}) == {"step": 3}
