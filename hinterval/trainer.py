"""The continual trainer: one loop for every method.

For each task: fresh Adam over the method's trainable parameters, batches drawn from tensors
already on the device, periodic validation at full gamma for model selection, then evaluation
of all seen tasks in every scenario and a read-only callback (``on_task_end``) that receives the
metrics and a checkpointable state. Each task re-seeds the RNG from ``(seed, task)``, so a run
resumed at a task boundary matches an uninterrupted run exactly.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Protocol, Sequence

import torch

from hinterval import metrics as M
from hinterval.config import RESOURCE_FIELDS, ExperimentConfig, make_config
from hinterval.data.base import Benchmark, Task
from hinterval.data.registry import load_for
from hinterval.errors import TrainingDiverged, UserError
from hinterval.evaluation import evaluate_tasks
from hinterval.intervals import relative_radius
from hinterval.memory import check_memory
from hinterval.methods.base import ContinualMethod
from hinterval.methods.registry import build_method
from hinterval.schedule import RampController
from hinterval.targets.factory import build_target

CHECKPOINT_FORMAT = 1
#: a task whose centre validation accuracy is at most this share of the way from chance to 1 has
#: collapsed (its network answers (nearly) the same for every input)
COLLAPSE_MARGIN = 0.1


NOT_SOUND = "n/a (not sound)"



def collapse_threshold(num_classes: int) -> float:
    """Validation accuracy at or below which a task counts as collapsed to chance."""
    chance = 1.0 / max(1, num_classes)
    return chance + COLLAPSE_MARGIN * (1.0 - chance)

#: config fields that only say where/how fast to run; a resume may change them



class Callback(Protocol):
    """Read-only observer of a run, given to the trainer at construction. All hooks are optional."""

    def on_fit_start(self, trainer: "ContinualTrainer") -> None:
        """Once, when :meth:`ContinualTrainer.fit` starts: e.g. to keep ``trainer.result`` for reports."""

    def on_step(self, task_id: int, step: int, logs: Dict[str, float]) -> None: ...

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None: ...

    def on_train_end(self, result: Dict[str, Any]) -> None: ...


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is available here; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed % 2**64)  # seeds up to 2^64 - 1, and the per-task seed derived from them


def iterations_for(cfg: ExperimentConfig, task: Task) -> int:
    """Iterations for one task: ``iters_per_task``, or ``epochs_per_task`` over its train split."""
    if cfg.epochs_per_task is not None:
        return max(1, math.ceil(cfg.epochs_per_task * len(task.train) / cfg.batch_size))
    return cfg.iters_per_task


def make_optimizer(params: Sequence[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam; fused kernels where this torch supports them (the step is memory-bound)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class BatchSampler:
    """Epoch-wise shuffled mini-batches of indices, drawn on the data's device."""

    def __init__(self, n: int, batch_size: int, device: torch.device):
        self.n, self.bs, self.device = n, min(batch_size, n), device
        self._perm, self._pos = torch.randperm(n, device=device), 0

    def next(self) -> torch.Tensor:
        if self._pos + self.bs > self.n:
            self._perm, self._pos = torch.randperm(self.n, device=self.device), 0
        idx = self._perm[self._pos : self._pos + self.bs]
        self._pos += self.bs
        return idx


