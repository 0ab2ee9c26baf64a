"""Output regulariser that keeps the hypernetwork's outputs for earlier tasks fixed.

Free functions over explicit tensors (hypnettorch's ``calc_fix_target_reg`` pattern): the caller
stores the targets before a task starts and passes the current outputs of ALL previous tasks,
computed in ONE batched hypernetwork forward.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor


def output_regularizer(current: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    """Mean over previous tasks of the summed squared drift of the hypernetwork outputs.

    Args:
        current: tensors ``(n_prev, P)`` — e.g. ``[middle]`` or ``[middle, lower, upper]``.
        targets: the stored tensors of the same shapes.

    Returns:
        ``(1 / n_prev) * sum_j sum_k ||current_k[j] - targets_k[j]||^2`` (a scalar).
    """
    n_prev = current[0].shape[0]
    total = sum(_squared_distance(c, t) for c, t in zip(current, targets))
    return total / max(1, n_prev)


def _squared_distance(current: Tensor, target: Tensor) -> Tensor:
    """``||current - target||^2`` summed; ``mse_loss`` fuses the difference, square and sum (and its
    backward is one pass), which matters for ``(n_prev, P)`` tensors of millions of entries."""
    return F.mse_loss(current, target, reduction="sum")


def box_regularizer(middle: Tensor, centre: Tensor, radius: Tensor, targets: Sequence[Tensor]) -> Tensor:
    """:func:`output_regularizer` of ``[middle, lower, upper]`` computed from the box in centre/radius form.

    With ``lower = c - r``, ``upper = c + r`` and stored targets in the same form
    (``T_c = (T_lower + T_upper) / 2``, ``T_r = (T_upper - T_lower) / 2``):
    ``||lower - T_lower||^2 + ||upper - T_upper||^2 = 2 ||c - T_c||^2 + 2 ||r - T_r||^2`` exactly,
    so the bounds never have to be formed (fewer passes over the ``(n_prev, P)`` outputs).

    Args:
        middle, centre, radius: current outputs ``(n_prev, P)``.
        targets: stored ``[T_middle, T_c, T_r]``, each ``(n_prev, P)``.

    Returns:
        The same scalar as ``output_regularizer([middle, lower, upper], [T_middle, T_lower, T_upper])``.
    """
    t_mid, t_c, t_r = targets
    box = _squared_distance(centre, t_c) + _squared_distance(radius, t_r)
    return (_squared_distance(middle, t_mid) + 2 * box) / max(1, middle.shape[0])


def regularizer_weight(beta: float, n_prev: int, normalisation: str) -> float:
    """Effective multiplier of :func:`output_regularizer`.

    ``"reference"`` divides ``beta`` once more by the number of previous tasks (as the paper's
    code does: the weight decays like ``1/t^2`` overall); ``"mean"`` uses ``beta`` as is.
    """
    if normalisation == "reference":
        return beta / max(1, n_prev)
    if normalisation == "mean":
        return beta
    raise ValueError(f"unknown regulariser normalisation {normalisation!r}")
