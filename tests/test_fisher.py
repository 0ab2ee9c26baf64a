"""The running Fisher-weighted anchor gives exactly the multi-task EWC gradient."""
from __future__ import annotations

import torch

from hinterval.fisher import consolidate, fisher_penalty


def test_consolidated_anchor_gives_the_multi_task_gradient():
    torch.manual_seed(0)
    fishers = [torch.rand(6), torch.rand(6), torch.zeros(6)]
    optima = [torch.randn(6) for _ in fishers]
    total, anchor = torch.zeros(6), torch.zeros(6)
    for f, w in zip(fishers, optima):
        consolidate(total, anchor, f, w)
    w = torch.randn(6, requires_grad=True)
    (g_running,) = torch.autograd.grad(fisher_penalty(total, anchor, w, 3.0), w)
    multi = sum(0.5 * 3.0 * (f * (w - o) ** 2).sum() for f, o in zip(fishers, optima))
    (g_multi,) = torch.autograd.grad(multi, w)
    assert torch.allclose(g_running, g_multi, atol=1e-5)
    assert torch.equal(total, sum(fishers))
