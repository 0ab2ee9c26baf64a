"""Fast paths compute exactly what the plain formulations compute."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hinterval.config import make_config
from hinterval.methods.hyperinterval import HyperIntervalMethod
from hinterval.regularizers import box_regularizer, output_regularizer
from hinterval.targets.executors import _sort3
from hinterval.targets.mlp import MLPTarget
from hinterval.targets.resnet import ResNet18Target


def _tiny_resnet(mode: str) -> ResNet18Target:
    return ResNet18Target(3, in_channels=3, widths=(4, 4, 4, 8, 8), image_size=16, blocks=(1, 1, 1, 1), interval_mode=mode)


def test_box_regularizer_equals_bounds_form():
    g = torch.Generator().manual_seed(0)
    mid, c, t_mid, t_c = (torch.randn(3, 50, generator=g) for _ in range(4))
    r, t_r = torch.rand(3, 50, generator=g), torch.rand(3, 50, generator=g)
    fast = box_regularizer(mid, c, r, [t_mid, t_c, t_r])
    plain = output_regularizer([mid, c - r, c + r], [t_mid, t_c - t_r, t_c + t_r])
    loop = sum(((a - b) ** 2).sum() for a, b in zip([mid, c - r, c + r], [t_mid, t_c - t_r, t_c + t_r])) / 3
    assert torch.allclose(fast, plain, rtol=1e-5)
    assert torch.allclose(fast, loop, rtol=1e-5)
    # gradients agree too
    ps = [p.clone().requires_grad_() for p in (mid, c, r)]
    box_regularizer(*ps, [t_mid, t_c, t_r]).backward()
    qs = [p.clone().requires_grad_() for p in (mid, c, r)]
    output_regularizer([qs[0], qs[1] - qs[2], qs[1] + qs[2]], [t_mid, t_c - t_r, t_c + t_r]).backward()
    for p, q in zip(ps, qs):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3, 5), (2, 3, 4, 6, 6)])
def test_sort3_values_and_gradient_match_torch_sort(shape):
    g = torch.Generator().manual_seed(1)
    t = torch.randn(*shape, generator=g)
    t[0, 2] = t[0, 0]  # ties between branches
    t[-1, 1] = t[-1, 0]
    t[-1, 2] = t[-1, 0]
    assert torch.equal(_sort3(t), torch.sort(t, dim=1).values)
    w = torch.randn(*shape, generator=g)
    a = t.clone().requires_grad_()
    (_sort3(a) * w).sum().backward()
    b = t.clone().requires_grad_()
    (torch.sort(b, dim=1, stable=True).values * w).sum().backward()
    assert torch.equal(a.grad, b.grad)
    # the gradient is a permutation of the output gradient, per element
    assert torch.equal(a.grad.sort(dim=1).values, w.sort(dim=1).values)


def test_sort3_under_vmap_with_grad():
    t = torch.randn(5, 4, 3, 6, requires_grad=True)
    out = torch.func.vmap(_sort3)(t)
    assert torch.equal(out, torch.sort(t.detach(), dim=2).values)
    out.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))


@pytest.mark.parametrize("mode", ["sound", "relaxed"])
def test_forward_with_interval_equals_separate_calls(mode):
    net = _tiny_resnet(mode)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(16, 3, 16, 16, generator=g)
    w_m = net.init_weights(g)
    w_c = w_m + 0.01 * torch.randn(net.num_params, generator=g)
    w_r = 0.01 * torch.rand(net.num_params, generator=g)
    mid, c, r = net.forward_with_interval(x, w_m, w_c, w_r)
    c2, r2 = net.forward_interval(x, w_c, w_r, w_middle=w_m)
    assert torch.equal(mid, net.forward(x, w_m))
    assert torch.equal(c, c2) and torch.equal(r, r2)
    # and gradients through the shared middle branch are the ones of the two separate calls
    ps = [w.clone().requires_grad_() for w in (w_m, w_c, w_r)]
    m1, c1, r1 = net.forward_with_interval(x, *ps)
    (F.cross_entropy(m1, torch.arange(16) % 3) + (c1 + r1).square().mean()).backward()
    qs = [w.clone().requires_grad_() for w in (w_m, w_c, w_r)]
    cq, rq = net.forward_interval(x, qs[1], qs[2], w_middle=qs[0])
    (F.cross_entropy(net.forward(x, qs[0]), torch.arange(16) % 3) + (cq + rq).square().mean()).backward()
    for p, q in zip(ps, qs):  # same maths, summation order of the shared branch's grads may differ
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5 * float(q.grad.abs().max()))


def test_mlp_forward_with_interval_is_the_default_pair():
    net = MLPTarget(in_features=7, hidden=(5, 4), num_classes=3)
    g = torch.Generator().manual_seed(3)
    x, w = torch.rand(4, 7, generator=g), net.init_weights(g)
    r = 0.01 * torch.rand(net.num_params, generator=g)
    mid, c, rad = net.forward_with_interval(x, w, w, r)
    assert torch.equal(mid, net.forward(x, w))
    c2, r2 = net.forward_interval(x, w, r)
    assert torch.equal(c, c2) and torch.equal(rad, r2)


@pytest.mark.parametrize("mode,reg_bounds", [("non-forced", True), ("non-forced", False), ("nested", False)])
def test_grouped_hypernetwork_passes_equal_one_pass(synthetic_benchmark, monkeypatch, mode, reg_bounds):
    """Rows in several passes (chunked hypernetworks of large targets) give the loss, the logs
    (regulariser included) and the gradients of one pass over all rows."""
    from hinterval.data.base import Benchmark
    from hinterval.hypernet import HyperNetwork

    bench = Benchmark("synthetic", synthetic_benchmark.tasks * 2, input_shape=synthetic_benchmark.input_shape,
                      classes_per_task=2, num_classes=12)  # 6 tasks (tasks repeat; only the count matters)
    cfg = make_config(dict(benchmark="split-digits", embedding_mode=mode, gamma=1.0, embedding_dim=4, hnet_hidden="8",
                           hnet_chunk_size=7, chunk_embedding_dim=3, device="cpu", reg_bounds=reg_bounds))
    results = {}
    for rows in (100, 2, 1):
        monkeypatch.setattr(HyperNetwork, "rows_per_pass", property(lambda self, n=rows: n))
        torch.manual_seed(0)
        m = HyperIntervalMethod(cfg, bench, MLPTarget(in_features=16, hidden=(5,), num_classes=2))
        m.begin_task(5)
        with torch.no_grad():
            for p in m.hnet.parameters():
                p.add_(0.01 * torch.randn_like(p))
        task = bench.tasks[5]
        loss, logs = m.training_loss(5, task.inputs(task.train.x[:8]), task.train.y[:8], ramp=1.0)
        loss.backward()
        results[rows] = (loss.detach(), logs, [p.grad.clone() for p in m.hnet.parameters()])
    ref = results[100]
    assert ref[1]["reg"] > 0
    for rows in (2, 1):
        loss, logs, grads = results[rows]
        assert torch.allclose(loss, ref[0], rtol=1e-5)
        assert abs(logs["reg"] - ref[1]["reg"]) <= 1e-5 * max(1.0, abs(ref[1]["reg"]))
        for a, b in zip(grads, ref[2]):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_rows_per_pass_batches_unchunked_and_groups_chunked():
    from hinterval.hypernet import ROW_BUDGET, HyperNetwork

    unchunked = HyperNetwork(embedding_dim=4, num_outputs=50_000, hidden=(10, 10))
    assert unchunked.rows_per_pass == max(40, ROW_BUDGET // 50_000)  # >= 4 hidden: the weight read is shared
    chunked = HyperNetwork(embedding_dim=4, num_outputs=3 * ROW_BUDGET, hidden=(10,), chunk_size=1000)
    assert chunked.rows_per_pass == 1
