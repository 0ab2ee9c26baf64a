"""User-facing errors and the exit codes every entry point maps failures to.

Exit codes of ``hinterval`` and ``python tune/search.py`` (see ``docs/reliability.md``):

* 0 -- done (also: a resumed run that had already finished);
* 1 -- the run failed: training diverged, an I/O error (disk full, file too large, a data
  download that failed), not enough memory, a Ray failure or an internal error; the last
  checkpoint is intact;
* 2 -- bad input or a refused request (flags, config, data, output path, a directory in use);
  nothing was written or overwritten;
* 130 -- interrupted with Ctrl-C; 143 -- stopped by SIGTERM (129: SIGHUP): finished tasks are
  saved and ``--resume`` continues.
"""
from __future__ import annotations

import reprlib
import signal
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USER = 0, 1, 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130

#: the longest piece of a user's value an error message echoes
MAX_ECHO = 80

_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxtuple, _repr.maxdict, _repr.maxlevel = 60, 60, 6, 6, 6, 3


def short(value: Any, limit: int = MAX_ECHO) -> str:
    """A bounded ``repr`` of a user's value for error messages.

    Why: a config value can be huge (a YAML alias bomb expands to millions of items); an error
    message must stay one short line whatever the value, and never walk the whole value.
    """
    text = _repr.repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, bounded (what a one-line error may show)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UserError(Exception):
    """Bad input (flag, config, data directory, device): the message says what and how to fix."""


class DataError(UserError):
    """Data missing or malformed: the message names the expected files and how to get them."""


class DownloadError(OSError):
    """A data download failed (no network, checksum mismatch, cut off): exit code 1, like other I/O
    errors. Nothing half-written is left where the data belongs; running again resumes or restarts."""


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf; the message names the task and iteration."""


class Stopped(BaseException):
    """A termination signal (SIGTERM, SIGHUP) arrived: unwinds like ``KeyboardInterrupt``.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it; atomic writes
    in progress remove their temporary file, so the last checkpoint stays intact.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
