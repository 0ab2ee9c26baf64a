"""A ``hinterval train`` run directory: what it holds, when it may be written, and the writer that
stamps every checkpoint with the directory's run id (so a checkpoint copied from another run is
refused on resume)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from hinterval.errors import UserError
from hinterval.files import LOCK_NAME


def entries(out: Path) -> List[Path]:
    """What a run directory holds besides its lock file."""
    return [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []


def check_out_dir(out: Path, *, overwrite: bool, resume: bool) -> bool:
    """Refuse to clobber a run: a non-empty dir needs --overwrite or --resume. Returns whether to empty it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a directory")
    non_empty = bool(entries(out))
    if resume:
        return False
    if non_empty and not overwrite:
        raise UserError(f"--out {str(out)!r} is not empty; pass --resume to continue it or --overwrite to replace it")
    return non_empty


def clear(out: Path) -> None:
    """``--overwrite``: remove the old run's files (the directory and its lock stay)."""
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
