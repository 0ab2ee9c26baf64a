"""Hypernetwork IBP: soundness with sampled embeddings, gamma = 0 reduces to a point network."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hinterval.hypernet import HyperNetwork


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.001, 1.0), chunk=st.sampled_from([0, 7]))
def test_hnet_box_contains_sampled_outputs(seed, scale, chunk):
    torch.manual_seed(seed)
    h = HyperNetwork(embedding_dim=5, num_outputs=30, hidden=(8, 6), chunk_size=chunk, chunk_embedding_dim=3)
    c, r = torch.randn(2, 5), torch.rand(2, 5) * scale
    out = h(c, r)
    assert (out.middle >= out.lower - 1e-5).all() and (out.middle <= out.upper + 1e-5).all()
    for _ in range(30):
        e = c + (torch.rand(2, 5) * 2 - 1) * r
        w = h(e, None).middle
        assert (w >= out.lower - 1e-5).all() and (w <= out.upper + 1e-5).all()


def test_zero_radius_equals_point_forward():
    torch.manual_seed(0)
    h = HyperNetwork(embedding_dim=4, num_outputs=50, hidden=(10, 10))
    c = torch.randn(3, 4)
    point = h(c, None)
    boxed = h(c, torch.zeros(3, 4))
    assert torch.allclose(point.middle, boxed.middle) and torch.allclose(point.middle, boxed.centre, atol=1e-6)
    assert torch.allclose(boxed.radius, torch.zeros_like(boxed.radius))


def test_batch_rows_are_independent():
    torch.manual_seed(0)
    h = HyperNetwork(embedding_dim=4, num_outputs=20, hidden=(10,), chunk_size=6)
    c, r = torch.randn(3, 4), torch.rand(3, 4) * 0.1
    both = h(c, r)
    one = h(c[1:2], r[1:2])
    assert torch.allclose(both.middle[1], one.middle[0], atol=1e-6)
    assert torch.allclose(both.radius[1], one.radius[0], atol=1e-6)
    assert both.middle.shape == (3, 20)
