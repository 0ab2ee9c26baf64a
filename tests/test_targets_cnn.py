"""CNN targets (slim ResNet-18, AlexNet): parameter counts of the preset networks, point/interval
agreement, soundness of the interval forward with sampled weights and inputs, vmap, factory, and
an end-to-end HyperInterval run that learns a tiny synthetic image benchmark."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.config import make_config
from hinterval.data.base import Benchmark, Split, Task
from hinterval.errors import UserError
from hinterval.targets import AlexNetTarget, ResNet18Target
from hinterval.targets.factory import build_target

TOL = 1e-4


def tiny_resnet(**kw) -> ResNet18Target:
    return ResNet18Target(3, 3, widths=(2, 3, 4, 4, 4), image_size=8, **kw)


def tiny_alexnet(**kw) -> AlexNetTarget:
    return AlexNetTarget(3, 3, image_size=16, channels=(3, 4, 5, 4, 4), hidden=(8, 6), **kw)


TINY = {
    "resnet": tiny_resnet,
    "resnet-1block": lambda **kw: ResNet18Target(3, 3, widths=(3, 3, 4, 4, 4), image_size=8, blocks=(1, 1, 1, 1), **kw),
    "alexnet": tiny_alexnet,
    "alexnet-bn": lambda **kw: tiny_alexnet(batch_norm=True, **kw),
}


def _images(net, n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, net.in_channels, net.image_size, net.image_size, generator=g)


# --- parameter counts ------------------------------------------------------------------------

@pytest.mark.parametrize("benchmark,shape,classes,count", [
    ("split-cifar100", (3, 32, 32), 10, 705_306),   # the reference implementation's slim ResNet-18
    ("split-cifar10", (3, 32, 32), 2, 23_239_490),  # the reference implementation's AlexNet
    ("tinyimagenet", (3, 64, 64), 5, 702_741),      # the same trunk on 64x64 inputs, pooled to 2x2, 5-way head
])
def test_preset_targets_have_the_reference_sizes(benchmark, shape, classes, count):
    """The target each CNN preset builds (through the factory, as training does) has the right size."""
    bench = Benchmark(benchmark, [], input_shape=shape, classes_per_task=classes, num_classes=classes)
    net = build_target(make_config(dict(benchmark=benchmark)), bench)
    assert net.num_params == count == sum(math.prod(s) for s in net.param_shapes)


def test_alexnet_batch_norm_replaces_each_conv_bias_by_a_scale_and_shift():
    plain, bn = AlexNetTarget(2, 3, image_size=32), AlexNetTarget(2, 3, image_size=32, batch_norm=True)
    channels = sum(s[0] for s in plain.param_shapes if len(s) == 4)
    assert channels == 1_152 and bn.num_params - plain.num_params == channels


def test_param_shapes_and_init():
    net = ResNet18Target(10)
    assert net.num_params == sum(math.prod(s) for s in net.param_shapes)
    w = net.init_weights(torch.Generator().manual_seed(0))
    parts = net.unflatten(w)
    assert all(torch.all(parts[i] == 1) for i in net._bn_scale_ids)  # unit BN scales
    assert net.forward(torch.rand(2, 3, 32, 32), w).shape == (2, 10)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        ResNet18Target(10, image_size=4)
    with pytest.raises(ValueError):
        AlexNetTarget(2, image_size=8)
    with pytest.raises(ValueError):
        ResNet18Target(10, widths=(16, 16, 32))
    with pytest.raises(ValueError):
        ResNet18Target(10, interval_mode="fast")


# --- point / interval agreement ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("mode", ["sound", "rump", "relaxed"])
def test_zero_radius_interval_equals_point_forward(name, mode):
    g = torch.Generator().manual_seed(0)
    net = TINY[name](interval_mode=mode)
    w = torch.randn(net.num_params, generator=g) * 0.5
    x = _images(net, 4, g)
    y = net.forward(x, w)
    c, r = net.forward_interval(x, w, torch.zeros_like(w))
    assert torch.allclose(c, y, atol=1e-5) and torch.allclose(r, torch.zeros_like(r), atol=1e-5)
    c, r = net.forward_interval(x, w, None)
    assert torch.allclose(c, y, atol=1e-5) and torch.equal(r, torch.zeros_like(r))


def test_paper_resnet_zero_radius_is_exact():
    g = torch.Generator().manual_seed(0)
    net = ResNet18Target(10)
    w = net.init_weights(g)
    x = torch.rand(4, 3, 32, 32, generator=g)
    c, r = net.forward_interval(x, w, torch.zeros_like(w))
    assert torch.allclose(c, net.forward(x, w), atol=1e-5) and float(r.abs().max()) == 0.0


def test_given_bn_stats_reproduce_batch_statistics():
    g = torch.Generator().manual_seed(1)
    net = tiny_resnet()
    w, x = torch.randn(net.num_params, generator=g) * 0.5, _images(tiny_resnet(), 4, g)
    stats = net.bn_statistics(x, w)
    assert len(stats) == sum(1 for i in net._bn_scale_ids)
    assert torch.allclose(net.forward(x, w, bn_stats=stats), net.forward(x, w), atol=1e-6)


# --- soundness -------------------------------------------------------------------------------

@settings(max_examples=16, deadline=None)
@given(
    name=st.sampled_from(sorted(TINY)),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-4, 1e-3, 1e-2, 0.1]),
    input_box=st.booleans(),
    middle=st.sampled_from(["centre", "other"]),
    mode=st.sampled_from(["sound", "rump"]),
)
def test_sound_interval_forward_contains_sampled_networks(name, seed, scale, input_box, middle, mode):
    """Every network with weights in the box (and input in the input box), its batch norms
    using the middle branch's statistics, has logits inside the propagated box (both sound modes)."""
    g = torch.Generator().manual_seed(seed)
    net = TINY[name](interval_mode=mode)
    P = net.num_params
    w_c = torch.randn(P, generator=g) * 0.5  # BN scales of both signs
    w_r = torch.rand(P, generator=g) * scale
    w_mid = w_c if middle == "centre" else w_c + (torch.rand(P, generator=g) * 2 - 1) * w_r
    x_c = _images(net, 4, g)
    x_r = torch.rand(x_c.shape, generator=g) * scale if input_box else None
    c, r = net.forward_interval(x_c, w_c, w_r, w_middle=None if middle == "centre" else w_mid, x_radius=x_r)
    assert torch.isfinite(c).all() and torch.isfinite(r).all() and (r >= 0).all()
    lo, hi = c - r, c + r
    stats = net.bn_statistics(x_c, w_mid)
    tol = TOL * (1 + hi.abs().max())
    for _ in range(12):
        w = w_c + (torch.rand(P, generator=g) * 2 - 1) * w_r
        x = x_c if x_r is None else x_c + (torch.rand(x_c.shape, generator=g) * 2 - 1) * x_r
        y = net.forward(x, w, bn_stats=stats)
        assert (y >= lo - tol).all() and (y <= hi + tol).all()
    # the corners of the weight box are networks in the box too
    for w in (w_c - w_r, w_c + w_r):
        y = net.forward(x_c, w, bn_stats=stats)
        assert (y >= lo - tol).all() and (y <= hi + tol).all()


