"""Continual-learning metrics as pure functions of an accuracy matrix.

``A[i][j]`` is the test accuracy on task ``j`` after training task ``i`` (``None`` for
``j > i`` or where a scenario is undefined). Metric names are module constants so the trainer,
the TensorBoard logger and the Tune searcher agree on them.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

AccMatrix = List[List[Optional[float]]]

AVG_ACC = "avg_acc"
BWT = "bwt"
WORST_AVG_ACC = "worst_avg_acc"
WORST_BWT = "worst_bwt"
TASKS_DONE = "tasks_done"
DIL_AVG_ACC = "dil_avg_acc"
DIL_BWT = "dil_bwt"
CIL_AVG_ACC = "cil_avg_acc"
#: how large the certified weight boxes are: the median over a task's boxed weights of radius / |centre|,
#: the smallest over the tasks (a larger box at equal certified accuracy is a stronger guarantee)
BOX_SIZE = "box_size"
#: the gamma the boxes were trained at: gamma times the lowest warm-up position a kept box reached
GAMMA_REACHED = "gamma_reached"
#: the figures a run reports after every task, in the order tables and TensorBoard show them, with
#: the words they are shown with: the one declaration every report, sweep objective and study uses
HEADLINE_LABELS = {
    AVG_ACC: "avg acc (TIL)",
    BWT: "BWT",
    WORST_AVG_ACC: "worst-case avg acc",
    WORST_BWT: "worst-case BWT",
    CIL_AVG_ACC: "CIL avg acc",
    DIL_AVG_ACC: "universal (DIL) avg acc",
    BOX_SIZE: "certified box size (median relative radius)",
}
HEADLINE_METRICS = tuple(HEADLINE_LABELS)
#: every per-run figure a sweep's tables know by name (the headline ones and the universal network's BWT)
LABELS = {**HEADLINE_LABELS, DIL_BWT: "universal (DIL) BWT", GAMMA_REACHED: "gamma reached"}
#: the lowest warm-up position any task's box reached (1 = every box trained at full gamma; 0 = one never opened)
RAMP_REACHED = "ramp_reached"
SCENARIOS = ("til", "worst", "dil", "cil")


def task_metric_name(scenario: str, task_id: int) -> str:
    """e.g. ``acc/til/task_03``."""
    return f"acc/{scenario}/task_{task_id:02d}"


def empty_matrix(num_tasks: int) -> AccMatrix:
    return [[None] * num_tasks for _ in range(num_tasks)]


def last_row(acc: AccMatrix, row: Optional[int] = None) -> List[float]:
    """Accuracies after training task ``row`` (default: the last row with any value)."""
    if row is None:
        filled = [i for i, r in enumerate(acc) if any(v is not None for v in r)]
        if not filled:
            return []
        row = filled[-1]
    return [v for v in acc[row][: row + 1] if v is not None]


def average_accuracy(acc: AccMatrix, row: Optional[int] = None) -> Optional[float]:
    """Mean accuracy over tasks ``0..row`` after training task ``row`` (``None`` if undefined)."""
    if row is None:
        filled = [i for i, r in enumerate(acc) if any(v is not None for v in r)]
        if not filled:
            return None
        row = filled[-1]
    vals = acc[row][: row + 1]
    if any(v is None for v in vals):
        return None
    return sum(vals) / len(vals)


def backward_transfer(acc: AccMatrix, row: Optional[int] = None) -> Optional[float]:
    """``mean_{j < row} (A[row][j] - A[j][j])``; 0 = no forgetting, negative = forgetting.

    Returns ``0.0`` after the first task (nothing to forget yet) and ``None`` where a needed entry
    is missing.
    """
    if row is None:
        filled = [i for i, r in enumerate(acc) if any(v is not None for v in r)]
        if not filled:
            return None
        row = filled[-1]
    diffs = []
    for j in range(row):
        a, d = acc[row][j], acc[j][j]
        if a is None or d is None:
            return None
        diffs.append(a - d)
    return sum(diffs) / len(diffs) if diffs else 0.0


def forgetting(acc: AccMatrix, row: Optional[int] = None) -> Optional[float]:
    """Mean over ``j < row`` of ``max_{i < row} A[i][j] - A[row][j]`` (Chaudhry et al. 2018)."""
    if row is None:
        row = len(acc) - 1
    vals = []
    for j in range(row):
        prev = [acc[i][j] for i in range(j, row) if acc[i][j] is not None]
        if not prev or acc[row][j] is None:
            return None
        vals.append(max(prev) - acc[row][j])
    return sum(vals) / len(vals) if vals else 0.0


def summarize(acc: AccMatrix, row: Optional[int] = None) -> dict:
    """``{"acc_matrix", "avg_acc", "bwt", "forgetting", "final_accs"}`` for one scenario."""
    return {
        "acc_matrix": acc,
        "avg_acc": average_accuracy(acc, row),
        "bwt": backward_transfer(acc, row),
        "forgetting": forgetting(acc, row),
        "final_accs": last_row(acc, row),
    }


def universal_summary(dil: AccMatrix, worst: Optional[AccMatrix], row: int, violations: int) -> dict:
    """The universal network after task ``row``: its accuracy matrix, avg acc and BWT, and per
    task the certified lower bound (the final worst-case row, ``None`` where nothing is
    certified) with the samples that broke it (``violations``: 0 with sound bounds)."""
    out = summarize(dil, row)
    bound = last_row(worst, row) if worst is not None else []
    out["certified_bound"] = bound if len(bound) == row + 1 else None
    out["bound_avg"] = average_accuracy(worst, row) if out["certified_bound"] else None
    out["violations"] = int(violations)
    return out


def box_size(task_reports: Sequence[dict], key: str = "weight_box_rel_radius") -> Optional[float]:
    """The smallest of the tasks' ``key`` (:data:`BOX_SIZE` from ``weight_box_rel_radius``,
    :data:`GAMMA_REACHED` from ``gamma_reached``); ``None`` when a task has none (no boxes)."""
    values = [r.get(key) for r in task_reports]
    return min(values) if values and all(is_finite_number(v) for v in values) else None


def is_finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
