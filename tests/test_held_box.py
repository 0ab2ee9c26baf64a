"""Clipping a weight box into the held intersection: sound, inside the bounds, gradients pass."""
from __future__ import annotations

import torch

from hinterval.held_box import clip_box


def test_clipped_box_contains_every_clipped_weight_and_lies_inside_the_bounds():
    g = torch.Generator().manual_seed(0)
    P = 500
    lo_b = torch.randn(P, generator=g) - 0.5
    hi_b = lo_b + torch.rand(P, generator=g)
    centre, radius = torch.randn(P, generator=g), torch.rand(P, generator=g)
    middle = centre + radius * (2 * torch.rand(P, generator=g) - 1)
    m, c, r = clip_box(lo_b, hi_b, middle, centre, radius)
    assert bool((r >= 0).all())
    assert bool((c - r >= lo_b - 1e-6).all()) and bool((c + r <= hi_b + 1e-6).all())
    assert bool((m >= c - r - 1e-6).all()) and bool((m <= c + r + 1e-6).all())
    for _ in range(50):  # sampled weights of the old box, clipped, lie in the new box
        w = centre + radius * (2 * torch.rand(P, generator=g) - 1)
        wc = torch.clamp(w, lo_b, hi_b)
        assert bool((wc >= c - r - 1e-6).all()) and bool((wc <= c + r + 1e-6).all())


def test_unbounded_clip_is_the_identity():
    x = torch.randn(10)
    inf = torch.full((10,), float("inf"))
    m, c, r = clip_box(-inf, inf, x, x, x.abs())
    assert torch.equal(m, x) and torch.allclose(c, x) and torch.allclose(r, x.abs())


def test_clipped_weights_still_get_gradients():
    x = torch.tensor([-3.0, 0.0, 3.0], requires_grad=True)
    m, _, _ = clip_box(torch.full((3,), -1.0), torch.full((3,), 1.0), x, None, None)
    assert m.tolist() == [-1.0, 0.0, 1.0]
    m.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
