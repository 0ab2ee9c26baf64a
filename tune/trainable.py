"""The Ray Tune function trainable: one full continual run of the core trainer per trial.

After every task :class:`TuneReporter` calls ``tune.report`` with the metrics so far and a
checkpoint of the trainer state; a restarted trial (``FailureConfig`` retry or ``--resume``)
continues from ``tune.get_checkpoint()`` at that task boundary, so no finished task is re-run.

Searcher metrics (``final_avg_acc``, ``final_bwt``...) are ``None`` until the last task: a trial
that ASHA stops early is therefore never told to Optuna as complete with its partial (inflated:
fewer, easier tasks) accuracy -- see :class:`tune.searcher.FinalMetricOptunaSearch`.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hinterval import metrics as M
from hinterval.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from hinterval.errors import TrainingDiverged

FINAL_PREFIX = "final_"
#: result key set (to the error message) when a trial's loss became NaN/inf
DIVERGED = "diverged"
#: result key marking a task reported again after a resume without being trained again
REPLAYED = "replayed"
#: result key: test samples over all tasks of the trial's benchmark
TEST_SAMPLES = "test_samples"
#: result key: the most one test sample can move an average accuracy over the tasks, 1 / (tasks x the
#: smallest task's test samples): the resolution the sweep report compares spreads and margins with
SAMPLE_STEP = "sample_step"


def final_metric(name: str) -> str:
    """Searcher key of an objective: ``avg_acc`` -> ``final_avg_acc`` (set only after the last task)."""
    return FINAL_PREFIX + name


class TrialState:
    """The latest trainer state of one trial, kept next to Tune's checkpoints.

    Tune records a trial's newest checkpoint in its experiment state, which the driver saves
    every few seconds; a driver killed in between would resume the trial from an older task and
    train a reported task again. This copy is written *before* each report, so a resumed trial
    starts after the last task it reported. ``root`` is a local directory or a URI (``s3://``).

    Why a second track beside ``tune.get_checkpoint()``, measured with ``benchmarks/faults.py --only killed-sweep-driver``
    (SIGKILL of the sweep driver within 0.3 s of a trial's first recorded task, then ``--resume``; 3
    trials, 2-core CPU, load average 18-25, Ray 2.60): with this copy no finished task was trained
    again; with it switched off (no ``state_root``) the trial that had finished task 1 resumed from
    task 0 and trained task 1 again (its record: ``reruns [1]``).
    """

    def __init__(self, root: str, trial_id: str):
        self.root, self.name = str(root).rstrip("/"), f"{trial_id}.pt"

    def _remote(self):
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(self.root)
        return fs, f"{path}/{self.name}"

    def save(self, state: Dict[str, Any]) -> None:
        if "://" not in self.root:
            save_checkpoint(state, Path(self.root) / self.name)  # atomic: temp file + rename
            return
        import io

        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        fs, path = self._remote()
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:  # one object PUT: readers see the old or the new state
            f.write(buf.getvalue())

    def load(self) -> Optional[Dict[str, Any]]:
        if "://" not in self.root:
            path = Path(self.root) / self.name
            return load_checkpoint(path) if path.is_file() else None
        fs, path = self._remote()
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
        except (FileNotFoundError, OSError):
            return None
        with tempfile.TemporaryDirectory(prefix="hinterval-state-") as d:
            (Path(d) / self.name).write_bytes(data)
            return load_checkpoint(Path(d) / self.name)


class TuneReporter:
    """Trainer callback: ``tune.report(metrics, checkpoint=...)`` after every task.

    Args:
        objectives: metric names the searcher optimises (reported as ``final_<name>``).
        extra: constant fields added to every report (node id, device, start time).
        durable: where the state is also written before each report (see :class:`TrialState`).

    The task count (which report is the final one) and the task a resumed trial starts at
    (``resumed_from_task``) come from the trainer when its fit starts (:meth:`on_fit_start`).
    """

    def __init__(self, *, objectives: Sequence[str], extra: Dict[str, Any], durable: Optional[TrialState] = None):
        self.objectives, self.extra, self.durable = tuple(objectives), dict(extra), durable
        self.num_tasks = 0
        #: seconds spent in this callback so far (state copies, checkpoint writes, ``tune.report``), reported
        #: with every task so a sweep's time can be split into training, evaluation and reporting
        self.report_s = 0.0

    def on_fit_start(self, trainer: Any) -> None:
        self.num_tasks = len(trainer.benchmark)
        self.extra["resumed_from_task"] = trainer.tasks_done
        self.extra["fit_started_at"] = time.time()
        sizes = [len(t.test) for t in trainer.benchmark.tasks]
        self.extra[TEST_SAMPLES] = sum(sizes)
        self.extra[SAMPLE_STEP] = 1.0 / (len(sizes) * min(sizes)) if sizes and min(sizes) > 0 else None

    def report_dict(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        done = metrics[M.TASKS_DONE] >= self.num_tasks
        out = {**metrics, **self.extra, "num_tasks": self.num_tasks, "reported_at": time.time(), "report_s": self.report_s}
        for name in self.objectives:
            out[final_metric(name)] = metrics.get(name) if done else None
        return out

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        from ray import tune

        t0 = time.perf_counter()
        if self.durable is not None:
            self.durable.save(state)
        with tempfile.TemporaryDirectory(prefix="hinterval-ckpt-") as d:
            save_checkpoint(state, Path(d) / CHECKPOINT_NAME)
            # report() copies the directory to the run's storage before it returns
            tune.report(self.report_dict(metrics), checkpoint=tune.Checkpoint.from_directory(d))
        self.report_s += time.perf_counter() - t0


def trial_device(gpus: float) -> str:
    """CUDA when Tune gave this trial a GPU *and* torch can use it; otherwise CPU.

    A logical GPU (``ray start --num-gpus``, ``cluster_utils``) on a machine without CUDA runs on
    the CPU rather than failing.
    """
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


#: benchmarks loaded in this worker process, by what selects their data: with ``reuse_actors`` a worker runs
#: trial after trial on the same data, so it is loaded (and its loader's imports paid) once per process
_BENCHMARKS: Dict[tuple, Any] = {}


def cached_benchmark(cfg: Any) -> Any:
    """The benchmark of ``cfg``, loaded once per worker process (see :data:`_BENCHMARKS`).

    The trainer reads the tensors and never writes them, so trials can share them.
    """
    from hinterval.data.registry import load_for

    key = tuple(getattr(cfg, k, None) for k in ("benchmark", "num_tasks", "data_seed", "data_dir", "target",
                                                 "image_size", "image_channels"))
    if key not in _BENCHMARKS:
        _BENCHMARKS.clear()  # one benchmark at a time: a worker never holds two data sets
        _BENCHMARKS[key] = load_for(cfg)
    return _BENCHMARKS[key]


def trial_extra(*, node_id: str, device: str, num_threads: int, started: float, imported: float) -> Dict[str, Any]:
    """What every report of a trial carries besides the trainer's metrics: where it ran, and when it started
    and finished its imports (with ``fit_started_at``, ``report_s`` and ``reported_at`` from
    :class:`TuneReporter`: the phases ``benchmarks/sweep.py`` splits a sweep's time into)."""
    return {"node_id": node_id, "device": device, "num_threads": num_threads, "trial_started_at": started,
            "imported_at": imported, "worker_pid": os.getpid()}


def run_trial(config: Dict[str, Any], setup: Dict[str, Any]) -> None:
    """Tune function trainable: train ``setup["base"] | config`` on all tasks, reporting per task.

    Args:
        config: the searcher's suggestion (searched keys only).
        setup: ``{"base": fixed config dict (absolute data_dir), "objectives": [...],
            "state_root": dir or URI for :class:`TrialState`, "download": fetch missing data first}``, bound
            with ``tune.with_parameters``.
    """
    started = time.time()
    import ray
    from ray import tune

    from hinterval.config import make_config
    from hinterval.runtime import configure_process
    from hinterval.trainer import ContinualTrainer

    imported = time.time()
    # Ray Train's loggers (the "ray.train" tree, Ray's documented name) say one INFO line per task checkpoint
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    resources = tune.get_context().get_trial_resources().required_resources
    cpus = max(1, int(resources.get("CPU", 1) or 1))
    gpus = float(resources.get("GPU", 0) or 0)
    device = trial_device(gpus)
    if gpus > 0 and device == "cpu":
        print(f"hinterval: trial got {gpus:g} GPU(s) from Ray but torch sees no CUDA device here; running on CPU",
              file=sys.stderr)
    cfg = make_config(setup["base"], config, device=device, num_threads=cpus)  # the CPUs Tune reserved, not the node's
    configure_process(cfg)
    durable = TrialState(setup["state_root"], tune.get_context().get_trial_id()) if setup.get("state_root") else None
    extra = trial_extra(node_id=ray.get_runtime_context().get_node_id(), device=device, num_threads=cpus,
                        started=started, imported=imported)
    reporter = TuneReporter(objectives=setup["objectives"], extra=extra, durable=durable)
    if setup.get("download"):  # this node's copy: the first trial here fetches it, the others wait for it (file lock)
        from hinterval.data.download import ensure_data

        ensure_data(cfg.benchmark, cfg.data_dir, progress=False)
    trainer = ContinualTrainer(cfg, callbacks=[reporter], benchmark=cached_benchmark(cfg), progress=False)
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT_NAME)
    newer = durable.load() if durable is not None else None
    replay = newer is not None and (state is None or newer["tasks_done"] > state["tasks_done"])
    if replay:
        state = newer  # the driver died before Tune recorded this trial's last checkpoint
    if state is not None:
        trainer.load_state(state)
    if replay:  # report that task again (no training) so the driver has its metrics and checkpoint
        t = trainer.tasks_done - 1
        reporter.on_fit_start(trainer)  # what fit() tells it, needed before fit here
        reporter.on_task_end(t, {**trainer.task_metrics(t), REPLAYED: True}, trainer.state())
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        # Deterministic (seeded per task): a retry from the checkpoint would diverge again. End the
        # trial with a result without final metrics (Optuna: PRUNED; never ranked).
        last = trainer.task_metrics(trainer.tasks_done - 1) if trainer.tasks_done else {M.TASKS_DONE: 0, M.AVG_ACC: None}
        tune.report({**reporter.report_dict(last), **{final_metric(o): None for o in setup["objectives"]}, DIVERGED: str(exc)})
