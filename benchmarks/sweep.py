"""Sweep benchmark: the default sweep, then a sweep killed mid-way and resumed.

1. ``python tune/search.py`` with its defaults (8 trials on split-digits) under a fresh name.
2. A second, smaller sweep started as a subprocess; once some trial has reported >= 2 tasks
   (polled from ``results/<name>/trials/*.json``) the driver is killed with SIGKILL (and the
   Ray processes it started are ended by pid), then the sweep is continued with ``--resume``.

Prints trials finished, best average accuracy, best BWT and wall time of each sweep, and whether
the resumed sweep re-ran a task that had finished before the kill (it must not). Exit code 1 if
it did or a sweep failed.

    .venv/bin/python benchmarks/sweep.py                     # ~10-15 min on 2 CPU cores
    .venv/bin/python benchmarks/sweep.py --skip-default      # only the kill/resume part
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tune.recorder import load_records  # noqa: E402
from tune.report import best_record, is_complete  # noqa: E402

SEARCH = [sys.executable, str(REPO / "tune" / "search.py")]


def summarize(title: str, out_dir: Path, wall: float, num_samples: int) -> Dict[str, float]:
    recs = load_records(out_dir)
    done = [r for r in recs if is_complete(r)]
    best = best_record(recs, ["avg_acc"])
    bwts = [r["history"][-1]["bwt"] for r in done if r["history"][-1].get("bwt") is not None]
    print(f"\n== {title} ({out_dir})")
    print(f"trials finished: {len(done)}/{num_samples}")
    if best is not None:
        last = best["history"][-1]
        print(f"best avg acc: {last['avg_acc']:.4f} (trial {best['trial_id']}, its bwt {last['bwt']:.4f}, "
              f"worst-case avg acc {last['worst_avg_acc']:.4f})")
    if bwts:
        print(f"best bwt: {max(bwts):.4f}")
    print(f"wall time: {wall:.1f} s")
    return {"finished": len(done), "wall_s": wall}


def run(args: List[str]) -> float:
    t0 = time.time()
    proc = subprocess.run(SEARCH + args, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"sweep failed with exit code {proc.returncode}: {' '.join(args)}")
    return time.time() - t0


def session_pids(sid: int) -> List[int]:
    """Processes in session ``sid`` (the killed driver's Ray processes), read from /proc."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.getsid(int(p.name)) == sid:
                    pids.append(int(p.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def kill_and_resume(results: Path, name: str, num_samples: int, iters: int, min_tasks: int = 2) -> bool:
    out_dir = results / name
    common = ["--results-dir", str(results), "--name", name]
    t0 = time.time()
    driver = subprocess.Popen(SEARCH + common + ["--num-samples", str(num_samples), "--iters-per-task", str(iters),
                                                  "--overwrite"], cwd=REPO, start_new_session=True)
    snapshot: Dict[str, int] = {}
    while driver.poll() is None:
        time.sleep(0.5)
        recs = load_records(out_dir) if out_dir.is_dir() else []
        if any(r["tasks_done"] >= min_tasks for r in recs):
            os.kill(driver.pid, signal.SIGKILL)  # a crash: no chance to save anything
            driver.wait()
            snapshot = {r["trial_id"]: r["tasks_done"] for r in load_records(out_dir)}
            break
    if not snapshot:
        sys.exit("the sweep finished before it could be interrupted; raise --iters")
    killed_at = time.time() - t0
    time.sleep(2)
    leftovers = session_pids(driver.pid)  # raylet, GCS and trial workers of the killed driver
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print(f"\nkilled the driver after {killed_at:.1f} s; tasks done per trial then: {snapshot}; "
          f"ended {len(leftovers)} leftover Ray processes")
    wall_resume = run(common + ["--resume"])
    recs = {r["trial_id"]: r for r in load_records(out_dir)}
    reran = {}
    for tid, before in snapshot.items():
        r = recs[tid]
        # tasks reported again after the resume, and where the restarted trainable said it resumed from
        starts = [h.get("resumed_from_task") for h in r["history"] if h["tasks_done"] > before]
        if r["reruns"] or any(s is not None and s < before for s in starts):
            reran[tid] = {"reruns": r["reruns"], "resumed_from": sorted(set(starts)), "done_before_kill": before}
    summarize(f"interrupted + resumed sweep {name!r}", out_dir, killed_at + wall_resume, num_samples)
    print(f"resume wall time: {wall_resume:.1f} s")
    print(f"resumed sweep re-ran a finished task: {'YES ' + json.dumps(reran) if reran else 'no'}")
    return not reran


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default=str(REPO / "results"), help="where both sweeps write; default ./results")
    p.add_argument("--skip-default", action="store_true", help="skip the default 8-trial sweep")
    p.add_argument("--resume-trials", type=int, default=4, help="trials of the interrupted sweep; default 4")
    p.add_argument("--iters", type=int, default=100, help="iterations per task of the interrupted sweep; default 100")
    args = p.parse_args()
    results = Path(args.results_dir).resolve()
    ok = True
    if not args.skip_default:
        name = "bench-default"
        wall = run(["--results-dir", str(results), "--name", name, "--overwrite"])  # every other flag: defaults
        ok &= summarize("default sweep (python tune/search.py)", results / name, wall, 8)["finished"] == 8
    ok &= kill_and_resume(results, "bench-resume", args.resume_trials, args.iters)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
