"""Interrupt a running ``hinterval train`` once it has saved its first task (tests of Ctrl-C and SIGTERM)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import pytest


def signal_after_first_task(proc: subprocess.Popen, run_dir: Path, sig: int, *, wait_s: float,
                            timeout_s: float) -> Tuple[int, str, List[str]]:
    """Send ``sig`` to ``proc`` as soon as ``run_dir/checkpoint.pt`` exists (or ``wait_s`` passed); returns
    its exit code, its stderr and the stderr lines in the tool's name. Skips the test when the run
    finished before the signal arrived (a very fast machine)."""
    deadline = time.time() + wait_s
    while time.time() < deadline and not (run_dir / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout_s)
    if proc.returncode == 0:
        pytest.skip(f"the run finished before signal {sig} arrived (a very fast machine)")
    return proc.returncode, err, [ln for ln in err.splitlines() if ln.startswith("hinterval: ")]
