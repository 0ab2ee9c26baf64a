"""The warm-up of each task from the centre loss alone to the full worst-case objective.

Interval methods train each task with ``kappa * CE(centre) + (1 - kappa) * CE(worst case)``
while the embedding box grows. Both move along one *ramp position* ``q`` in ``[0, 1]``:
``kappa = 1 - (1 - kappa_min) * q`` and the radius is ``q * gamma``. At ``q = 0`` the task trains
its centre network only; at ``q = 1`` it trains the full box.

Two ways to move ``q`` (``ExperimentConfig.ramp``):

* ``fixed`` -- linear in the iteration count over the first ``ramp_fraction`` of the task
  (the paper's schedule).
* ``guarded`` (default) -- the same speed, but ``q`` only advances while the centre network is
  learning and stays learned: the moving average of its training-batch accuracy must be above
  :data:`LEARNED` of the way from chance to 1, and within :data:`TOLERANCE` of the best average
  seen in this task; and while the box is informative: its worst-case cross-entropy may exceed
  the centre's by at most :data:`VACUOUS` times ``log C`` (what a constant network loses). When
  the centre falls back by more than ``3 * TOLERANCE``, or the box is twice past that limit,
  ``q`` moves back at the same speed; in between it holds. Why: a
  worst-case loss over a box that certifies nothing is lowest for a *constant* network (a network
  that outputs the same logits for every input has a zero-width logit box and chance-level loss),
  so with a fixed schedule a box that grows faster than the network can learn to tighten it
  drives the task to chance. The guard lets the box grow only as fast as the centre keeps up;
  if it cannot, the task ends with an accurate centre and a small certified share instead of
  at chance (see ``docs/method.md``).
"""
from __future__ import annotations

import math
from typing import Mapping, Tuple

import torch
import torch.nn.functional as F

from hinterval.config import RAMP_MODES
#: the centre counts as learned once its average batch accuracy is this far from chance to 1
LEARNED = 0.5
#: how far (absolute accuracy) the centre may fall below its best before the ramp moves back
TOLERANCE = 0.05
#: the box counts as vacuous when its worst-case loss exceeds the centre's by this many times log C
VACUOUS = 4.0
#: weight of the newest batch in the moving average of the centre accuracy
EMA_WEIGHT = 0.1


def kappa_and_scale(ramp: float, kappa_min: float) -> Tuple[float, float]:
    """``(kappa, radius_scale)`` at ramp position ``ramp`` in [0, 1]."""
    ramp = min(1.0, max(0.0, ramp))
    return 1.0 - (1.0 - kappa_min) * ramp, ramp


class RampController:
    """The ramp position of one task (see the module docstring).

    Args:
        mode: ``"guarded"`` or ``"fixed"``.
        n_iters: iterations of the task.
        ramp_fraction: share of the task a full ramp takes (0 = start at the full box).
        num_classes: classes of the task (chance accuracy is ``1 / num_classes``).
    """

    def __init__(self, mode: str, *, n_iters: int, ramp_fraction: float, num_classes: int):
        if mode not in RAMP_MODES:
            raise ValueError(f"ramp mode must be one of {RAMP_MODES}, got {mode!r}")
        self.mode = mode
        self.ramp_iters = ramp_fraction * n_iters
        self.chance = 1.0 / max(1, num_classes)
        self.learned = self.chance + LEARNED * (1.0 - self.chance)
        self.position = 1.0 if self.ramp_iters == 0 else 0.0
        # A box whose worst-case loss exceeds the centre's by more than a few times a constant network's
        # loss (log C) certifies less than answering at random: the ramp does not grow it further.
        self.vacuous_excess = VACUOUS * math.log(max(2, num_classes))
        self.acc, self.excess, self.best = math.nan, 0.0, -math.inf
        self._it = 0

    @property
    def reads_logs(self) -> bool:
        """Whether :meth:`update` reads the step's logs (the guarded warm-up, while it ramps): the
        trainer then moves them to the host every step."""
        return self.mode == "guarded" and self.ramp_iters > 0

    @property
    def complete(self) -> bool:
        """Whether the task trains the full box now."""
        return self.position >= 1.0

    def update(self, logs: Mapping[str, float]) -> None:
        """Advance one iteration, given the training logs of the batch just trained: the centre
        network's accuracy ``acc_centre`` and, while the box is trained, the cross-entropies
        ``ce_middle`` and ``ce_worst``."""
        self._it += 1
        if self.ramp_iters == 0:
            return
        if self.mode == "fixed":
            self.position = min(1.0, self._it / self.ramp_iters)
            return
        self.acc = _ema(self.acc, logs.get("acc_centre", 1.0))
        self.best = max(self.best, self.acc)
        # With the box off (ramp at 0) nothing measures it: the memory of a vacuous box fades, so
        # the ramp tries again.
        self.excess = _ema(self.excess, logs["ce_worst"] - logs.get("ce_middle", 0.0) if "ce_worst" in logs else 0.0)
        vacuous = self.excess > self.vacuous_excess
        step = 1.0 / self.ramp_iters
        falling = self.acc < self.best - TOLERANCE
        if self.acc < self.best - 3 * TOLERANCE or self.excess > 2 * self.vacuous_excess:
            self.position = max(0.0, self.position - step)
        elif self.acc >= self.learned and not (vacuous or falling):
            self.position = min(1.0, self.position + step)


def _ema(old: float, new: float) -> float:
    return float(new) if math.isnan(old) else (1 - EMA_WEIGHT) * old + EMA_WEIGHT * float(new)


def worst_case_loss(worst_logits: torch.Tensor, middle_logits: torch.Tensor, y: torch.Tensor, *,
                    capped: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(loss, raw)``: the worst-case cross-entropy the optimiser sees, and its plain batch mean.

    With ``capped`` (the guarded warm-up), a batch whose worst-case loss exceeds its centre loss by
    more than twice the vacuous limit (``2 * VACUOUS * log C``, where the warm-up moves the box
    back) contributes the centre loss instead: its box certifies nothing, and the gradient of such
    a loss only pushes the network towards constant outputs (see the module docstring). Below that
    the box trains as usual (between the limit and twice the limit the warm-up holds the box while
    the worst-case loss tightens it).
    """
    raw = F.cross_entropy(worst_logits, y)
    if not capped:
        return raw, raw
    limit = 2 * VACUOUS * math.log(max(2, worst_logits.shape[-1]))
    ce_mid = F.cross_entropy(middle_logits, y)
    # chosen on the device: a Python `if` on the losses would make the GPU wait for them every step
    vacuous = (raw.detach() - ce_mid.detach()) > limit
    return torch.where(vacuous, ce_mid + limit, raw), raw
