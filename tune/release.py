"""The end of a sweep driver: let go of Ray, the Optuna study and the sweep lock, then exit for certain.

Why: a driver that has written and printed its report must exit with its code, also when something
it used (Ray's client, a library thread, an exit handler) would keep the process waiting. So
:func:`end_process` lets go of each resource itself, with one time limit for everything, and a
watchdog thread ends the process with the intended exit code when the limit passes, after saying
on stderr in one line what the process was still waiting for. A process that ends normally never
hears from the watchdog.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Callable, List, NoReturn, Optional

#: seconds the driver may take, after its report, to let go of everything and exit
EXIT_GRACE_S = 20.0


def _where(frame) -> str:
    """``file:line function`` of the innermost frames of a thread (most recent last)."""
    parts: List[str] = []
    while frame is not None and len(parts) < 3:
        code = frame.f_code
        parts.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return " <- ".join(parts) or "?"


def waiting_for(step: str) -> str:
    """What holds the process now: the main thread's step and frames, and every other live non-daemon thread."""
    frames = sys._current_frames()
    main = threading.main_thread()
    parts = [f"{step} (main thread at {_where(frames.get(main.ident))})"]
    for t in threading.enumerate():
        if t is not main and not t.daemon and t.is_alive():
            parts.append(f"thread {t.name!r} at {_where(frames.get(t.ident))}")
    return "; ".join(parts)


class _Watchdog(threading.Thread):
    """Ends the process with ``code`` once ``deadline`` passes, naming what it still waited for."""

    def __init__(self, prog: str, code: int, grace_s: float):
        super().__init__(name="exit-watchdog", daemon=True)
        self.prog, self.code, self.grace_s = prog, code, grace_s
        self.deadline = time.monotonic() + grace_s
        self.step = "starting to exit"

    def run(self) -> None:
        while (left := self.deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
        give_up(self.prog, self.code, f"still exiting after {self.grace_s:g} s, waiting for: {waiting_for(self.step)}")


def give_up(prog: str, code: int, why: str) -> NoReturn:
    """One line on stderr, flush what was printed, then exit at once with ``code``."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{prog}: warning: {why}; exiting with code {code}\n")
        sys.stderr.flush()
    os._exit(code)


def close_study_storages() -> None:
    """Close the Optuna study storages the sweep opened (``tune.searcher.close_storages``), if it opened any."""
    if "tune.searcher" in sys.modules:
        sys.modules["tune.searcher"].close_storages()


def disconnect_ray() -> None:
    """Leave the Ray cluster (or stop the local one) if this process is still connected."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


def end_process(code: int, *, prog: str, releases: Optional[List[Callable[[], None]]] = None,
                grace_s: float = EXIT_GRACE_S) -> NoReturn:
    """Exit with ``code`` within ``grace_s`` seconds, whatever still runs.

    Runs ``releases``, then :func:`close_study_storages` and :func:`disconnect_ray`, in order; waits for other non-daemon threads
    for the time left, and exits; if they remain it names them and exits at once. A watchdog
    covers every step and the interpreter's own exit (atexit handlers).
    """
    dog = _Watchdog(prog, code, grace_s)
    dog.start()
    if threading.current_thread() is threading.main_thread():  # a Ctrl-C now only ends the process sooner
        signal.signal(signal.SIGINT, lambda signum, frame: give_up(prog, code, "interrupted while exiting"))
    for release in [*(releases or []), close_study_storages, disconnect_ray]:
        dog.step = f"{getattr(release, '__qualname__', release)}()"
        try:
            release()
        except Exception as exc:  # noqa: BLE001 - the run's result is decided; a failed release is only reported
            sys.stderr.write(f"{prog}: warning: {dog.step} failed at exit: {type(exc).__name__}: {exc}\n")
    dog.step = "other threads to end"
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon and t.is_alive():
            t.join(max(0.0, dog.deadline - time.monotonic() - 1.0))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        give_up(prog, code, f"the work is done but threads still run: {waiting_for(dog.step)}")
    dog.step = "the interpreter's exit handlers"
    sys.stdout.flush()
    sys.exit(code)
