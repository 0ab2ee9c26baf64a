"""``intercontinet``: intervals directly on the target weights (Wołczyk et al. 2022).

The method HyperInterval replaces. Every target weight has a learnable centre ``c``
and log-radius ``rho`` (radius ``r = exp(rho)``, initialised to ``cfg.intercontinet_radius``), so
the network is a box ``[c - r, c + r]``. Each task minimises the same loss as HyperInterval,

    kappa * CE(f(x; c)) + (1 - kappa) * CE(worst-case logits of the box),

under the same schedule (:mod:`hinterval.schedule`). Forgetting is
prevented by *nesting*: after task ``t`` the shared trunk's box is frozen as a constraint, and the
box trained for task ``t + 1`` must lie inside it. Hence the final box lies inside every earlier
task's box, and since interval propagation is inclusion-monotone, the worst-case accuracy of an
old task can only stay or improve (worst-case BWT >= 0 by construction).

Heads: as for the other weight-space baselines (:mod:`~hinterval.methods.heads`), the output layer
is one head per task — also a box, but unconstrained and frozen after its task. All tasks are
evaluated with the *current* trunk box (it lies inside all of theirs) and their own head.

Constraint handling: projected gradient descent. The trainer owns the optimiser step, so the
projection of ``(c, r)`` onto the previous box runs in place at the start of every
:meth:`training_loss` (i.e. right after the previous step), in :meth:`end_task`, and — without
touching the parameters — in :meth:`box` for prediction. Projection clamps the bounds into the
previous box and keeps every radius at least :data:`MIN_RADIUS`, so ``log r`` stays finite.

Caveat (the reason HyperInterval exists): weight intervals widen multiplicatively through depth.
On the digit MLPs ``intercontinet_radius = 0.01`` trains well; on slim ResNet-18 the same radius
gives worst-case logits of order 1e19 at initialisation, so deep targets need a far smaller radius.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hinterval.evaluation import Predictor
from hinterval.intervals import worst_case_logits
from hinterval.methods.base import ContinualMethod, StepLogs, WeightBoxPredictor
from hinterval.methods.heads import TrunkHeads
from hinterval.schedule import kappa_and_scale, worst_case_loss

#: smallest radius kept (a box never degenerates to a point, so ``log r`` stays finite)
MIN_RADIUS = 1e-6


def project_box(centre: Tensor, radius: Tensor, lower: Tensor, upper: Tensor, min_radius: float = MIN_RADIUS) -> Tuple[Tensor, Tensor]:
    """Largest part of ``centre ± radius`` inside ``[lower, upper]``, with radius >= ``min_radius``.

    Args:
        centre, radius: the box to project, ``(P,)``.
        lower, upper: the enclosing box, ``(P,)`` (``±inf`` = unconstrained); its half-width must
            be at least ``min_radius`` wherever it is finite.

    Returns:
        ``(centre, radius)`` of the projected box.
    """
    lo = torch.minimum(torch.maximum(centre - radius, lower), upper)
    hi = torch.minimum(torch.maximum(centre + radius, lower), upper)
    c, r = (lo + hi) / 2, (hi - lo) / 2
    thin = r < min_radius
    # A too-thin box is widened to min_radius and its centre moved inwards to stay inside.
    c = torch.where(thin, torch.minimum(torch.maximum(c, lower + min_radius), upper - min_radius), c)
    r = torch.clamp_min(r, min_radius)
    # Boxes already inside keep their exact values (no rounding drift from (lo + hi) / 2).
    inside = (centre - radius >= lower) & (centre + radius <= upper) & (radius >= min_radius)
    return torch.where(inside, centre, c), torch.where(inside, radius, r)


class InterContiNetMethod(ContinualMethod):
    """Weight-interval continual learning with nested boxes between tasks."""

    has_intervals = True

    def __init__(self, cfg, benchmark, target):
        super().__init__(cfg, benchmark, target)
        self.centre = TrunkHeads(target, len(benchmark))
        log_r0 = math.log(max(cfg.intercontinet_radius, MIN_RADIUS))
        self.log_radius = TrunkHeads(target, len(benchmark), fill=log_r0)
        n = self.centre.trunk.numel()
        # The enclosing box of the trunk (the box after the previous task); ±inf before task 1.
        self.register_buffer("prev_lower", torch.full((n,), -math.inf))
        self.register_buffer("prev_upper", torch.full((n,), math.inf))

    # --- constraint ------------------------------------------------------------------------
    def trunk_box(self) -> Tuple[Tensor, Tensor]:
        """The trunk's box ``(centre, radius)`` projected into the previous box (differentiable)."""
        return project_box(self.centre.trunk, self.log_radius.trunk.exp(), self.prev_lower, self.prev_upper)

    @torch.no_grad()
    def project_(self) -> None:
        """Projection step of projected gradient descent: move the parameters into the constraint."""
        r_now = self.log_radius.trunk.exp()
        c, r = project_box(self.centre.trunk, r_now, self.prev_lower, self.prev_upper)
        self.centre.trunk.copy_(c)
        # Only rewrite moved radii: a log(exp(rho)) round trip would drift every step.
        self.log_radius.trunk.copy_(torch.where(r == r_now, self.log_radius.trunk, r.log()))

    def box(self, task_ids: Sequence[int], *, project: bool = True) -> Tuple[Tensor, Tensor]:
        """Weight boxes ``(centre, radius)``, each ``(len(task_ids), P)``: current trunk + own heads.

        ``project=False`` reads the parameters as they are: training projects them in place first,
        and skipping the (then identity) projection keeps full gradients at the box boundary.
        """
        if project:
            c, r = self.trunk_box()
        else:
            c, r = self.centre.trunk, self.log_radius.trunk.exp()
        n = len(task_ids)
        centre, radius = c.unsqueeze(0).expand(n, -1), r.unsqueeze(0).expand(n, -1)
        if self.centre.multi_head:
            centre = torch.cat([centre, torch.stack([self.centre.heads[t] for t in task_ids])], 1)
            radius = torch.cat([radius, torch.stack([self.log_radius.heads[t] for t in task_ids]).exp()], 1)
        return centre, radius

    # --- training -------------------------------------------------------------------------
    def trainable_parameters(self, task_id: int) -> List[nn.Parameter]:
        return [*self.centre.task_parameters(task_id), *self.log_radius.task_parameters(task_id)]

    def training_loss(self, task_id: int, x: Tensor, y: Tensor, ramp: float) -> Tuple[Tensor, StepLogs]:
        self.project_()
        kappa, scale = kappa_and_scale(ramp, self.cfg.kappa_min)
        centre, radius = self.box([task_id], project=False)
        logits = self.target.forward(x, centre[0])
        ce_mid = F.cross_entropy(logits, y)
        loss = kappa * ce_mid
        logs: StepLogs = {"ce_middle": ce_mid.detach(), "kappa": kappa, "radius_scale": scale,
                          "mean_radius": radius.detach().mean(),
                          "acc_centre": (logits.detach().argmax(1) == y).float().mean()}
        if kappa < 1.0:
            c, r = self.target.forward_interval(x, centre[0], radius[0] * scale)
            ce_worst, raw = worst_case_loss(worst_case_logits(c - r, c + r, y), logits, y,
                                            capped=self.cfg.ramp == "guarded")
            loss = loss + (1.0 - kappa) * ce_worst
            logs["ce_worst"] = raw.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def end_task(self, task_id: int, *, box_scale: float = 1.0) -> None:
        """Freeze the trunk's box as the enclosing box of every later task."""
        self.project_()
        with torch.no_grad():
            c, r = self.centre.trunk, self.log_radius.trunk.exp()
            self.prev_lower.copy_(torch.maximum(c - r, self.prev_lower))
            self.prev_upper.copy_(torch.minimum(c + r, self.prev_upper))

    @torch.no_grad()
    def weight_box(self, task_id: int) -> Optional[Tuple[Tensor, Tensor]]:
        centre, radius = self.box([task_id])
        return centre[0], radius[0]

    # --- prediction -------------------------------------------------------------------------
    @torch.inference_mode()
    def predictor(self, task_ids: Sequence[int]) -> Predictor:
        centre, radius = self.box(task_ids)
        universal = None if self.centre.multi_head else centre[0]
        return WeightBoxPredictor(self.target, centre, centre, radius, universal)
