"""The intersection of earlier tasks' weight boxes, and clipping a new box into it.

In nested mode every task's weight box must contain the universal network. A soft penalty on
three points of each earlier box does not keep those boxes where they were certified, so
``nested_hold = "intersection"`` keeps them exactly instead: after task ``t`` its box (already
clipped into the boxes of tasks ``< t``) becomes the new intersection ``F_t``, and every later
hypernetwork output is clipped into ``F_t`` before the target network sees it. Clipping is
sound: for every weight ``w`` in ``[lower, upper]`` the clipped ``clamp(w, F)`` lies in
``[clamp(lower, F), clamp(upper, F)]`` (``clamp`` is monotone). So ``F_T`` is inside every
task's certified box, and every network in it -- the universal network included -- keeps each
task's certificate.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor


def clip_box(lower_bound: Tensor, upper_bound: Tensor, middle: Tensor, centre: Optional[Tensor],
             radius: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Clip a weight box (and its middle network) into ``[lower_bound, upper_bound]``.

    Args:
        lower_bound, upper_bound: the box to clip into, ``(P,)`` (``-inf``/``inf`` = no bound).
        middle: middle weights ``(..., P)``.
        centre, radius: the box in centre/radius form ``(..., P)``, or ``None`` for a point.

    Returns:
        ``(middle, centre, radius)`` clipped: the new box lies inside ``[lower_bound, upper_bound]``
        and contains the clipped image of every weight of the old box, the middle included.
    """
    middle = _clamp(middle, lower_bound, upper_bound)
    if centre is None:
        return middle, None, None
    if radius is None:
        return middle, _clamp(centre, lower_bound, upper_bound), None
    lo = _clamp(centre - radius, lower_bound, upper_bound)
    hi = _clamp(centre + radius, lower_bound, upper_bound)
    return middle, (lo + hi) / 2, (hi - lo) / 2


class _StraightThroughClamp(torch.autograd.Function):
    """``clamp(x, lo, hi)`` exactly in the forward, the identity in the backward (straight-through):
    a clipped weight still learns, so it can move back inside instead of sticking at the bound.
    (``x + (clamp(x) - x).detach()`` would round to values just outside the bounds.)"""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:  # type: ignore[override]
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad, None, None


def _clamp(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    return _StraightThroughClamp.apply(x, lo, hi)
