"""``ewc``: elastic weight consolidation (Kirkpatrick et al. 2017) on the shared trunk.

Same network and heads as :mod:`~hinterval.methods.finetune` (per-task heads, shared trunk); after
each task ``k`` a diagonal empirical Fisher ``F_k`` of the trunk weights is estimated from up to
:data:`FISHER_SAMPLES` training samples of that task (per-sample gradients of the log-likelihood of
the true label, batched with ``torch.func``), and later tasks pay

    (lambda / 2) * sum_k F_k * (w - w_k*)^2.

Only the trunk is penalised: old heads are frozen anyway and the current head is new.

The sum over tasks is kept in O(P) memory as ``A = sum_k F_k`` and the Fisher-weighted anchor
``m = sum_k F_k w_k* / A``: ``sum_k F_k (w - w_k*)^2 = A (w - m)^2 + const``, so the gradient is
exactly the multi-task EWC gradient; the *logged* penalty omits the constant. With
``ewc_lambda = 0`` no Fisher is computed and training is step-for-step identical to ``finetune``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from hinterval.methods.finetune import FinetuneMethod

#: samples of a task's training split used to estimate its Fisher ("a few hundred")
FISHER_SAMPLES = 300
#: most samples per vectorised per-sample-gradient chunk
FISHER_CHUNK = 100
#: most per-sample gradient numbers held at once (chunk x P floats; 2^27 = 512 MiB in fp32)
FISHER_BUDGET = 2**27


class EWCMethod(FinetuneMethod):
    """Finetune plus the EWC penalty with strength ``cfg.ewc_lambda``."""

    def __init__(self, cfg, benchmark, target):
        super().__init__(cfg, benchmark, target)
        n = self.net.trunk.numel()
        # Buffers (not parameters): saved in checkpoints, never optimised.
        self.register_buffer("fisher_sum", torch.zeros(n))
        self.register_buffer("anchor", torch.zeros(n))

    def penalty(self, task_id: int) -> Optional[Tensor]:
        if self.cfg.ewc_lambda == 0 or task_id == 0:
            return None
        return 0.5 * self.cfg.ewc_lambda * (self.fisher_sum * (self.net.trunk - self.anchor) ** 2).sum()

    def end_task(self, task_id: int, *, box_scale: float = 1.0) -> None:
        if self.cfg.ewc_lambda == 0:
            return
        fisher = self.fisher(task_id)
        w = self.net.trunk.detach()
        with torch.no_grad():
            total = self.fisher_sum + fisher
            weighted = self.fisher_sum * self.anchor + fisher * w
            self.anchor.copy_(torch.where(total > 0, weighted / total.clamp_min(1e-30), w))
            self.fisher_sum.copy_(total)

    def fisher(self, task_id: int) -> Tensor:
        """Diagonal empirical Fisher of the trunk on task ``task_id``'s training data: ``(P_trunk,)``.

        The samples are a fixed subset drawn with a private generator seeded from
        ``(seed, task)``, so estimating the Fisher never perturbs torch's global RNG stream.
        """
        task = self.benchmark.tasks[task_id]
        n = min(FISHER_SAMPLES, len(task.train))
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + task_id)
        idx = torch.randperm(len(task.train), generator=gen)[:n].to(task.train.y.device)
        head = self.net.heads[task_id].detach() if self.net.multi_head else None
        trunk = self.net.trunk.detach()

        def nll(w_trunk: Tensor, x1: Tensor, y1: Tensor) -> Tensor:
            w = w_trunk if head is None else torch.cat([w_trunk, head])
            return F.cross_entropy(self.target.forward(x1.unsqueeze(0), w), y1.unsqueeze(0))

        per_sample = torch.func.vmap(torch.func.grad(nll), in_dims=(None, 0, 0))
        total = torch.zeros_like(trunk)
        chunk = max(1, min(FISHER_CHUNK, FISHER_BUDGET // trunk.numel()))  # AlexNet: a few samples
        for start in range(0, n, chunk):
            sel = idx[start : start + chunk]
            g = per_sample(trunk, task.inputs(task.train.x[sel]), task.train.y[sel])
            total += (g**2).sum(0)
        return total / n
