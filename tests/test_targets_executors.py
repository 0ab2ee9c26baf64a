"""Executors: the point batch-norm helpers, the protocol, where the sound executor uses the exact
product, the radius profile, and the one interval path of every target (MLP, ResNet-18, AlexNet)
in sound and rump modes checked with sampled weights and inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.intervals import certified_mask, interval_layer
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


# --- interval scope: the box on the last layers only ---------------------------------------

def _scoped(name: str, mode: str, scope: str):
    net = TARGETS[name](mode)
    net.set_interval_scope(scope)
    return net


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(sorted(TARGETS)), mode=st.sampled_from(["sound", "rump"]),
       depth=st.integers(1, 4), seed=st.integers(0, 10_000), scale=st.sampled_from([1e-2, 0.1]))
def test_scoped_box_contains_every_network_with_boxed_layers_sampled(name, mode, depth, seed, scale):
    """With the box on the last ``depth`` layers, every network whose boxed layers are sampled in
    their box and whose other layers are the middle weights has logits inside the returned box
    (batch norms with the middle network's statistics); and the box is exactly the all-layer box
    of that weight box (the shared point path changes no number)."""
    g = torch.Generator().manual_seed(seed)
    depth = min(depth, len(TARGETS[name](mode).layer_units()) - 1)
    net = _scoped(name, mode, f"last:{depth}")
    P = net.num_params
    inside = net.boxed_mask()
    assert inside is not None and 0 < int(inside.sum()) < P
    w_c, w_r = torch.randn(P, generator=g) * 0.5, torch.rand(P, generator=g) * scale
    w_m = w_c + (torch.rand(P, generator=g) * 2 - 1) * w_r  # the middle network lies in the box
    x = _images(net, 4, g)
    c, r = net.forward_interval(x, w_c, w_r, w_middle=w_m)
    lo, hi = c - r, c + r
    tol = 1e-4 * (1 + hi.abs().max())
    stats = net.bn_statistics(x, w_m)
    for k in range(12):
        u = torch.rand(P, generator=g) * 2 - 1 if k < 10 else torch.full((P,), 1.0 if k == 10 else -1.0)
        w = torch.where(inside, w_c + u * w_r, w_m)
        y = net.forward(x, w, bn_stats=stats)
        assert (y >= lo - tol).all() and (y <= hi + tol).all()
    full = TARGETS[name](mode)
    c2, r2 = full.forward_interval(x, torch.where(inside, w_c, w_m), torch.where(inside, w_r, 0.0), w_middle=w_m)
    assert torch.allclose(c, c2, rtol=1e-4, atol=tol) and torch.allclose(r, r2, rtol=1e-4, atol=tol)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_scope_head_boxes_the_output_layer_and_is_narrower_than_all(name):
    g = torch.Generator().manual_seed(0)
    head, every = _scoped(name, "sound", "head"), TARGETS[name]("sound")
    P = every.num_params
    w_c, w_r = torch.randn(P, generator=g) * 0.5, torch.rand(P, generator=g) * 0.05
    x = _images(every, 4, g)
    units = every.layer_units()
    assert int(head.boxed_mask().sum()) == sum(torch.Size(every.param_shapes[i]).numel() for i in units[-1])
    assert head.boxed(w_r).numel() == int(head.boxed_mask().sum()) and every.boxed(w_r).numel() == P
    (_, r_head), (_, r_all) = head.forward_interval(x, w_c, w_r), every.forward_interval(x, w_c, w_r)
    assert float(r_head.sum()) < float(r_all.sum())
    whole = _scoped(name, "sound", f"last:{len(units)}")
    assert whole.boxed_mask() is None and whole.boxes_every_layer  # every layer named: the ordinary all-layer box
    assert not head.boxes_every_layer and "last 1 of" in head.scope_text()


def test_scope_deeper_than_the_network_is_refused():
    net = TARGETS["mlp"]("sound")
    with pytest.raises(ValueError, match="3 weighted layers"):
        net.set_interval_scope("last:4")


@pytest.mark.parametrize("scope", ["last:0", "last:-1", "first:2", "last:x", "middle", ""])
def test_bad_scope_names_are_one_line_errors(scope):
    from hinterval.config import scope_depth
    from hinterval.errors import UserError

    with pytest.raises(UserError, match="interval scope must be"):
        scope_depth(scope)


def test_relaxed_scope_keeps_the_unboxed_layers_at_the_middle_weights():
    g = torch.Generator().manual_seed(1)
    net = ResNet18Target(3, 3, widths=(2, 3, 4, 4, 4), image_size=8, interval_mode="relaxed")
    net.set_interval_scope("head")
    P = net.num_params
    w_c, w_r = torch.randn(P, generator=g) * 0.5, torch.rand(P, generator=g) * 0.05
    x = _images(net, 4, g)
    c, r = net.forward_interval(x, w_c, w_r)
    inside = net.boxed_mask()
    point = net.forward(x, w_c)
    assert (point >= c - r - 1e-5).all() and (point <= c + r + 1e-5).all()
    c0, r0 = net.forward_interval(x, w_c, torch.where(inside, 0.0, w_r))  # radius only outside the scope
    assert torch.allclose(r0, torch.zeros_like(r0), atol=1e-6)


# --- rounding-safe boxes ---------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(sorted(TARGETS)), mode=st.sampled_from(["sound", "rump"]), seed=st.integers(0, 10_000),
       scale=st.sampled_from([0.0, 1e-6, 1e-3, 0.1]))
def test_rounding_safe_box_holds_the_exact_logits_with_no_tolerance(name, mode, seed, scale):
    """The rounding-safe float32 box contains the logits of networks sampled in the weight box and
    computed in float64 (exact for this purpose: 2**29 times finer), compared with no tolerance,
    and it contains the round-to-nearest box."""
    g = torch.Generator().manual_seed(seed)
    net = TARGETS[name](mode)
    P = net.num_params
    w_c, w_r = torch.randn(P, generator=g) * 0.5, torch.rand(P, generator=g) * scale
    x = _images(net, 4, g)
    c, r = net.forward_interval(x, w_c, w_r, rounding_safe=True)
    c0, r0 = net.forward_interval(x, w_c, w_r)
    lo, hi = (c - r).double(), (c + r).double()
    assert (lo <= (c0 - r0).double()).all() and (hi >= (c0 + r0).double()).all()
    assert torch.isfinite(r).all()
    stats = [(m.double(), v.double()) for m, v in net.bn_statistics(x, w_c)]
    w_c64, w_r64 = w_c.double(), w_r.double()
    for k in range(8):
        u = torch.rand(P, generator=g, dtype=torch.float64) * 2 - 1 if k < 6 else torch.full((P,), 2.0 * k - 13)
        y = net.forward(x.double(), w_c64 + u * w_r64, bn_stats=stats)
        assert (y >= lo).all() and (y <= hi).all()


def test_rounding_changes_a_certified_decision_and_the_safe_box_refuses_it():
    """Adversarial case: class 0's logit is 2**25 + 3 - 2**25 = 3 exactly and class 1's is 3.5, so
    class 1 wins; float32 sums 2**25 + 3 to 2**25 + 4 in every order that adds the 3 to a 2**25
    first, and round-to-nearest bounds then certify class 0 by a margin of 0.5. The rounding-safe
    box does not certify it, and it contains the exact logits."""
    net = MLPTarget(in_features=3, hidden=(), num_classes=2)
    w_c = torch.tensor([1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 3.5])  # W (2x3) then b (2)
    w_r = torch.zeros_like(w_c)
    x, y = torch.tensor([[2.0 ** 25, 3.0, 2.0 ** 25]]), torch.tensor([0])
    c0, r0 = net.forward_interval(x, w_c, w_r)
    if float(c0[0, 0]) == 3.0:
        pytest.skip("this BLAS summed the cancelling terms first (exact); the case needs 2**25 + 3 first")
    assert certified_mask(c0 - r0, c0 + r0, y).item()  # the naive certificate, and it is wrong:
    exact = torch.tensor([[3.0, 3.5]], dtype=torch.float64)
    assert not (exact[0, 0] > exact[0, 1])
    c, r = net.forward_interval(x, w_c, w_r, rounding_safe=True)
    assert not certified_mask(c - r, c + r, y).item()
    assert ((c - r).double() <= exact).all() and ((c + r).double() >= exact).all()


def test_rounding_safe_box_starts_at_the_first_boxed_layer():
    """With a partial scope the layers before the box are the centre network as computed: the
    rounding-safe box of a point weight vector in scope ``head`` is the computed logits grown by a
    rounding bound of the head alone (tiny), not of the whole network."""
    g = torch.Generator().manual_seed(0)
    net = TARGETS["resnet"]("sound")
    net.set_interval_scope("head")
    w = torch.randn(net.num_params, generator=g) * 0.5
    x = _images(net, 4, g)
    c, r = net.forward_interval(x, w, torch.zeros_like(w), rounding_safe=True)
    logits = net.forward(x, w)
    assert torch.equal(c, logits) and (r > 0).all() and (r <= 1e-5 * (1 + logits.abs())).all()


# --- the first layer's response (class-incremental task inference) ---------------------------

#: how each test target's first weighted layer runs: (stride, index of its bias or None); MLP: linear
FIRST_LAYER = {"resnet": (1, None), "alexnet": (2, 1)}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_first_layer_response_is_the_first_weighted_layer_under_vmap(name):
    net = TARGETS[name]("sound")
    g = torch.Generator().manual_seed(4)
    x = _images(net, 5, g)
    weights = torch.stack([net.init_weights(generator=g) for _ in range(2)])
    weights[:, -50:] += 1.0  # non-zero biases
    out = torch.func.vmap(net.first_layer_response, in_dims=(None, 0))(x, weights)
    for t in range(2):
        p = net.unflatten(weights[t])
        if name == "mlp":
            want = F.linear(x.flatten(1), p[0], p[1])
        else:  # a convolution, its channels averaged over space
            stride, bias = FIRST_LAYER[name]
            want = F.conv2d(x, p[0], None if bias is None else p[bias], stride=stride, padding=1).mean((2, 3))
        assert out[t].shape == want.shape and torch.allclose(out[t], want, atol=1e-5)
