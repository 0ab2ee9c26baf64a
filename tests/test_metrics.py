"""Metrics on hand-made accuracy matrices."""
from __future__ import annotations

import pytest

from hinterval import metrics as M

A = [
    [0.9, None, None],
    [0.8, 0.95, None],
    [0.7, 0.9, 1.0],
]


def test_average_accuracy_and_bwt():
    assert M.average_accuracy(A) == pytest.approx((0.7 + 0.9 + 1.0) / 3)
    assert M.average_accuracy(A, 1) == pytest.approx((0.8 + 0.95) / 2)
    assert M.backward_transfer(A) == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)
    assert M.backward_transfer(A, 0) == 0.0
    assert M.forgetting(A) == pytest.approx(((0.9 - 0.7) + (0.95 - 0.9)) / 2)


def test_no_forgetting_gives_zero_bwt():
    B = [[1.0, None], [1.0, 0.5]]
    assert M.backward_transfer(B) == 0.0


def test_undefined_scenario_gives_none():
    C = [[None, None], [None, None]]
    assert M.average_accuracy(C) is None and M.backward_transfer(C) is None
    D = [[0.5, None], [None, 0.7]]
    assert M.average_accuracy(D) is None and M.backward_transfer(D) is None


def test_summarize_and_names():
    s = M.summarize(A)
    assert s["final_accs"] == [0.7, 0.9, 1.0] and s["acc_matrix"] is A
    assert M.task_metric_name("til", 3) == "acc/til/task_03"


def test_box_size_is_the_smallest_task_box_and_needs_every_task():
    reports = [{"weight_box_rel_radius": 0.04, "gamma_reached": 0.05}, {"weight_box_rel_radius": 0.02, "gamma_reached": 0.025}]
    assert M.box_size(reports) == 0.02 and M.box_size(reports, "gamma_reached") == 0.025
    assert M.box_size(reports + [{"weight_box_rel_radius": None}]) is None and M.box_size([]) is None
    assert M.BOX_SIZE in M.HEADLINE_METRICS and M.GAMMA_REACHED in M.LABELS
