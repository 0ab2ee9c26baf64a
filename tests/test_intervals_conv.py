"""Interval batch norm, products with a scale, pooling and the interval convolution (exact
non-negative rule, fused into one call, and Rump's): hand-worked cases, a brute-force exact box,
and soundness with sampled points."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.intervals import (
    bounds,
    conv2d_op,
    interval_add,
    interval_avg_pool2d,
    interval_batch_norm,
    interval_max_pool2d,
    interval_product,
    interval_scale,
)
from hinterval.targets.executors import BN_EPS, batch_norm_point, batch_norm_stats

TOL = 1e-4


def _sample(c, r, g):
    return c if r is None else c + (torch.rand(c.shape, generator=g) * 2 - 1) * r


def _inside(y, lo, hi, tol=TOL):
    return bool((y >= lo - tol).all() and (y <= hi + tol).all())


# --- hand-worked cases ------------------------------------------------------------------------

def test_scale_negative_factor_swaps_bounds():
    # g in [-2, -1] times z in [1, 3]: [-6, -1]
    c, r = interval_scale(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([-1.5]), torch.tensor([0.5]))
    lo, hi = bounds(c, r)
    assert lo.item() == -6.0 and hi.item() == -1.0
    # point factor -2 times z in [1, 3]: [-6, -2]
    c, r = interval_scale(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([-2.0]), None)
    assert (c - r).item() == -6.0 and (c + r).item() == -2.0
    # g straddling 0: g in [-1, 2], z in [-1, 3]: corners -3, 1, -2, 6 -> [-3, 6]
    c, r = interval_scale(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([1.5]))
    assert (c - r).item() == -3.0 and (c + r).item() == 6.0


def test_batch_norm_hand_worked_negative_gamma():
    # one channel, stats mean 1, var 4 - eps: s = 1/2. x in [1, 5] -> z in [0, 2];
    # gamma = -1 (point), beta in [0, 1]: y in [-2 + 0, 0 + 1] = [-2, 1]
    eps = 1e-5
    c, r = interval_batch_norm(torch.tensor([[3.0]]), torch.tensor([[2.0]]), torch.tensor([1.0]), torch.tensor([4.0 - eps]),
                               torch.tensor([-1.0]), None, torch.tensor([0.5]), torch.tensor([0.5]), eps=eps)
    lo, hi = bounds(c, r)
    assert torch.allclose(lo, torch.tensor([[-2.0]])) and torch.allclose(hi, torch.tensor([[1.0]]))


def test_zero_radius_is_exact():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 6, 6, generator=g)
    w = torch.randn(4, 3, 3, 3, generator=g)
    c, r = interval_product(x, torch.zeros_like(x), w, torch.zeros_like(w), conv2d_op(padding=1), nonneg_input=True)
    assert torch.equal(c, F.conv2d(x, w, padding=1)) and torch.equal(r, torch.zeros_like(r))
    mean, var = batch_norm_stats(x)
    gam, bet = torch.randn(3, generator=g), torch.randn(3, generator=g)
    c, r = interval_batch_norm(x, torch.zeros_like(x), mean, var, gam, torch.zeros(3), bet, torch.zeros(3), eps=BN_EPS)
    assert torch.allclose(c, batch_norm_point(x, mean, var, gam, bet)) and torch.equal(r, torch.zeros_like(r))


def test_add_and_pools_hand_worked():
    c, r = interval_add(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([2.0]), None)
    assert c.item() == 3.0 and r.item() == 0.5
    # 2x2 max pool of [[0,1],[2,3]] +- [[5,0],[0,0]]: lower max(-5,1,2,3)=3, upper max(5,1,2,3)=5
    xc = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    xr = torch.tensor([[[[5.0, 0.0], [0.0, 0.0]]]])
    c, r = interval_max_pool2d(xc, xr, 2)
    assert (c - r).item() == 3.0 and (c + r).item() == 5.0
    c, r = interval_avg_pool2d(xc, xr, 2)
    assert c.item() == 1.5 and r.item() == 1.25


# --- soundness properties -------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 2.0), w_interval=st.booleans(), x_interval=st.booleans())
def test_interval_batch_norm_is_sound(seed, scale, w_interval, x_interval):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(4, 3, 3, 3, generator=g)
    r = torch.rand(c.shape, generator=g) * scale if x_interval else None
    mean, var = batch_norm_stats(torch.randn(4, 3, 3, 3, generator=g))  # any fixed statistics
    w_c, b_c = torch.randn(3, generator=g), torch.randn(3, generator=g)  # gamma of either sign
    w_r = torch.rand(3, generator=g) * scale if w_interval else None
    b_r = torch.rand(3, generator=g) * scale if w_interval else None
    yc, yr = interval_batch_norm(c, r, mean, var, w_c, w_r, b_c, b_r, eps=BN_EPS)
    lo, hi = bounds(yc, yr)
    for _ in range(40):
        y = batch_norm_point(_sample(c, r, g), mean, var, _sample(w_c, w_r, g), _sample(b_c, b_r, g))
        assert _inside(y, lo, hi)


def exact_conv_box(x_lo, x_hi, w_lo, w_hi, k, stride, pad):
    """Exact bounds of ``conv2d(x, W)`` over a box, by brute force: unfold the input into the
    terms of each output and bound every product ``w x`` by its four corners."""
    cols = [F.unfold(x, k, padding=pad, stride=stride).unsqueeze(1) for x in (x_lo, x_hi)]  # (N, 1, in*k*k, L)
    ws = [w.flatten(1).unsqueeze(0).unsqueeze(-1) for w in (w_lo, w_hi)]  # (1, out, in*k*k, 1)
    corners = torch.stack([w * x for w in ws for x in cols])
    side = (x_lo.shape[-1] + 2 * pad - k) // stride + 1
    lo, hi = corners.min(0).values.sum(2), corners.max(0).values.sum(2)  # (N, out, L)
    return lo.unflatten(-1, (side, side)), hi.unflatten(-1, (side, side))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 2.0), stride=st.sampled_from([1, 2]), k=st.sampled_from([1, 3]))
def test_nonneg_conv_is_exact_and_rump_conv_contains_it(seed, scale, stride, k):
    g = torch.Generator().manual_seed(seed)
    x_r = torch.rand(2, 3, 5, 5, generator=g) * scale
    x_c = x_r + torch.rand(2, 3, 5, 5, generator=g)  # lower bound >= 0
    w_c, w_r = torch.randn(4, 3, k, k, generator=g), torch.rand(4, 3, k, k, generator=g) * scale
    pad = k // 2
    op = conv2d_op(stride, pad)
    c, r = interval_product(x_c, x_r, w_c, w_r, op, nonneg_input=True)
    lo_ref, hi_ref = exact_conv_box(x_c - x_r, x_c + x_r, w_c - w_r, w_c + w_r, k, stride, pad)
    assert torch.allclose(c - r, lo_ref, atol=1e-4) and torch.allclose(c + r, hi_ref, atol=1e-4)
    lo, hi = bounds(c, r)
    for _ in range(30):
        assert _inside(op(_sample(x_c, x_r, g), _sample(w_c, w_r, g)), lo, hi)
    rc, rr = interval_product(x_c, x_r, w_c, w_r, op)
    assert (rc - rr <= lo + 1e-4).all() and (rc + rr >= hi - 1e-4).all()
    assert (2 * rr - 2 * r <= 2 * op(x_r, w_r) + 1e-4).all()  # at most 2 x_r W_r wider


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 2.0), stride=st.sampled_from([1, 2]))
def test_rump_conv_of_any_sign_is_sound(seed, scale, stride):
    g = torch.Generator().manual_seed(seed)
    x_c, x_r = torch.randn(2, 3, 5, 5, generator=g), torch.rand(2, 3, 5, 5, generator=g) * scale
    w_c, w_r = torch.randn(4, 3, 3, 3, generator=g), torch.rand(4, 3, 3, 3, generator=g) * scale
    op = conv2d_op(stride, 1)
    lo, hi = bounds(*interval_product(x_c, x_r, w_c, w_r, op))
    for _ in range(30):
        assert _inside(op(_sample(x_c, x_r, g), _sample(w_c, w_r, g)), lo, hi)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 2.0))
def test_pools_are_sound(seed, scale):
    g = torch.Generator().manual_seed(seed)
    c, r = torch.randn(2, 3, 6, 6, generator=g), torch.rand(2, 3, 6, 6, generator=g) * scale
    mc, mr = interval_max_pool2d(c, r, 3, 2, 1)
    ac, ar = interval_avg_pool2d(c, r, 2)
    for _ in range(30):
        x = _sample(c, r, g)
        assert _inside(F.max_pool2d(x, 3, 2, 1), *bounds(mc, mr))
        assert _inside(F.avg_pool2d(x, 2), *bounds(ac, ar))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 3.0))
def test_scale_rump_contains_exact_and_both_are_sound(seed, scale):
    g = torch.Generator().manual_seed(seed)
    z_c, z_r = torch.randn(50, generator=g), torch.rand(50, generator=g) * scale
    g_c, g_r = torch.randn(50, generator=g), torch.rand(50, generator=g) * scale
    ec, er = interval_scale(z_c, z_r, g_c, g_r, exact=True)
    rc, rr = interval_scale(z_c, z_r, g_c, g_r, exact=False)
    assert (rc - rr <= ec - er + 1e-5).all() and (rc + rr >= ec + er - 1e-5).all()
    for _ in range(30):
        y = _sample(z_c, z_r, g) * _sample(g_c, g_r, g)
        assert _inside(y, ec - er, ec + er, 1e-5)
