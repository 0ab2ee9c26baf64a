"""The continual trainer: one loop for every method.

For each task: fresh Adam over the method's trainable parameters, batches drawn from tensors
already on the device, periodic validation at full gamma for model selection, then evaluation
of all seen tasks in every scenario and a read-only callback (``on_task_end``) that receives the
metrics and a checkpointable state (what was measured lives in :class:`~hinterval.run_record.RunRecord`,
which also makes the reports). Each task re-seeds the RNG from ``(seed, task)``, so a run
resumed at a task boundary matches an uninterrupted run exactly.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Protocol, Sequence

import torch

from hinterval import metrics as M
from hinterval import transfer
from hinterval.config import RESOURCE_FIELDS, ExperimentConfig, make_config
from hinterval.data.base import Benchmark, Task
from hinterval.console import progress_bar, progress_shown
from hinterval.data.registry import load_for
from hinterval.errors import TrainingDiverged, UserError
from hinterval.evaluation import evaluate_tasks
from hinterval.intervals import relative_radius
from hinterval.memory import check_memory
from hinterval.methods.base import ContinualMethod
from hinterval.methods.registry import build_method
from hinterval.run_record import MethodTraits, RunRecord
from hinterval.schedule import RampController
from hinterval.targets.factory import build_target

CHECKPOINT_FORMAT = 1
#: a task whose centre validation accuracy is at most this share of the way from chance to 1 has
#: collapsed (its network answers (nearly) the same for every input)
COLLAPSE_MARGIN = 0.1



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
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a user error.

    CUDA comes with its index (the current device, what a plain ``cuda`` means): tensors then
    name one device, and the fake-CUDA tests can move data onto it without a GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is available here; use --device cpu or auto")
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
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


class DivergenceWatch:
    """The first iteration of a task whose loss was not finite, and that loss, noted on the device
    (no host sync); read with the step's logs wherever the trainer syncs anyway."""

    def __init__(self, device: torch.device):
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)

    def note(self, it: int, loss: torch.Tensor) -> None:
        new = ~torch.isfinite(loss.detach()) & (self.first < 0)
        self.first = torch.where(new, it, self.first)
        self.loss = torch.where(new, loss.detach().float(), self.loss)

    def fields(self) -> Dict[str, torch.Tensor]:
        """Tensors to send to the host with the logs (:func:`hinterval.transfer.to_host`)."""
        return {"diverged_at": self.first, "diverged_loss": self.loss}


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
        with progress_shown(progress):  # decoding data (TinyImageNet) shows a bar only where training does
            bench = benchmark or load_for(cfg)
        self.benchmark = bench.to(self.device)
        check_memory(cfg, self.benchmark, self.device)  # refuse a model that cannot fit before allocating it
        seed_everything(cfg.seed)
        self.method: ContinualMethod = build_method(cfg, self.benchmark, build_target(cfg, self.benchmark)).to(self.device)
        #: what the run has measured so far (checkpointed and reported from there)
        self.record = RunRecord(len(self.benchmark))

    @property
    def tasks_done(self) -> int:
        return self.record.tasks_done

    @tasks_done.setter
    def tasks_done(self, value: int) -> None:
        self.record.tasks_done = value

    @property
    def matrices(self) -> Dict[str, M.AccMatrix]:
        """Accuracy matrices per scenario (see :mod:`hinterval.metrics`)."""
        return self.record.matrices

    @property
    def traits(self) -> MethodTraits:
        target = self.method.target
        return MethodTraits(has_intervals=self.method.has_intervals, certifies=self.certifies,
                            bwt_meaningful=self.method.bwt_meaningful,
                            boxes_every_layer=bool(getattr(target, "boxes_every_layer", True)),
                            interval_scope=getattr(target, "interval_scope", None), certificate=self.certificate)

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
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in self.method.state_dict().items()},
            **self.record.state(self._elapsed()),
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
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # e.g. a model of another shape
            first = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"checkpoint does not fit this run ({type(exc).__name__}: {first}); "
                            "it is damaged or from another hinterval version: start a new run") from None
        self.record.load(state)

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
            self.record.task_times.append(time.perf_counter() - t_start)
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
        watch = DivergenceWatch(self.device)
        best_score, best_state, best_ramp = None, None, ramp.position
        step0 = sum(iterations_for(cfg, self.benchmark.tasks[j]) for j in range(t))  # global step offset
        bar = progress_bar(range(n_iters), f"task {t + 1}/{len(self.benchmark)}", enabled=self.progress, leave=False,
                           dynamic_ncols=True, mininterval=0.5)
        augment = None
        if task.augment:
            from hinterval.data.augment import random_flip_crop as augment
        for it in bar:
            idx = sampler.next()
            x = task.inputs(task.train.x[idx])
            if augment is not None:
                x = augment(x)
            loss, step_logs = method.training_loss(t, x, task.train.y[idx], ramp.position)
            watch.note(it, loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = it == n_iters - 1
            report, validate = it % 25 == 0, (it + 1) % cfg.val_every == 0 or last
            # The host reads the step's numbers only where it needs them: every step for the guarded
            # warm-up, else at the step reports and validations. A loss that stopped being finite is
            # caught there: the run ends, so the steps taken after it do not matter.
            logs: Dict[str, float] = {}
            if ramp.reads_logs or report or validate:
                logs = transfer.to_host({**step_logs, **watch.fields()})
                bad_it, bad_loss = int(logs.pop("diverged_at")), logs.pop("diverged_loss")
                if bad_it >= 0:
                    raise TrainingDiverged(
                        f"loss became {bad_loss} at task {t + 1}/{len(self.benchmark)}, iteration {bad_it + 1}/{n_iters}; "
                        f"lower --lr (now {cfg.lr}) or --beta/--gamma")
            ramp.update(logs)
            if report:
                logs["step"] = step0 + it
                if self.progress:
                    bar.set_postfix(loss=f"{logs['loss']:.4f}")
                for cb in self.callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(t, it, logs)
            # Model selection: states trained on the full box rank above states from before the
            # warm-up finished (those never trained their box at full gamma); among equals the
            # higher centre + worst-case validation accuracy wins, ties go to the later state. The
            # earlier states are kept as a fallback for a task whose box never reached full gamma.
            if validate:
                score = (ramp.complete, self._validation_score(t))
                if best_score is None or score >= best_score:
                    best_score, best_state, best_ramp = score, [p.detach().clone() for p in params], ramp.position
        if best_state is not None:
            with torch.no_grad():
                for p, v in zip(params, best_state):
                    p.copy_(v)
        method.end_task(t, box_scale=best_ramp)
        self.record.task_reports.append(self._task_report(t, ramp, best_ramp))

    def _task_report(self, t: int, ramp: RampController, box_scale: float) -> Dict[str, Any]:
        """How task ``t`` ended: its centre validation accuracy, whether that is a collapse to
        (near) chance, how far the box warm-up got (1 = trained at full gamma), and the size of
        the kept box (``box_scale``: the warm-up position of the kept state)."""
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
            report["gamma_reached"] = self.cfg.gamma * box_scale
        return report

    def _validation_score(self, t: int) -> float:
        """Model selection at full gamma: centre accuracy plus worst-case accuracy (round-to-nearest
        bounds: a score, not a certificate, and the rounding-safe ones cost up to three times more)."""
        self.method.eval()
        res = evaluate_tasks(self.method.predictor([t]), self.benchmark, [t], split="val",
                             batch_size=self.cfg.eval_batch_size, scenarios=("til", "worst"), rounding_safe=False)
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
        self.record.store_evaluation(t, res)
        return {s: list(res[s]) for s in M.SCENARIOS}

    # --- reporting -----------------------------------------------------------------------------
    def task_metrics(self, t: int) -> Dict[str, Any]:
        """Flat metrics after task ``t``: what Tune reports and TensorBoard plots."""
        return self.record.task_metrics(t, self.traits, self._elapsed())

    def result(self) -> Dict[str, Any]:
        """The run's result: headline metrics, per-scenario summaries, config and provenance."""
        return self.record.result(self.cfg, self.traits, universal_size=self.method.universal_size(self.tasks_done),
                                  device=str(self.device), elapsed=self._elapsed())


def train_continual(cfg: ExperimentConfig, *, callbacks: Sequence[Any] = (), resume_state: Optional[Dict[str, Any]] = None,
                    benchmark: Optional[Benchmark] = None, progress: bool = True) -> Dict[str, Any]:
    """Run (or resume from ``resume_state``) a full continual experiment; return the result dict."""
    trainer = ContinualTrainer(cfg, callbacks=callbacks, benchmark=benchmark, progress=progress)
    if resume_state is not None:
        trainer.load_state(resume_state)
    return trainer.fit()
