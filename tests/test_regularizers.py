"""Regulariser: the batched value in the training loss equals the reference's per-task loop."""
from __future__ import annotations

import pytest
import torch

from hinterval.config import make_config
from hinterval.methods.hyperinterval import HyperIntervalMethod
from hinterval.regularizers import regularizer_weight
from hinterval.targets.mlp import MLPTarget


def test_weights():
    assert regularizer_weight(0.1, 4, "reference") == 0.1 / 4
    assert regularizer_weight(0.1, 4, "mean") == 0.1
    assert regularizer_weight(0.1, 0, "reference") == 0.1


def _method(mode, synthetic_benchmark, reg_bounds=False):
    cfg = make_config(dict(benchmark="split-digits", embedding_mode=mode, gamma=1.0, embedding_dim=4, hnet_hidden="8",
                           device="cpu", reg_bounds=reg_bounds))
    target = MLPTarget(in_features=16, hidden=(5,), num_classes=2)
    return HyperIntervalMethod(cfg, synthetic_benchmark, target)


def test_training_loss_regulariser_equals_the_per_task_loop(synthetic_benchmark):
    """The reference's way, by hand: store each earlier task's hypernetwork outputs when the task
    starts, then sum the squared drift of one hypernetwork forward per earlier task. The batched
    regulariser in ``training_loss`` must give the same value (and 0 before anything moved)."""
    for mode, reg_bounds in (("nested", False), ("non-forced", False), ("non-forced", True)):
        torch.manual_seed(0)
        m = _method(mode, synthetic_benchmark, reg_bounds)
        bounds_too = mode == "nested" or reg_bounds

        def outputs(j):
            centre, radius = m.embeddings.box([j])
            out = m.hnet(centre, radius if bounds_too else None)
            return [out.middle, out.lower, out.upper] if bounds_too else [out.middle]

        task = synthetic_benchmark.tasks[2]
        x, y = task.inputs(task.train.x[:8]), task.train.y[:8]
        with torch.no_grad():
            stored = [[o.clone() for o in outputs(j)] for j in range(2)]
        m.begin_task(2)
        assert m.training_loss(2, x, y, ramp=1.0)[1]["reg"] == pytest.approx(0.0, abs=1e-9)
        with torch.no_grad():  # the hypernetwork moves: now the regulariser is non-zero
            for p in m.hnet.parameters():
                p.add_(0.01 * torch.randn_like(p))
            loop = sum(float(((c - t) ** 2).sum()) for j in range(2) for c, t in zip(outputs(j), stored[j])) / 2
        _, logs = m.training_loss(2, x, y, ramp=1.0)
        assert loop > 0
        assert logs["reg"] == pytest.approx(loop, rel=1e-4)
