"""Step-timing and step-profiling callbacks observe the trainer's real steps."""
from __future__ import annotations

import time

import pytest

from hinterval.config import make_config
from hinterval.profiling import StepProfiler, StepTimer
from hinterval.trainer import ContinualTrainer


def _fit(synthetic_benchmark, callbacks, iters=101):
    cfg = make_config(dict(benchmark="split-digits", device="cpu", iters_per_task=iters, val_every=iters, batch_size=16,
                           embedding_dim=4, hnet_hidden="16", target_hidden="8", num_tasks=2))
    trainer = ContinualTrainer(cfg, callbacks=callbacks, benchmark=synthetic_benchmark, progress=False)
    return trainer.fit()


@pytest.mark.slow
def test_step_timer_windows_cover_training_steps_only(synthetic_benchmark):
    timer = StepTimer(time.perf_counter)
    res = _fit(synthetic_benchmark, [timer])
    assert {w.task_id for w in timer.windows} == {0, 1, 2}
    for t in range(3):
        ws = [w for w in timer.windows if w.task_id == t]
        assert sum(w.steps for w in ws) <= 100 and all(w.steps > 0 and w.seconds > 0 for w in ws)
        # the windows are a part of the task's time, which also holds validation and evaluation
        assert 0 < sum(w.seconds for w in ws) < res["task_times_s"][t]
    assert timer.seconds_per_step(best=True) <= timer.seconds_per_step(best=False)
    with pytest.raises(ValueError, match="no complete window"):
        StepTimer().seconds_per_step()


@pytest.mark.slow
def test_step_profiler_splits_one_window_into_phases(synthetic_benchmark):
    profiler, timer = StepProfiler(task_id=1, start_report=1), StepTimer()
    _fit(synthetic_benchmark, [profiler, timer])
    profiled = [w for w in timer.windows if w.task_id == 1 and w.first_step == profiler.first_step]
    assert len(profiled) == 1 and profiler.steps == profiled[0].steps
    phases = profiler.phases()
    assert set(phases) == {"forward", "backward", "optimizer"} and all(v > 0 for v in phases.values())
    assert sum(phases.values()) <= 1.5 * profiled[0].seconds / profiled[0].steps  # top-level events do not overlap


def test_step_profiler_without_a_window_says_so(synthetic_benchmark):
    profiler = StepProfiler(task_id=0, start_report=50)
    _fit(synthetic_benchmark, [profiler], iters=30)
    assert profiler.profile is None and profiler.first_step is None
    with pytest.raises(ValueError, match="no profiled window"):
        profiler.phases()
