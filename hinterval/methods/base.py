"""The interface every continual-learning method implements for the shared trainer.

The trainer (:mod:`hinterval.trainer`) owns the loop, batching, model selection, evaluation,
metrics and checkpoints; a method only says what to optimise and how to predict. This keeps one
training loop for HyperInterval and every baseline.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from hinterval.config import ExperimentConfig
from hinterval.data.base import Benchmark
from hinterval.evaluation import Predictor
from hinterval.targets.base import TargetNetwork


#: a training step's logs by name: Python numbers, or 0-dim tensors left on the step's device (the
#: trainer moves them to the host in one transfer, and only where it needs them: a GPU waits for
#: every such transfer)
StepLogs = Dict[str, Union[float, Tensor]]


class ContinualMethod(nn.Module):
    """Base class. Subclasses implement :meth:`training_loss` and the prediction methods.

    Args:
        cfg: the experiment config.
        benchmark: the benchmark (for shapes, class counts and — for ``joint`` — data).
        target: the functional target network.
    """

    #: whether the method yields interval (worst-case) predictions
    has_intervals: bool = False
    #: False for ``joint``: backward transfer is then reported as null, not 0
    bwt_meaningful: bool = True

    def __init__(self, cfg: ExperimentConfig, benchmark: Benchmark, target: TargetNetwork):
        super().__init__()
        self.cfg, self.benchmark, self.target = cfg, benchmark, target

    # --- training -------------------------------------------------------------------------
    def begin_task(self, task_id: int) -> None:
        """Called before training ``task_id`` (store regulariser targets, etc.)."""

    def trainable_parameters(self, task_id: int) -> List[nn.Parameter]:
        """Parameters the optimiser updates while training ``task_id``."""
        return [p for p in self.parameters() if p.requires_grad]

    def training_loss(self, task_id: int, x: Tensor, y: Tensor, ramp: float) -> Tuple[Tensor, StepLogs]:
        """Loss on one batch and scalar logs (detached 0-dim tensors stay on the device: :data:`StepLogs`).

        ``ramp`` in [0, 1] is the task's warm-up position (:mod:`hinterval.schedule`): interval
        methods weigh the worst-case loss and scale the box by it; the others ignore it. Logs
        carry ``acc_centre``, the batch accuracy of the centre network, which guards the ramp.
        """
        raise NotImplementedError

    def end_task(self, task_id: int, *, box_scale: float = 1.0) -> None:
        """Called after training ``task_id`` and restoring its selected state; ``box_scale`` is the
        warm-up position (radius scale) that state was trained at."""

    def weight_box(self, task_id: int) -> Optional[Tuple[Tensor, Tensor]]:
        """The task's box of target weights ``(centre, radius)``, each ``(P,)``, at full gamma;
        ``None`` for methods without weight intervals."""
        return None

    def universal_size(self, num_seen: int) -> Optional[Dict[str, object]]:
        """How large the region the universal network lies in is (for ``result.json``);
        ``None`` for methods without one."""
        return None

    # --- prediction -------------------------------------------------------------------------
    def predictor(self, task_ids: Sequence[int]) -> Predictor:
        """Networks of ``task_ids`` precomputed for evaluation (see :mod:`hinterval.evaluation`).

        The universal (DIL) network, where the method has one, covers tasks ``0..max(task_ids)``.
        """
        raise NotImplementedError


def batched_target(target: TargetNetwork, x: Tensor, weights: Tensor) -> Tensor:
    """Run the point target for a batch of weight vectors ``(B, P)`` -> logits ``(B, N, C)``."""
    return torch.func.vmap(target.forward, in_dims=(None, 0))(x, weights)


def batched_target_interval(target: TargetNetwork, x: Tensor, centre: Tensor, radius: Tensor,
                            middle: Optional[Tensor] = None, *, rounding_safe: bool = False) -> Tuple[Tensor, Tensor]:
    """Interval target for ``(B, P)`` weight boxes -> logit ``(centre, radius)``, each ``(B, N, C)``.

    ``middle`` ``(B, P)`` gives each task's batch-norm statistics network (default: the centres);
    ``rounding_safe``: the boxes also bound the floating-point rounding (certifying).
    """
    middle = centre if middle is None else middle

    def one(x_: Tensor, c: Tensor, r: Tensor, m: Tensor) -> Tuple[Tensor, Tensor]:
        return target.forward_interval(x_, c, r, w_middle=m, rounding_safe=rounding_safe)

    return torch.func.vmap(one, in_dims=(None, 0, 0, 0))(x, centre, radius, middle)


class WeightBoxPredictor(Predictor):
    """Predictor from explicit per-task weights: middle ``(T, P)``, optional box, optional universal.

    Args:
        target: the functional target network.
        middle: point weights per task ``(T, P)``.
        centre, radius: weight box per task ``(T, P)``; ``radius=None`` for point methods.
        universal: one weight vector ``(P,)`` for all tasks, or ``None``.
    """

    def __init__(self, target: TargetNetwork, middle: Tensor, centre: Optional[Tensor] = None,
                 radius: Optional[Tensor] = None, universal: Optional[Tensor] = None):
        self.target, self.middle, self.centre, self.radius, self.universal_w = target, middle, centre, radius, universal

    def logits(self, x: Tensor) -> Tensor:
        return batched_target(self.target, x, self.middle)

    def bounds(self, x: Tensor, *, rounding_safe: bool = False) -> Optional[Tuple[Tensor, Tensor]]:
        if self.radius is None:
            return None
        c, r = batched_target_interval(self.target, x, self.centre, self.radius, self.middle,
                                       rounding_safe=rounding_safe)
        return c - r, c + r

    def universal(self, x: Tensor) -> Optional[Tensor]:
        return None if self.universal_w is None else self.target.forward(x, self.universal_w)

    def features(self, x: Tensor, task: Optional[int] = None) -> Optional[Tensor]:
        respond = getattr(self.target, "first_layer_response", None)
        if respond is None:
            return None
        if task is not None:
            return respond(x, self.middle[task])
        return torch.func.vmap(respond, in_dims=(None, 0))(x, self.middle)
