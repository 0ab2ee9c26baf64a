"""The Ray Tune function trainable: one full continual run of the core trainer per trial.

After every task :class:`TuneReporter` calls ``tune.report`` with the metrics so far and a
checkpoint of the trainer state; a restarted trial (``FailureConfig`` retry or ``--resume``)
continues from ``tune.get_checkpoint()`` at that task boundary, so no finished task is re-run.

Searcher metrics (``final_avg_acc``, ``final_bwt``...) are ``None`` until the last task: a trial
that ASHA stops early is therefore never told to Optuna as complete with its partial (inflated:
fewer, easier tasks) accuracy -- see :class:`tune.search.FinalMetricOptunaSearch`.
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Sequence

from hinterval import metrics as M
from hinterval.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from hinterval.errors import TrainingDiverged

FINAL_PREFIX = "final_"
#: result key set (to the error message) when a trial's loss became NaN/inf
DIVERGED = "diverged"


def final_metric(name: str) -> str:
    """Searcher key of an objective: ``avg_acc`` -> ``final_avg_acc`` (set only after the last task)."""
    return FINAL_PREFIX + name


class TuneReporter:
    """Trainer callback: ``tune.report(metrics, checkpoint=...)`` after every task.

    Args:
        num_tasks: tasks in the benchmark (to know which report is the final one).
        objectives: metric names the searcher optimises (reported as ``final_<name>``).
        extra: constant fields added to every report (node id, device, start time).
    """

    def __init__(self, *, num_tasks: int, objectives: Sequence[str], extra: Dict[str, Any]):
        self.num_tasks, self.objectives, self.extra = num_tasks, tuple(objectives), dict(extra)

    def report_dict(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        done = metrics[M.TASKS_DONE] >= self.num_tasks
        out = {**metrics, **self.extra, "num_tasks": self.num_tasks, "reported_at": time.time()}
        for name in self.objectives:
            out[final_metric(name)] = metrics.get(name) if done else None
        return out

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        from ray import tune

        with tempfile.TemporaryDirectory(prefix="hinterval-ckpt-") as d:
            save_checkpoint(state, Path(d) / CHECKPOINT_NAME)
            # report() copies the directory to the run's storage before it returns
            tune.report(self.report_dict(metrics), checkpoint=tune.Checkpoint.from_directory(d))


def trial_device(gpus: float) -> str:
    """CUDA when Tune gave this trial a GPU *and* torch can use it; otherwise CPU.

    A logical GPU (``ray start --num-gpus``, ``cluster_utils``) on a machine without CUDA runs on
    the CPU rather than failing.
    """
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def run_trial(config: Dict[str, Any], setup: Dict[str, Any]) -> None:
    """Tune function trainable: train ``setup["base"] | config`` on all tasks, reporting per task.

    Args:
        config: the searcher's suggestion (searched keys only).
        setup: ``{"base": fixed config dict (absolute data_dir), "objectives": [...]}``, bound
            with ``tune.with_parameters``.
    """
    import ray
    import torch
    from ray import tune

    from hinterval.config import make_config
    from hinterval.trainer import ContinualTrainer

    started = time.time()
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one line per task checkpoint
    resources = tune.get_context().get_trial_resources().required_resources
    cpus = max(1, int(resources.get("CPU", 1) or 1))
    gpus = float(resources.get("GPU", 0) or 0)
    device = trial_device(gpus)
    if gpus > 0 and device == "cpu":
        print(f"hinterval: trial got {gpus:g} GPU(s) from Ray but torch sees no CUDA device here; running on CPU",
              file=sys.stderr)
    torch.set_num_threads(cpus)  # the CPUs Tune reserved for this trial, not the whole node
    cfg = make_config(setup["base"], config, device=device, num_threads=cpus)
    trainer = ContinualTrainer(cfg, progress=False)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            trainer.load_state(load_checkpoint(Path(d) / CHECKPOINT_NAME))
    extra = {"node_id": ray.get_runtime_context().get_node_id(), "device": device, "num_threads": cpus,
             "trial_started_at": started, "resumed_from_task": trainer.tasks_done}
    reporter = TuneReporter(num_tasks=len(trainer.benchmark), objectives=setup["objectives"], extra=extra)
    trainer.callbacks.append(reporter)
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        # Deterministic (seeded per task): a retry from the checkpoint would diverge again. End the
        # trial with a result without final metrics (Optuna: PRUNED; never ranked).
        last = trainer.task_metrics(trainer.tasks_done - 1) if trainer.tasks_done else {M.TASKS_DONE: 0, M.AVG_ACC: None}
        tune.report({**reporter.report_dict(last), **{final_metric(o): None for o in setup["objectives"]}, DIVERGED: str(exc)})
