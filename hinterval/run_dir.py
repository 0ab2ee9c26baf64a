"""A ``hinterval train`` run directory: what it holds, when it may be written, and the writer that
stamps every checkpoint with the directory's run id (so a checkpoint copied from another run is
refused on resume)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from hinterval.errors import UserError, short
from hinterval.files import LOCK_NAME, transient
from hinterval.run_layout import CHECKPOINT_NAME, RUN_CONFIG_NAME, RUN_ENTRIES


def entries(out: Path) -> List[Path]:
    """What a run directory holds besides its lock file."""
    return [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []


def _ours(name: str) -> bool:
    """A name ``hinterval train`` writes: a run file, or a passing file (a write in progress or interrupted)."""
    return name in RUN_ENTRIES or transient(name)


def strangers(out: Path) -> List[str]:
    """The names in ``out`` that no run writes (a user's files), sorted."""
    return sorted(p.name for p in entries(out) if not _ours(p.name))


def is_run(out: Path) -> bool:
    """Whether ``out`` is a run directory of ``hinterval train``: it holds a run's config or checkpoint
    and nothing a run does not write."""
    return any(os.path.lexists(out / n) for n in (RUN_CONFIG_NAME, CHECKPOINT_NAME)) and not strangers(out)


def not_a_run(out: Path, flag: str = "--out") -> str:
    """The refusal for a non-empty directory that is no run: ``--overwrite`` deletes only a run."""
    names = strangers(out) or [p.name for p in entries(out)]
    shown = ", ".join(short(n, 40) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{flag} {str(out)!r} is not empty and is not a run directory of hinterval (it holds {shown}); "
            "choose another --out (--overwrite replaces only a run directory, it never deletes other files)")


def check_out_dir(out: Path, *, overwrite: bool, resume: bool) -> bool:
    """Refuse to clobber a run: a non-empty dir needs --overwrite or --resume, and one that is not a
    run (a user's files) is never emptied. Returns whether to empty it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a directory")
    if resume or all(transient(p.name) for p in entries(out)):  # another process's write in progress is not content
        return False
    if not is_run(out):
        raise UserError(not_a_run(out))
    if not overwrite:
        raise UserError(f"--out {str(out)!r} is not empty: it holds a run; pass --resume to continue it or --overwrite "
                        "to replace it")
    return True


def clear(out: Path) -> None:
    """``--overwrite``: remove the old run's files (the directory and its lock stay). Refuses a directory
    that is not a run (checked again here: this deletes)."""
    if not is_run(out):
        raise UserError(not_a_run(out))
    for p in entries(out):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


class BoundRunDirWriter:
    """:class:`~hinterval.callbacks.RunDirWriter` whose checkpoints carry the run directory's id."""

    def __init__(self, out: Path, run_id: Optional[str]):
        from hinterval.callbacks import RunDirWriter

        self.writer, self.run_id = RunDirWriter(out), run_id

    def on_fit_start(self, trainer: Any) -> None:
        self.writer.on_fit_start(trainer)

    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        from hinterval.checkpoint import RUN_ID_KEY

        self.writer.on_task_end(task_id, metrics, {**state, **({RUN_ID_KEY: self.run_id} if self.run_id else {})})

    def on_train_end(self, result: Dict[str, Any]) -> None:
        self.writer.on_train_end(result)
