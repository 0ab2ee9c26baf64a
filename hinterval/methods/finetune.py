"""``finetune``: one target network trained task after task with no protection (the lower bound).

Design (TIL heads): the target network's output layer becomes one head per task and everything
below it is a shared trunk (:class:`~hinterval.methods.heads.TrunkHeads`). With the task id given
(task-incremental evaluation) task ``j`` is predicted with ``trunk + head_j``; class-incremental
evaluation picks the head by entropy like every other method. Forgetting happens in the shared
trunk, which the next task overwrites. There is no single network for all tasks, so the DIL
(universal) scenario is undefined (``None``) — unless ``shared_head`` is set (or the target's output
layer cannot be located): then the whole network is shared and is also reported as the universal network.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hinterval.evaluation import Predictor
from hinterval.methods.base import ContinualMethod, StepLogs, WeightBoxPredictor
from hinterval.methods.heads import TrunkHeads


class FinetuneMethod(ContinualMethod):
    """Plain sequential training of a multi-head target network (no regularisation)."""

    def __init__(self, cfg, benchmark, target):
        super().__init__(cfg, benchmark, target)
        self.net = TrunkHeads(target, len(benchmark), shared_head=cfg.shared_head)

    def trainable_parameters(self, task_id: int) -> List[nn.Parameter]:
        return self.net.task_parameters(task_id)

    def penalty(self, task_id: int) -> Tensor | None:
        """Extra loss term on the weights (none here; EWC overrides it)."""
        return None

    def training_loss(self, task_id: int, x: Tensor, y: Tensor, ramp: float) -> Tuple[Tensor, StepLogs]:
        ce = F.cross_entropy(self.target.forward(x, self.net.weights(task_id)), y)
        loss, logs = ce, {"ce_middle": ce.detach()}
        pen = self.penalty(task_id)
        if pen is not None:
            loss = loss + pen
            logs["penalty"] = pen.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    @torch.inference_mode()
    def predictor(self, task_ids: Sequence[int]) -> Predictor:
        universal = None if self.net.multi_head else self.net.trunk
        return WeightBoxPredictor(self.target, self.net.stacked(task_ids), universal=universal)
