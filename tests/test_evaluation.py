"""Class-incremental task inference on hand-made predictors whose right answer is known."""
from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
import torch
from torch import Tensor

from hinterval.config import make_config
from hinterval.data.base import Benchmark, Split, Task
from hinterval.errors import UserError
from hinterval.evaluation import (CIL_CANDIDATES, FEATURE_SCORES, FEATURE_SHRINKAGE, FeatureStatistics, Predictor,
                                  TaskCalibration, choose_cil_score, evaluate_tasks, task_inference_scores)
from hinterval.trainer import train_continual

from conftest import make_synthetic_benchmark

T, A, NOISE = 4, 3.0, 0.1


def _task_benchmark(marker_val: float = 0.0, marker_test: float = 1.0, n: int = 40) -> Benchmark:
    """Task ``t``'s samples carry ``+-A`` on feature ``t`` (label 0/1), noise elsewhere; the last
    feature marks the split (so a predictor can tell which split it is shown)."""
    g = torch.Generator().manual_seed(0)
    tasks = []
    for t in range(T):
        def split(marker: float) -> Split:
            y = torch.arange(n) % 2
            x = NOISE * torch.randn(n, T + 1, generator=g)
            x[:, t] = torch.where(y == 0, A, -A) + NOISE * torch.randn(n, generator=g)
            x[:, T] = marker
            return Split(x, y)

        # global classes as in the permuted benchmarks: task t owns 2t, 2t+1
        tasks.append(Task(task_id=t, classes=[2 * t, 2 * t + 1], train=split(marker_val), val=split(marker_val),
                          test=split(marker_test)))
    return Benchmark("handmade", tasks, input_shape=(T + 1,), classes_per_task=2, num_classes=2 * T)


class Handmade(Predictor):
    """Task ``t``'s network reads feature ``t``: logits ``(k_t s, -k_t s)``, confident only on its own task.

    Args:
        gain: per-task logit scale ``k_t``.
        width: per-task half-width of the logit box (constant over inputs), or ``None`` for no bounds.
    """

    def __init__(self, gain: List[float], width: Optional[List[float]] = None):
        self.gain = torch.tensor(gain)
        self.width = None if width is None else torch.tensor(width)
        self.seen_markers: List[float] = []

    def logits(self, x: Tensor) -> Tensor:
        s = x[:, :T].T  # (T, N)
        return torch.stack([s, -s], -1) * self.gain[:, None, None]

    def bounds(self, x: Tensor, *, rounding_safe: bool = False) -> Optional[Tuple[Tensor, Tensor]]:
        # exact by construction: the same bounds with or without a rounding bound
        self.seen_markers += x[:, T].unique().tolist()
        if self.width is None:
            return None
        mid = self.logits(x)
        w = self.width[:, None, None].expand_as(mid)
        return mid - w, mid + w


def test_entropy_picks_the_confident_task_and_maps_local_to_global_classes():
    bench = _task_benchmark()
    res = evaluate_tasks(Handmade([1.0] * T), bench, list(range(T)), cil_score="entropy")
    assert res["til"] == [1.0] * T
    assert res["cil"] == [1.0] * T
    det = res["cil_details"]
    assert det["score"] == "entropy" and det["task_acc"] == [1.0] * T
    assert det["confusion"] == [[40 if i == j else 0 for j in range(T)] for i in range(T)]


def test_confusion_rows_count_every_test_sample_and_record_wrong_tasks():
    bench = _task_benchmark()
    # task 2's network is confident everywhere (huge gain): every sample is given to task 2
    res = evaluate_tasks(Handmade([1.0, 1.0, 1e6, 1.0]), bench, list(range(T)), cil_score="entropy")
    conf = res["cil_details"]["confusion"]
    assert [sum(r) for r in conf] == [40] * T
    assert all(row[2] == 40 for row in conf)
    assert res["cil"] == [0.0, 0.0, 1.0, 0.0]


class WithResponses(Handmade):
    """Every task network's first layer reads the task features ``x[:, :T]`` (the same response for
    every task, as networks sharing a first layer); the splits it was shown are recorded."""

    def features(self, x: Tensor, task: Optional[int] = None) -> Tensor:
        self.seen_markers += x[:, T].unique().tolist()
        return x[:, :T] if task is not None else x[:, :T].expand(T, -1, -1)


