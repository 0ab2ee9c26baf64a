"""Chunked hypernetwork: the IBP output box contains the outputs of every embedding in
the input box, for chunk sizes that divide the output count, do not, or exceed it; and the
composition hypernetwork box -> CNN target box stays sound."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.hypernet import HyperNetwork
from hinterval.targets import AlexNetTarget, ResNet18Target

TOL = 1e-5


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(0.001, 2.0),
    num_outputs=st.integers(1, 70),
    chunk=st.sampled_from([1, 5, 16, 64, 100]),
    hidden=st.sampled_from([(8,), (8, 6), (5, 7, 4)]),
    batch=st.integers(1, 3),
)
def test_chunked_box_contains_sampled_outputs(seed, scale, num_outputs, chunk, hidden, batch):
    torch.manual_seed(seed)
    d = 4
    h = HyperNetwork(embedding_dim=d, num_outputs=num_outputs, hidden=hidden, chunk_size=chunk, chunk_embedding_dim=3)
    assert h.num_chunks == -(-num_outputs // chunk)
    c, r = torch.randn(batch, d), torch.rand(batch, d) * scale
    out = h(c, r)
    assert out.centre.shape == out.radius.shape == out.middle.shape == (batch, num_outputs)
    assert (out.radius >= 0).all()
    assert torch.allclose(out.middle, h(c, None).middle, atol=1e-6)  # middle = H(centre)
    samples = [c + (torch.rand(batch, d) * 2 - 1) * r for _ in range(40)] + [c - r, c + r]
    for e in samples:
        w = h(e, None).middle
        assert (w >= out.lower - TOL).all() and (w <= out.upper + TOL).all()


def test_chunked_zero_radius_equals_point():
    torch.manual_seed(0)
    h = HyperNetwork(embedding_dim=6, num_outputs=1000, hidden=(20, 20), chunk_size=64)
    c = torch.randn(2, 6)
    boxed = h(c, torch.zeros(2, 6))
    assert torch.allclose(boxed.centre, h(c, None).middle, atol=1e-6)
    assert torch.allclose(boxed.radius, torch.zeros_like(boxed.radius))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-4, 1e-3, 1e-2]), bn=st.booleans())
def test_embedding_box_to_cnn_logit_box_is_sound(seed, scale, bn):
    """Embedding box -> chunked hypernetwork (IBP) -> weight box -> sound CNN forward: the logit
    box contains the logits of every sampled embedding's network (batch norms with the middle
    branch's statistics, i.e. those of the hypernetwork's middle output)."""
    torch.manual_seed(seed)
    if bn:
        net = ResNet18Target(2, 3, widths=(2, 3, 3, 4, 4), image_size=8, blocks=(1, 1, 1, 1))
    else:
        net = AlexNetTarget(2, 3, image_size=16, channels=(3, 4, 4, 4, 4), hidden=(6,))
    h = HyperNetwork(embedding_dim=5, num_outputs=net.num_params, hidden=(10,), chunk_size=32, chunk_embedding_dim=4)
    e_c, e_r = torch.randn(1, 5), torch.rand(1, 5) * scale
    x = torch.rand(4, 3, net.image_size, net.image_size)
    with torch.no_grad():
        out = h(e_c, e_r)
        c, r = net.forward_interval(x, out.centre[0], out.radius[0], w_middle=out.middle[0])
        stats = net.bn_statistics(x, out.middle[0])
        tol = 1e-4 * (1 + (c.abs() + r).max())
        for _ in range(15):
            w = h(e_c + (torch.rand(1, 5) * 2 - 1) * e_r, None).middle[0]
            y = net.forward(x, w, bn_stats=stats)
            assert (y >= c - r - tol).all() and (y <= c + r + tol).all()
