"""Before the first trial: one driver per sweep directory, a quiet Ray start-up, and an undo on failure."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, List, Optional

from hinterval.errors import UserError
from hinterval.files import LOCK_NAME, DirectoryLock, check_writable_dir

from tune.prepare import check_sweep_dir


class SweepStartup:
    """What a sweep driver sets up before its first trial, and undoes if it fails there.

    Why: two drivers with one ``--name`` would mix their trials, search spaces and ``sweep.json``;
    a sweep that fails while Ray starts must not leave a ``sweep.json``/``_ray`` that later blocks
    the same command; and an error found before any trial should be one line, not Ray's start-up
    warnings plus the line. So: :meth:`claim` creates and exclusively locks the sweep directory and
    checks it holds no other sweep in one step (a second driver is refused with one line, exit 2),
    and holds back stderr until :meth:`started`; :meth:`end` releases the lock and, if the sweep
    failed before any trial started (and was not a resume), removes what this driver created.
    """

    #: whether trials may have run in this process (what an interruption message can promise)
    trials_began = False

    def __init__(self) -> None:
        self.lock: Any = None
        self.out_dir: Optional[Path] = None
        self.created: List[Path] = []
        self.resume = self.dirty = self.ray_was_up = False
        self._saved_fd: Optional[int] = None
        self._buf: Any = None

    @staticmethod
    def check_writable(out_dir: Path) -> None:
        check_writable_dir(out_dir, "--results-dir")  # a file or a read-only place: exit 2 before Ray starts

    def claim(self, out_dir: Path, name: str, *, resume: bool, overwrite: bool, debug: bool) -> None:
        created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # made here: removed again on a failure
        try:
            out_dir.mkdir(parents=True)
        except FileExistsError:
            created = []
        lock = DirectoryLock(out_dir, f"sweep {name!r} in").acquire()
        try:
            check_sweep_dir(out_dir, name, resume=resume, overwrite=overwrite)  # checked again, now under the lock
        except UserError:
            lock.release()
            raise
        self.lock, self.out_dir, self.created, self.resume = lock, out_dir, created, resume
        import ray

        self.ray_was_up = ray.is_initialized()
        if not debug:
            sys.stderr.flush()
            import tempfile

            self._buf = tempfile.TemporaryFile()
            self._saved_fd = os.dup(2)
            os.dup2(self._buf.fileno(), 2)

    def clear(self, out_dir: Path) -> None:
        """Before the first write of a new sweep: remove an old sweep's files (``--overwrite``), keeping the
        directory and its lock. From here on the directory holds only what this driver writes. A directory
        that holds no sweep is refused again here, where files are deleted."""
        check_sweep_dir(out_dir, out_dir.name, resume=False, overwrite=True)
        self.dirty = True
        for p in out_dir.iterdir():
            if p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def started(self) -> None:
        """Ray is up and every check passed: show what it printed meanwhile."""
        self._stderr_back(replay=True)
        SweepStartup.trials_began = True

    def _stderr_back(self, *, replay: bool) -> None:
        if self._saved_fd is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None
        self._buf.seek(0)
        text = self._buf.read().decode(errors="replace")
        self._buf.close()
        if replay and text:
            sys.stderr.write(text)
            sys.stderr.flush()

    def end(self, *, failed: bool) -> None:
        if failed and self.lock is not None and not self.ray_was_up:  # e.g. Ctrl-C inside ray.init: end what it started
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
        self.release(failed=failed)

    def release(self, *, failed: bool) -> None:
        """Give stderr back, undo what a failed start created and release the lock (no Ray call: a thread
        may call this while the main thread is stuck inside Ray)."""
        self._stderr_back(replay=not failed)
        lock, out_dir, created, dirty = self.lock, self.out_dir, self.created, self.dirty
        began = SweepStartup.trials_began
        self.__init__()  # type: ignore[misc]
        if lock is None or out_dir is None:
            return
        # wrote, but no trial ever started (a sweep whose trials began is resumable, even before its first record)
        undo = failed and dirty and not began and not any((out_dir / "trials").glob("*.json"))
        if undo:
            for p in out_dir.iterdir():
                if p.name != LOCK_NAME:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        lock.release()
        for d in created if failed else []:  # removed only if empty: directories this driver made and never used
            with contextlib.suppress(OSError):
                if d == out_dir and [p.name for p in d.iterdir()] == [LOCK_NAME]:
                    (d / LOCK_NAME).unlink()
                d.rmdir()


#: the one per driver process
STARTUP = SweepStartup()
