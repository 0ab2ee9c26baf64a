"""Interval arithmetic: hand-worked 2x2 cases, the product against a brute-force exact box, and
soundness properties with sampled points."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.intervals import (
    bounds,
    certified_mask,
    conv2d_op,
    interval_affine,
    interval_bias,
    interval_layer,
    interval_monotone,
    interval_product,
    interval_relu,
    linear_and_abs_linear,
    nonneg_box,
    rounding_gamma,
    unit_roundoff,
    widen_for_rounding,
    worst_case_logits,
)

TOL = 1e-5


def exact_linear_box(x_lo, x_hi, w_lo, w_hi):
    """Exact bounds of ``x @ W.T`` over a box, by brute force: each output is a sum of
    independent products ``w_ij x_j``, each bounded by its four corners."""
    corners = [w.unsqueeze(0) * x.unsqueeze(1) for w in (w_lo, w_hi) for x in (x_lo, x_hi)]  # (N, out, in)
    stacked = torch.stack(corners)
    return stacked.min(0).values.sum(-1), stacked.max(0).values.sum(-1)


def test_affine_hand_worked():
    # y = W x + b, W = [[1, -2], [0, 3]], x in [0, 2] x [-1, 1] (c=(1,0), r=(1,1)), b = (1, -1)
    W = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    c, r = interval_affine(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), W, torch.tensor([1.0, -1.0]))
    lo, hi = bounds(c, r)
    # y1 = x1 - 2 x2 + 1 in [0 - 2 + 1, 2 + 2 + 1] = [-1, 5]; y2 = 3 x2 - 1 in [-4, 2]
    assert torch.allclose(lo, torch.tensor([[-1.0, -4.0]]))
    assert torch.allclose(hi, torch.tensor([[5.0, 2.0]]))
    # the same layer as the general rule with a point weight radius
    c2, r2 = interval_layer(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), W, None, torch.tensor([1.0, -1.0]),
                            None)
    assert torch.equal(c, c2) and torch.equal(r, r2)


@pytest.mark.parametrize("op", [F.linear, conv2d_op()], ids=["linear", "conv1x1"])
def test_nonneg_product_hand_worked(op):
    # w in [-1, 2], x in [1, 3]: w*x in [-3, 6] (exact); Rump: c = 0.5*2 = 1, r = 1*0.5 + (2+1)*1.5 = 5
    shape = (1, 1) if op is F.linear else (1, 1, 1, 1)
    x_c, x_r, w_c, w_r = (torch.full(shape, v) for v in (2.0, 1.0, 0.5, 1.5))
    lo, hi = bounds(*interval_product(x_c, x_r, w_c, w_r, op, nonneg_input=True))
    assert lo.item() == -3.0 and hi.item() == 6.0
    lo, hi = bounds(*interval_product(x_c, x_r, w_c, w_r, op))
    assert lo.item() == -4.0 and hi.item() == 6.0


def test_bias_hand_worked():
    # along dim 1 of (1, 2, 1): centres and radii add; a point bias adds to the centre only
    c, r = interval_bias(torch.zeros(1, 2, 1), torch.ones(1, 2, 1), torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0]))
    assert c.flatten().tolist() == [1.0, -1.0] and r.flatten().tolist() == [1.5, 1.0]
    c, r = interval_bias(torch.zeros(2, 3), None, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5, 0.5]), dim=-1)
    assert c[1].tolist() == [1.0, 2.0, 3.0] and r.shape == (2, 3) and r[1].tolist() == [0.5, 0.5, 0.5]
    c, r = interval_bias(torch.zeros(2, 3), None, torch.ones(3), None)
    assert r is None and torch.equal(c, torch.ones(2, 3))


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
    return c if r is None else c + (torch.rand(c.shape, generator=g) * 2 - 1) * r


dims = st.integers(1, 6)


@settings(max_examples=40, deadline=None)
@given(n_in=dims, n_out=dims, seed=st.integers(0, 10_000), scale=st.floats(0.01, 3.0), nonneg=st.booleans(),
       points=st.sampled_from(["none", "input", "weights"]))
def test_interval_layer_is_sound(n_in, n_out, seed, scale, nonneg, points):
    g = torch.Generator().manual_seed(seed)
    x_c = torch.randn(3, n_in, generator=g)
    if nonneg:
        x_c = x_c.abs() + scale
    x_r = torch.rand(3, n_in, generator=g) * scale
    if nonneg:
        x_r = torch.minimum(x_r, x_c)  # keep the box inside x >= 0
    w_c, w_r = torch.randn(n_out, n_in, generator=g), torch.rand(n_out, n_in, generator=g) * scale
    b_c, b_r = torch.randn(n_out, generator=g), torch.rand(n_out, generator=g) * scale
    x_r = None if points == "input" else x_r
    w_r = None if points == "weights" else w_r
    c, r = interval_layer(x_c, x_r, w_c, w_r, b_c, b_r, F.linear, nonneg_input=nonneg)
    lo, hi = bounds(c, r)
    for _ in range(50):
        x, w, b = _sample(x_c, x_r, g), _sample(w_c, w_r, g), _sample(b_c, b_r, g)
        y = F.linear(x, w, b)
        assert (y >= lo - TOL).all() and (y <= hi + TOL).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 2.0))
def test_rump_product_contains_samples_and_monotone(seed, scale):
    g = torch.Generator().manual_seed(seed)
    x_c, x_r = torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g) * scale
    w_c, w_r = torch.randn(3, 5, generator=g), torch.rand(3, 5, generator=g) * scale
    c, r = interval_product(x_c, x_r, w_c, w_r, F.linear)
    c2, r2 = interval_monotone(torch.tanh, c, r)
    lo, hi = bounds(c2, r2)
    for _ in range(30):
        y = torch.tanh(F.linear(_sample(x_c, x_r, g), _sample(w_c, w_r, g)))
        assert (y >= lo - TOL).all() and (y <= hi + TOL).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 2.0), n_in=dims, n_out=dims)
def test_nonneg_rule_is_the_exact_box_and_rump_contains_it(seed, scale, n_in, n_out):
    g = torch.Generator().manual_seed(seed)
    x_r = torch.rand(3, n_in, generator=g) * scale
    x_c = x_r + torch.rand(3, n_in, generator=g)  # lower bound >= 0
    w_c, w_r = torch.randn(n_out, n_in, generator=g), torch.rand(n_out, n_in, generator=g) * scale
    want_lo, want_hi = exact_linear_box(x_c - x_r, x_c + x_r, w_c - w_r, w_c + w_r)
    lo, hi = bounds(*interval_product(x_c, x_r, w_c, w_r, F.linear, nonneg_input=True))
    torch.testing.assert_close(lo, want_lo, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hi, want_hi, atol=1e-5, rtol=1e-5)
    rlo, rhi = bounds(*interval_product(x_c, x_r, w_c, w_r, F.linear))
    assert (rlo <= lo + TOL).all() and (rhi >= hi - TOL).all()
    # Rump's box is at most 2 x_r W_r wider than the exact one (per term: |w_c| x_r + w_r x_c
    # <= exact radius for x >= 0)
    assert ((rhi - rlo) - (hi - lo) <= 2 * F.linear(x_r, w_r) + TOL).all()


@pytest.mark.parametrize("nonneg", [True, False])
def test_zero_radius_gives_the_point_exactly(nonneg):
    g = torch.Generator().manual_seed(0)
    x, w = torch.rand(4, 6, generator=g), torch.randn(3, 6, generator=g)
    c, r = interval_product(x, torch.zeros_like(x), w, torch.zeros_like(w), F.linear, nonneg_input=nonneg)
    assert torch.equal(c, F.linear(x, w)) and torch.equal(r, torch.zeros_like(r))


@pytest.mark.parametrize("lead_c, lead_r", [((6,), (3,)), ((4, 5), (2, 5)), ((3,), (3,))])
def test_linear_and_abs_linear_matches_two_linears_and_their_gradients(lead_c, lead_r):
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
    (gw,) = torch.autograd.grad(linear_and_abs_linear(*args)[0].sum(), [args[2]])
    torch.testing.assert_close(gw, torch.autograd.grad(F.linear(args[0], args[2], args[3]).sum(), [args[2]])[0])


def test_point_weight_product_works_under_vmap():
    """The point-weight linear rule runs under ``vmap`` (targets are evaluated per task that way)."""
    g = torch.Generator().manual_seed(1)
    c, r, w = torch.randn(5, 4, generator=g), torch.rand(5, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    got_c, got_r = torch.func.vmap(lambda w_: interval_product(c, r, w_, None, F.linear))(w)
    for t in range(3):
        assert torch.allclose(got_c[t], F.linear(c, w[t])) and torch.allclose(got_r[t], F.linear(r, w[t].abs()))


def test_nonneg_rule_gradients_match_autograd_of_clamp_and_max():
    """The exact rule's weights have a hand-written backward; it equals autograd's off the box
    edges (|w_c| = w_r, a set of measure zero)."""
    g = torch.Generator().manual_seed(2)
    args = [torch.rand(6, 5, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, 5, generator=g, dtype=torch.float64) * 0.2,
            torch.randn(4, 5, generator=g, dtype=torch.float64), torch.rand(4, 5, generator=g, dtype=torch.float64)]
    args = [a.requires_grad_() for a in args]
    gc, gr = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(interval_product(*args, F.linear, nonneg_input=True), args, (gc, gr))
    x_c, x_r, w_c, w_r = args
    w_mid, w_mag = torch.minimum(torch.maximum(w_c, -w_r), w_r), torch.maximum(w_c.abs(), w_r)
    want = torch.autograd.grad((F.linear(x_c, w_c) + F.linear(x_r, w_mid), F.linear(x_c, w_r) + F.linear(x_r, w_mag)),
                               args, (gc, gr))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda *a: interval_product(*a, F.linear, nonneg_input=True), args)


# --- floating-point rounding ----------------------------------------------------------------

def test_rounding_gamma_and_unit_roundoff():
    u = unit_roundoff(torch.zeros(1))
    assert u == 2.0 ** -24 and unit_roundoff(torch.zeros(1, dtype=torch.float64)) == 2.0 ** -53
    assert rounding_gamma(3, u) == pytest.approx(3 * u / (1 - 3 * u), rel=0)
    with pytest.raises(ValueError, match="no rounding bound"):
        rounding_gamma(2 ** 24, u)
    saved = torch.backends.mkldnn.conv.fp32_precision
    try:  # a reduced float32 precision widens the bound of the products (not of elementwise ops)
        torch.backends.mkldnn.conv.fp32_precision = "tf32"
        assert unit_roundoff(torch.zeros(1), "conv") == 2.0 ** -11 and unit_roundoff(torch.zeros(1)) == u
    finally:
        torch.backends.mkldnn.conv.fp32_precision = saved


def test_round_to_nearest_box_misses_the_exact_value_and_the_widened_one_holds_it():
    """Adversarial case: 2**25 + 3 is not a float32 (neighbours 2**25 and 2**25 + 4), so the
    round-to-nearest box of a layer with a tiny weight radius misses the exact value for any
    order of the additions (there is only one); the rounding bound of the layer covers it."""
    x = torch.tensor([[2.0 ** 25, 3.0]])
    w_c, w_r = torch.tensor([[1.0, 1.0]]), torch.full((1, 2), 2.0 ** -30)
    c, r = interval_layer(x, None, w_c, w_r, None, None)
    exact = 2 ** 25 + 3  # every weight in the box gives a value within 3e-2 of it
    assert not (c - r).double() <= exact <= (c + r).double()
    r_safe = widen_for_rounding(r, 2 * F.linear(x.abs(), w_c.abs() + w_r), 2 * 2 + 3, unit_roundoff(x))
    lo, hi = (c - r_safe).double(), (c + r_safe).double()
    for w in (w_c - w_r, w_c, w_c + w_r):
        y = float((x.double() * w.double()).sum())
        assert lo <= y <= hi
    assert float(r_safe) < 1e-5 * exact  # and the bound is a few units of rounding, not more


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), exp=st.integers(-30, 30))
def test_nonneg_box_keeps_the_box_and_starts_at_zero_exactly(seed, exp):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(50, generator=g) * 2.0 ** exp
    r = torch.rand(50, generator=g) * 2.0 ** exp * 1.5
    c2, r2 = nonneg_box(c, r)
    c64, r64, c2_64, r2_64 = (t.double() for t in (c, r, c2, r2))
    assert ((c2_64 - r2_64) >= 0).all()  # exact: the lower end is not below 0
    assert ((c2_64 + r2_64) >= c64 + r64).all() and ((c2_64 - r2_64) <= (c64 - r64).clamp_min(0)).all()


def test_certified_mask_needs_a_strict_margin():
    lower, upper = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[2.0, 1.0], [2.0, 0.5]])
    assert certified_mask(lower, upper, torch.tensor([0, 0])).tolist() == [False, True]
