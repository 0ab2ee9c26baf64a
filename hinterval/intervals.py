"""Sound interval arithmetic in centre/radius form.

An interval tensor is a pair ``(c, r)`` with ``r >= 0``; its bounds are ``c - r`` and
``c + r``. A point is an interval with radius ``None`` (cheap path: one ordinary op) or zero.
Every function here returns an interval that *contains* the image of every point of its input
intervals (soundness); the tests check this with sampled points.

All functions are pure tensor functions (no modules, no state) so they compose inside
``torch.func`` transforms and are easy to test.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Radius = Optional[Tensor]
Interval = Tuple[Tensor, Radius]


def bounds(c: Tensor, r: Radius) -> Tuple[Tensor, Tensor]:
    """Return ``(lower, upper)`` of an interval; a point gives ``(c, c)``."""
    if r is None:
        return c, c
    return c - r, c + r


def from_bounds(lower: Tensor, upper: Tensor) -> Tuple[Tensor, Tensor]:
    """Centre/radius form of ``[lower, upper]`` (the radius is clamped at 0 against rounding)."""
    return (lower + upper) / 2, ((upper - lower) / 2).clamp_min(0)


def interval_affine(c: Tensor, r: Radius, weight: Tensor, bias: Optional[Tensor] = None) -> Interval:
    """Point affine map ``y = x @ W.T + b`` of an interval input (exact for a box).

    Args:
        c: centre, shape ``(..., in)``.
        r: radius, same shape, or ``None`` for a point.
        weight: ``(out, in)``.
        bias: ``(out,)`` or ``None``.

    Returns:
        ``(c', r')`` with ``c' = W c + b`` and ``r' = |W| r``, shape ``(..., out)``.
    """
    c_out = F.linear(c, weight, bias)
    if r is None:
        return c_out, None
    return c_out, F.linear(r, weight.abs())


def interval_monotone(fn: Callable[[Tensor], Tensor], c: Tensor, r: Radius) -> Interval:
    """Apply a non-decreasing elementwise function (ReLU, tanh, sigmoid, LeakyReLU) to bounds."""
    if r is None:
        return fn(c), None
    lo, hi = fn(c - r), fn(c + r)
    return from_bounds(lo, hi)


def interval_relu(c: Tensor, r: Radius) -> Interval:
    """ReLU of an interval (applied to both bounds)."""
    return interval_monotone(F.relu, c, r)


def _pos_neg(t: Tensor) -> Tuple[Tensor, Tensor]:
    return t.clamp_min(0), t.clamp_max(0)


def interval_product_nonneg(
    x_lo: Tensor,
    x_hi: Tensor,
    w_lo: Tensor,
    w_hi: Tensor,
    op: Callable[[Tensor, Tensor], Tensor],
) -> Tuple[Tensor, Tensor]:
    """Exact bounds of ``op(x, W)`` for interval weights and a *non-negative* interval input.

    ``op`` is bilinear and sums products (``F.linear`` or a convolution). With ``x >= 0`` the
    smallest product ``w * x`` of each term uses ``x_lo`` where ``w_lo >= 0`` and ``x_hi`` where
    ``w_lo < 0``; symmetrically for the upper bound. Each output coordinate is a sum of
    independent terms, so the bounds are exact for a box.

    Returns:
        ``(lower, upper)`` without bias.
    """
    wl_pos, wl_neg = _pos_neg(w_lo)
    wu_pos, wu_neg = _pos_neg(w_hi)
    lower = op(x_lo, wl_pos) + op(x_hi, wl_neg)
    upper = op(x_hi, wu_pos) + op(x_lo, wu_neg)
    return lower, upper


def interval_product_general(
    x_c: Tensor,
    x_r: Radius,
    w_c: Tensor,
    w_r: Radius,
    op: Callable[[Tensor, Tensor], Tensor],
) -> Interval:
    """Rump's midpoint-radius product ``op(x, W)`` for intervals of any sign (sound superset).

    ``c = op(x_c, W_c)``, ``r = op(x_r, |W_c|) + op(|x_c| + x_r, W_r)``. With a point input
    (``x_r`` is ``None``) this is exact: ``r = op(|x_c|, W_r)``.
    """
    c = op(x_c, w_c)
    parts = []
    if x_r is not None:
        parts.append(op(x_r, w_c.abs()))
    if w_r is not None:
        mag = x_c.abs() if x_r is None else x_c.abs() + x_r
        parts.append(op(mag, w_r))
    if not parts:
        return c, None
    r = parts[0]
    for p in parts[1:]:
        r = r + p
    return c, r


def interval_layer(
    x_c: Tensor,
    x_r: Radius,
    w_c: Tensor,
    w_r: Radius,
    b_c: Optional[Tensor],
    b_r: Radius,
    op: Callable[[Tensor, Tensor], Tensor],
    *,
    nonneg_input: bool = False,
) -> Interval:
    """Interval weights times interval input plus interval bias, for ``F.linear``/conv ops.

    Uses the exact non-negative rule when ``nonneg_input`` (e.g. after ReLU or for images in
    [0, 1]) and the input really is an interval; otherwise Rump's midpoint-radius product.
    ``op(x, w)`` must be bilinear and bias-free; the bias (shape ``(out,)``) is added along
    dimension 1 (features/channels).

    Returns:
        ``(c, r)`` of the layer output.
    """
    if nonneg_input and x_r is not None and w_r is not None:
        lo, hi = interval_product_nonneg(x_c - x_r, x_c + x_r, w_c - w_r, w_c + w_r, op)
        c, r = from_bounds(lo, hi)
    else:
        c, r = interval_product_general(x_c, x_r, w_c, w_r, op)
    if b_c is not None:
        shape = [1, -1] + [1] * (c.dim() - 2)
        c = c + b_c.view(shape)
        if b_r is not None:
            r = b_r.view(shape).expand_as(c) if r is None else r + b_r.view(shape)
    return c, r


def worst_case_logits(lower: Tensor, upper: Tensor, y: Tensor) -> Tensor:
    """Worst-case logits: lower bound for the true class, upper bound for every other class.

    Args:
        lower, upper: ``(..., N, C)`` logit bounds.
        y: ``(N,)`` integer labels.
    """
    mask = F.one_hot(y, lower.shape[-1]).bool()
    return torch.where(mask, lower, upper)
