"""``ewc``: elastic weight consolidation (Kirkpatrick et al. 2017) on the shared trunk.

Same network and heads as :mod:`~hinterval.methods.finetune` (per-task heads, shared trunk); after
each task ``k`` a diagonal empirical Fisher ``F_k`` of the trunk weights is estimated from up to
:data:`~hinterval.fisher.FISHER_SAMPLES` training samples of that task, and later tasks pay
``(lambda / 2) * sum_k F_k * (w - w_k*)^2`` (kept in O(P) memory: :mod:`hinterval.fisher`).
Only the trunk is penalised: old heads are frozen anyway and the current head is new. With
``ewc_lambda = 0`` no Fisher is computed and training is step-for-step identical to ``finetune``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from hinterval.fisher import consolidate, diagonal_fisher, fisher_penalty
from hinterval.methods.finetune import FinetuneMethod


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
        return fisher_penalty(self.fisher_sum, self.anchor, self.net.trunk, self.cfg.ewc_lambda)

    def end_task(self, task_id: int, *, box_scale: float = 1.0) -> None:
        if self.cfg.ewc_lambda == 0:
            return
        consolidate(self.fisher_sum, self.anchor, self.fisher(task_id), self.net.trunk)

    def fisher(self, task_id: int) -> Tensor:
        """Diagonal empirical Fisher of the trunk on task ``task_id``'s training data: ``(P_trunk,)``."""
        head = self.net.heads[task_id].detach() if self.net.multi_head else None

        def logits(w_trunk: Tensor, x: Tensor) -> Tensor:
            return self.target.forward(x, w_trunk if head is None else torch.cat([w_trunk, head]))

        return diagonal_fisher(logits, self.net.trunk, self.benchmark.tasks[task_id],
                               seed=self.cfg.seed * 1_000_003 + task_id)
