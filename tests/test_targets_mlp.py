"""MLP target: point/interval agreement and soundness of the interval forward."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.targets.mlp import MLPTarget


def test_param_counts_match_paper_architectures():
    #: Split MNIST MLP 784-400-400-2 and Permuted MNIST MLP 1024-1000-1000-10
    assert MLPTarget(in_features=784, hidden=(400, 400), num_classes=2).num_params == 475_202
    assert MLPTarget(in_features=1024, hidden=(1000, 1000), num_classes=10).num_params == 2_036_010


def test_zero_radius_interval_equals_point():
    torch.manual_seed(0)
    net = MLPTarget(in_features=6, hidden=(5, 4), num_classes=3)
    w = net.init_weights()
    x = torch.rand(7, 6)
    c, r = net.forward_interval(x, w, torch.zeros_like(w))
    assert torch.allclose(c, net.forward(x, w), atol=1e-6) and torch.allclose(r, torch.zeros_like(r))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 0.5), mode=st.sampled_from(["sound", "rump"]))
def test_interval_forward_is_sound(seed, scale, mode):
    g = torch.Generator().manual_seed(seed)
    net = MLPTarget(in_features=5, hidden=(6, 4), num_classes=3, interval_mode=mode)
    w_c = net.init_weights(generator=g)
    w_r = torch.rand(w_c.shape, generator=g) * scale
    x = torch.randn(4, 5, generator=g)  # general-sign input: first layer uses the exact point rule
    c, r = net.forward_interval(x, w_c, w_r)
    for _ in range(40):
        w = w_c + (torch.rand(w_c.shape, generator=g) * 2 - 1) * w_r
        y = net.forward(x, w)
        assert (y >= c - r - 1e-5).all() and (y <= c + r + 1e-5).all()


def test_unflatten_roundtrip():
    net = MLPTarget(in_features=3, hidden=(2,), num_classes=2)
    flat = torch.arange(net.num_params, dtype=torch.float32)
    parts = net.unflatten(flat)
    assert [tuple(p.shape) for p in parts] == net.param_shapes
    assert torch.equal(torch.cat([p.reshape(-1) for p in parts]), flat)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-3, 0.05, 0.3]))
def test_rump_box_contains_the_exact_box_and_is_not_much_wider(seed, scale):
    """Rump's product is a superset of the exact non-negative rule (inclusion isotonicity), and
    only second order in the radii wider: with small radii the widths nearly agree."""
    g = torch.Generator().manual_seed(seed)
    exact = MLPTarget(in_features=5, hidden=(6, 4), num_classes=3)
    rump = MLPTarget(in_features=5, hidden=(6, 4), num_classes=3, interval_mode="rump")
    w_c = exact.init_weights(generator=g)
    w_r = torch.rand(w_c.shape, generator=g) * scale
    x = torch.randn(4, 5, generator=g)
    (ce, re), (cr, rr) = exact.forward_interval(x, w_c, w_r), rump.forward_interval(x, w_c, w_r)
    assert (cr - rr <= ce - re + 1e-5).all() and (cr + rr >= ce + re - 1e-5).all()
    if scale == 1e-3:
        assert float(rr.max()) <= 1.05 * float(re.max()) + 1e-6


def test_relaxed_mode_is_refused_for_the_mlp():
    with pytest.raises(ValueError, match="CNN"):
        MLPTarget(in_features=5, hidden=(6,), num_classes=3, interval_mode="relaxed")


def test_point_forward_is_the_linear_relu_chain():
    g = torch.Generator().manual_seed(4)
    net = MLPTarget(in_features=12, hidden=(5, 4), num_classes=3)
    w = net.init_weights(generator=g)
    w1, b1, w2, b2, w3, b3 = net.unflatten(w)
    x = torch.randn(6, 3, 4, generator=g)
    want = F.linear(F.relu(F.linear(F.relu(F.linear(x.reshape(6, -1), w1, b1)), w2, b2)), w3, b3)
    assert torch.equal(net.forward(x, w), want)


def test_init_weights_are_lecun_uniform_with_zero_biases():
    net = MLPTarget(in_features=400, hidden=(300,), num_classes=10)
    parts = net.unflatten(net.init_weights(torch.Generator().manual_seed(0)))
    for p, shape in zip(parts, net.param_shapes):
        if len(shape) == 1:
            assert torch.equal(p, torch.zeros(shape))
        else:
            bound = (3.0 / shape[1]) ** 0.5  # U(-b, b) with variance 1 / fan_in
            assert float(p.abs().max()) <= bound and float(p.abs().max()) > 0.98 * bound
            assert abs(float(p.var()) * shape[1] - 1.0) < 0.1
