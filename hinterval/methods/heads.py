"""Shared trunk + per-task output heads for the baselines that train target weights directly.

Task-incremental learning (TIL) means the task id is given at test time. HyperInterval gives
every task its own weights (from its embedding); the standard way to give a *single* network the
same information is a multi-head output layer (Hsu et al. 2018, van de Ven & Tolias 2019): the
trunk is shared by all tasks and task ``t`` reads its ``C`` logits from its own output layer.

The functional target API has no notion of "head", so we take it from ``param_shapes``: the output
layer is the trailing ``(C, ...)`` weight and its ``(C,)`` bias (every target in this package ends
with such a linear layer). A target may override this with a ``head_num_params`` attribute; a
target whose output layer cannot be found gets a single shared head (``head_size == 0``), i.e. a
domain-incremental network, which the methods then also report as the universal (DIL) network.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from hinterval.targets.base import TargetNetwork


def head_size(target: TargetNetwork) -> int:
    """Number of trailing entries of the flat weight vector that form the output layer (0 = none)."""
    explicit = getattr(target, "head_num_params", None)
    if explicit is not None:
        return int(explicit)
    shapes, c = list(target.param_shapes), target.num_classes
    if len(shapes) >= 2 and tuple(shapes[-1]) == (c,) and len(shapes[-2]) >= 2 and shapes[-2][0] == c:
        return math.prod(shapes[-1]) + math.prod(shapes[-2])  # weight (C, ...) + bias (C,)
    if shapes and len(shapes[-1]) >= 2 and shapes[-1][0] == c:
        return math.prod(shapes[-1])  # bias-free output layer
    return 0


class TrunkHeads(nn.Module):
    """One flat weight vector per task: a shared ``trunk`` followed by that task's ``heads[t]``.

    Heads are separate parameters (not rows of one tensor) so an optimiser only ever sees the heads
    it trains; frozen heads then stay exactly fixed without relying on zero gradients.

    Args:
        target: the functional target network.
        num_tasks: number of heads ``T``.
        fill: initialise every entry to this constant (e.g. a log-radius) instead of drawing
            ``target.init_weights()`` (which uses torch's global RNG, seeded by the trainer).
        shared_head: one output layer for all tasks (a domain-incremental network).
    """

    def __init__(self, target: TargetNetwork, num_tasks: int, *, fill: Optional[float] = None, shared_head: bool = False):
        super().__init__()
        self.num_params, self.head_numel = target.num_params, 0 if shared_head else head_size(target)
        split = self.num_params - self.head_numel

        def draw() -> Tensor:
            return torch.full((self.num_params,), float(fill)) if fill is not None else target.init_weights()

        first = draw()
        self.trunk = nn.Parameter(first[:split].clone())
        if self.head_numel == 0:
            self.heads = nn.ParameterList()
        else:
            inits = [first[split:]] + [draw()[split:] for _ in range(num_tasks - 1)]
            self.heads = nn.ParameterList([nn.Parameter(h.clone()) for h in inits])

    @property
    def multi_head(self) -> bool:
        return self.head_numel > 0

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        """Trunk and the head of ``task_id`` (the trunk alone with a shared head)."""
        return [self.trunk, self.heads[task_id]] if self.multi_head else [self.trunk]

    def weights(self, task_id: int) -> Tensor:
        """Flat weights ``(P,)`` of task ``task_id``'s network."""
        return torch.cat([self.trunk, self.heads[task_id]]) if self.multi_head else self.trunk

    def stacked(self, task_ids: Sequence[int]) -> Tensor:
        """Flat weights ``(len(task_ids), P)`` of several tasks' networks."""
        trunk = self.trunk.unsqueeze(0).expand(len(task_ids), -1)
        if not self.multi_head:
            return trunk
        return torch.cat([trunk, torch.stack([self.heads[t] for t in task_ids])], dim=1)
