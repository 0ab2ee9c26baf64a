"""SIGTERM and SIGHUP to a sweep driver: stop as Ctrl-C does, then exit with 128 + the signal.

Why: schedulers (SLURM, Kubernetes, systemd) stop a job with SIGTERM and a dropped ssh session
sends SIGHUP. Left alone, SIGHUP kills the driver silently (Ray's processes stay behind), and
SIGTERM meets the handler ``ray.init`` installs (``sys.exit`` from inside Tune's loop), which ends
in a C++ abort (exit 134) and no report. So both are taken here and turned into the interruption
Ctrl-C already is: during ``Tuner.fit`` Tune's own SIGINT handler stops the trials and saves the
experiment, elsewhere ``KeyboardInterrupt`` unwinds; the report is written, Ray is shut down, and
the process exits 143 (SIGTERM) or 129 (SIGHUP) with one line. A second signal stops at once,
like a second Ctrl-C.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Dict, Optional, Tuple

from hinterval.errors import EXIT_INTERRUPTED

#: the signals handled like Ctrl-C (SIGHUP only where it is not ignored, e.g. under ``nohup``)
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class StopSignals:
    """Which stop signal (if any) this driver received; :meth:`take` installs the handler."""

    received: Optional[int] = None

    @classmethod
    def reset(cls) -> None:
        cls.received = None

    @staticmethod
    def _handler(signum: int, frame: Any) -> None:
        if StopSignals.received is None:
            StopSignals.received = signum
        on_ctrl_c = signal.getsignal(signal.SIGINT)
        if callable(on_ctrl_c):
            on_ctrl_c(signal.SIGINT, frame)  # Tune's graceful stop during fit, KeyboardInterrupt elsewhere
        else:
            raise KeyboardInterrupt

    @classmethod
    def take(cls) -> Dict[int, Any]:
        """Handle SIGTERM and SIGHUP from now on (again after ``ray.init``, which replaces SIGTERM's
        handler). A signal the user set to be ignored stays ignored. Returns the handlers replaced (for
        :meth:`give_back`); a no-op outside the main thread."""
        previous: Dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, cls._handler):
                previous[sig] = signal.signal(sig, cls._handler)
        return previous

    @staticmethod
    def give_back(previous: Dict[int, Any]) -> None:
        """Put back the handlers :meth:`take` replaced (a sweep run from Python leaves none of its own)."""
        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @classmethod
    def outcome(cls) -> Tuple[int, str]:
        """``(exit code, what happened)`` of an interruption: 130 for Ctrl-C, 128 + N for signal N."""
        if cls.received is None:
            return EXIT_INTERRUPTED, "interrupted"
        return 128 + cls.received, f"stopped by {signal.Signals(cls.received).name}"