def test_mahalanobis_finds_the_task_whose_training_samples_are_nearest_even_when_entropy_is_fooled():
    bench = _task_benchmark(marker_val=0.0, marker_test=1.0)
    pred = WithResponses([1.0, 1.0, 1e6, 1.0])  # task 2 confident everywhere: entropy gives it every sample
    assert evaluate_tasks(pred, bench, list(range(T)), cil_score="entropy")["cil"] == [0.0, 0.0, 1.0, 0.0]
    pred.seen_markers.clear()
    res = evaluate_tasks(pred, bench, list(range(T)), cil_score="mahalanobis")
    assert res["cil"] == [1.0] * T and res["cil_details"]["score"] == "mahalanobis"
    # its statistics come from the training split (marker 0): test samples are only scored
    name, calib, accs = choose_cil_score(WithResponses([1.0] * T), bench, list(range(T)), score="mahalanobis")
    assert name == "mahalanobis" and calib.features is not None and accs == {}


def test_mahalanobis_statistics_read_the_training_split_only():
    bench = _task_benchmark(n=40)
    for task in bench.tasks:  # mark the splits apart: train 2, val 0, test 1
        task.train.x[:, T] = 2.0
    pred = WithResponses([1.0] * T)
    choose_cil_score(pred, bench, list(range(T)), score="mahalanobis")
    assert set(pred.seen_markers) == {2.0}


