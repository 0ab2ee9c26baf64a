"""Evaluation in the three CL scenarios plus worst-case (certified) accuracy (spec §4).

A method's :meth:`predictor` precomputes the networks of all requested tasks once (one batched
hypernetwork pass); then every batch of samples goes through ALL tasks' networks at once
(``torch.func.vmap`` over tasks), so class-incremental inference has no Python loop over tasks
or samples.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from hinterval.data.base import Benchmark, Task
from hinterval.intervals import worst_case_logits


class Predictor:
    """Predictions of a fixed set of task networks. Subclasses fill the three methods.

    ``logits(x)`` -> ``(T, N, C)``; ``bounds(x)`` -> ``(lower, upper)`` or ``None``;
    ``universal(x)`` -> ``(N, C)`` or ``None``.
    """

    def logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def bounds(self, x: Tensor) -> Optional[Tuple[Tensor, Tensor]]:
        return None

    def universal(self, x: Tensor) -> Optional[Tensor]:
        return None


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy of ``softmax(logits)`` over the last dimension."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def task_inference_scores(mid: Tensor, bounds: Optional[Tuple[Tensor, Tensor]], alpha: float) -> Tensor:
    """Score per task and sample, lower = more likely the sample's task: ``(T, N)``.

    Entropy of the middle network's softmax, plus ``alpha`` times the mean width of the logit box
    when intervals exist (a wide output box means the task's weight region is unsure of ``x``).
    """
    score = entropy(mid)
    if bounds is not None and alpha > 0:
        score = score + alpha * (bounds[1] - bounds[0]).mean(-1)
    return score


@torch.inference_mode()
def evaluate_tasks(
    predictor: Predictor,
    benchmark: Benchmark,
    task_ids: Sequence[int],
    *,
    split: str = "test",
    batch_size: int = 2048,
    cil_alpha: float = 0.1,
    scenarios: Sequence[str] = ("til", "worst", "dil", "cil"),
) -> Dict[str, List[Optional[float]]]:
    """Accuracy per task in ``task_ids`` (the predictor's tasks, in the same order).

    Returns:
        ``{"til": [...], "worst": [...], "dil": [...], "cil": [...]}``; a scenario the method
        cannot do gets ``None`` entries.
    """
    tasks = [benchmark.tasks[i] for i in task_ids]
    device = tasks[0].train.y.device
    class_table = torch.tensor([t.classes for t in tasks], device=device)  # (T, C)
    results: Dict[str, List[Optional[float]]] = {s: [] for s in scenarios}
    for pos, task in enumerate(tasks):
        data = task.split(split)
        correct = {s: 0 for s in scenarios}
        defined = {s: True for s in scenarios}
        for start in range(0, len(data), batch_size):
            x = task.inputs(data.x[start : start + batch_size])
            y = data.y[start : start + batch_size]
            mid = predictor.logits(x)  # (T, N, C)
            need_bounds = "worst" in scenarios or "cil" in scenarios
            bnds = predictor.bounds(x) if need_bounds else None
            if "til" in scenarios:
                correct["til"] += int((mid[pos].argmax(-1) == y).sum())
            if "worst" in scenarios:
                if bnds is None:
                    defined["worst"] = False
                else:
                    wc = worst_case_logits(bnds[0][pos], bnds[1][pos], y)
                    correct["worst"] += int((wc.argmax(-1) == y).sum())
            if "dil" in scenarios:
                uni = predictor.universal(x)
                if uni is None:
                    defined["dil"] = False
                else:
                    correct["dil"] += int((uni.argmax(-1) == y).sum())
            if "cil" in scenarios:
                scores = task_inference_scores(mid, bnds, cil_alpha)  # (T, N)
                pred_task = scores.argmin(0)  # (N,)
                idx = torch.arange(len(y), device=device)
                pred_local = mid[pred_task, idx].argmax(-1)
                pred_global = class_table[pred_task, pred_local]
                correct["cil"] += int((pred_global == class_table[pos, y]).sum())
        for s in scenarios:
            results[s].append(correct[s] / len(data) if defined[s] else None)
    return results
