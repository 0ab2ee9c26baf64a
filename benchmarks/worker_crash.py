"""Run a sweep whose trial worker processes are killed once each, to check that Tune retries them.

The crash comes from outside the product: :class:`KillTrialWorker` is a Ray Tune callback in the
sweep driver (``tune.search.main(argv, callbacks=[...])``). When a trial reports task ``K``, it sends
SIGKILL to the trial's worker process (the ``pid`` Ray Tune adds to every result), so the trial dies
at the start of task ``K + 1`` as if the machine had killed it (out of memory, a crashed node). Ray
Tune's ``FailureConfig`` must then restart the trial from its last checkpoint and the trial must
finish without training a reported task again. Each kill is appended to ``--record`` as one JSON
line ``{"trial_id", "pid", "tasks_done"}`` so the caller knows which trials were hit.

    .venv/bin/python benchmarks/worker_crash.py --after-task 1 --record kills.jsonl -- \\
        --name crash --num-tasks 3 --num-samples 2 --iters-per-task 60 --overwrite

Everything after ``--`` is passed to ``python tune/search.py``; the exit code is the sweep's.
Only for sweeps on this machine (the worker must be a local process).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ray.tune import Callback  # noqa: E402


class KillTrialWorker(Callback):
    """SIGKILL each trial's worker process once, right after the trial reports task ``after_task``.

    Why from the driver: the result arrives while the worker waits for Tune to ask for the next one,
    so the kill always lands before task ``after_task + 1`` starts (no race with a fast trial), and
    the trainable itself needs no knowledge of the fault.
    """

    def __init__(self, after_task: int, record: Optional[str] = None):
        self.after_task, self.record = int(after_task), record
        self.killed: Dict[str, int] = {}

    def on_trial_result(self, iteration: int, trials: List[Any], trial: Any, result: Dict[str, Any], **info: Any) -> None:
        if trial.trial_id in self.killed or result.get("tasks_done") != self.after_task:
            return
        pid = result.get("pid")
        if not isinstance(pid, int) or result.get("hostname") != socket.gethostname():
            raise RuntimeError(f"trial {trial.trial_id}: no local worker pid in its result ({pid!r} on "
                               f"{result.get('hostname')!r}); KillTrialWorker needs a sweep on this machine")
        os.kill(pid, signal.SIGKILL)
        self.killed[trial.trial_id] = pid
        if self.record:
            with open(self.record, "a") as f:
                f.write(json.dumps({"trial_id": trial.trial_id, "pid": pid, "tasks_done": self.after_task}) + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, sweep = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--after-task", type=int, required=True, help="kill each trial's worker once it reported this task")
    p.add_argument("--record", help="append one JSON line per kill to this file")
    args = p.parse_args(own)
    from tune.search import main as search_main

    return search_main(sweep, callbacks=[KillTrialWorker(args.after_task, args.record)])


if __name__ == "__main__":
    from tune.release import end_process

    end_process(main(), prog="worker_crash.py")
