"""Sweep benchmark: the default sweep, then a sweep killed mid-way and resumed.

1. ``python tune/search.py`` with its defaults (8 trials on split-digits) under a fresh name.
2. A second, smaller sweep started as a subprocess; once some trial has reported >= 2 tasks
   (polled from ``results/<name>/trials/*.json``) the driver is killed with SIGKILL (and the
   Ray processes it started are ended by pid), then the sweep is continued with ``--resume``.

Prints trials finished, best average accuracy, best BWT and wall time of each sweep, and whether
the resumed sweep re-ran a task that had finished before the kill (it must not). Exit code 1 if
it did or a sweep failed. For the default sweep it also prints where the wall time went
(:func:`breakdown`): driver start-up (imports, Ray, Tune), per trial the worker process start,
imports, data and model set-up, training, evaluation and reporting, and the report at the end.

    .venv/bin/python benchmarks/sweep.py                     # ~10-15 min on 2 CPU cores
    .venv/bin/python benchmarks/sweep.py --skip-resume       # only the default sweep and its time breakdown
    .venv/bin/python benchmarks/sweep.py --skip-default      # only the kill/resume part
    .venv/bin/python benchmarks/sweep.py --breakdown results/split-digits   # the breakdown of a finished sweep
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
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tune.confirmation import lines as confirm_lines, load_confirmation  # noqa: E402
from tune.records import load_records  # noqa: E402
from tune.records import best_record, is_complete  # noqa: E402

SEARCH = [sys.executable, str(REPO / "tune" / "search.py")]


def summarize(title: str, out_dir: Path, wall: float, num_samples: int) -> Dict[str, float]:
    recs = load_records(out_dir)
    done = [r for r in recs if is_complete(r)]
    try:
        objectives = json.loads((out_dir / "sweep.json").read_text())["objectives"]
    except (OSError, ValueError, KeyError):
        objectives = ["avg_acc"]
    best = best_record(recs, objectives)
    bwts = [r["history"][-1]["bwt"] for r in done if r["history"][-1].get("bwt") is not None]
    print(f"\n== {title} ({out_dir})")
    print(f"trials finished: {len(done)}/{num_samples}")
    if best is not None:
        last = best["history"][-1]
        print(f"best trial by {', '.join(objectives)}: {best['trial_id']}, avg acc {last['avg_acc']:.4f}, bwt "
              f"{last['bwt']:.4f}, worst-case avg acc {last['worst_avg_acc']:.4f}")
    confirmation = load_confirmation(out_dir)
    if confirmation:
        print("\n".join(confirm_lines(confirmation)))
    if bwts:
        print(f"best bwt: {max(bwts):.4f}")
    print(f"wall time: {wall:.1f} s")
    return {"finished": len(done), "wall_s": wall}


def run(args: List[str]) -> float:
    t0, t1 = run_timed(args)
    return t1 - t0


def run_timed(args: List[str]) -> Tuple[float, float]:
    """Run the sweep command; returns its (start, end) wall-clock times."""
    t0 = time.time()
    proc = subprocess.run(SEARCH + args, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"sweep failed with exit code {proc.returncode}: {' '.join(args)}")
    return t0, time.time()


def _trial_times(rec: Dict, reused: bool) -> Optional[Dict[str, float]]:
    """One trial's seconds by phase, from the timestamps its reports carry (None for old records)."""
    hist = rec.get("history") or []
    if not hist or "fit_started_at" not in hist[-1] or "imported_at" not in hist[-1]:
        return None
    last = hist[-1]
    end = rec.get("finished_at") or last["reported_at"]
    train = sum(h.get("task_time_s") or 0.0 for h in hist)
    # the last report's own cost is in no report: the driver's end of the trial minus the last report's time
    report = last.get("report_s", 0.0) + max(0.0, end - last["reported_at"])
    return {
        "start": last["trial_started_at"] - rec["started_at"],
        "imports": last["imported_at"] - last["trial_started_at"],
        "setup": last["fit_started_at"] - last["imported_at"],
        "train": train,
        "eval": max(0.0, end - last["fit_started_at"] - train - report),
        "report": report,
        "total": end - rec["started_at"],
        "reused": float(reused),
    }


def max_overlap(spans: List[Tuple[float, float]]) -> int:
    """Most intervals open at once (the trials run side by side)."""
    events = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


PHASES = (("start", "driver starts the trial -> its function runs (Ray actor)"), ("imports", "imports in the trial"),
          ("setup", "data load + model build"), ("train", "training (incl. validation for model selection)"),
          ("eval", "test evaluation after each task (TIL, worst case, CIL)"),
          ("report", "reporting (state copy, checkpoint, tune.report)"))


