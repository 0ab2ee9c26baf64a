"""Executors: the point batch-norm helpers, the protocol, where the sound executor uses the exact
product, the radius profile, and the one interval path of every target (MLP, ResNet-18, AlexNet)
in sound and rump modes checked with sampled weights and inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.intervals import interval_layer
from hinterval.targets import AlexNetTarget, MLPTarget, ResNet18Target
from hinterval.targets.executors import (
    Executor,
    PointExecutor,
    RadiusProfile,
    RelaxedExecutor,
    SoundExecutor,
    batch_norm_point,
    batch_norm_stats,
)

TARGETS = {
    "mlp": lambda mode: MLPTarget(in_features=3 * 8 * 8, hidden=(6, 5), num_classes=3, interval_mode=mode),
    "resnet": lambda mode: ResNet18Target(3, 3, widths=(2, 3, 4, 4, 4), image_size=8, interval_mode=mode),
    "alexnet": lambda mode: AlexNetTarget(3, 3, image_size=16, channels=(3, 4, 5, 4, 4), hidden=(8, 6), interval_mode=mode),
}


def _images(net, n: int, g: torch.Generator) -> torch.Tensor:
    side = getattr(net, "image_size", 8)
    return torch.rand(n, 3, side, side, generator=g)


# --- batch norm of a point activation ------------------------------------------------------

def test_batch_norm_point_matches_torch_training_mode():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 4, 4, generator=g) * 3 + 1
    w, b = torch.randn(3, generator=g), torch.randn(3, generator=g)
    mean, var = batch_norm_stats(x)
    assert torch.allclose(batch_norm_point(x, mean, var, w, b), F.batch_norm(x, None, None, w, b, training=True), atol=1e-5)
    x2 = torch.randn(7, 3, generator=g)  # (N, C) inputs too
    m2, v2 = batch_norm_stats(x2)
    assert torch.allclose(batch_norm_point(x2, m2, v2, w, b), F.batch_norm(x2, None, None, w, b, training=True), atol=1e-5)


def test_batch_norm_stats_under_vmap():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 2, 5, 5, generator=g)  # 3 "tasks"
    mean, var = torch.func.vmap(batch_norm_stats)(x)
    for t in range(3):
        m, v = batch_norm_stats(x[t])
        assert torch.allclose(mean[t], m, atol=1e-6) and torch.allclose(var[t], v, atol=1e-6)


# --- the protocol and the sound executor ---------------------------------------------------

def test_every_executor_implements_the_protocol():
    p = [torch.zeros(2, 2)]
    for ex in (PointExecutor(p), SoundExecutor(p, [None], p), RadiusProfile(p, [None], p), RelaxedExecutor(p, p, p)):
        assert isinstance(ex, Executor)
    assert not isinstance(object(), Executor)


@pytest.mark.parametrize("exact_nonneg", [True, False])
def test_sound_executor_uses_the_exact_product_only_on_relu_outputs(exact_nonneg):
    """A layer on the raw input gets Rump's product (its sign is unknown); after a ReLU, the
    exact non-negative rule in sound mode and Rump's in rump mode."""
    g = torch.Generator().manual_seed(2)
    w_c, w_r = torch.randn(4, 5, generator=g), torch.rand(4, 5, generator=g) * 0.3
    b_c, b_r = torch.randn(4, generator=g), torch.rand(4, generator=g) * 0.3
    x_c, x_r = torch.randn(6, 5, generator=g), torch.rand(6, 5, generator=g) * 0.3
    ex = SoundExecutor([w_c, b_c], [w_r, b_r], [w_c, b_c], track_middle=False, exact_nonneg=exact_nonneg)
    raw = ex.linear(ex.input(x_c, x_r), 0, 1)
    want = interval_layer(x_c, x_r, w_c, w_r, b_c, b_r)
    assert torch.equal(raw.c, want[0]) and torch.equal(raw.r, want[1]) and not raw.nonneg
    h = ex.relu(ex.input(x_c, x_r))
    assert h.nonneg and ex.flatten(h).nonneg and ex.add(h, h).nonneg and not ex.add(h, ex.input(x_c, x_r)).nonneg
    out = ex.linear(h, 0, 1)
    want = interval_layer(h.c, h.r, w_c, w_r, b_c, b_r, nonneg_input=exact_nonneg)
    assert torch.equal(out.c, want[0]) and torch.equal(out.r, want[1])
    if exact_nonneg:  # and the exact rule is narrower than Rump's here
        assert float(out.r.sum()) < float(interval_layer(h.c, h.r, w_c, w_r, b_c, b_r)[1].sum())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_radius_profile_rows(name):
    g = torch.Generator().manual_seed(3)
    net = TARGETS[name]("sound")
    w_c = torch.randn(net.num_params, generator=g) * 0.3
    rows = net.radius_profile(_images(net, 4, g), w_c, torch.rand(net.num_params, generator=g) * 1e-3)
    kinds = [k.rstrip("0123456789") for k, _ in rows]
    assert kinds[-1] == "linear" and (kinds[0] == "conv" if name != "mlp" else kinds == ["linear", "relu"] * 2 + ["linear"])
    assert all(v > 0 for _, v in rows)
    zero = net.radius_profile(_images(net, 4, g), w_c, torch.zeros(net.num_params))
    assert [k for k, _ in zero] == [k for k, _ in rows] and all(v == 0 for _, v in zero)


# --- the one interval path of every target -------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(sorted(TARGETS)), seed=st.integers(0, 10_000), scale=st.sampled_from([1e-3, 1e-2, 0.1]),
       input_box=st.booleans())
def test_sampled_networks_lie_in_the_box_and_rump_contains_sound(name, seed, scale, input_box):
    """For weights and inputs sampled inside their boxes (and the box corners), the logits lie in
    the propagated box in sound and rump modes (batch norms with the middle branch's
    statistics); the rump box contains the sound box, and the sound box is narrower."""
    g = torch.Generator().manual_seed(seed)
    sound, rump = TARGETS[name]("sound"), TARGETS[name]("rump")
    P = sound.num_params
    w_c, w_r = torch.randn(P, generator=g) * 0.5, torch.rand(P, generator=g) * scale
    x_c = _images(sound, 4, g)
    x_r = torch.rand(x_c.shape, generator=g) * scale if input_box else None
    stats = sound.bn_statistics(x_c, w_c)
    boxes = {}
    for net in (sound, rump):
        c, r = net.forward_interval(x_c, w_c, w_r, x_radius=x_r)
        assert torch.isfinite(c).all() and torch.isfinite(r).all()
        lo, hi = c - r, c + r
        tol = 1e-4 * (1 + hi.abs().max())
        samples = [(w_c + (torch.rand(P, generator=g) * 2 - 1) * w_r,
                    x_c if x_r is None else x_c + (torch.rand(x_c.shape, generator=g) * 2 - 1) * x_r) for _ in range(10)]
        for w, x in samples + [(w_c - w_r, x_c), (w_c + w_r, x_c)]:
            y = net.forward(x, w, bn_stats=stats)
            assert (y >= lo - tol).all() and (y <= hi + tol).all()
        boxes[net.interval_mode] = (lo, hi, tol)
    (s_lo, s_hi, tol), (r_lo, r_hi, _) = boxes["sound"], boxes["rump"]
    assert (r_lo <= s_lo + tol).all() and (r_hi >= s_hi - tol).all()
    assert float((s_hi - s_lo).sum()) < float((r_hi - r_lo).sum())
