"""``joint``: the upper bound — while training task ``t`` every batch mixes tasks ``0..t``.

Same multi-head network as :mod:`~hinterval.methods.finetune`. The trainer hands over a batch of
the current task only, so the method draws the earlier tasks' sub-batches itself, straight from
``benchmark.tasks[j].train`` (uniformly with replacement, on the data's device, with torch's global
RNG that the trainer seeds per task). The compute budget per step stays one batch: each of the
``t + 1`` tasks contributes ``ceil(B / (t + 1))`` samples (the current task's come from the
trainer's shuffled batch) and every task's loss has the same weight. All seen heads are trained.

Because old tasks keep being trained, the accuracy on task ``j`` after task ``t`` is not a measure
of forgetting: ``bwt_meaningful = False`` and the trainer reports BWT as null.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hinterval.methods.base import StepLogs
from hinterval.methods.finetune import FinetuneMethod


class JointMethod(FinetuneMethod):
    """Multi-task training on the union of all tasks seen so far."""

    bwt_meaningful = False

    def trainable_parameters(self, task_id: int) -> List[nn.Parameter]:
        if not self.net.multi_head:
            return [self.net.trunk]
        return [self.net.trunk, *(self.net.heads[j] for j in range(task_id + 1))]

    def _sub_batch(self, task_id: int, k: int) -> Tuple[Tensor, Tensor]:
        """``k`` training samples of an earlier task, as network inputs and task-local labels."""
        task = self.benchmark.tasks[task_id]
        idx = torch.randint(len(task.train), (k,), device=task.train.y.device)
        x = task.inputs(task.train.x[idx])
        if task.augment:
            from hinterval.data.augment import random_flip_crop

            x = random_flip_crop(x)
        return x, task.train.y[idx]

    def training_loss(self, task_id: int, x: Tensor, y: Tensor, ramp: float) -> Tuple[Tensor, StepLogs]:
        k = max(1, math.ceil(len(y) / (task_id + 1)))
        parts = [self._sub_batch(j, k) for j in range(task_id)] + [(x[:k], y[:k])]
        xs, ys = torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])  # (t+1, k, ...)
        weights = self.net.stacked(range(task_id + 1))  # (t+1, P)
        logits = torch.func.vmap(self.target.forward)(xs, weights)  # (t+1, k, C)
        loss = F.cross_entropy(logits.flatten(0, 1), ys.flatten())
        return loss, {"loss": loss.detach(), "ce_middle": loss.detach()}
