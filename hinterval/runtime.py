"""Process-wide settings a training run's speed depends on, applied by :func:`configure_process`.

They change the whole process (environment, torch's global thread count, the C allocator), so
only programs set them: the ``hinterval`` command, the Ray Tune trainable and the benchmark
scripts each call :func:`configure_process` once. Library code (the trainer, the methods) never
does. This module imports torch only inside :func:`configure_process`, after the OpenMP choice.

Freed memory. A HyperInterval step on CPU is memory-bound: it allocates and frees a handful of tensors the size
of the hypernetwork's output layer every step (e.g. 100 x 17,610 floats = 7 MB for
permuted-digits). glibc hands such blocks back to the kernel on free (heap trimming / ``mmap``
above a threshold), so every step page-faults them in again. Measured on the 2-core machine,
permuted-digits step with 5 earlier tasks, 1 thread: 23.8 ms/step (6.5 ms of it kernel time,
3,289 page faults per step) -> 15.9 ms/step (0 kernel time, 15 faults) with the settings below.

OpenMP waiting. torch's OpenMP threads spin between parallel regions. With the cores to
themselves that is the fast choice; on an oversubscribed CPU the spinning starves the thread
that has work. Measured, permuted-digits step, 2 threads: quiet machine 10.9 ms spinning vs
19.8 ms with ``OMP_WAIT_POLICY=PASSIVE``; with two busy processes on the 2 cores 64.5 ms
spinning vs 20.5 ms passive (whole split-digits run earlier: 399 s vs 43 s).
:func:`choose_omp_wait_policy` picks by how busy the CPU is when the process starts.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Protocol

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks below this come from the heap (glibc's maximum for the mmap threshold on 64-bit)
MMAP_THRESHOLD_BYTES = 32 << 20
#: free heap memory kept for re-use before glibc returns it to the kernel
TRIM_THRESHOLD_BYTES = 1 << 30

_configured = False


def busy_cores(window_s: float = 0.25) -> Optional[float]:
    """How many cores other processes keep busy, from ``/proc/stat`` over ``window_s`` seconds
    (the load average is a poor guide here: it lags a minute and counts blocked tasks; this
    machine idles at a load of ~1). ``None`` where ``/proc/stat`` is missing."""

    def sample():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return vals[3] + vals[4], sum(vals)  # idle + iowait, total (all cores)

    try:
        idle0, total0 = sample()
        time.sleep(window_s)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)  # the line sums all cores


def choose_omp_wait_policy(threads: Optional[int] = None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when the CPU looks oversubscribed; call before torch loads.

    Oversubscribed means: the cores other processes keep busy (:func:`busy_cores`) plus the
    threads this process will run exceed the usable cores plus half a core. Otherwise OpenMP keeps
    its default (spin briefly, then sleep). A policy the user set (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``) is never changed. Returns the policy in effect (``"default"`` when unset).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return os.environ.get("OMP_WAIT_POLICY", "default")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = busy_cores()
    if busy is None:
        return "default"
    if busy + (threads or cores) > cores + 0.5:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "PASSIVE"
    return "default"


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed tensor memory for re-use instead of returning it to the kernel.

    Idempotent; a no-op (returns False) off Linux/glibc or with ``HINTERVAL_KEEP_FREED_MEMORY=0``.
    The cost is that the process's resident memory stays near its peak (up to 1 GiB of freed
    heap is kept).
    """
    global _configured
    if _configured:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("HINTERVAL_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    _configured = ok
    return ok


class ProcessConfig(Protocol):
    """The fields :func:`configure_process` reads (an :class:`~hinterval.config.ExperimentConfig` has them)."""

    device: str
    num_threads: Optional[int]


@dataclass(frozen=True)
class ProcessSettings:
    """What :func:`configure_process` left in effect (printed by the benchmarks)."""

    torch_threads: int
    omp_wait_policy: str
    keep_freed_memory: bool


def configure_process(cfg: ProcessConfig) -> ProcessSettings:
    """Apply the process-wide settings for running ``cfg``: call once, from a program's entry point.

    1. The OpenMP wait policy (:func:`choose_omp_wait_policy`), only while torch is not imported
       yet: OpenMP reads it once, when torch loads. Later, the policy in effect is kept.
    2. torch's CPU thread count: ``cfg.num_threads`` (``None`` keeps torch's default, one per core).
    3. For runs on the CPU (``device`` ``cpu``, or ``auto`` without CUDA), glibc keeps freed memory
       for re-use (:func:`keep_freed_memory`): 1.5x faster CPU steps.
    """
    if "torch" in sys.modules:
        policy = os.environ.get("OMP_WAIT_POLICY", "default")
    else:
        policy = choose_omp_wait_policy(cfg.num_threads)
    with ctrl_c_deferred():  # torch's first import: a Ctrl-C inside it aborted the process (see ctrl_c_deferred)
        import torch

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    kept = keep_freed_memory() if on_cpu else False
    return ProcessSettings(torch_threads=torch.get_num_threads(), omp_wait_policy=policy, keep_freed_memory=kept)


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back while the block runs and act on it right after.

    Why: importing torch runs Python code (numpy's import among it) from C and C++ code. A
    KeyboardInterrupt raised there was either cleared (the program went on with a half-imported
    numpy and failed later: ``module 'numpy' has no attribute 'matrix'``, exit 1) or crossed C++
    code that cannot unwind it, which aborted the process (SIGABRT, exit -6, no message: seen
    with a Ctrl-C 1 s into ``hinterval train`` on a loaded machine, where torch's import takes
    seconds). Wrap the first import of torch in this. Outside the main thread (where signals
    cannot be handled) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, caught[0])  # the handler Ctrl-C had before: KeyboardInterrupt by default
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)  # ended by the signal, as without this block
