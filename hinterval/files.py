"""Files written whole or not at all, writable output directories, and one writer per directory.

This is the lowest floor of the package (it imports nothing of hinterval but :mod:`hinterval.errors`),
so checkpoints, data caches, sweep reports and run directories all share one way of writing files.

Writes go to a temporary file in the same directory followed by ``os.replace`` (atomic on POSIX),
so a crash or a full disk never leaves a half-written file where a good one was. A run or sweep
directory is written by one process at a time (:class:`DirectoryLock`, on :mod:`filelock`).
"""
from __future__ import annotations

import errno
import contextlib
import json
import math
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import filelock

from hinterval.errors import UserError, one_line, short

#: the lock file of a run or sweep directory (kept after release: it is not part of the run)
LOCK_NAME = ".hinterval.lock"
#: the name of the file :func:`check_writable_dir` creates and removes (left behind only by a kill)
WRITE_PROBE_PREFIX = ".hinterval-write-test-"


def transient(name: str) -> bool:
    """Whether a directory entry is one of this package's passing files: a lock file, the probe of
    :func:`check_writable_dir`, or the temporary file of an atomic write (``.NAME.XXXXXXXX.tmp``).
    Another process sees them in a directory it is about to claim; they are not content."""
    return name == LOCK_NAME or name.startswith(WRITE_PROBE_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))


#: a pid as a lock file holds it (ASCII digits: ``str.isdigit`` also takes "²")
_PID = re.compile(r"[0-9]{1,10}", re.ASCII)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has no NaN).

    Why: a metric that is undefined for a run (a ratio of two underflowed widths) must not stop the
    run from saving ``result.json`` at every task end; it is written as ``null`` and read as "none".
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write JSON; a NaN or infinite number is written as ``null`` (:func:`json_safe`)."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False)
    atomic_write(path, lambda f: f.write(text), mode="w")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(name: str, mode: int) -> UserError:
    return UserError(f"{name} is {_kind(mode)}, not a regular file; give a file")


def regular_file_stat(path: str | Path, what: str) -> os.stat_result:
    """``os.stat(path)``, refusing anything but a regular file (:class:`UserError`); opens nothing, so a
    FIFO among many files is found before any of them is read (see :func:`open_regular`)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(f"{what} {short(str(path))}", st.st_mode)
    return st


def _anonymous_pipe(fd: int) -> bool:
    """Whether ``fd`` is a pipe another program already writes to (``--config <(...)``, ``/dev/stdin``)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    except OSError:
        return False


def open_regular(path: str | Path, what: str, *, pipes: bool = False) -> BinaryIO:
    """Open ``path`` for reading in binary mode if it is a regular file; otherwise raise :class:`UserError`.

    Why: a named pipe (FIFO) blocks the reader until some program writes to it (forever, if none
    does), and a device (``/dev/zero``, a terminal) never ends. Every file the tools read (config
    and space files, checkpoints, run configs, data files) is opened here: without blocking, then
    checked on the open descriptor (no race with a swap of the path), then switched back to
    blocking reads. ``pipes=True`` also takes an anonymous pipe another program already writes to
    (bash's ``<(...)`` or ``/dev/stdin`` fed by ``|``), never a named FIFO on disk.
    """
    name = f"{what} {short(str(path))}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise UserError(f"{name} is a directory, not a file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO opened for writing without a reader)
            raise UserError(f"{name} is a socket, not a regular file") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode) and not (pipes and stat.S_ISFIFO(mode) and _anonymous_pipe(fd)):
            raise _not_regular(name, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def resolve_path(path: str | Path, flag: str) -> Path:
    """``path`` made absolute with every symbolic link followed (``~`` expanded); a link loop is
    bad input (:class:`UserError` naming ``flag``), not the ``RuntimeError`` of :meth:`Path.resolve`."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # Python < 3.13: RuntimeError("Symlink loop"); later: OSError(ELOOP)
        raise UserError(f"{flag} {short(str(path))}: a symbolic link on the way loops ({one_line(exc, 120)})") from None


def check_writable_dir(path: str | Path, flag: str) -> None:
    """Raise :class:`UserError` unless directory ``path`` exists and is writable or can be created.

    Why: an output path that cannot be written (a file where a directory belongs, a read-only
    filesystem) must be refused before any data is loaded or any work is done, not after.
    A temporary file is created and removed in the directory or its nearest existing parent.
    """
    p = Path(os.path.abspath(Path(path).expanduser()))
    name = f"{flag} {short(str(path))}"
    if len(str(p)) > 4000 or any(len(part.encode()) > 255 for part in p.parts):
        raise UserError(f"{name}: path or file name too long")
    probe = p
    while not probe.exists():
        if os.path.lexists(probe):
            raise UserError(f"{name}: {probe} is a broken symbolic link (or a link loop)")
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{name}: {probe} is a file, not a directory" if probe != p else f"{name} exists and is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=WRITE_PROBE_PREFIX, dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        why = "read-only filesystem" if exc.errno == errno.EROFS else (exc.strerror or str(exc)).lower()
        raise UserError(f"{name} cannot be written ({why}: {probe}); choose another directory") from None


def _record_holder(fd: int) -> None:
    """Write this process's pid into the lock file it now holds (for the refusal message of others)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


class DirectoryLock:
    """Exclusive lock on a run or sweep directory: one writing process at a time, refused at once.

    A :class:`filelock.FileLock` on ``DIR/.hinterval.lock`` that never waits; the holder's pid is
    written into the file so that a refused process can name it. The lock file stays after release
    (it is the lock's identity, which filelock needs to stay race-free) and is ignored wherever a
    directory's contents matter.
    """

    def __init__(self, directory: str | Path, what: str):
        self.directory, self.what = Path(directory), what
        self.path = self.directory / LOCK_NAME
        self._lock = filelock.FileLock(str(self.path), timeout=0, on_acquired=_record_holder)

    def acquire(self) -> "DirectoryLock":
        """Take the lock or raise :class:`UserError` naming the process that holds it."""
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise UserError(self._busy()) from None
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:  # no lock file can be made there
            raise UserError(f"{self.what} {str(self.directory)!r}: its lock file {LOCK_NAME} cannot be used "
                            f"({exc.strerror or type(exc).__name__}); remove or fix it, or choose another one") from None
        return self

    def _busy(self) -> str:
        holder = ""
        for _ in range(10):  # the holder writes its pid right after it locks: give it a moment
            try:
                holder = self.path.read_text(errors="replace")[:32].strip()
            except OSError:
                holder = ""
            if _PID.fullmatch(holder):
                break
            time.sleep(0.02)
        who = f"process {holder}" if _PID.fullmatch(holder) else "another process"
        return f"{self.what} {str(self.directory)!r} is in use by {who}; wait for it to finish, or choose another one"

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        """Unlock (idempotent)."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextlib.contextmanager
def waiting_lock(path: str | Path, doing: str) -> Iterator[bool]:
    """Hold the exclusive lock file ``path``, waiting for it if another process holds it.

    Why: concurrent trials on one node must download or decode a data set once; the others wait,
    and say on stderr that they do (a silent wait looks like a hang). Yields whether this process
    had to wait (the work is then usually done already: check again before doing it).
    """
    lock = filelock.FileLock(str(path), timeout=-1)
    waited = False
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        waited = True
        print(f"hinterval: waiting for another process {doing} (lock {path})", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield waited
    finally:
        lock.release()
