"""Baselines in the shared trainer: finetune, joint, EWC, InterContiNet.

Each test trains for a few dozen iterations on the embedded digits benchmarks, so the whole file
runs in well under a minute on two CPU cores.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

import pytest
import torch

from hinterval.config import make_config
from hinterval.data.registry import load_benchmark
from hinterval.methods.registry import build_method
from hinterval.methods.heads import head_size
from hinterval.methods.intercontinet import MIN_RADIUS, project_box
from hinterval.targets.factory import build_target
from hinterval.trainer import ContinualTrainer, train_continual

TINY = dict(benchmark="split-digits", num_tasks=2, iters_per_task=60, val_every=30, device="cpu", num_threads=1)


def run(method: str, **overrides: Any) -> Dict[str, Any]:
    return train_continual(make_config({**TINY, "method": method, **overrides}), progress=False)


def assert_well_formed(res: Dict[str, Any]) -> None:
    acc = res["acc_matrix"]
    T = res["num_tasks"]
    assert len(acc) == T and all(len(row) == T for row in acc)
    for i, row in enumerate(acc):
        for j, v in enumerate(row):
            if j > i:
                assert v is None, f"A[{i}][{j}] should be empty (task {j} not trained yet)"
            else:
                assert v is not None and 0.0 <= v <= 1.0
    assert 0.0 <= res["avg_acc"] <= 1.0


@pytest.mark.parametrize("method", ["finetune", "joint", "ewc", "intercontinet"])
def test_baseline_trains_with_well_formed_metrics(method: str) -> None:
    res = run(method)
    assert_well_formed(res)
    assert res["method"] == method
    assert res["avg_acc"] > 0.8  # two-class digit tasks are easy even after 60 iterations
    if method == "joint":
        assert res["bwt"] is None and res["til"]["forgetting"] is None
    else:
        assert isinstance(res["bwt"], float) and -1.0 <= res["bwt"] <= 1.0
    if method == "intercontinet":
        assert res["worst_avg_acc"] is not None
        # A sample correct under the worst-case logits is correct at the centre, per task.
        for w, m in zip(res["worst"]["final_accs"], res["til"]["final_accs"]):
            assert w <= m + 1e-12
    else:
        assert res["worst_avg_acc"] is None


def test_finetune_forgets_on_permuted_digits() -> None:
    res = run("finetune", benchmark="permuted-digits", num_tasks=3, iters_per_task=150, val_every=50)
    assert_well_formed(res)
    assert res["bwt"] < -0.02, res["acc_matrix"]


def test_ewc_with_lambda_zero_equals_finetune() -> None:
    ft = run("finetune", num_tasks=3, iters_per_task=40, val_every=20)
    ewc = run("ewc", num_tasks=3, iters_per_task=40, val_every=20, ewc_lambda=0.0)
    for scenario in ("til", "cil"):
        assert ft[scenario]["acc_matrix"] == ewc[scenario]["acc_matrix"]
    assert ft["bwt"] == ewc["bwt"]


def test_ewc_fisher_and_penalty() -> None:
    cfg = make_config({**TINY, "method": "ewc", "ewc_lambda": 10.0})
    bench = load_benchmark(cfg.benchmark, num_tasks=2)
    torch.manual_seed(0)
    method = build_method(cfg, bench, build_target(cfg, bench))
    fisher = method.fisher(0)
    assert fisher.shape == method.net.trunk.shape and bool((fisher >= 0).all()) and float(fisher.sum()) > 0
    method.end_task(0)
    assert float(method.penalty(1).detach()) == pytest.approx(0.0, abs=1e-10)  # at the anchor
    with torch.no_grad():
        method.net.trunk.add_(0.1)
    assert float(method.penalty(1).detach()) > 0
    assert method.penalty(0) is None  # nothing to protect while learning the first task


def test_intercontinet_boxes_are_nested_and_worst_case_never_forgets() -> None:
    boxes: List[Dict[str, torch.Tensor]] = []

    class KeepBoxes:
        def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
            sd = state["model"]  # live tensors: copy them
            boxes.append({k: sd[k].clone() for k in ("centre.trunk", "log_radius.trunk")})

    cfg = make_config({**TINY, "method": "intercontinet", "num_tasks": 3, "iters_per_task": 40, "val_every": 20})
    res = ContinualTrainer(cfg, callbacks=[KeepBoxes()], progress=False).fit()
    bounds = [(b["centre.trunk"] - b["log_radius.trunk"].exp(), b["centre.trunk"] + b["log_radius.trunk"].exp())
              for b in boxes]
    for (lo_prev, hi_prev), (lo, hi) in zip(bounds, bounds[1:]):
        assert bool((lo >= lo_prev - 1e-6).all()) and bool((hi <= hi_prev + 1e-6).all())
    # Interval propagation is inclusion-monotone: a nested box can only keep worst-case accuracy.
    assert res["worst_bwt"] >= -1e-9


def test_project_box_lies_inside_and_is_idempotent() -> None:
    g = torch.Generator().manual_seed(0)
    lower = torch.randn(1000, generator=g)
    upper = lower + torch.rand(1000, generator=g) * 0.1 + 2 * MIN_RADIUS
    centre, radius = torch.randn(1000, generator=g) * 0.2 + lower, torch.rand(1000, generator=g) * 0.2
    c, r = project_box(centre, radius, lower, upper)
    assert bool((r >= MIN_RADIUS).all())
    assert bool((c - r >= lower - 1e-6).all()) and bool((c + r <= upper + 1e-6).all())
    c2, r2 = project_box(c, r, lower, upper)
    assert torch.allclose(c, c2, atol=1e-6) and torch.allclose(r, r2, atol=1e-6)
    inf = torch.full_like(lower, math.inf)
    c3, r3 = project_box(centre, radius.clamp_min(MIN_RADIUS), -inf, inf)  # no constraint: identity
    assert torch.equal(c3, centre) and torch.equal(r3, radius.clamp_min(MIN_RADIUS))


def test_multi_head_split_of_mlp_target() -> None:
    cfg = make_config({**TINY, "method": "finetune"})
    bench = load_benchmark(cfg.benchmark, num_tasks=2)
    target = build_target(cfg, bench)
    hidden = cfg.target_hidden[-1]
    assert head_size(target) == bench.classes_per_task * hidden + bench.classes_per_task
    method = build_method(cfg, bench, target)
    assert method.net.stacked([0, 1]).shape == (2, target.num_params)
    # Each task's optimiser sees the shared trunk and only its own head.
    assert [p.numel() for p in method.trainable_parameters(1)] == [target.num_params - head_size(target), head_size(target)]
    assert method.trainable_parameters(1)[1] is method.net.heads[1]


@pytest.mark.parametrize("method", ["ewc", "intercontinet", "joint"])
def test_resume_at_task_boundary_matches_uninterrupted_run(method: str) -> None:
    """Method state (EWC Fisher/anchor, InterContiNet enclosing box) survives a checkpoint."""
    import copy

    cfg = make_config({**TINY, "method": method, "num_tasks": 3, "iters_per_task": 30, "val_every": 15})
    saved: List[Dict[str, Any]] = []

    class Keep:
        def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
            saved.append(copy.deepcopy(state))

    full = ContinualTrainer(cfg, callbacks=[Keep()], progress=False).fit()
    resumed = train_continual(cfg, resume_state=saved[0], progress=False)
    for scenario in ("til", "worst", "cil"):
        assert resumed[scenario]["acc_matrix"] == full[scenario]["acc_matrix"]
