"""What ``hinterval train`` and ``eval`` print: a line per task, the universal network's line and the
one-line JSON headline of a finished run."""
from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Any, Dict, Iterable, Iterator, Optional

from hinterval import metrics as M

#: whether progress bars are shown here (``--no-progress`` turns them off for everything a command does)
_SHOW_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("show_progress", default=True)


@contextlib.contextmanager
def progress_shown(enabled: bool) -> Iterator[None]:
    """Within the block, :func:`progress_bar` shows bars only if ``enabled`` (data decoding included)."""
    token = _SHOW_PROGRESS.set(enabled)
    try:
        yield
    finally:
        _SHOW_PROGRESS.reset(token)


def progress_bar(iterable: Iterable[Any], desc: str, *, enabled: Optional[bool] = None, **tqdm_args: Any) -> Any:
    """``iterable`` with a tqdm bar on stderr, or ``iterable`` itself where bars are off.

    The one place a bar is made: ``enabled`` (default: :func:`progress_shown`'s setting) decides.
    """
    if not (_SHOW_PROGRESS.get() if enabled is None else enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, file=sys.stderr, **tqdm_args)


def universal_line(uni: Dict[str, Any]) -> str:
    """One line on the universal network: its accuracy, and the certified bound it never falls below."""
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    if uni.get("bound_avg") is not None:
        bound = f"certified lower bound {fmt(uni['bound_avg'])} ({uni['violations']} test samples below it)"
    else:
        bound = f"no certified bound ({uni.get('bound_note') or 'the boxes are not sound'})"
    return (f"universal network (one network for all tasks, hold {uni.get('hold')}): avg_acc {fmt(uni['avg_acc'])}  "
            f"bwt {fmt(uni['bwt'])}  {bound}")


#: task networks closer than this (relative Euclidean distance of their weights) are reported as one network
SHARED_NETWORK_DISTANCE = 1e-2


def shared_network_line(uni: Dict[str, Any]) -> Optional[str]:
    """A warning line when the tasks' own networks coincide (nested mode trained as one network), else ``None``."""
    dist = uni.get("network_min_distance")
    if dist is None or dist >= SHARED_NETWORK_DISTANCE:
        return None
    return (f"hinterval: warning: the tasks share one network (the closest two task networks differ by {dist:.1e} of "
            f"their size, embedding centres by {uni.get('centre_min_distance') or 0:.1e}): task-incremental accuracy "
            "is the universal network's; see docs/inference.md")


class TaskPrinter:
    """Trainer callback: one stderr line per finished task, and a warning when a task collapsed to chance."""

    def __init__(self, scope: Optional[str] = None, intervals: bool = True):
        self.scope = scope  # the interval scope the worst-case figures are certified for
        self.intervals = intervals  # whether --gamma and --ramp mean anything to this run

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        universal = f"  universal {fmt(metrics[M.DIL_AVG_ACC])}" if metrics.get(M.DIL_AVG_ACC) is not None else ""
        scope = f" (scope {self.scope})" if self.scope not in (None, "all") and metrics.get("worst_avg_acc") is not None else ""
        print(f"task {task_id + 1}: avg_acc {fmt(metrics['avg_acc'])}  bwt {fmt(metrics['bwt'])}  "
              f"worst_avg_acc {fmt(metrics['worst_avg_acc'])}{scope}{universal}  ({metrics['task_time_s']:.1f}s)", file=sys.stderr)
        if metrics.get("task_collapsed"):
            print(f"hinterval: warning: task {task_id + 1} collapsed to chance (validation accuracy "
                  f"{metrics['task_val_acc']:.3f}); its network answers alike for every input: "
                  + ("lower --gamma, raise --iters-per-task or keep --ramp guarded" if self.intervals
                     else "raise --iters-per-task or change --lr"), file=sys.stderr)


def headline(result: Dict[str, Any]) -> Dict[str, Any]:
    """The figures of a ``result.json`` that ``train`` and ``eval`` print as one JSON line."""
    keys = ("benchmark", "method", "avg_acc", "bwt", "worst_avg_acc", "worst_bwt", "interval_scope", "tasks_done",
            "collapsed_tasks", "wall_time_s")
    out = {k: result.get(k) for k in keys}
    for s in ("dil", "cil"):
        out[f"{s}_avg_acc"] = result[s]["avg_acc"]
    out["dil_bwt"] = result["dil"]["bwt"]
    return out