@pytest.mark.parametrize("name", sorted(TINY))
def test_rump_mode_box_contains_the_exact_box(name):
    g = torch.Generator().manual_seed(11)
    exact, rump = TINY[name](), TINY[name](interval_mode="rump")
    w_c = torch.randn(exact.num_params, generator=g) * 0.5
    w_r = torch.rand(exact.num_params, generator=g) * 1e-3
    x = _images(exact, 4, g)
    (ce, re), (cr, rr) = exact.forward_interval(x, w_c, w_r), rump.forward_interval(x, w_c, w_r)
    tol = TOL * (1 + (ce.abs() + re).max())
    assert (cr - rr <= ce - re + tol).all() and (cr + rr >= ce + re - tol).all()
    logits, c, r = rump.forward_with_interval(x, w_c, w_c, w_r)
    assert torch.allclose(logits, rump.forward(x, w_c), atol=1e-5) and torch.allclose(r, rr, atol=1e-5)


def test_box_shrinks_linearly_to_the_point():
    """The box is not vacuous: it shrinks to the point network as the weight radius goes to 0.

    (Sound IBP widths grow geometrically with depth, so deep nets need small radii.)"""
    g = torch.Generator().manual_seed(3)
    net = TINY["resnet-1block"]()
    w_c = torch.randn(net.num_params, generator=g) * 0.5
    x = _images(net, 8, g)
    y = net.forward(x, w_c)
    r1 = net.forward_interval(x, w_c, torch.full_like(w_c, 1e-7))[1].max()
    r2 = net.forward_interval(x, w_c, torch.full_like(w_c, 1e-6))[1].max()
    assert 5 < float(r2 / r1) < 15
    c, r = net.forward_interval(x, w_c, torch.full_like(w_c, 1e-10))
    assert torch.allclose(c, y, atol=1e-4) and float(r.max()) < 1e-3


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-3, 1e-2, 0.1]))
def test_relaxed_box_is_a_box_inside_the_sound_one_without_batch_norm(seed, scale):
    """Without batch norm, every value the relaxed mode carries is a layer of weights from the box
    applied to values inside the previous layer's sound box, so its logit box lies inside the sound
    box; with a positive weight radius it is a real box, not the point network."""
    g = torch.Generator().manual_seed(seed)
    sound, relaxed = tiny_alexnet(), tiny_alexnet(interval_mode="relaxed")
    w_c = torch.randn(sound.num_params, generator=g) * 0.5
    w_r = torch.rand(sound.num_params, generator=g) * scale
    x = _images(sound, 4, g)
    (cs, rs), (cr, rr) = sound.forward_interval(x, w_c, w_r), relaxed.forward_interval(x, w_c, w_r)
    tol = TOL * (1 + float((cs.abs() + rs).max()))
    assert (cr - rr >= cs - rs - tol).all() and (cr + rr <= cs + rs + tol).all()
    assert float(rr.max()) > 0


