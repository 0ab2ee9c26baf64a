"""Diagonal empirical Fisher information of a weight vector, and the running Fisher-weighted anchor.

Elastic weight consolidation (Kirkpatrick et al. 2017) keeps the weights that mattered for earlier
tasks: after task ``k`` it estimates ``F_k`` (the mean squared per-sample gradient of the
log-likelihood of the true label) and later tasks pay ``(lambda / 2) * sum_k F_k (w - w_k*)^2``. The
sum over tasks is kept in O(P) memory as ``A = sum_k F_k`` and the Fisher-weighted anchor
``m = sum_k F_k w_k* / A``: ``sum_k F_k (w - w_k*)^2 = A (w - m)^2 + const``, so the gradient is exactly
the multi-task one. Used by ``--method ewc`` (the trunk) and by nested HyperInterval's universal
network.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: samples of a task's training split used to estimate its Fisher ("a few hundred")
FISHER_SAMPLES = 300
#: most samples per vectorised per-sample-gradient chunk
FISHER_CHUNK = 100
#: most per-sample gradient numbers held at once (chunk x P floats; 2^27 = 512 MiB in fp32)
FISHER_BUDGET = 2**27


def diagonal_fisher(logits: Callable[[Tensor, Tensor], Tensor], w: Tensor, task, *, seed: int) -> Tensor:
    """Diagonal empirical Fisher of ``w`` on up to :data:`FISHER_SAMPLES` training samples of ``task``.

    Args:
        logits: ``logits(w, x)`` -> ``(N, C)``, the network as a function of the weights.
        w: the weights ``(P,)`` (detached here).
        task: a task with ``train.x``, ``train.y`` and ``inputs(x)``.
        seed: seeds a private generator that picks the samples, so the estimate never perturbs
            torch's global RNG stream.

    Returns:
        ``(P,)``: the mean over samples of the squared gradient of the true label's log-likelihood.
    """
    n = min(FISHER_SAMPLES, len(task.train))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(task.train), generator=gen)[:n].to(task.train.y.device)
    w = w.detach()

    def nll(w_: Tensor, x1: Tensor, y1: Tensor) -> Tensor:
        return F.cross_entropy(logits(w_, x1.unsqueeze(0)), y1.unsqueeze(0))

    per_sample = torch.func.vmap(torch.func.grad(nll), in_dims=(None, 0, 0))
    total = torch.zeros_like(w)
    chunk = max(1, min(FISHER_CHUNK, FISHER_BUDGET // w.numel()))  # AlexNet: a few samples
    for start in range(0, n, chunk):
        sel = idx[start : start + chunk]
        g = per_sample(w, task.inputs(task.train.x[sel]), task.train.y[sel])
        total += (g**2).sum(0)
    return total / n


@torch.no_grad()
def consolidate(fisher_sum: Tensor, anchor: Tensor, fisher: Tensor, w: Tensor) -> None:
    """Add one task's ``fisher`` at weights ``w`` to the running ``fisher_sum`` and ``anchor`` (in place)."""
    total = fisher_sum + fisher
    weighted = fisher_sum * anchor + fisher * w.detach()
    anchor.copy_(torch.where(total > 0, weighted / total.clamp_min(1e-30), w.detach()))
    fisher_sum.copy_(total)


def fisher_penalty(fisher_sum: Tensor, anchor: Tensor, w: Tensor, strength: float) -> Tensor:
    """``(strength / 2) * sum(F * (w - anchor)^2)``: the consolidation penalty (up to a constant)."""
    return 0.5 * strength * (fisher_sum * (w - anchor) ** 2).sum()
