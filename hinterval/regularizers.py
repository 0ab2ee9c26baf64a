"""Output regulariser that keeps the hypernetwork's outputs for earlier tasks fixed (spec §3).

Free functions over explicit tensors (hypnettorch's ``calc_fix_target_reg`` pattern): the caller
stores the targets before a task starts and passes the current outputs of ALL previous tasks,
computed in ONE batched hypernetwork forward.
"""
from __future__ import annotations

from typing import Sequence

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
    total = sum(((c - t) ** 2).sum() for c, t in zip(current, targets))
    return total / max(1, n_prev)


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