def runtime_settings() -> Dict[str, Any]:
    """What the wall times depend on besides the config: CPU threads and the OpenMP wait policy."""
    import os

    return {"torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "cpu_count": os.cpu_count()}


def library_versions() -> Dict[str, str]:
    import platform

    import numpy

    import hinterval

    return {"hinterval": hinterval.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


class ContinualTrainer:
    """Runs (or resumes) a continual-learning experiment.

    Process-wide settings (threads, allocator, OpenMP) are the caller's:
    :func:`hinterval.runtime.configure_process`.

    Args:
        cfg: the experiment config.
        callbacks: read-only observers (TensorBoard, checkpoints, Ray Tune reporting); see :class:`Callback`.
        benchmark: a pre-loaded benchmark (else loaded from ``cfg``).
        progress: show a progress bar per task.
    """

    def __init__(self, cfg: ExperimentConfig, *, callbacks: Sequence[Any] = (), benchmark: Optional[Benchmark] = None,
                 progress: bool = True):
        self.cfg, self.callbacks, self.progress = cfg, tuple(callbacks), progress
        self.device = resolve_device(cfg.device)
        bench = benchmark or load_for(cfg)
        self.benchmark = bench.to(self.device)
        check_memory(cfg, self.benchmark, self.device)  # refuse a model that cannot fit before allocating it
        seed_everything(cfg.seed)
        self.method: ContinualMethod = build_method(cfg, self.benchmark, build_target(cfg, self.benchmark)).to(self.device)
        T = len(self.benchmark)
        self.matrices: Dict[str, M.AccMatrix] = {s: M.empty_matrix(T) for s in M.SCENARIOS}
        self.task_times: List[float] = []
        self.task_reports: List[Dict[str, Any]] = []
        #: per evaluated task row: test samples certified for their task that the universal network got wrong
        self.universal_violations: List[int] = [0] * T
        self.tasks_done = 0
        self.elapsed_before = 0.0

    @property
    def certifies(self) -> bool:
        """Whether the worst-case figures are certified: the method has weight boxes and its target
        propagates them soundly (``relaxed`` interval mode does not)."""
        return self.method.has_intervals and getattr(self.method.target, "interval_mode", "sound") != "relaxed"

    @property
    def certificate(self) -> Optional[str]:
        """What the worst-case figures hold for, in words; ``None`` where nothing is certified."""
        if not self.certifies:
            return None
        return f"interval scope {self.method.target.interval_scope}: {self.method.target.scope_text()}"

    # --- state -------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        """A snapshot (copied, safe to keep) of everything needed to resume at this task boundary."""
        import copy

        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "tasks_done": self.tasks_done,
            "model": {k: v.detach().cpu().clone() for k, v in self.method.state_dict().items()},
            "matrices": copy.deepcopy(self.matrices),
            "task_times": list(self.task_times),
            "task_reports": [dict(r) for r in self.task_reports],
            "universal_violations": list(self.universal_violations),
            "elapsed": self.elapsed_before + self._elapsed(),
        }

    def load_state(self, state: Dict[str, Any]) -> None:
        """Restore from :meth:`state` (the config must match this trainer's config)."""
        saved, mine = make_config(state["config"]).to_dict(), self.cfg.to_dict()
        diff = {k: (saved[k], mine[k]) for k in saved if k not in RESOURCE_FIELDS and saved[k] != mine[k]}
        if diff:
            raise UserError(f"checkpoint was made with a different config {diff} (saved, requested); "
                            "resume with the same settings or start a new run")
        try:
            self.method.load_state_dict(state["model"])
            matrices = {s: state["matrices"][s] for s in M.SCENARIOS}
            task_times, tasks_done = list(state["task_times"]), int(state["tasks_done"])
            task_reports = [dict(r) for r in state.get("task_reports", [])]
            violations = [int(v) for v in state.get("universal_violations", self.universal_violations)]
            elapsed = float(state.get("elapsed", 0.0))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # e.g. a model of another shape
            first = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"checkpoint does not fit this run ({type(exc).__name__}: {first}); "
                            "it is damaged or from another hinterval version: start a new run") from None
        if not 0 <= tasks_done <= len(self.benchmark):
            raise UserError(f"checkpoint says {tasks_done} tasks done but the run has {len(self.benchmark)}; start a new run")
        self.matrices, self.task_times, self.tasks_done, self.elapsed_before = matrices, task_times, tasks_done, elapsed
        self.task_reports, self.universal_violations = task_reports, violations

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0

    # --- loop --------------------------------------------------------------------------------
    def fit(self) -> Dict[str, Any]:
        """Train the remaining tasks and return the result dict (see :meth:`result`)."""
        self._t0 = time.perf_counter()
        for cb in self.callbacks:
            if hasattr(cb, "on_fit_start"):
                cb.on_fit_start(self)
        for t in range(self.tasks_done, len(self.benchmark)):
            t_start = time.perf_counter()
            self._train_task(t)
            self.task_times.append(time.perf_counter() - t_start)
            self.evaluate(t)
            self.tasks_done = t + 1
            task_metrics = self.task_metrics(t)
            state = self.state()
            for cb in self.callbacks:
                if hasattr(cb, "on_task_end"):
                    cb.on_task_end(t, task_metrics, state)
        result = self.result()
        for cb in self.callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(result)
        return result

    def _train_task(self, t: int) -> None:
        cfg, task, method = self.cfg, self.benchmark.tasks[t], self.method
        seed_everything(cfg.seed * 100_003 + t)
        method.train()
        method.begin_task(t)
        params = method.trainable_parameters(t)
        opt = make_optimizer(params, cfg.lr)
        n_iters = iterations_for(cfg, task)
        ramp = RampController(cfg.ramp if method.has_intervals else "fixed", n_iters=n_iters,
                              ramp_fraction=cfg.ramp_fraction, num_classes=self.benchmark.classes_per_task)
        sampler = BatchSampler(len(task.train), cfg.batch_size, self.device)
        best_score, best_state, best_ramp = None, None, ramp.position
        step0 = sum(iterations_for(cfg, self.benchmark.tasks[j]) for j in range(t))  # global step offset
        bar = _progress(range(n_iters), f"task {t + 1}/{len(self.benchmark)}", self.progress)
        augment = None
        if task.augment:
            from hinterval.data.augment import random_flip_crop as augment
        for it in bar:
            idx = sampler.next()
            x = task.inputs(task.train.x[idx])
            if augment is not None:
                x = augment(x)
            loss, logs = method.training_loss(t, x, task.train.y[idx], ramp.position)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {float(loss.detach())} at task {t + 1}/{len(self.benchmark)}, iteration {it + 1}/{n_iters}; "
                    f"lower --lr (now {cfg.lr}) or --beta/--gamma")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ramp.update(logs)
            if it % 25 == 0:
                logs["step"] = step0 + it
                if self.progress:
                    bar.set_postfix(loss=f"{logs['loss']:.4f}")
                for cb in self.callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(t, it, logs)
            last = it == n_iters - 1
            # Model selection: states trained on the full box rank above states from before the
            # warm-up finished (those never trained their box at full gamma); among equals the
            # higher centre + worst-case validation accuracy wins, ties go to the later state. The
            # earlier states are kept as a fallback for a task whose box never reached full gamma.
            if (it + 1) % cfg.val_every == 0 or last:
                score = (ramp.complete, self._validation_score(t))
                if best_score is None or score >= best_score:
                    best_score, best_state, best_ramp = score, [p.detach().clone() for p in params], ramp.position
        if best_state is not None:
            with torch.no_grad():
                for p, v in zip(params, best_state):
                    p.copy_(v)
        method.end_task(t, box_scale=best_ramp)
        self.task_reports.append(self._task_report(t, ramp))

    def _task_report(self, t: int, ramp: RampController) -> Dict[str, Any]:
        """How task ``t`` ended: its centre validation accuracy, whether that is a collapse to
        (near) chance, and how far the box warm-up got (1 = trained at full gamma)."""
        self.method.eval()
        res = evaluate_tasks(self.method.predictor([t]), self.benchmark, [t], split="val",
                             batch_size=self.cfg.eval_batch_size, scenarios=("til",))
        self.method.train()
        val = float(res["til"][0])
        collapsed = val <= collapse_threshold(self.benchmark.classes_per_task)
        report = {"task": t, "val_acc": val, "collapsed": collapsed, "ramp_reached": ramp.position}
        box = self.method.weight_box(t)
        if box is not None:  # over the weights the box covers (the interval scope's layers)
            target = self.method.target
            report["weight_box_rel_radius"] = relative_radius(target.boxed(box[0]), target.boxed(box[1]))
        return report

    def _validation_score(self, t: int) -> float:
        """Model selection at full gamma: centre accuracy plus worst-case accuracy."""
        self.method.eval()
        res = evaluate_tasks(self.method.predictor([t]), self.benchmark, [t], split="val",
                             batch_size=self.cfg.eval_batch_size, scenarios=("til", "worst"))
        self.method.train()
        return res["til"][0] + (res["worst"][0] or 0.0)

    def evaluate(self, after_task: Optional[int] = None) -> Dict[str, List[Optional[float]]]:
        """Test accuracy of tasks ``0..after_task`` in every scenario, ``{scenario: [acc per task]}``.

        The result is also stored as row ``after_task`` of :attr:`matrices`, which :meth:`result`
        reports. ``after_task`` defaults to the last finished task: ``hinterval eval`` re-computes
        that row from a saved model.
        """
        t = self.tasks_done - 1 if after_task is None else after_task
        if not 0 <= t < len(self.benchmark):
            raise UserError(f"cannot evaluate after task {t + 1}: the run has {len(self.benchmark)} tasks, "
                            f"{self.tasks_done} of them finished")
        self.method.eval()
        seen = list(range(t + 1))
        res = evaluate_tasks(self.method.predictor(seen), self.benchmark, seen, split="test",
                             batch_size=self.cfg.eval_batch_size, cil_alpha=self.cfg.cil_alpha, cil_score=self.cfg.cil_score)
        self.cil_details = res.get("cil_details")
        self.universal_violations[t] = int(res.get("dil_violations", 0))
        for s in M.SCENARIOS:
            for j, v in enumerate(res[s]):
                self.matrices[s][t][j] = v
        return {s: list(res[s]) for s in M.SCENARIOS}

    # --- reporting -----------------------------------------------------------------------------
    def task_metrics(self, t: int) -> Dict[str, Any]:
        """Flat metrics after task ``t``: what Tune reports and TensorBoard plots."""
        til, worst = self.matrices["til"], self.matrices["worst"]
        out: Dict[str, Any] = {
            M.TASKS_DONE: t + 1,
            M.AVG_ACC: M.average_accuracy(til, t),
            M.BWT: M.backward_transfer(til, t) if self.method.bwt_meaningful else None,
            M.WORST_AVG_ACC: M.average_accuracy(worst, t) if self.certifies else None,
            M.WORST_BWT: M.backward_transfer(worst, t) if self.method.bwt_meaningful and self.certifies else None,
            M.DIL_AVG_ACC: M.average_accuracy(self.matrices["dil"], t),
            M.DIL_BWT: M.backward_transfer(self.matrices["dil"], t),
            M.CIL_AVG_ACC: M.average_accuracy(self.matrices["cil"], t),
            "task_time_s": self.task_times[-1],
            "collapsed_tasks": sum(1 for r in self.task_reports if r["collapsed"]),
            "task_collapsed": bool(self.task_reports[t]["collapsed"]) if t < len(self.task_reports) else False,
            "task_val_acc": self.task_reports[t]["val_acc"] if t < len(self.task_reports) else None,
            M.RAMP_REACHED: (min(r["ramp_reached"] for r in self.task_reports)
                             if self.method.has_intervals and self.task_reports else None),
            "elapsed_s": self.elapsed_before + self._elapsed(),
        }
        for s in M.SCENARIOS:
            if s == "worst" and not self.certifies:
                continue
            for j in range(t + 1):
                v = self.matrices[s][t][j]
                if v is not None:
                    out[M.task_metric_name(s, j)] = v
        return out

    def result(self) -> Dict[str, Any]:
        """The run's result: headline metrics, per-scenario summaries, config and provenance."""
        row = self.tasks_done - 1
        scen: Dict[str, Any] = {s: M.summarize(self.matrices[s], row) for s in M.SCENARIOS}
        if not self.method.bwt_meaningful:
            for s in scen.values():
                s["bwt"], s["forgetting"] = None, None
        worst_acc, worst_bwt = scen["worst"]["avg_acc"], scen["worst"]["bwt"]
        if self.method.has_intervals and not self.certifies:  # an unsound propagation bounds nothing
            worst_acc = worst_bwt = NOT_SOUND
            scen["worst"] = {"note": NOT_SOUND}
        if getattr(self, "cil_details", None):  # task inference after the last task: score, confusion matrix
            scen["cil"].update(self.cil_details)
        universal = None
        if scen["dil"]["avg_acc"] is not None:
            # A partial scope certifies each task's box with the other layers at THAT task's centre;
            # the universal network's other layers differ, so those figures bound nothing for it.
            bounds_universal = self.certifies and self.method.target.boxes_every_layer
            universal = M.universal_summary(self.matrices["dil"], self.matrices["worst"] if bounds_universal else None,
                                            row, sum(self.universal_violations[: row + 1]))
            universal.update(self.method.universal_size(self.tasks_done) or {})
            if self.certifies and not bounds_universal:
                universal["bound_note"] = (f"interval scope {self.method.target.interval_scope}: the task boxes cover the "
                                           "boxed layers only, so they bound nothing for the universal network")
        return {
            M.AVG_ACC: scen["til"]["avg_acc"],
            M.BWT: scen["til"]["bwt"],
            M.WORST_AVG_ACC: worst_acc,
            M.WORST_BWT: worst_bwt,
            "certified": self.certifies,
            "interval_scope": self.method.target.interval_scope if self.method.has_intervals else None,
            "certificate": self.certificate,
            "acc_matrix": self.matrices["til"],
            **scen,
            "universal": universal,
            M.TASKS_DONE: self.tasks_done,
            "num_tasks": len(self.benchmark),
            "method": self.cfg.method,
            "benchmark": self.cfg.benchmark,
            "config": self.cfg.to_dict(),
            "seed": self.cfg.seed,
            "device": str(self.device),
            "versions": library_versions(),
            "runtime": runtime_settings(),
            "wall_time_s": self.elapsed_before + self._elapsed(),
            "task_times_s": self.task_times,
            "tasks": self.task_reports,
            "collapsed_tasks": [r["task"] for r in self.task_reports if r["collapsed"]],
        }


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)


def train_continual(cfg: ExperimentConfig, *, callbacks: Sequence[Any] = (), resume_state: Optional[Dict[str, Any]] = None,
                    benchmark: Optional[Benchmark] = None, progress: bool = True) -> Dict[str, Any]:
    """Run (or resume from ``resume_state``) a full continual experiment; return the result dict."""
    trainer = ContinualTrainer(cfg, callbacks=callbacks, benchmark=benchmark, progress=progress)
    if resume_state is not None:
        trainer.load_state(resume_state)
    return trainer.fit()