def breakdown(out_dir: Path, t_start: Optional[float] = None, t_end: Optional[float] = None) -> Dict[str, float]:
    """Where a sweep's wall time went, printed and returned (seconds).

    Per trial: from the driver starting the trial to the worker process existing, its imports,
    data + model set-up, training, evaluation and reporting; summed over trials (trial-seconds, run
    ``max_concurrent`` at a time). Driver: from ``t_start`` (the command) to the first trial's start
    (Python + Ray + Tune start-up), and from the last trial's end to ``t_end`` (report files, plots,
    Ray shutdown). Confirmation trials (``confirm/trials``) are included and counted separately.
    """
    groups = {"search": load_records(out_dir), "confirm": load_records(out_dir / "confirm")}
    recs = [r for g in groups.values() for r in g]
    seen, rows = set(), {}
    for g, rs in groups.items():
        rows[g] = []
        for r in rs:
            pid = (r.get("history") or [{}])[-1].get("worker_pid")
            t = _trial_times(r, reused=pid is not None and pid in seen)
            seen.add(pid)
            if t:
                rows[g].append(t)
    out: Dict[str, float] = {}
    print(f"\n== time breakdown ({out_dir})")
    starts = [r["started_at"] for r in recs if r.get("started_at")]
    ends = [r["finished_at"] for r in recs if r.get("finished_at")]
    if t_start is not None and starts:
        out["driver_startup"] = min(starts) - t_start
    if t_end is not None and ends:
        out["driver_end"] = t_end - max(ends)
    if starts and ends:
        out["trials_span"] = max(ends) - min(starts)
    if t_start is not None and t_end is not None:
        out["wall"] = t_end - t_start
    for g, ts in rows.items():
        if not ts:
            continue
        for k, _ in PHASES + (("total", ""),):
            out[f"{g}_{k}"] = sum(t[k] for t in ts)
        out[f"{g}_trials"] = len(ts)
        out[f"{g}_reused"] = sum(t["reused"] for t in ts)
        spans = [(r["started_at"], r["finished_at"]) for r in groups[g] if r.get("started_at") and r.get("finished_at")]
        if spans:  # slot-seconds no trial ran: actor start, the trainable's module imports, scheduling
            slots = max_overlap(spans)
            out[f"{g}_slots"] = slots
            out[f"{g}_idle"] = max(0.0, slots * (max(e for _, e in spans) - min(b for b, _ in spans)) - out[f"{g}_total"])
    for k, label in (("wall", "wall time of the command"), ("driver_startup", "driver start-up: Python, Ray, Tune, until the first trial starts"),
                     ("trials_span", "first trial start to last trial end"), ("driver_end", "after the last trial: report files, plots, Ray shutdown")):
        if k in out:
            print(f"{label:66s} {out[k]:7.1f} s")
    for g in rows:
        if f"{g}_trials" not in out:
            continue
        n, tot = int(out[f"{g}_trials"]), out[f"{g}_total"]
        print(f"{g} trials: {n} ({int(out[f'{g}_reused'])} in a reused worker); trial-seconds by phase (sum over trials):")
        for k, label in PHASES:
            print(f"  {label:64s} {out[f'{g}_{k}']:7.1f} s  {100 * out[f'{g}_{k}'] / tot:5.1f} %")
        print(f"  {'total (driver start of each trial to its end)':64s} {tot:7.1f} s")
        if f"{g}_idle" in out:
            print(f"  {'slots idle between trials (actor start, module imports, scheduling)':64s} {out[f'{g}_idle']:7.1f} s"
                  f"  ({int(out[f'{g}_slots'])} slots)")
    return out


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
    p.add_argument("--skip-resume", action="store_true", help="skip the kill-and-resume sweep")
    p.add_argument("--name", default="bench-default", help="name of the default sweep's results; default bench-default")
    p.add_argument("--breakdown", metavar="SWEEP_DIR", help="only print the time breakdown of a finished sweep")
    p.add_argument("--resume-trials", type=int, default=4, help="trials of the interrupted sweep; default 4")
    p.add_argument("--iters", type=int, default=100, help="iterations per task of the interrupted sweep; default 100")
    args = p.parse_args()
    if args.breakdown:
        if not (Path(args.breakdown) / "trials").is_dir():
            print(f"sweep.py: {args.breakdown} holds no sweep (no trials/ directory)", file=sys.stderr)
            return 2
        breakdown(Path(args.breakdown))
        return 0
    results = Path(args.results_dir).resolve()
    ok = True
    if not args.skip_default:
        name = args.name
        print(f"load before: {os.getloadavg()}", flush=True)
        t0, t1 = run_timed(["--results-dir", str(results), "--name", name, "--overwrite"])  # every other flag: defaults
        print(f"load after: {os.getloadavg()}")
        ok &= summarize("default sweep (python tune/search.py)", results / name, t1 - t0, 8)["finished"] == 8
        breakdown(results / name, t0, t1)
    if not args.skip_resume:
        ok &= kill_and_resume(results, "bench-resume", args.resume_trials, args.iters)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
