"""Interval embeddings: radius budget, nested boxes and the universal embedding."""
from __future__ import annotations

import pytest
import torch

from hinterval.embeddings import TaskEmbeddings


def test_non_forced_radius_budget_is_gamma():
    emb = TaskEmbeddings(num_tasks=3, dim=8, gamma=2.0, mode="non-forced")
    with torch.no_grad():
        emb.logits[1].copy_(torch.randn(8))
    _, r = emb.box([0, 1, 2])
    assert torch.allclose(r.sum(-1), torch.full((3,), 2.0))
    _, r_half = emb.box([1], radius_scale=0.5)
    assert torch.allclose(r_half.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("gamma,dim", [(1.0, 24), (5.0, 4), (0.1, 2)])
def test_nested_universal_lies_in_every_box(gamma, dim):
    torch.manual_seed(0)
    emb = TaskEmbeddings(num_tasks=6, dim=dim, gamma=gamma, mode="nested")
    c, r = emb.box(range(6))
    sigma = gamma / (2 * dim)
    assert (c.abs() <= sigma + 1e-7).all()
    uni, lo, hi = emb.universal()
    assert ((c - r) <= uni + 1e-7).all() and (uni <= c + r + 1e-7).all()
    # the common box [-sigma, sigma]^d is always inside the intersection
    assert (lo <= -sigma + 1e-6).all() and (hi >= sigma - 1e-6).all()


def test_non_forced_disjoint_boxes_have_no_universal():
    emb = TaskEmbeddings(num_tasks=2, dim=2, gamma=0.1, mode="non-forced")
    with torch.no_grad():
        emb.centres[0].fill_(0.0)
        emb.centres[1].fill_(5.0)
    assert emb.universal() is None


def test_task_parameters_only_current_task():
    emb = TaskEmbeddings(num_tasks=3, dim=4, gamma=1.0, mode="non-forced")
    params = emb.task_parameters(1)
    assert params[0] is emb.centres[1] and params[1] is emb.logits[1] and len(params) == 2
    nested = TaskEmbeddings(num_tasks=3, dim=4, gamma=1.0, mode="nested")
    assert len(nested.task_parameters(2)) == 1  # radius is fixed in nested mode


def test_bad_mode_rejected():
    with pytest.raises(ValueError):
        TaskEmbeddings(num_tasks=1, dim=2, gamma=1.0, mode="bogus")


def test_pair_distance_of_rows():
    from hinterval.embeddings import pair_distance

    pts = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    assert pair_distance(pts, "min") == pytest.approx(1.0)
    assert pair_distance(pts, "mean") == pytest.approx((5.0 + 1.0 + (9 + 9) ** 0.5) / 3)
    assert pair_distance(pts[:1], "mean") is None


def test_corner_centres_are_fixed_corners_of_the_common_cube():
    torch.manual_seed(0)
    emb = TaskEmbeddings(num_tasks=5, dim=8, gamma=1.0, mode="nested", centres="corners")
    centre, radius = emb.box(range(5))
    sigma = 1.0 / 16
    assert torch.allclose(centre.abs(), torch.full_like(centre, sigma))
    assert emb.task_parameters(2) == [] and not any(c.requires_grad for c in emb.centres)
    before = centre.clone()
    emb.start_from_previous(3)
    assert torch.equal(emb.box(range(5))[0], before)
    mid, lower, upper = emb.universal()
    assert ((centre - radius <= mid) & (mid <= centre + radius)).all()