# --- vmap over tasks (evaluation path) -------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet", "alexnet-bn"])
@pytest.mark.parametrize("mode", ["sound", "relaxed"])
def test_forwards_work_under_vmap(name, mode):
    from hinterval.methods.base import batched_target, batched_target_interval

    g = torch.Generator().manual_seed(5)
    net = TINY[name](interval_mode=mode)
    W = torch.randn(3, net.num_params, generator=g) * 0.5
    R = torch.rand(3, net.num_params, generator=g) * 0.01
    x = _images(net, 4, g)
    logits = batched_target(net, x, W)
    c, r = batched_target_interval(net, x, W, R)
    for t in range(3):
        assert torch.allclose(logits[t], net.forward(x, W[t]), atol=1e-5)
        ct, rt = net.forward_interval(x, W[t], R[t])
        assert torch.allclose(c[t], ct, atol=1e-4, rtol=1e-4) and torch.allclose(r[t], rt, atol=1e-4, rtol=1e-4)


# --- factory and end-to-end smoke run ----------------------------------------------------------

def image_benchmark(num_tasks: int = 2, n: int = 16, size: int = 32, seed: int = 0) -> Benchmark:
    g = torch.Generator().manual_seed(seed)

    def split(m: int) -> Split:
        return Split(torch.randint(0, 256, (m, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(m) % 2)

    tasks = [Task(task_id=t, classes=[2 * t, 2 * t + 1], train=split(n), val=split(n // 2), test=split(n // 2),
                  scale=255, flatten=False) for t in range(num_tasks)]
    return Benchmark("synthetic-images", tasks, input_shape=(3, size, size), classes_per_task=2, num_classes=2 * num_tasks)


def test_factory_builds_cnn_targets():
    bench = image_benchmark()
    net = build_target(make_config(dict(benchmark="split-digits", target="resnet18", interval_mode="relaxed")), bench)
    assert isinstance(net, ResNet18Target) and net.interval_mode == "relaxed" and net.num_classes == 2
    net = build_target(make_config(dict(benchmark="split-digits", target="alexnet")), bench)
    assert isinstance(net, AlexNetTarget) and net.num_params == 23_239_490
    flat = Benchmark("flat", bench.tasks, input_shape=(3072,), classes_per_task=2, num_classes=4)
    with pytest.raises(UserError, match="image"):
        build_target(make_config(dict(benchmark="split-digits", target="resnet18")), flat)


def learnable_image_benchmark(num_tasks: int = 2, n: int = 32, size: int = 16, seed: int = 0) -> Benchmark:
    """Two classes per task told apart by brightness (dark vs bright noisy images): learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)

    def split(m: int) -> Split:
        y = torch.arange(m) % 2
        x = (60 + 120 * y).view(-1, 1, 1, 1) + 25 * torch.randn(m, 3, size, size, generator=g)
        return Split(x.clamp(0, 255).to(torch.uint8), y)

    tasks = [Task(task_id=t, classes=[2 * t, 2 * t + 1], train=split(n), val=split(n // 2), test=split(n // 2),
                  scale=255, flatten=False) for t in range(num_tasks)]
    return Benchmark("learnable-images", tasks, input_shape=(3, size, size), classes_per_task=2, num_classes=2 * num_tasks)


@pytest.mark.slow
def test_hyperinterval_trains_resnet_end_to_end():
    """Chunked hypernetwork -> slim ResNet-18 weights, sound interval loss at the CNN presets' scope and gamma,
    regulariser, two tasks: both tasks are learnt and none collapses."""
    from hinterval.trainer import train_continual

    cfg = make_config(dict(benchmark="split-digits", target="resnet18", hnet_chunk_size=2048, iters_per_task=40,
                           val_every=20, device="cpu", hnet_hidden="20", embedding_dim=8, batch_size=16))
    res = train_continual(cfg, benchmark=learnable_image_benchmark(), progress=False)
    assert res["tasks_done"] == 2 and res["collapsed_tasks"] == []
    assert res["avg_acc"] >= 0.9  # chance is 0.5
