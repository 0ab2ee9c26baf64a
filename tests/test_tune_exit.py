"""The sweep driver exits once its report is printed, also when it joined a running Ray cluster.

A driver that joins a cluster (``--address``) leaves the cluster running; it must still exit
within a few seconds of its report, with its exit code, and without its exit watchdog having had to
step in (``tune/release.py``). The sweep is run ``HINTERVAL_EXIT_RUNS`` times (default 3) against one
``ray.cluster_utils.Cluster`` started here, each run a new driver process:

    HINTERVAL_EXIT_RUNS=10 .venv/bin/python -m pytest -q tests/test_tune_exit.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
SEARCH = REPO / "tune" / "search.py"

ray = pytest.importorskip("ray")
pytest.importorskip("optuna")

RUNS = int(os.environ.get("HINTERVAL_EXIT_RUNS", "3"))
#: how long a driver may live after the last line of its report (it takes 1-3 s on a loaded 2-core CPU)
EXIT_AFTER_REPORT_S = 10.0
#: a hang guard for the whole sweep (2 trials x 2 tasks x 30 iterations: ~20 s on a quiet 2-core CPU)
SWEEP_TIMEOUT_S = 900
REPORT_END = "results: "


def test_end_process_names_a_thread_that_holds_the_process(tmp_path):
    """The exit guard itself: a non-daemon thread that never ends is named, and the exit code kept."""
    code = ("import threading, time, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from tune.release import end_process\n"
            "threading.Thread(target=lambda: time.sleep(3600), name='stuck-loop').start()\n"
            "print('report done', flush=True)\n"
            "end_process(3, prog='demo', grace_s=2)\n")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert time.time() - t0 < 30
    assert proc.stdout == "report done\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo: warning: ") and "'stuck-loop'" in lines[0], proc.stderr


def test_end_process_exits_when_an_exit_handler_hangs(tmp_path):
    """The watchdog covers the interpreter's own exit: an atexit handler that never returns."""
    code = ("import atexit, threading, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from tune.release import end_process\n"
            "atexit.register(lambda: threading.Event().wait())\n"
            "end_process(0, prog='demo', grace_s=2)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "demo: warning: still exiting after 2 s" in proc.stderr and "exit handlers" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def joined_cluster():
    """A one-node Ray cluster the sweeps join (as on a cluster head: the driver does not own it)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _run_driver(cmd: List[str], env: dict, cwd: Path) -> Tuple[int, float, str, str]:
    """Run the driver; returns (exit code or -1 if it was still alive, seconds from the end of its report
    to its exit, stdout, stderr). Output is read by threads, so a child holding the pipes cannot block this."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: List[Tuple[float, str]] = []
    err: List[str] = []
    readers = [threading.Thread(target=lambda: [out.append((time.time(), ln)) for ln in proc.stdout], daemon=True),
               threading.Thread(target=lambda: [err.append(ln) for ln in proc.stderr], daemon=True)]
    for r in readers:
        r.start()
    deadline = time.time() + SWEEP_TIMEOUT_S
    report_at = None
    while proc.poll() is None and time.time() < deadline:
        ends = [t for t, ln in out if ln.startswith(REPORT_END)]
        if ends:
            report_at = ends[0]
            if time.time() - report_at > EXIT_AFTER_REPORT_S:
                break
        time.sleep(0.1)
    code = proc.poll()
    ended = time.time()
    if code is None:  # still alive: a hang
        tasks = len(os.listdir(f"/proc/{proc.pid}/task")) if os.path.isdir(f"/proc/{proc.pid}/task") else "?"
        err.append(f"[test] the driver was still alive ({tasks} threads); killed\n")
        proc.kill()
        proc.wait()
        code = -1
    for r in readers:
        r.join(5)
    ends = [t for t, ln in out if ln.startswith(REPORT_END)]
    report_at = ends[0] if ends else report_at
    lag = ended - report_at if report_at is not None else float("nan")
    return code, lag, "".join(ln for _, ln in out), "".join(err)


@pytest.mark.slow
@pytest.mark.parametrize("run", range(RUNS))
def test_joined_cluster_sweep_exits_after_its_report(joined_cluster, tmp_path, run):
    env = {**os.environ, "PYTHONPATH": "", "PYTHONUNBUFFERED": "1"}  # unbuffered: a report line is read when printed
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(SEARCH), "--address", joined_cluster.address, "--results-dir", str(tmp_path),
           "--name", f"exit-{run}", "--num-samples", "2", "--max-concurrent", "2", "--num-tasks", "2",
           "--iters-per-task", "30", "--no-tensorboard"]
    code, lag, out, err = _run_driver(cmd, env, tmp_path)
    assert code == 0 and REPORT_END in out, f"exit {code}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert lag <= EXIT_AFTER_REPORT_S, f"the driver lived {lag:.1f} s after its report\n{err[-3000:]}"
    assert "still exiting after" not in err and "threads still run" not in err, err[-3000:]
    assert (tmp_path / f"exit-{run}" / "leaderboard.md").is_file()
    # the cluster it joined is still up and usable by the next driver
    assert any(n["Alive"] for n in joined_cluster.global_state.node_table())
    print(f"run {run}: exit {code}, {lag:.1f} s after the report")
