"""Regulariser: the batched value equals the reference's per-task loop."""
from __future__ import annotations

import torch

from hinterval.config import make_config
from hinterval.methods.hyperinterval import HyperIntervalMethod
from hinterval.regularizers import output_regularizer, regularizer_weight
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


def test_batched_regulariser_equals_per_task_loop(synthetic_benchmark):
    for mode, reg_bounds in (("nested", False), ("non-forced", False), ("non-forced", True)):
        torch.manual_seed(0)
        m = _method(mode, synthetic_benchmark, reg_bounds)
        bounds_too = mode == "nested" or reg_bounds
        m.begin_task(2)  # stores targets of tasks 0 and 1
        with torch.no_grad():  # the hypernetwork moves: now the regulariser is non-zero
            for p in m.hnet.parameters():
                p.add_(0.01 * torch.randn_like(p))
        batched = output_regularizer(m._reg_view(m.hnet(*m.embeddings.box([0, 1])), slice(None)), m._reg_targets)
        loop = 0.0
        for j in range(2):
            out = m.hnet(*m.embeddings.box([j])) if bounds_too else m.hnet(m.embeddings.box([j])[0], None)
            current = [out.middle, out.lower, out.upper] if bounds_too else [out.middle]
            targets = [t[j : j + 1] for t in m._reg_targets]
            loop = loop + sum(((c - t) ** 2).sum() for c, t in zip(current, targets))
        assert batched > 0
        assert torch.allclose(batched, loop / 2, rtol=1e-5)
        # and the training loss uses exactly this value
        task = synthetic_benchmark.tasks[2]
        _, logs = m.training_loss(2, task.inputs(task.train.x[:8]), task.train.y[:8], ramp=1.0)
        assert abs(logs["reg"] - float(batched.detach())) < 1e-4 * max(1.0, float(batched.detach()))