def test_feature_statistics_are_the_shrunk_mahalanobis_distance_to_the_nearest_class_mean():
    g = torch.Generator().manual_seed(0)
    f = [torch.randn(30, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + 4 * t for t in range(2)]
    y = [torch.arange(30) % 2 for _ in range(2)]
    stats = FeatureStatistics.fit(f, y, num_classes=2)
    x = torch.randn(2, 7, 3, generator=g)
    got = stats.distance(x)
    for t in range(2):
        mu = torch.stack([f[t][y[t] == c].mean(0) for c in range(2)]).double()
        centred = f[t].double() - mu[y[t]]
        cov = centred.T @ centred / (30 - 2)
        cov = (1 - FEATURE_SHRINKAGE) * cov + FEATURE_SHRINKAGE * cov.diagonal().mean() * torch.eye(3, dtype=torch.double)
        d = x[t].double()[:, None, :] - mu[None]
        want = torch.einsum("nci,ij,ncj->nc", d, torch.linalg.inv(cov), d).min(1).values
        assert torch.allclose(got[t].double(), want, rtol=1e-4)


def test_unnormalised_width_term_picks_the_narrowest_box_but_calibrated_one_does_not():
    bench = _task_benchmark()
    pred = Handmade([1.0] * T, width=[0.01, 100.0, 100.0, 100.0])
    mid = pred.logits(bench.tasks[1].inputs(bench.tasks[1].test.x))
    raw = task_inference_scores(mid, pred.bounds(bench.tasks[1].inputs(bench.tasks[1].test.x)), 0.1, name="entropy-width")
    assert bool((raw.argmin(0) == 0).all())  # the old rule: task 0's narrow box always wins
    res = evaluate_tasks(pred, bench, list(range(T)), cil_score="entropy-width")
    assert res["cil"] == [1.0] * T


def test_auto_uses_intervals_when_entropy_is_saturated():
    bench = _task_benchmark()
    # logits so large that every task's softmax is one-hot: entropy cannot tell tasks apart,
    # the certified margin (distance of the decision from the box edge) still can
    pred = Handmade([1e4] * T, width=[50.0, 500.0, 5.0, 50.0])
    plain = evaluate_tasks(pred, bench, list(range(T)), cil_score="entropy")
    assert sum(plain["cil"]) / T < 0.5
    res = evaluate_tasks(pred, bench, list(range(T)), cil_score="auto")
    det = res["cil_details"]
    assert set(det["val_task_acc"]) == set(CIL_CANDIDATES) - set(FEATURE_SCORES)  # no first-layer responses
    assert det["score"] in ("worst-margin", "relative-margin", "worst-entropy", "consensus")
    assert det["val_task_acc"][det["score"]] == max(det["val_task_acc"].values())
    assert res["cil"] == [1.0] * T


def test_score_is_chosen_on_validation_data_only():
    bench = _task_benchmark(marker_val=0.0, marker_test=1.0)
    pred = Handmade([1e4] * T, width=[1.0] * T)
    choose_cil_score(pred, bench, list(range(T)), score="auto")
    assert set(pred.seen_markers) == {0.0}


def test_point_predictors_fall_back_to_entropy():
    name, calib, accs = choose_cil_score(Handmade([1.0] * T), _task_benchmark(), list(range(T)), score="worst-margin")
    assert (name, calib, accs) == ("entropy", None, {})
    name, calib, accs = choose_cil_score(Handmade([1.0] * T), _task_benchmark(), list(range(T)), score="auto")
    assert set(accs) == {"entropy", "calibrated-entropy"} and name in accs


def test_calibration_is_the_p_value_among_own_validation_scores():
    # task 0's own scores are 0..9, task 1's are 100..109 (lower = better)
    own = torch.tensor([[*range(10), *range(10)], [*range(100, 110), *range(100, 110)]], dtype=torch.float)
    truth = torch.tensor([0] * 10 + [1] * 10)  # samples 0-9 belong to task 0, 10-19 to task 1
    cal = TaskCalibration.from_samples({"worst-margin": own}, truth, 2)
    # sample with raw score 5 for task 0 (median of its own) and 104.5 for task 1 (also mid-range)
    s = cal.score("worst-margin", {"worst-margin": torch.tensor([[5.0, 50.0], [104.5, 50.0]])}, 0.1)
    assert s[0, 0].item() == pytest.approx(-0.5, abs=1e-6) and s[1, 0].item() == pytest.approx(-0.5, abs=1e-6)
    # 50 is worse than every own score of task 0 (p = 0) and better than every one of task 1 (p = 1)
    assert s[0, 1].item() == pytest.approx(0.0, abs=1e-6) and s[1, 1].item() == pytest.approx(-1.0, abs=1e-6)
    # two tasks that both find a sample atypical (p = 0): the smaller z-score wins the tie
    s2 = cal.score("worst-margin", {"worst-margin": torch.tensor([[30.0], [300.0]])}, 0.1)
    assert s2[0, 0] < s2[1, 0] <= 1e-8


def test_bad_score_name_rejected():
    with pytest.raises(ValueError):
        evaluate_tasks(Handmade([1.0] * T), _task_benchmark(), list(range(T)), cil_score="bogus")
    with pytest.raises(UserError):
        make_config(dict(cil_score="bogus"))


def test_result_json_carries_the_cil_confusion_matrix():
    cfg = make_config(dict(benchmark="split-digits", device="cpu", iters_per_task=20, val_every=10, batch_size=16,
                           embedding_dim=4, hnet_hidden="16", target_hidden="8", gamma=0.5))
    res = train_continual(cfg, benchmark=make_synthetic_benchmark(), progress=False)
    cil = res["cil"]
    assert cil["score"] in CIL_CANDIDATES
    assert len(cil["confusion"]) == 3 and [sum(r) for r in cil["confusion"]] == [32, 32, 32]
    assert len(cil["task_acc"]) == 3 and all(0.0 <= a <= 1.0 for a in cil["task_acc"])


def test_weight_box_predictor_responses_of_one_task_match_all_tasks():
    from hinterval.methods.base import WeightBoxPredictor
    from hinterval.targets import MLPTarget

    target = MLPTarget(in_features=T + 1, hidden=(6, 5), num_classes=2)
    g = torch.Generator().manual_seed(0)
    pred = WeightBoxPredictor(target, torch.stack([target.init_weights(generator=g) for _ in range(T)]))
    x = torch.randn(9, T + 1, generator=g)
    every = pred.features(x)
    assert every.shape == (T, 9, 6)
    assert all(torch.allclose(pred.features(x, t), every[t], atol=1e-6) for t in range(T))
