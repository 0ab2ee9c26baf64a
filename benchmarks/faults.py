"""Fault benchmark: crash, corrupt, diverge and fill the disk on purpose, then check the runs survive.

One line per fault, ``PASS name: what happened`` or ``FAIL name: why``, then the summary
``faults survived N/M, bad inputs answered K/L`` (naming every fault that failed). The faults, all
on tiny split-digits configs (``--only`` takes these names, comma-separated):

killed-train
    ``hinterval train`` SIGKILLed once ``checkpoint.pt`` holds >= 1 finished task: ``--resume``
    restarts at the next task and ends with exactly the metrics of an uninterrupted run (same seed).
corrupted-checkpoint
    truncated, bit-flipped, empty and random-byte checkpoints: ``train --resume`` and ``eval`` refuse
    them with exit code 2 and one line; no file is changed.
disk-full-checkpoint
    disk full while saving (``torch.save`` patched to write half the checkpoint and raise ENOSPC):
    exit code 1, one line, the previous checkpoint is intact, and ``--resume`` after "freeing space"
    ends with the uninterrupted run's metrics.
nan-loss-train
    NaN loss (``--lr 1e30``): ``hinterval train`` stops with exit code 1 and one line naming the
    task and iteration.
disk-full-tensorboard
    a real full disk with TensorBoard on (``RLIMIT_FSIZE``, so torch's writer and TensorBoard's
    background thread meet a failing ``write``): once where the checkpoint is the first file too large,
    once where the TensorBoard event file is. Each time: exit code 1 and one line (no thread
    traceback, no ``RuntimeError: unexpected pos``), no temporary file left, and ``--resume`` without
    the limit ends with the uninterrupted run's metrics.
foreign-checkpoint
    an unfinished run's ``checkpoint.pt`` copied into a finished run directory of another config (and
    one of the same config but another run): ``train --resume`` and ``eval`` refuse it with exit code 2
    and one line, and no file of the directory changes.
sigterm-during-run
    SIGTERM during a run: exit code 143 and one line saying how to resume; ``--resume`` ends with
    the uninterrupted run's metrics.
sigint-at-start-up
    SIGINT at several offsets after the entry module is imported (``hinterval train``: the CPU-load
    probe, torch's import, data loading; ``tune/search.py``: resolving, Ray's start): exit code 130 and
    one line, no run or sweep directory and no Ray process left behind. (An interrupt while the
    interpreter itself still starts, importing ``site`` before any program code, gets Python's own
    message; the offsets are counted from the entry module so none lands there.)
sweep-refused-after-ray-start
    a sweep refused after Ray started (no node can hold a trial): exit code 2 and exactly one line on
    stderr (Ray's start-up warnings held back), no sweep directory and no Ray process left behind.
two-sweeps-one-name
    two sweeps of one ``--name`` started at the same moment, then a third with ``--overwrite`` while
    the winner runs: exactly one runs (exit 0, its own ``sweep.json`` and trials only), the others are
    refused with exit code 2 and one line.
killed-sweep-driver
    the sweep driver (``tune/search.py``) SIGKILLed mid-sweep, its Ray processes ended, then
    ``--resume``: every trial finishes, no finished task is trained again, ``trials.csv`` lists
    each trial once.
killed-trial-worker
    every healthy trial's worker process is SIGKILLed once, right after it reports task 1
    (``benchmarks/worker_crash.py``, a Ray Tune callback in the driver): Tune's ``FailureConfig``
    restarts it from its last checkpoint and it finishes with no task trained twice.
nan-loss-sweep
    in the same sweep (``--lr 0.001,1e30``) the lr=1e30 trial ends DIVERGED with the message, is not
    retried, and the other trials finish.
overwrite-foreign-directory
    ``hinterval train --overwrite`` and ``search.py --overwrite`` on directories holding a user's files:
    exit code 2 and one line, every file unchanged; ``--overwrite`` of a real run directory still replaces it.
blocking-inputs
    a named pipe with no writer as ``--config`` and ``--space``, ``/dev/zero`` as ``--config``, and a run
    directory whose ``config.json`` is a named pipe (``train --resume``, ``eval``): each answered with exit
    code 2 and one line within seconds, never a hang.
nan-metric-train
    a metric that comes out NaN (patched in a child process): written to ``result.json`` as ``null`` at
    every task end, and the run finishes with exit code 0.
sweep-refuses-what-train-refuses
    a sweep (not a dry run) of ``--set interval_scope=last:9`` on the 3-layer MLP and one of a model that
    cannot fit in memory: exit code 2 and one line before Ray starts, no sweep directory; a sweep whose
    every trial diverges (``--lr 1e30``): exit code 1 and one line, not 0.
wrong-address
    ``--address`` of a refused port, port 0, a web server and a server that accepts and stays silent:
    each answered within 30 s with exit code 2 and one line naming the address; no sweep directory.
sigterm-sweep
    SIGTERM to the driver once a trial finished a task (checkpoints under a shared ``--storage``): exit
    code 143, one line saying how to resume, the report written, no crash (no abort, no C++ stack), no
    Ray process left; ``--resume`` finishes every trial without training a finished task again.
two-sweeps-one-storage
    while that sweep is stopped, a second sweep of the same ``--name`` (other ``--results-dir``) with the
    same ``--storage`` runs: the two keep separate Tune experiments, and the first still resumes.
resume-handed-sweep
    a copy of that sweep, its ``tuner.pkl`` replaced by a pickle that would create a file: ``--resume`` by
    another user (another key) is refused with exit code 2 and one line; the owner's ``--resume`` puts its
    signed state back and finishes (exit 0); the planted pickle never runs.
sighup-sweep
    SIGHUP (a dropped ssh session) to a running sweep: exit code 129, one line, the report, no Ray
    process left; ``--resume`` finishes every trial.
local-ray-loopback
    while that sweep runs, every listening socket of its processes (Ray's GCS, raylet, workers) is on
    the loopback address.

Bad inputs: ``tests/test_bad_inputs.py`` (flags, config and space files, data directories, run
directories, resumes) is run with pytest; K of its L cases answered with exit code 2 and one line.

    .venv/bin/python benchmarks/faults.py                 # ~5-10 min on 2 CPU cores
    .venv/bin/python benchmarks/faults.py --only killed-train,corrupted-checkpoint,disk-full-checkpoint
                                                          # no Ray: a minute or two

Exit code 0 when every fault survived and every bad input was answered, else 1.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hinterval.checkpoint import load_checkpoint  # noqa: E402
from hinterval.files import LOCK_NAME  # noqa: E402

PY = sys.executable
HINTERVAL = [PY, "-m", "hinterval"]
SEARCH = [PY, str(REPO / "tune" / "search.py")]
NUM_TASKS = 3
#: the tiny run every single-run fault uses (1 thread: bit-for-bit reproducible)
TINY = ["--benchmark", "split-digits", "--num-tasks", str(NUM_TASKS), "--target-hidden", "16,16", "--hnet-hidden", "32",
        "--num-threads", "1", "--device", "cpu", "--seed", "0", "--no-progress"]
#: long enough per task (~1-3 s) that a kill lands between the first and the last task
KILL_ITERS = 150
SWEEP_TINY = ["--num-tasks", str(NUM_TASKS), "--set", "target_hidden=16,16", "--hnet-hidden", "32"]
SWEEP_FILE_NAME = "sweep.json"
COMPARED = ("avg_acc", "bwt", "worst_avg_acc", "worst_bwt", "acc_matrix", "til", "worst", "dil", "cil")


class Outcome(NamedTuple):
    ok: bool
    detail: str


#: the longest one command may take: sweeps on an oversubscribed 2-core machine are slow
TIMEOUT_S = 2400


def sh(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None, timeout: float = TIMEOUT_S,
       preexec: Optional[Callable[[], None]] = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; stdout+stderr also go to ``log``."""
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, preexec_fn=preexec)
    log.write_text(f"$ {' '.join(map(str, cmd))}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def _limit_file_size(limit: int) -> None:
    """In the child: no file may grow beyond ``limit`` bytes (``write`` fails with EFBIG, like a full disk)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def listening_addresses(pids: Sequence[int]) -> List[str]:
    """The local IP addresses the TCP sockets of ``pids`` listen on (from /proc: each socket's inode, owned by
    one of the processes, looked up in /proc/net/tcp and tcp6)."""
    import ipaddress

    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # state 0A: LISTEN
                    raw = bytes.fromhex(cols[1].split(":")[0])
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian 32-bit words
                    found.append(str(ipaddress.ip_address(words)))
    return found


def result_of(run: Path) -> dict:
    import json

    return json.loads((run / "result.json").read_text())


def same_metrics(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in COMPARED)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_files(run: Path) -> Dict[str, str]:
    """Every file of a run directory with its hash, but the lock file: each command that opens the run
    takes the lock and writes its pid there (docs/reliability.md), which changes none of the run."""
    return {str(p.relative_to(run)): sha(p) for p in run.rglob("*") if p.is_file() and p.name != LOCK_NAME}


def error_lines(stderr: str) -> List[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("hinterval: ") and not ln.startswith("hinterval: warning: ")]


class Faults:
    def __init__(self, work: Path):
        self.work = work
        self._ref: Optional[dict] = None

    # --- shared: the uninterrupted reference run -----------------------------------------------
    def reference(self) -> dict:
        if self._ref is None:
            out = self.work / "ref"
            proc = sh(HINTERVAL + ["train", *TINY, "--iters-per-task", KILL_ITERS, "--out", out], self.work / "ref.log")
            if proc.returncode != 0:
                raise RuntimeError(f"the uninterrupted reference run failed (exit {proc.returncode}), see {self.work / 'ref.log'}")
            self._ref = result_of(out)
        return self._ref

    # --- killed-train ----------------------------------------------------------------------------------------
    def killed_train(self) -> Outcome:
        ref = self.reference()
        out = self.work / "killed-train"
        with open(self.work / "killed-train.log", "w") as log:
            p = subprocess.Popen([str(c) for c in HINTERVAL + ["train", *TINY, "--iters-per-task", KILL_ITERS, "--out", out]],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            ck = out / "checkpoint.pt"
            while p.poll() is None:
                if ck.is_file() and load_checkpoint(ck)["tasks_done"] >= 1:
                    p.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.05)
            p.wait()
        if p.returncode != -signal.SIGKILL:
            return Outcome(False, f"the run ended (exit {p.returncode}) before it could be killed; raise KILL_ITERS")
        done = load_checkpoint(ck)["tasks_done"]
        if done >= NUM_TASKS:
            return Outcome(False, "the kill came after the last task; raise KILL_ITERS")
        proc = sh(HINTERVAL + ["train", "--out", out, "--resume", "--no-progress"], self.work / "killed-train-resume.log")
        m = re.search(r"resuming .* at task (\d+)/(\d+)", proc.stderr)
        restart = int(m.group(1)) if m else None
        trained = [int(t) for t in re.findall(r"^task (\d+):", proc.stderr, flags=re.M)]
        rerun = [t for t in trained if t <= done]
        res = result_of(out)
        equal = same_metrics(res, ref)
        ok = proc.returncode == 0 and restart == done + 1 and not rerun and res.get("complete") is True and equal
        return Outcome(ok, f"SIGKILL after {done}/{NUM_TASKS} tasks; --resume restarted at task {restart}/{NUM_TASKS} "
                           f"(exit {proc.returncode}), finished tasks re-run: {len(rerun)}; metrics "
                           f"{'equal' if equal else 'DIFFERENT'} to the uninterrupted run (avg_acc {res.get('avg_acc'):.4f} "
                           f"vs {ref['avg_acc']:.4f})")

    # --- killed-sweep-driver ----------------------------------------------------------------------------------------
    def killed_sweep(self) -> Outcome:
        from benchmarks.sweep import session_pids  # the kill/resume helpers of the sweep benchmark
        from tune.records import load_records
        from tune.records import is_complete

        results, name, samples = self.work / "sweeps", "killed-driver", 3
        out = results / name
        common = ["--results-dir", results, "--name", name]
        with open(self.work / "killed-driver.log", "w") as log:
            driver = subprocess.Popen([str(c) for c in SEARCH + common + SWEEP_TINY + [
                "--num-samples", samples, "--iters-per-task", 150, "--max-concurrent", 2, "--overwrite"]],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            snapshot: Dict[str, int] = {}
            while driver.poll() is None:
                time.sleep(0.3)
                recs = load_records(out) if out.is_dir() else []
                if any(r["tasks_done"] >= 1 for r in recs):
                    os.kill(driver.pid, signal.SIGKILL)  # a crash: the driver saves nothing more
                    driver.wait()
                    snapshot = {r["trial_id"]: r["tasks_done"] for r in load_records(out)}
                    break
        if not snapshot:
            return Outcome(False, f"the sweep ended (exit {driver.returncode}) before it could be killed")
        time.sleep(2)
        leftovers = session_pids(driver.pid)  # raylet, GCS, trial workers of the killed driver
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc = sh(SEARCH + common + ["--resume"], self.work / "killed-driver-resume.log")
        recs = {r["trial_id"]: r for r in load_records(out)}
        rerun = {}
        for tid, before in snapshot.items():
            r = recs.get(tid, {"reruns": ["record missing"], "history": []})
            starts = [h.get("resumed_from_task") for h in r["history"] if h.get("tasks_done", 0) > before]
            if r["reruns"] or any(s is not None and s < before for s in starts):
                rerun[tid] = {"reruns": r["reruns"], "resumed_from": sorted({s for s in starts if s is not None})}
        rows = list(csv.DictReader(open(out / "trials.csv"))) if (out / "trials.csv").is_file() else []
        ids = [row["trial_id"] for row in rows]
        complete = sum(is_complete(r) for r in recs.values())
        ok = (proc.returncode == 0 and not rerun and len(ids) == len(set(ids)) == samples and complete == samples)
        return Outcome(ok, f"SIGKILL with tasks done {sorted(snapshot.values(), reverse=True)} ({len(leftovers)} Ray processes "
                           f"ended); --resume exit {proc.returncode}: {complete}/{samples} trials finished, trials re-running "
                           f"a finished task: {len(rerun)}{' ' + str(rerun) if rerun else ''}; trials.csv rows "
                           f"{len(ids)}, distinct {len(set(ids))}")

    # --- killed-trial-worker and nan-loss-sweep: one sweep ------------------------------------------------------
    def worker_kill_and_nan_sweep(self) -> Dict[str, Outcome]:
        import json

        from tune.records import load_records

        results, name = self.work / "sweeps", "worker-kill-nan"
        kills = self.work / "worker-kills.jsonl"
        # lr 1e30 diverges in task 1, before any worker is killed; lr 0.001 trials report task 1 and are killed
        proc = sh([PY, str(REPO / "benchmarks" / "worker_crash.py"), "--after-task", 1, "--record", kills, "--",
                   "--results-dir", results, "--name", name, *SWEEP_TINY, "--iters-per-task", 60,
                   "--lr", "0.001,1e30", "--num-samples", 3, "--max-concurrent", 2, "--overwrite"],
                  self.work / "worker-kill-sweep.log")
        killed = {k["trial_id"]: k for k in map(json.loads, kills.read_text().splitlines())} if kills.is_file() else {}
        recs = load_records(results / name)
        healthy = [r for r in recs if float(r["params"].get("lr", 0)) < 1]
        diverging = [r for r in recs if float(r["params"].get("lr", 0)) >= 1]
        out: Dict[str, Outcome] = {}
        retried = [r for r in healthy if r["trial_id"] in killed and r["restarts"] >= 1]
        clean = [r for r in retried if r["status"] == "COMPLETE" and r["tasks_done"] == NUM_TASKS and not r["reruns"]
                 and {h.get("resumed_from_task") for h in r["history"] if h["tasks_done"] >= 2} == {1}]
        ok = proc.returncode == 0 and healthy and len(killed) == len(healthy) and len(clean) == len(healthy)
        why = ", ".join(sorted({str(r.get("error"))[:80] for r in retried})) or "none"
        out["killed-trial-worker"] = Outcome(bool(ok), (
            f"{len(killed)}/{len(healthy)} trial worker(s) SIGKILLed after task 1; {len(retried)} restarted by "
            f"FailureConfig ({why}), {len(clean)} resumed from task 1's checkpoint and finished {NUM_TASKS}/{NUM_TASKS} "
            f"tasks with no task re-run (statuses {sorted(r['status'] for r in healthy)}, sweep exit {proc.returncode})"))
        div_ok = [r for r in diverging if r["status"] == "DIVERGED" and r["restarts"] == 0
                  and re.search(r"loss became \w+ at task \d+/\d+, iteration \d+/\d+", str(r.get("error")))]
        ok = proc.returncode == 0 and diverging and len(div_ok) == len(diverging) and healthy and all(
            r["status"] == "COMPLETE" for r in healthy)
        msg = diverging[0].get("error") if diverging else "no trial drew lr=1e30 (change the sweep's --seed)"
        out["nan-loss-sweep"] = Outcome(bool(ok), (
            f"{len(div_ok)}/{len(diverging)} lr=1e30 trial(s) DIVERGED without retries ({msg!r}); the sweep went on: "
            f"{sum(r['status'] == 'COMPLETE' for r in healthy)}/{len(healthy)} other trial(s) COMPLETE, exit {proc.returncode}"))
        return out

    # --- corrupted-checkpoint ----------------------------------------------------------------------------------------
    def corrupted_checkpoint(self) -> Outcome:
        self.reference()
        good = (self.work / "ref" / "checkpoint.pt").read_bytes()

        def bitflip(data: bytes) -> bytes:
            with zipfile.ZipFile(self.work / "ref" / "checkpoint.pt") as z:
                big = max(z.infolist(), key=lambda i: i.file_size)
            h = big.header_offset
            off = h + 30 + int.from_bytes(data[h + 26:h + 28], "little") + int.from_bytes(data[h + 28:h + 30], "little")
            b = bytearray(data)
            b[off + big.file_size // 2] ^= 0x01  # one bit inside the largest tensor
            return bytes(b)

        variants: Dict[str, Callable[[bytes], bytes]] = {
            "truncated": lambda d: d[: len(d) // 2], "bit-flipped": bitflip, "empty": lambda d: b"",
            "not a checkpoint": lambda d: b"PK\x03\x04" + os.urandom(512)}
        from hinterval.cli import main as hinterval_main  # in-process: 8 refusals, no 8 torch imports

        answers, bad, example = [], [], ""
        for label, damage in variants.items():
            run = self.work / f"corrupted-{label.replace(' ', '-')}"
            shutil.copytree(self.work / "ref", run)
            (run / "checkpoint.pt").write_bytes(damage(good))
            before = run_files(run)
            for cmd in (["train", "--out", str(run), "--resume", "--no-progress"], ["eval", str(run)]):
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        code = hinterval_main(cmd)
                except BaseException as exc:  # noqa: BLE001 - a traceback is what this fault must not see
                    code, _ = None, err.write(f"Traceback: {type(exc).__name__}: {exc}")
                lines = error_lines(err.getvalue())
                (self.work / f"{run.name}-{cmd[0]}.log").write_text(err.getvalue())
                fine = (code == 2 and len(lines) == 1 and "corrupted" in lines[0] and "Traceback" not in err.getvalue()
                        and run_files(run) == before)
                (answers if fine else bad).append(f"{label}/{cmd[0]}")
                if label == "bit-flipped" and cmd[0] == "train":
                    example = lines[0] if lines else err.getvalue().strip()[-200:]
        return Outcome(not bad, f"{len(answers)}/{len(answers) + len(bad)} of (train --resume, eval) x (truncated, "
                                f"bit-flipped, empty, random bytes) refused with exit 2 and one line, files unchanged"
                                f"{'; NOT: ' + ', '.join(bad) if bad else ''}; e.g. {example!r}")

    # --- nan-loss-train ---------------------------------------------------------------------------
    def nan_train(self) -> Outcome:
        out = self.work / "nan-train"
        proc = sh(HINTERVAL + ["train", *TINY, "--iters-per-task", 60, "--lr", "1e30", "--out", out], self.work / "nan-train.log")
        lines = error_lines(proc.stderr)
        ok = (proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr
              and re.search(r"loss became \w+ at task \d+/\d+, iteration \d+/\d+", lines[0]) is not None)
        return Outcome(ok, f"exit {proc.returncode}: {lines[0] if lines else proc.stderr.strip()[-300:]!r}")

    # --- disk-full-checkpoint ----------------------------------------------------------------------------------------
    def disk_full(self) -> Outcome:
        ref = self.reference()
        out = self.work / "disk-full"
        # in a child process: the 2nd checkpoint save (after task 2) writes half its bytes, then ENOSPC
        code = (
            "import errno, io, sys, torch\n"
            "real, calls = torch.save, []\n"
            "def full_disk(obj, f, *a, **k):\n"
            "    calls.append(1)\n"
            "    if len(calls) == 2 and hasattr(f, 'write'):\n"
            "        buf = io.BytesIO(); real(obj, buf, *a, **k); f.write(buf.getvalue()[: len(buf.getvalue()) // 2])\n"
            "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "    return real(obj, f, *a, **k)\n"
            "torch.save = full_disk\n"
            "from hinterval.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
        proc = sh([PY, "-c", code, "train", *TINY, "--iters-per-task", KILL_ITERS, "--out", out], self.work / "disk-full.log")
        lines = error_lines(proc.stderr)
        one_line = len(lines) == 1 and "No space left" in lines[0] and "Traceback" not in proc.stderr
        try:
            kept = load_checkpoint(out / "checkpoint.pt")["tasks_done"]
        except Exception as exc:  # noqa: BLE001
            kept = f"unreadable ({exc})"
        temps = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        resume = sh(HINTERVAL + ["train", "--out", out, "--resume", "--no-progress"], self.work / "disk-full-resume.log")
        equal = resume.returncode == 0 and same_metrics(result_of(out), ref)
        ok = proc.returncode == 1 and one_line and kept == 1 and not temps and equal
        return Outcome(ok, f"ENOSPC while saving task 2's checkpoint: exit {proc.returncode}, "
                           f"{lines[0][:110] + '...' if lines else 'no error line'!r}; checkpoint.pt still holds "
                           f"{kept} task(s), temp files left: {len(temps)}; --resume afterwards: metrics "
                           f"{'equal' if equal else 'DIFFERENT'} to the uninterrupted run")

    # --- disk-full-tensorboard --------------------------------------------------------------------------------------------
    def disk_full_tensorboard(self) -> Outcome:
        ref = self.reference()
        parts, good = [], True
        # 64 KB: config.json and the event file fit, the first checkpoint (~190 KB) does not;
        # 1.5 KB: the TensorBoard event file outgrows it during task 1, before any checkpoint
        for label, limit in (("checkpoint", 64 << 10), ("tensorboard", 1536)):
            out = self.work / f"disk-full-tb-{label}"
            proc = sh(HINTERVAL + ["train", *TINY, "--iters-per-task", KILL_ITERS, "--out", out], self.work / f"disk-full-tb-{label}.log",
                      preexec=lambda limit=limit: _limit_file_size(limit))
            lines = error_lines(proc.stderr)
            clean = (len(lines) == 1 and "File too large" in lines[0] and "--resume" in lines[0]
                     and "Traceback" not in proc.stderr and "Exception in thread" not in proc.stderr)
            temps = [p.name for p in out.rglob("*.tmp")]
            full_events = [p for p in out.rglob("events.out.tfevents*") if p.stat().st_size == limit]
            first = "tensorboard" if full_events else ("checkpoint" if not (out / "checkpoint.pt").exists() else "?")
            resume = sh(HINTERVAL + ["train", "--out", out, "--resume", "--no-progress"], self.work / f"disk-full-tb-{label}-resume.log")
            equal = resume.returncode == 0 and same_metrics(result_of(out), ref)
            ok = proc.returncode == 1 and clean and not temps and equal and first == label
            good &= ok
            parts.append(f"{first} failed first: exit {proc.returncode}, {lines[0][:70] + '...' if lines else 'no error line'!r}, "
                         f"temp files {len(temps)}, --resume {'equal' if equal else 'DIFFERENT'}")
        return Outcome(good, "; ".join(parts))

    # --- sigint-at-start-up --------------------------------------------------------------------------------------------
    def sigint_at_start_up(self) -> Outcome:
        """SIGINT at several offsets after the entry module is imported (``-X importtime`` tells when), so
        each one lands in the program's own start-up: the CPU-load probe, torch's import, data loading,
        Ray's start -- not in the interpreter's (see the module docstring)."""
        from benchmarks.sweep import session_pids

        results, bad, seen = self.work / "sigint-sweeps", [], []
        cases = ([("train", "hinterval.cli", d) for d in (0.0, 0.1, 0.2, 0.5, 1.0, 2.5)]
                 + [("sweep", "tune.search", d) for d in (0.0, 0.5, 1.5, 4.0)])
        for tool, marker, delay in cases:
            target = self.work / f"sigint-run-{delay}" if tool == "train" else results / f"sigint-{delay}"
            cmd = (HINTERVAL + ["train", *TINY, "--iters-per-task", KILL_ITERS, "--out", target] if tool == "train" else
                   SEARCH + ["--results-dir", results, "--name", target.name, *SWEEP_TINY, "--iters-per-task", 60,
                             "--num-samples", 1])
            p = subprocess.Popen([str(c) for c in [PY, "-X", "importtime", *cmd[1:]]], cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
            head = []
            for line in p.stderr:  # wait until the entry module is imported
                head.append(line)
                if line.rstrip().endswith(f"| {marker}") or line.rstrip().endswith(f"|   {marker}"):
                    break
            time.sleep(delay)
            p.send_signal(signal.SIGINT)
            try:
                tail = p.communicate(timeout=TIMEOUT_S)[1]
            except subprocess.TimeoutExpired:
                p.kill()
                tail = p.communicate()[1]
            text = "".join(ln for ln in head + tail.splitlines(True) if not ln.startswith("import time:"))
            (self.work / f"sigint-{tool}-{delay}.log").write_text(text)
            time.sleep(1.0)
            left = session_pids(p.pid)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            lines = [ln for ln in text.splitlines() if ln.startswith(("hinterval: ", "search.py: "))]
            written = target.exists() and any(target.iterdir())
            answered = p.returncode == 130 and len(lines) == 1 and "interrupted" in lines[0]
            late = bool(lines) and ("during task" in lines[0] or "--resume" in lines[0])  # it had started: resumable
            fine = answered and "Traceback" not in text and (late or not written) and not left
            seen.append(f"{tool}+{delay}s:{p.returncode}")
            if not fine:
                bad.append(f"{tool} {delay} s after {marker} (exit {p.returncode}, {len(lines)} line(s), directory "
                           f"written: {written}, processes left: {len(left)})")
        return Outcome(not bad, f"{len(cases) - len(bad)}/{len(cases)} interrupts answered with exit 130 and one line, "
                                f"nothing left behind ({', '.join(seen)}; seconds after the entry module was imported)"
                       + (f"; NOT: {'; '.join(bad)}" if bad else ""))

    # --- foreign-checkpoint and sigterm-during-run: runs stopped by SIGTERM ------------------------------------------------------------
    def stopped_run(self, name: str, *extra: str) -> tuple:
        """A TINY run SIGTERMed once its first checkpoint exists: ``(dir, exit code, error lines, stderr)``."""
        out, log = self.work / name, self.work / f"{name}.log"
        with open(log, "w") as f:
            p = subprocess.Popen([str(c) for c in HINTERVAL + ["train", *TINY, "--iters-per-task", KILL_ITERS, *extra,
                                                              "--out", out]], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
            ck = out / "checkpoint.pt"
            while p.poll() is None:
                if ck.is_file() and load_checkpoint(ck)["tasks_done"] >= 1:
                    p.send_signal(signal.SIGTERM)
                    break
                time.sleep(0.05)
            p.wait()
        text = log.read_text()
        return out, p.returncode, error_lines(text), text

    def foreign_checkpoint(self) -> Outcome:
        self.reference()
        from hinterval.cli import main as hinterval_main

        other, code_o, _, _ = self.stopped_run("foreign-other-config", "--gamma", "0.5")
        same, code_s, _, _ = self.stopped_run("foreign-same-config")
        if code_o != 143 or code_s != 143:
            return Outcome(False, f"the unfinished runs ended with exit {code_o}, {code_s} before SIGTERM; raise KILL_ITERS")
        answers, bad, example = [], [], []
        for label, source, needle in (("other config", other, "config differs"), ("same config, other run", same, "run id")):
            run = self.work / f"foreign-finished-{needle.replace(' ', '-')}"
            shutil.copytree(self.work / "ref", run)
            shutil.copy(source / "checkpoint.pt", run / "checkpoint.pt")
            before = run_files(run)
            for cmd in (["train", "--out", str(run), "--resume", "--no-progress"], ["eval", str(run)]):
                err = io.StringIO()
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        code = hinterval_main(cmd)
                except BaseException as exc:  # noqa: BLE001
                    code, _ = None, err.write(f"Traceback: {type(exc).__name__}: {exc}")
                lines = error_lines(err.getvalue())
                after = run_files(run)
                fine = code == 2 and len(lines) == 1 and "does not belong" in lines[0] and needle in lines[0] and after == before
                (answers if fine else bad).append(f"{label}/{cmd[0]}")
                if cmd[0] == "train":
                    example.append(lines[0][:150] if lines else err.getvalue()[-150:])
        return Outcome(not bad, f"{len(answers)}/{len(answers) + len(bad)} of (train --resume, eval) x (checkpoint of another "
                                f"config, of another run) refused with exit 2 and one line, config.json/result.json/"
                                f"checkpoint unchanged" + (f"; NOT: {', '.join(bad)}" if bad else "") + f"; e.g. {example[0]!r}")

    def sigterm(self) -> Outcome:
        ref = self.reference()
        out, code, lines, text = self.stopped_run("sigterm")
        done = load_checkpoint(out / "checkpoint.pt")["tasks_done"] if (out / "checkpoint.pt").is_file() else 0
        said = (code == 143 and len(lines) == 1 and "stopped by SIGTERM" in lines[0]
                and f"hinterval train --out {out} --resume" in lines[0] and "Traceback" not in text)
        resume = sh(HINTERVAL + ["train", "--out", out, "--resume", "--no-progress"], self.work / "sigterm-resume.log")
        equal = resume.returncode == 0 and same_metrics(result_of(out), ref)
        return Outcome(said and equal, f"SIGTERM after {done} task(s): exit {code}, {lines[0] if lines else 'no message'!r}; "
                                       f"--resume exit {resume.returncode}, metrics {'equal' if equal else 'DIFFERENT'} "
                                       "to the uninterrupted run")

    # --- two-sweeps-one-name --------------------------------------------------------------------------------------------
    def concurrent_sweeps(self) -> Outcome:
        import json

        from tune.records import load_records

        results, name = self.work / "same-name-sweeps", "same-name"
        out = results / name
        base = SEARCH + ["--results-dir", results, "--name", name, *SWEEP_TINY, "--iters-per-task", 30, "--max-concurrent", 1]
        settings = {"first": ["--num-samples", 1, "--seed", 11], "second": ["--num-samples", 2, "--seed", 22]}
        procs = {}
        for key, extra in settings.items():  # started together: both see no sweep yet
            log = open(self.work / f"same-name-{key}.log", "w")
            procs[key] = (subprocess.Popen([str(c) for c in base + extra], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True), log)
        while all(p.poll() is None for p, _ in procs.values()) and not (out / SWEEP_FILE_NAME).is_file():
            time.sleep(0.2)
        time.sleep(1.0)
        third = sh(base + ["--num-samples", 3, "--seed", 33, "--overwrite"], self.work / "same-name-overwrite.log")  # while one runs
        from benchmarks.sweep import session_pids

        for p, log in procs.values():
            try:
                p.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:  # do not leave a stuck sweep running: end it and its Ray processes
                for pid in session_pids(p.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                p.wait()
            log.close()
        codes = {k: p.returncode for k, (p, _) in procs.items()}
        winners = [k for k, c in codes.items() if c == 0]
        losers = [k for k, c in codes.items() if c != 0]
        texts = {k: (self.work / f"same-name-{k}.log").read_text() for k in procs}
        texts["overwrite"] = third.stdout + third.stderr
        codes["overwrite"] = third.returncode
        refused = {k: [ln for ln in texts[k].splitlines() if ln.startswith("search.py: ")] for k in losers + ["overwrite"]}
        refused_ok = all(codes[k] == 2 and len(refused[k]) == 1 and "Traceback" not in texts[k]
                         # "in use by process N", or "by another process" when the holder has not yet written its pid
                         and ("is in use by" in refused[k][0] or "already holds a sweep" in refused[k][0])
                         for k in refused)
        spec = json.loads((out / SWEEP_FILE_NAME).read_text()) if (out / SWEEP_FILE_NAME).is_file() else {}
        recs = load_records(out)
        want = dict(zip(("num_samples", "seed"), settings[winners[0]][1::2])) if len(winners) == 1 else {}
        own = bool(want) and spec.get("num_samples") == want["num_samples"] and spec.get("seed") == want["seed"]
        rows = list(csv.DictReader(open(out / "trials.csv"))) if (out / "trials.csv").is_file() else []
        ok = len(winners) == 1 and refused_ok and own and len(rows) == len(recs) == want.get("num_samples")
        why = "; ".join(f"{k}: {refused[k][0][:90] if refused[k] else 'no line'!r}" for k in refused)
        return Outcome(ok, f"exit codes {codes}; {len(winners)} ran: sweep.json has its settings: {own}, trials "
                           f"{len(rows)}/{want.get('num_samples')}; refused: {why}")

    # --- sweeps: what train refuses, wrong addresses, stop signals, shared storage, foreign state ---------------------------
    def _sweep_until(self, name: str, argv: List, stop: Callable[[Path, int], bool], sig: int, results: Path,
                     env: Optional[Dict[str, str]] = None) -> tuple:
        """Start a sweep in its own session; send ``sig`` to the driver once ``stop(out_dir, driver pid)``; wait.
        Returns ``(exit code, stderr+stdout text, Ray processes left 15 s later (named in NAME-left.txt), seconds
        from the signal to the exit)``."""
        from benchmarks.sweep import session_pids

        out, log = results / name, self.work / f"{name}.log"
        with open(log, "w") as f:
            p = subprocess.Popen([str(c) for c in SEARCH + ["--results-dir", results, "--name", name, *argv]], cwd=REPO,
                                 stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})
            sent = None
            while p.poll() is None:
                if sent is None and stop(out, p.pid):
                    p.send_signal(sig)
                    sent = time.time()
                time.sleep(0.3)
        took = time.time() - sent if sent else None
        for _ in range(30):  # Ray's processes end on their own within seconds (longer on a loaded CPU)
            time.sleep(0.5)
            left = session_pids(p.pid)
            if not left:
                break
        names = []
        for pid in left:
            with contextlib.suppress(OSError):
                names.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80])
        if names:
            (self.work / f"{name}-left.txt").write_text("\n".join(names))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return p.returncode, log.read_text(), left, took

    @staticmethod
    def _trial_started(out: Path, pid: int = 0) -> bool:
        from tune.records import load_records

        return out.is_dir() and any(r["tasks_done"] >= 1 for r in load_records(out))

    @staticmethod
    def _stopped_cleanly(code: int, text: str, sig: int, out: Path, left: List[int]) -> tuple:
        lines = [ln for ln in text.splitlines() if ln.startswith("search.py: ") and ": warning: " not in ln]
        name = signal.Signals(sig).name
        crash = [w for w in ("Traceback", "Aborted", "core dumped", "*** SIG", "SIGABRT", "terminate called") if w in text]
        ok = (code == 128 + sig and len(lines) == 1 and f"stopped by {name}" in lines[0] and "--resume" in lines[0]
              and not crash and (out / "trials.csv").is_file() and (out / "leaderboard.md").is_file() and not left)
        return ok, (f"exit {code}, {len(lines)} line(s) {lines[0][:70] + '...' if lines else ''!r}, report "
                    f"{'written' if (out / 'trials.csv').is_file() else 'MISSING'}, crash signs {crash or 'none'}, "
                    f"Ray processes left {len(left)}")

    def _resumed(self, results: Path, name: str, samples: int, env: Optional[Dict[str, str]] = None) -> tuple:
        from tune.records import is_complete, load_records

        proc = sh(SEARCH + ["--results-dir", results, "--name", name, "--resume"], self.work / f"{name}-resume.log", env=env)
        recs = load_records(results / name)
        complete = sum(is_complete(r) for r in recs)
        rerun = [r["trial_id"] for r in recs if r["reruns"]]
        return proc.returncode == 0 and complete == samples and not rerun, \
            f"--resume exit {proc.returncode}, {complete}/{samples} trials finished, finished tasks re-run: {len(rerun)}"

    def sweep_signals_and_shared_storage(self) -> Dict[str, Outcome]:
        """SIGTERM to a sweep whose checkpoints go to a --storage another sweep of the same name then uses:
        exit 143, one line, the report; the other sweep runs; --resume finishes the first."""
        import json

        results, storage, samples = self.work / "signal-sweeps", self.work / "shared-storage", 2
        common = [*SWEEP_TINY, "--num-samples", samples, "--max-concurrent", 2, "--confirm-seeds", 0, "--storage", storage]
        code, text, left, took = self._sweep_until("term", [*common, "--iters-per-task", 80], self._trial_started,
                                                   signal.SIGTERM, results)
        ok, detail = self._stopped_cleanly(code, text, signal.SIGTERM, results / "term", left)
        other = sh(SEARCH + ["--results-dir", self.work / "other-results", "--name", "term", *SWEEP_TINY, "--num-samples", 1,
                             "--iters-per-task", 20, "--confirm-seeds", 0, "--storage", storage], self.work / "term-other.log")
        experiments = [json.loads((d / "term" / SWEEP_FILE_NAME).read_text()).get("experiment")
                       for d in (results, self.work / "other-results") if (d / "term" / SWEEP_FILE_NAME).is_file()]
        resumed, rdetail = self._resumed(results, "term", samples)
        separate = len(experiments) == 2 and len(set(experiments)) == 2 and all(
            (storage / e).is_dir() for e in experiments if e)
        return {"sigterm-sweep": Outcome(ok and resumed, f"SIGTERM once a trial finished task 1: {detail}, exit "
                                                        f"{took or 0:.0f} s after the signal; {rdetail}"),
                "two-sweeps-one-storage": Outcome(separate and other.returncode == 0 and resumed,
                                                  f"two sweeps named 'term' with one --storage: Tune experiments "
                                                  f"{experiments} ({'separate' if separate else 'SHARED'}); the second "
                                                  f"exit {other.returncode} while the first was stopped; the first's {rdetail}")}

    def sweep_sighup_and_loopback(self) -> Dict[str, Outcome]:
        """SIGHUP to a running sweep (a dropped ssh session); while it runs, what its Ray listens on."""
        from benchmarks.sweep import session_pids

        results, samples = self.work / "signal-sweeps", 2
        seen: Dict[str, List[str]] = {"listening": []}

        def trial_started_and_listeners(out: Path, driver: int) -> bool:
            if not self._trial_started(out):
                return False
            seen["listening"] += listening_addresses(session_pids(driver))  # its Ray processes and trial workers
            return True

        argv = [*SWEEP_TINY, "--num-samples", samples, "--max-concurrent", 2, "--confirm-seeds", 0, "--iters-per-task", 80]
        code, text, left, took = self._sweep_until("hup", argv, trial_started_and_listeners, signal.SIGHUP, results)
        ok, detail = self._stopped_cleanly(code, text, signal.SIGHUP, results / "hup", left)
        resumed, rdetail = self._resumed(results, "hup", samples)
        loop = {"127.0.0.1", "::1", "::ffff:7f00:1"}
        outside = sorted(set(seen["listening"]) - loop)
        return {"sighup-sweep": Outcome(ok and resumed, f"SIGHUP once a trial finished task 1: {detail}; {rdetail}"),
                "local-ray-loopback": Outcome(bool(seen["listening"]) and not outside,
                                              f"{len(seen['listening'])} listening sockets of the sweep's processes, "
                                              f"on {sorted(set(seen['listening']))}"
                                              + (f"; NOT loopback: {outside}" if outside else ""))}

    def handed_sweep_resume(self) -> Outcome:
        """A finished sweep directory handed to someone (a copy, its Tune state's tuner.pkl replaced by one that
        runs code): --resume by another user is refused; by the owner the planted file is never read."""
        import json
        import pickle

        src = self.work / "signal-sweeps" / "term"
        if not (src / SWEEP_FILE_NAME).is_file():
            return Outcome(False, "needs the sigterm-sweep fault's sweep (run it first)")
        spec = json.loads((src / SWEEP_FILE_NAME).read_text())
        results, storage = self.work / "handed", self.work / "handed-storage"
        shutil.rmtree(results, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)
        shutil.copytree(src, results / "term")
        shutil.copytree(Path(spec["storage"]) / spec["experiment"], storage / spec["experiment"])
        spec.update(out_dir=str(results / "term"), storage=str(storage))
        (results / "term" / SWEEP_FILE_NAME).write_text(json.dumps(spec))
        marker = self.work / "planted-pickle-ran"

        class Planted:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        (storage / spec["experiment"] / "tuner.pkl").write_bytes(pickle.dumps(Planted()))
        stranger = sh(SEARCH + ["--results-dir", results, "--name", "term", "--resume"], self.work / "handed-stranger.log",
                      env={"XDG_CONFIG_HOME": str(self.work / "stranger-config")})
        lines = [ln for ln in stranger.stderr.splitlines() if ln.startswith("search.py: ") and "resuming" not in ln]
        refused = stranger.returncode == 2 and len(lines) == 1 and "refused" in lines[0] and not marker.exists()
        owner = sh(SEARCH + ["--results-dir", results, "--name", "term", "--resume"], self.work / "handed-owner.log")
        safe = owner.returncode == 0 and not marker.exists()
        return Outcome(refused and safe, f"another user's --resume: exit {stranger.returncode}, "
                                         f"{lines[0][:90] + '...' if lines else 'no line'!r}; the owner's --resume: exit "
                                         f"{owner.returncode}; the planted pickle ran: {marker.exists()}")

    def sweep_refuses_what_train_refuses(self) -> Outcome:
        from benchmarks.sweep import session_pids

        results = self.work / "train-refuses"
        parts, good = [], True
        for label, extra, needle in (("interval_scope=last:9", ["--set", "interval_scope=last:9"], "last:9"),
                                     ("a model that cannot fit", ["--set", "hnet_hidden=100000,100000"], "does not fit")):
            p = subprocess.run([str(c) for c in SEARCH + ["--results-dir", results, "--name", "x", *extra]], cwd=REPO,
                               capture_output=True, text=True, timeout=TIMEOUT_S, start_new_session=True)
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            ok = p.returncode == 2 and len(lines) == 1 and needle in lines[0] and not results.exists()
            good &= ok
            parts.append(f"{label}: exit {p.returncode}, {len(lines)} line(s)")
        proc = sh(SEARCH + ["--results-dir", results, "--name", "diverging", *SWEEP_TINY, "--lr", "1e30", "--num-samples", 2,
                            "--iters-per-task", 20, "--confirm-seeds", 0], self.work / "all-trials-failed.log")
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("search.py: error: ")]
        ok = proc.returncode == 1 and len(lines) == 1 and "every trial failed" in lines[0]
        good &= ok
        parts.append(f"every trial diverging (--lr 1e30): exit {proc.returncode}, {lines[0][:60] + '...' if lines else 'no line'!r}")
        return Outcome(good, "; ".join(parts))

    def wrong_address(self) -> Outcome:
        import socket
        import threading

        def listener(answer: Optional[bytes]) -> socket.socket:
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(4)

            def serve() -> None:
                with contextlib.suppress(OSError):
                    while True:
                        conn, _ = srv.accept()
                        if answer is not None:
                            conn.sendall(answer)
                            conn.close()
                        # None: accept and stay silent, like a firewall that swallows the greeting
            threading.Thread(target=serve, daemon=True).start()
            return srv

        web, silent = listener(b"HTTP/1.1 400 Bad Request\r\n\r\n"), listener(None)
        cases = [("refused port", "127.0.0.1:1"), ("port 0", "127.0.0.1:0"),
                 ("a web server", f"127.0.0.1:{web.getsockname()[1]}"), ("a silent server", f"127.0.0.1:{silent.getsockname()[1]}")]
        parts, good = [], True
        results = self.work / "wrong-address"
        for label, address in cases:
            t = time.time()
            p = subprocess.run([str(c) for c in SEARCH + ["--address", address, "--results-dir", results, "--name", "a"]],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
            took = time.time() - t
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            ok = p.returncode == 2 and len(lines) == 1 and address in lines[0] and took < 30 and not results.exists()
            good &= ok
            parts.append(f"{label}: exit {p.returncode} in {took:.1f} s{'' if ok else ' ' + repr(lines[-1][:80] if lines else '')}")
        web.close()
        silent.close()
        return Outcome(good, "; ".join(parts))

    # --- sweep-refused-after-ray-start --------------------------------------------------------------------------------------------
    def sweep_refused_after_ray_start(self) -> Outcome:
        from benchmarks.sweep import session_pids

        results = self.work / "refused-sweeps"
        log = self.work / "refused.log"
        with open(log, "w") as f:
            p = subprocess.Popen([str(c) for c in SEARCH + ["--results-dir", results, "--name", "refused", "--cpus-per-trial", 64]],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
            p.wait(timeout=TIMEOUT_S)
        time.sleep(2.0)
        left = session_pids(p.pid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        kept = sorted(str(x.relative_to(results)) for x in results.rglob("*")) if results.exists() else []
        ok = p.returncode == 2 and len(lines) == 1 and "no node can hold one trial" in lines[0] and not kept and not left
        return Outcome(ok, f"exit {p.returncode}, stderr lines {len(lines)} ({lines[-1][:80] if lines else ''!r}...), "
                           f"left behind: files {kept}, Ray processes {len(left)}")

    # --- overwrite-foreign-directory ------------------------------------------------------------------------------
    def overwrite_foreign(self) -> Outcome:
        """``--overwrite`` on directories holding a user's files (a run's and a sweep's): refused, nothing deleted;
        on a real run directory it still replaces the run."""
        parts, good = [], True
        user = self.work / "users-files"
        (user / "photos").mkdir(parents=True)
        (user / "thesis.tex").write_text("keep me")
        (user / "photos" / "a.jpg").write_bytes(b"\xff\xd8 keep me")
        sweeps = self.work / "users-results"
        (sweeps / "mine").mkdir(parents=True)
        (sweeps / "mine" / "notes.md").write_text("keep me")
        before = {d: run_files(d) for d in (user, sweeps)}
        for label, cmd, out in (
                ("train", HINTERVAL + ["train", *TINY, "--iters-per-task", 5, "--out", user, "--overwrite"], user),
                ("sweep", SEARCH + ["--results-dir", sweeps, "--name", "mine", "--overwrite", "--smoke-test"], sweeps)):
            proc = sh(cmd, self.work / f"overwrite-foreign-{label}.log", timeout=300)
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            kept = run_files(out) == before[out]
            ok = proc.returncode == 2 and len(lines) == 1 and "never deletes other files" in lines[0] and kept
            good &= ok
            parts.append(f"{label}: exit {proc.returncode}, {len(lines)} line(s), user's files "
                         f"{'unchanged' if kept else 'CHANGED'}")
        run = self.work / "overwrite-real-run"
        first = sh(HINTERVAL + ["train", *TINY, "--iters-per-task", 5, "--out", run], self.work / "overwrite-run-1.log")
        again = sh(HINTERVAL + ["train", *TINY, "--iters-per-task", 5, "--out", run, "--overwrite"], self.work / "overwrite-run-2.log")
        replaced = first.returncode == 0 and again.returncode == 0 and (run / "result.json").is_file()
        good &= replaced
        parts.append(f"a real run directory: --overwrite {'replaced it (exit 0)' if replaced else f'FAILED (exit {again.returncode})'}")
        return Outcome(good, "; ".join(parts))

    # --- blocking-inputs -------------------------------------------------------------------------------------
    def blocking_inputs(self) -> Outcome:
        """A named pipe (no writer) and a device where a file is read: one line and exit 2 at once, never a hang."""
        fifo = self.work / "config.fifo"
        os.mkfifo(fifo)
        run = self.work / "fifo-run"
        shutil.copytree(self.reference_dir(), run)
        (run / "config.json").unlink()
        os.mkfifo(run / "config.json")
        cases = {"train --config FIFO": HINTERVAL + ["train", *TINY, "--config", fifo, "--out", self.work / "fifo-out"],
                 "train --config /dev/zero": HINTERVAL + ["train", *TINY, "--config", "/dev/zero", "--out", self.work / "fifo-out"],
                 "search.py --space FIFO": SEARCH + ["--space", fifo, "--dry-run", "--results-dir", self.work / "fifo-results"],
                 "train --resume (config.json a FIFO)": HINTERVAL + ["train", "--out", run, "--resume", "--no-progress"],
                 "eval (config.json a FIFO)": HINTERVAL + ["eval", run]}
        parts, good = [], True
        for label, cmd in cases.items():
            t = time.time()
            try:
                proc = sh(cmd, self.work / f"blocking-{len(parts)}.log", timeout=60)
                code, lines = proc.returncode, [ln for ln in proc.stderr.splitlines() if ln.strip()]
            except subprocess.TimeoutExpired:
                code, lines = "timeout", []
            ok = code == 2 and len(lines) == 1
            good &= ok
            parts.append(f"{label}: exit {code} in {time.time() - t:.0f} s" + ("" if ok else f" ({lines[-1:]!r})"))
        return Outcome(good, "; ".join(parts))

    def reference_dir(self) -> Path:
        self.reference()
        return self.work / "ref"

    # --- nan-metric-train ------------------------------------------------------------------------------------
    def nan_metric(self) -> Outcome:
        """A metric that comes out NaN (the universal network's embedding share, patched in a child) is saved as
        null: every task's ``result.json`` is written and the run finishes (it failed at every task end)."""
        out = self.work / "nan-metric"
        code = (
            "import sys\n"
            "from hinterval.methods import hyperinterval as H\n"
            "real = H.HyperIntervalMethod.universal_size\n"
            "def nan_share(self, n):\n"
            "    got = real(self, n)\n"
            "    return None if got is None else {**got, 'embedding_share': float('nan')}\n"
            "H.HyperIntervalMethod.universal_size = nan_share\n"
            "from hinterval.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
        proc = sh([PY, "-c", code, "train", *TINY, "--iters-per-task", 5, "--embedding-mode", "nested", "--out", out],
                  self.work / "nan-metric.log", timeout=600)
        try:
            res = result_of(out)
        except Exception as exc:  # noqa: BLE001
            res = {"error": str(exc)}
        share = (res.get("universal") or {}).get("embedding_share", "missing")
        ok = proc.returncode == 0 and res.get("complete") is True and share is None
        return Outcome(ok, f"exit {proc.returncode}; result.json complete={res.get('complete')}, "
                           f"universal.embedding_share={share!r} (NaN written as null)")

    # --- bad inputs -------------------------------------------------------------------------------
    def bad_inputs(self) -> tuple:
        xml = self.work / "bad_inputs.xml"
        sh([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_bad_inputs.py"),
            f"--junitxml={xml}"], self.work / "bad_inputs.log")
        cases = [c for c in ET.parse(xml).getroot().iter("testcase") if "[" in c.get("name", "")]
        failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None
                  or c.find("skipped") is not None]
        return len(cases) - len(failed), len(cases), failed


#: every fault, in the order they run; the sweep-level faults come last (they take longest)
FAULTS = ("killed-train", "corrupted-checkpoint", "disk-full-checkpoint", "nan-loss-train", "disk-full-tensorboard",
          "foreign-checkpoint", "sigterm-during-run", "sigint-at-start-up", "sweep-refused-after-ray-start",
          "sweep-refuses-what-train-refuses", "wrong-address", "two-sweeps-one-name", "killed-sweep-driver",
          "killed-trial-worker", "nan-loss-sweep", "sigterm-sweep", "two-sweeps-one-storage", "resume-handed-sweep",
          "sighup-sweep", "local-ray-loopback", "overwrite-foreign-directory", "blocking-inputs", "nan-metric-train")
BAD_INPUTS = "bad-inputs"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(FAULTS + (BAD_INPUTS,)),
                   help=f"comma-separated subset of {', '.join(FAULTS + (BAD_INPUTS,))}; default all")
    p.add_argument("--workdir", help="keep every run, sweep and log here (default: a temporary dir, deleted at the end)")
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in FAULTS + (BAD_INPUTS,)]
    if unknown:
        p.error(f"--only: unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS + (BAD_INPUTS,))}")
    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="hinterval-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    f = Faults(work)
    t0 = time.time()
    outcomes: Dict[str, Outcome] = {}

    def show(name: str, outcome: Outcome, took: str) -> None:
        outcomes[name] = outcome
        print(f"{'PASS' if outcome.ok else 'FAIL'} {name}: {outcome.detail} [{took}]", flush=True)

    def attempt(names: Sequence[str], fn: Callable[[], Dict[str, Outcome]]) -> None:
        if not any(n in only for n in names):
            return
        t = time.time()
        try:
            got = fn()
        except Exception as exc:  # noqa: BLE001 - a broken fault check is a FAIL line, not a crash
            with open(work / f"{names[0]}-exception.log", "w") as log:
                traceback.print_exc(file=log)
            got = {n: Outcome(False, f"the check itself raised {type(exc).__name__}: {exc}") for n in names}
        took = f"{time.time() - t:.0f} s" + (", one sweep" if len(names) > 1 else "")
        for n in names:
            if n in only:
                show(n, got[n], took)

    single = {"killed-train": f.killed_train, "corrupted-checkpoint": f.corrupted_checkpoint,
              "disk-full-checkpoint": f.disk_full, "nan-loss-train": f.nan_train,
              "disk-full-tensorboard": f.disk_full_tensorboard, "foreign-checkpoint": f.foreign_checkpoint,
              "sigterm-during-run": f.sigterm, "sigint-at-start-up": f.sigint_at_start_up,
              "sweep-refused-after-ray-start": f.sweep_refused_after_ray_start,
              "sweep-refuses-what-train-refuses": f.sweep_refuses_what_train_refuses, "wrong-address": f.wrong_address,
              "two-sweeps-one-name": f.concurrent_sweeps, "killed-sweep-driver": f.killed_sweep,
              "overwrite-foreign-directory": f.overwrite_foreign, "blocking-inputs": f.blocking_inputs,
              "nan-metric-train": f.nan_metric}
    for name, fn in single.items():
        attempt([name], lambda fn=fn, name=name: {name: fn()})
    attempt(["killed-trial-worker", "nan-loss-sweep"], f.worker_kill_and_nan_sweep)
    attempt(["sigterm-sweep", "two-sweeps-one-storage"], f.sweep_signals_and_shared_storage)
    if "resume-handed-sweep" in only and not {"sigterm-sweep", "two-sweeps-one-storage"} & set(only):
        with contextlib.suppress(Exception):  # it resumes a copy of that fault's sweep (it says so if there is none)
            f.sweep_signals_and_shared_storage()
    attempt(["resume-handed-sweep"], lambda: {"resume-handed-sweep": f.handed_sweep_resume()})
    attempt(["sighup-sweep", "local-ray-loopback"], f.sweep_sighup_and_loopback)
    k = n = 0
    bad_ok = True
    if BAD_INPUTS in only:
        try:
            k, n, failed = f.bad_inputs()
            bad_ok = k == n and n > 0
            print(f"{'PASS' if bad_ok else 'FAIL'} {BAD_INPUTS}: {k}/{n} answered with exit 2 and one clear line, nothing "
                  f"overwritten" + (f"; not answered: {', '.join(failed)}" if failed else "") + " (tests/test_bad_inputs.py)",
                  flush=True)
        except Exception as exc:  # noqa: BLE001
            bad_ok = False
            print(f"FAIL {BAD_INPUTS}: could not run tests/test_bad_inputs.py ({type(exc).__name__}: {exc})", flush=True)
    failed_faults = [name for name, o in outcomes.items() if not o.ok]
    print(f"faults survived {len(outcomes) - len(failed_faults)}/{len(outcomes)}, bad inputs answered {k}/{n}"
          + (f"; failed: {', '.join(failed_faults + ([BAD_INPUTS] if not bad_ok else []))}"
             if failed_faults or not bad_ok else "")
          + f"  (wall {time.time() - t0:.0f} s; logs in {work if args.workdir else 'a deleted temp dir: pass --workdir to keep them'})",
          flush=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failed_faults and bad_ok else 1


if __name__ == "__main__":
    sys.exit(main())
