"""Interval arithmetic: hand-worked 2x2 cases and soundness properties with sampled points."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.intervals import (
    bounds,
    interval_affine,
    interval_layer,
    interval_monotone,
    interval_product_general,
    interval_product_nonneg,
    interval_relu,
    worst_case_logits,
)

TOL = 1e-5


def test_affine_hand_worked():
    # y = W x + b, W = [[1, -2], [0, 3]], x in [0, 2] x [-1, 1] (c=(1,0), r=(1,1)), b = (1, -1)
    W = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    c, r = interval_affine(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), W, torch.tensor([1.0, -1.0]))
    lo, hi = bounds(c, r)
    # y1 = x1 - 2 x2 + 1 in [0 - 2 + 1, 2 + 2 + 1] = [-1, 5]; y2 = 3 x2 - 1 in [-4, 2]
    assert torch.allclose(lo, torch.tensor([[-1.0, -4.0]]))
    assert torch.allclose(hi, torch.tensor([[5.0, 2.0]]))


def test_nonneg_product_hand_worked():
    # w in [-1, 2], x in [1, 3]: w*x in [-3, 6]
    lo, hi = interval_product_nonneg(torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([[-1.0]]),
                                     torch.tensor([[2.0]]), F.linear)
    assert lo.item() == -3.0 and hi.item() == 6.0


def test_relu_and_point_path():
    c, r = interval_relu(torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 0.25]))
    lo, hi = bounds(c, r)
    assert torch.allclose(lo, torch.tensor([0.0, 0.25])) and torch.allclose(hi, torch.tensor([1.0, 0.75]))
    c, r = interval_relu(torch.tensor([-1.0, 2.0]), None)
    assert r is None and torch.equal(c, torch.tensor([0.0, 2.0]))


def test_worst_case_logits_pick_lower_for_true_class():
    lo = torch.tensor([[0.0, 1.0, 2.0]])
    hi = torch.tensor([[5.0, 6.0, 7.0]])
    assert torch.equal(worst_case_logits(lo, hi, torch.tensor([1])), torch.tensor([[5.0, 1.0, 7.0]]))


def _sample(c, r, g):
    return c + (torch.rand(c.shape, generator=g) * 2 - 1) * r


dims = st.integers(1, 6)


@settings(max_examples=40, deadline=None)
@given(n_in=dims, n_out=dims, seed=st.integers(0, 10_000), scale=st.floats(0.01, 3.0), nonneg=st.booleans())
def test_interval_layer_is_sound(n_in, n_out, seed, scale, nonneg):
    g = torch.Generator().manual_seed(seed)
    x_c = torch.randn(3, n_in, generator=g)
    if nonneg:
        x_c = x_c.abs() + scale
    x_r = torch.rand(3, n_in, generator=g) * scale
    if nonneg:
        x_r = torch.minimum(x_r, x_c)  # keep the box inside x >= 0
    w_c, w_r = torch.randn(n_out, n_in, generator=g), torch.rand(n_out, n_in, generator=g) * scale
    b_c, b_r = torch.randn(n_out, generator=g), torch.rand(n_out, generator=g) * scale
    c, r = interval_layer(x_c, x_r, w_c, w_r, b_c, b_r, F.linear, nonneg_input=nonneg)
    lo, hi = bounds(c, r)
    for _ in range(50):
        x, w, b = _sample(x_c, x_r, g), _sample(w_c, w_r, g), _sample(b_c, b_r, g)
        y = F.linear(x, w, b)
        assert (y >= lo - TOL).all() and (y <= hi + TOL).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 2.0))
def test_general_product_contains_samples_and_monotone(seed, scale):
    g = torch.Generator().manual_seed(seed)
    x_c, x_r = torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g) * scale
    w_c, w_r = torch.randn(3, 5, generator=g), torch.rand(3, 5, generator=g) * scale
    c, r = interval_product_general(x_c, x_r, w_c, w_r, F.linear)
    c2, r2 = interval_monotone(torch.tanh, c, r)
    lo, hi = bounds(c2, r2)
    for _ in range(30):
        y = torch.tanh(F.linear(_sample(x_c, x_r, g), _sample(w_c, w_r, g)))
        assert (y >= lo - TOL).all() and (y <= hi + TOL).all()


def test_nonneg_rule_is_exact_at_vertices():
    # The non-negative rule is exact: some vertex of the box attains each bound.
    g = torch.Generator().manual_seed(0)
    x_lo = torch.rand(1, 3, generator=g)
    x_hi = x_lo + torch.rand(1, 3, generator=g)
    w_lo = torch.randn(2, 3, generator=g)
    w_hi = w_lo + torch.rand(2, 3, generator=g)
    lo, hi = interval_product_nonneg(x_lo, x_hi, w_lo, w_hi, F.linear)
    best_lo, best_hi = torch.full_like(lo, float("inf")), torch.full_like(hi, -float("inf"))
    import itertools

    for xs in itertools.product([0, 1], repeat=3):
        x = torch.where(torch.tensor(xs).bool(), x_hi, x_lo)
        for ws in itertools.product([0, 1], repeat=3):
            w = torch.where(torch.tensor(ws).bool(), w_hi, w_lo)
            y = F.linear(x, w)
            best_lo, best_hi = torch.minimum(best_lo, y), torch.maximum(best_hi, y)
    assert torch.allclose(lo, best_lo, atol=1e-6) and torch.allclose(hi, best_hi, atol=1e-6)


@pytest.mark.parametrize("lead_c, lead_r", [((6,), (3,)), ((4, 5), (2, 5)), ((3,), (3,))])
def test_linear_and_abs_linear_matches_two_linears_and_their_gradients(lead_c, lead_r):
    from hinterval.intervals import linear_and_abs_linear

    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 4, generator=g, dtype=torch.float64)
    w[0, 0] = 0.0  # sgn(0) = 0, as autograd's abs backward
    args = [torch.randn(*lead_c, 4, generator=g, dtype=torch.float64), torch.rand(*lead_r, 4, generator=g, dtype=torch.float64),
            w, torch.randn(7, generator=g, dtype=torch.float64)]
    args = [a.requires_grad_() for a in args]
    got = linear_and_abs_linear(*args)
    want = (F.linear(args[0], args[2], args[3]), F.linear(args[1], args[2].abs()))
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    gc, gr = torch.randn_like(want[0]), torch.randn_like(want[1])
    grads_got = torch.autograd.grad(got, args, (gc, gr))
    grads_want = torch.autograd.grad(want, args, (gc, gr))
    for a, b in zip(grads_got, grads_want):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda *a: linear_and_abs_linear(*a), args)
    # only one half used: the other half's gradient is absent, not an error
    (gw,) = torch.autograd.grad(linear_and_abs_linear(*args)[1].sum(), [args[2]])
    torch.testing.assert_close(gw, torch.autograd.grad(F.linear(args[1], args[2].abs()).sum(), [args[2]])[0])
