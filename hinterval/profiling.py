"""Trainer callbacks that measure the training step itself: its time, and where that time goes.

They observe a real run (:class:`hinterval.trainer.ContinualTrainer`), so a benchmark times the
library's own step (sampling, loss, backward, optimizer) instead of a copy of it. The trainer
reports every few steps (``on_step``); the stretch between two reports of the same task is a
*window* of plain training steps, unless a validation pass falls inside it (give
``val_every`` >= the task's iterations to keep validation at the task's last step only).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import torch


def _sync() -> None:
    """Wait for queued GPU work, so that a clock reading covers it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepWindow(NamedTuple):
    """``steps`` training steps of task ``task_id`` after step ``first_step`` took ``seconds``."""

    task_id: int
    first_step: int
    steps: int
    seconds: float


class StepTimer:
    """Seconds per training step, from the clock readings at the trainer's step reports.

    Args:
        clock: ``time.perf_counter`` (wall clock, default) or ``time.process_time`` (CPU time of
            this process: on a shared, oversubscribed CPU a single-threaded run's wall time also
            counts waiting for a core).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.windows: List[StepWindow] = []
        self._last: Optional[tuple] = None

    def on_step(self, task_id: int, step: int, logs: Dict[str, float]) -> None:
        _sync()
        now = self.clock()
        if self._last is not None and self._last[0] == task_id and step > self._last[1]:
            self.windows.append(StepWindow(task_id, self._last[1], step - self._last[1], now - self._last[2]))
        self._last = (task_id, step, now)

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        self._last = None  # evaluation between tasks is not a training step

    def seconds_per_step(self, task_id: Optional[int] = None, *, best: bool = True) -> float:
        """Per-step time of the least disturbed window (``best``) or the mean over all windows."""
        ws = [w for w in self.windows if task_id is None or w.task_id == task_id]
        if not ws:
            raise ValueError("no complete window of training steps was observed; train for more steps per task")
        if best:
            return min(w.seconds / w.steps for w in ws)
        return sum(w.seconds for w in ws) / sum(w.steps for w in ws)


class StepProfiler:
    """A ``torch.profiler`` record of the training steps in one window of task ``task_id``.

    Recording starts at the task's ``start_report``-th step report (0 = the first; a later one
    skips warm-up) and stops at the next report. :attr:`profile` then holds the profiler and
    :attr:`steps` the number of steps it saw; :meth:`phases` splits their time.
    """

    def __init__(self, task_id: int, start_report: int = 1):
        self.task_id, self.start_report = task_id, start_report
        self.profile: Optional[torch.profiler.profile] = None
        self.steps = 0
        self._reports, self._start_step, self._running = 0, 0, False

    @property
    def first_step(self) -> Optional[int]:
        """The step after which recording began (``None`` before it began)."""
        return self._start_step if self.profile is not None else None

    def on_step(self, task_id: int, step: int, logs: Dict[str, float]) -> None:
        if task_id != self.task_id or (self.profile is not None and not self._running):
            return
        if self._running:
            _sync()
            self.profile.stop()
            self._running, self.steps = False, step - self._start_step
        elif self._reports == self.start_report:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            _sync()
            self.profile = torch.profiler.profile(activities=activities)
            self.profile.start()
            self._running, self._start_step = True, step
        self._reports += 1

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        if self._running:  # the task ended inside the window: no complete window
            self.profile.stop()
            self._running, self.profile = False, None

    def phases(self) -> Dict[str, float]:
        """CPU seconds per step in ``forward`` (batch, hypernetwork, target, loss), ``backward`` and
        ``optimizer``, from the top-level profiler events (on CUDA: the host side only)."""
        if self.profile is None or not self.steps:
            raise ValueError("no profiled window; train for more steps or lower start_report")
        out = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        for e in self.profile.events():
            if e.cpu_parent is not None:
                continue
            if e.name.startswith("autograd::engine::evaluate_function"):
                out["backward"] += e.cpu_time_total
            elif e.name.startswith("Optimizer."):
                out["optimizer"] += e.cpu_time_total
            else:
                out["forward"] += e.cpu_time_total
        return {k: v * 1e-6 / self.steps for k, v in out.items()}
