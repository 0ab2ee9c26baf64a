"""What a continual run has measured so far, how it is checkpointed, and how it is reported.

:class:`RunRecord` holds the accuracy matrices (one per scenario), task times, per-task reports
and the universal network's violations; the trainer fills it after every task. It turns into the
checkpoint's bookkeeping (:meth:`RunRecord.state` / :meth:`RunRecord.load`), the flat per-task
metrics Tune and TensorBoard receive (:meth:`RunRecord.task_metrics`) and the run's result
(:meth:`RunRecord.result`). It holds no model: the method's weights are the trainer's.
"""
from __future__ import annotations

import copy
import os
import platform
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from hinterval import metrics as M
from hinterval.config import ExperimentConfig
from hinterval.errors import UserError

#: what the worst-case figures say where the interval propagation is not sound
NOT_SOUND = "n/a (not sound)"


def runtime_settings() -> Dict[str, Any]:
    """What the wall times depend on besides the config: CPU threads and the OpenMP wait policy."""
    return {"torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "cpu_count": os.cpu_count()}


def library_versions() -> Dict[str, str]:
    import numpy

    import hinterval

    return {"hinterval": hinterval.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


@dataclass(frozen=True)
class MethodTraits:
    """What the reports need to know of the method: whether it has weight boxes, whether they are
    certified (sound propagation) and cover every layer, and whether BWT means anything."""

    has_intervals: bool
    certifies: bool
    bwt_meaningful: bool
    boxes_every_layer: bool
    interval_scope: Optional[str]
    certificate: Optional[str]


class RunRecord:
    """The measurements of one run (see the module docstring)."""

    def __init__(self, num_tasks: int):
        self.num_tasks = num_tasks
        self.matrices: Dict[str, M.AccMatrix] = {s: M.empty_matrix(num_tasks) for s in M.SCENARIOS}
        self.task_times: List[float] = []
        self.task_reports: List[Dict[str, Any]] = []
        #: per evaluated task row: test samples certified for their task that the universal network got wrong
        self.universal_violations: List[int] = [0] * num_tasks
        self.tasks_done = 0
        self.elapsed_before = 0.0
        self.cil_details: Optional[Dict[str, Any]] = None

    def store_evaluation(self, t: int, res: Dict[str, Any]) -> None:
        """Row ``t`` of every matrix from :func:`hinterval.evaluation.evaluate_tasks`'s result."""
        self.cil_details = res.get("cil_details")
        self.universal_violations[t] = int(res.get("dil_violations", 0))
        for s in M.SCENARIOS:
            for j, v in enumerate(res[s]):
                self.matrices[s][t][j] = v

    # --- checkpoint ---------------------------------------------------------------------------
    def state(self, elapsed: float) -> Dict[str, Any]:
        """The bookkeeping part of a checkpoint (copied, safe to keep)."""
        return {
            "tasks_done": self.tasks_done,
            "matrices": copy.deepcopy(self.matrices),
            "task_times": list(self.task_times),
            "task_reports": [dict(r) for r in self.task_reports],
            "universal_violations": list(self.universal_violations),
            "elapsed": self.elapsed_before + elapsed,
        }

    def load(self, state: Dict[str, Any]) -> None:
        """Restore from :meth:`state`; a malformed checkpoint is a :class:`UserError`."""
        try:
            matrices = {s: state["matrices"][s] for s in M.SCENARIOS}
            task_times, tasks_done = list(state["task_times"]), int(state["tasks_done"])
            task_reports = [dict(r) for r in state.get("task_reports", [])]
            violations = [int(v) for v in state.get("universal_violations", self.universal_violations)]
            elapsed = float(state.get("elapsed", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            first = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"checkpoint does not fit this run ({type(exc).__name__}: {first}); "
                            "it is damaged or from another hinterval version: start a new run") from None
        if not 0 <= tasks_done <= self.num_tasks:
            raise UserError(f"checkpoint says {tasks_done} tasks done but the run has {self.num_tasks}; start a new run")
        self.matrices, self.task_times, self.tasks_done, self.elapsed_before = matrices, task_times, tasks_done, elapsed
        self.task_reports, self.universal_violations = task_reports, violations

    # --- reports ------------------------------------------------------------------------------
    def task_metrics(self, t: int, traits: MethodTraits, elapsed: float) -> Dict[str, Any]:
        """Flat metrics after task ``t``: what Tune reports and TensorBoard plots."""
        til, worst = self.matrices["til"], self.matrices["worst"]
        reports = self.task_reports
        out: Dict[str, Any] = {
            M.TASKS_DONE: t + 1,
            M.AVG_ACC: M.average_accuracy(til, t),
            M.BWT: M.backward_transfer(til, t) if traits.bwt_meaningful else None,
            M.WORST_AVG_ACC: M.average_accuracy(worst, t) if traits.certifies else None,
            M.WORST_BWT: M.backward_transfer(worst, t) if traits.bwt_meaningful and traits.certifies else None,
            M.DIL_AVG_ACC: M.average_accuracy(self.matrices["dil"], t),
            M.DIL_BWT: M.backward_transfer(self.matrices["dil"], t),
            M.CIL_AVG_ACC: M.average_accuracy(self.matrices["cil"], t),
            "task_time_s": self.task_times[-1],
            "collapsed_tasks": sum(1 for r in reports if r["collapsed"]),
            "task_collapsed": bool(reports[t]["collapsed"]) if t < len(reports) else False,
            "task_val_acc": reports[t]["val_acc"] if t < len(reports) else None,
            M.RAMP_REACHED: min(r["ramp_reached"] for r in reports) if traits.has_intervals and reports else None,
            M.BOX_SIZE: M.box_size(reports[: t + 1]) if traits.certifies else None,
            M.GAMMA_REACHED: M.box_size(reports[: t + 1], "gamma_reached") if traits.has_intervals else None,
            "elapsed_s": self.elapsed_before + elapsed,
        }
        for s in M.SCENARIOS:
            if s == "worst" and not traits.certifies:
                continue
            for j in range(t + 1):
                v = self.matrices[s][t][j]
                if v is not None:
                    out[M.task_metric_name(s, j)] = v
        return out

    def result(self, cfg: ExperimentConfig, traits: MethodTraits, *, universal_size: Optional[Dict[str, Any]],
               device: str, elapsed: float) -> Dict[str, Any]:
        """The run's result: headline metrics, per-scenario summaries, config and provenance."""
        row = self.tasks_done - 1
        scen: Dict[str, Any] = {s: M.summarize(self.matrices[s], row) for s in M.SCENARIOS}
        if not traits.bwt_meaningful:
            for s in scen.values():
                s["bwt"], s["forgetting"] = None, None
        worst_acc, worst_bwt = scen["worst"]["avg_acc"], scen["worst"]["bwt"]
        if traits.has_intervals and not traits.certifies:  # an unsound propagation bounds nothing
            worst_acc = worst_bwt = NOT_SOUND
            scen["worst"] = {"note": NOT_SOUND}
        if self.cil_details:  # task inference after the last task: score, confusion matrix
            scen["cil"].update(self.cil_details)
        universal = None
        if scen["dil"]["avg_acc"] is not None:
            # A partial scope certifies each task's box with the other layers at THAT task's centre;
            # the universal network's other layers differ, so those figures bound nothing for it.
            bounds_universal = traits.certifies and traits.boxes_every_layer
            universal = M.universal_summary(self.matrices["dil"], self.matrices["worst"] if bounds_universal else None,
                                            row, sum(self.universal_violations[: row + 1]))
            universal.update(universal_size or {})
            if traits.certifies and not bounds_universal:
                universal["bound_note"] = (f"interval scope {traits.interval_scope}: the task boxes cover the "
                                           "boxed layers only, so they bound nothing for the universal network")
        return {
            M.AVG_ACC: scen["til"]["avg_acc"],
            M.BWT: scen["til"]["bwt"],
            M.WORST_AVG_ACC: worst_acc,
            M.WORST_BWT: worst_bwt,
            "certified": traits.certifies,
            "interval_scope": traits.interval_scope if traits.has_intervals else None,
            "certificate": traits.certificate,
            M.BOX_SIZE: M.box_size(self.task_reports) if traits.certifies else None,
            M.GAMMA_REACHED: M.box_size(self.task_reports, "gamma_reached") if traits.has_intervals else None,
            "acc_matrix": self.matrices["til"],
            **scen,
            "universal": universal,
            M.TASKS_DONE: self.tasks_done,
            "num_tasks": self.num_tasks,
            "method": cfg.method,
            "benchmark": cfg.benchmark,
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "device": device,
            "versions": library_versions(),
            "runtime": runtime_settings(),
            "wall_time_s": self.elapsed_before + elapsed,
            "task_times_s": self.task_times,
            "tasks": self.task_reports,
            "collapsed_tasks": [r["task"] for r in self.task_reports if r["collapsed"]],
        }
