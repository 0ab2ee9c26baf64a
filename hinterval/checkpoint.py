"""Checkpoints that are written whole and loaded safely; run directories as one unit.

Checkpoints are written with :func:`hinterval.files.atomic_write`, so a crash or a full disk never
leaves a half-written file where a good one was. Checkpoints are
loaded with ``torch.load(weights_only=True)``: plain tensors and containers only, no code runs;
every zip member's CRC-32 is checked first, so a bit-flipped file is refused instead of resumed.

A run directory is one unit: ``config.json`` holds a run id made when the directory was created,
every checkpoint carries the same id, and a checkpoint whose id or config does not match the
directory's ``config.json`` (one copied in from another run) is refused.
"""
from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from hinterval.config import RESOURCE_FIELDS, make_config
from hinterval.errors import UserError, one_line, short
from hinterval.files import atomic_write, open_regular
from hinterval.run_layout import CHECKPOINT_NAME, RESULT_NAME, RUN_CONFIG_NAME  # noqa: F401 - imported from here too
from hinterval.strict_load import load_json

RUN_ID_KEY = "run_id"


class _WriteGuard:
    """File wrapper that remembers the ``OSError`` of a failed write.

    Why: ``torch.save`` turns a failed write (disk full, file too large) into ``RuntimeError:
    unexpected pos ...``; the remembered error lets :func:`save_checkpoint` raise the real one.
    """

    def __init__(self, f: Any):
        self._f = f
        self.error: Optional[OSError] = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def save_checkpoint(state: Dict[str, Any], path: str | Path) -> None:
    """Atomically save a trainer state dict; a failed write raises its ``OSError`` (e.g. ``ENOSPC``)."""

    def write(f: Any) -> None:
        guard = _WriteGuard(f)
        try:
            torch.save(state, guard)
        except RuntimeError:
            if guard.error is not None:
                raise guard.error from None
            raise

    atomic_write(path, write)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load a trainer state saved by :func:`save_checkpoint`; corrupt files raise :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {str(path)!r}: not a run directory of `hinterval train`, or no task finished "
                        "there yet (a new run starts without --resume)")
    try:
        _verify_crc(path)
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, flipped bits, bad pickle opcode, disallowed global...
        first = (str(exc).splitlines() or ["file ends early" if isinstance(exc, EOFError) else ""])[0][:200]
        raise UserError(f"checkpoint {str(path)!r} is corrupted or not a hinterval checkpoint ({type(exc).__name__}: "
                        f"{first}); delete it or restore a backup") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise UserError(f"checkpoint {str(path)!r} is not a hinterval checkpoint (missing config/model)")
    return state


def _verify_crc(path: Path) -> None:
    """Check every member's CRC-32: ``torch.load`` does not, so flipped bits would load as wrong weights."""
    if not zipfile.is_zipfile(path):  # checkpoints are zip archives (torch.save): say what the file is instead
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            raise ValueError("file ends early: the archive is cut short (its index is missing)")
        if head:
            raise ValueError("not a zip archive, so not a checkpoint written by hinterval")
        return  # empty: torch.load says the file ends early
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
    if bad is not None:
        raise ValueError(f"CRC-32 mismatch in {bad}")


# --- run directories: one unit --------------------------------------------------------------------
def new_run_id() -> str:
    """A fresh run id, written to ``config.json`` when a run directory is created."""
    return uuid.uuid4().hex


def read_run_config(run_dir: str | Path) -> Optional[Dict[str, Any]]:
    """A run directory's ``config.json`` (``None`` if it has none); a damaged one is a :class:`UserError`."""
    path = Path(run_dir) / RUN_CONFIG_NAME
    if os.path.lexists(path) and not path.is_file():  # a directory or a broken link is not "no config yet"
        raise UserError(f"{str(path)!r} is not a file; put back this run's config.json, or start a new run "
                        "(another --out, or --overwrite)")
    if not path.is_file():
        return None
    try:
        with open_regular(path, "run config") as f:
            data = load_json(f.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise UserError(f"{str(path)!r} is damaged ({one_line(exc, 120)}); restore it, or start a new run") from None
    if not isinstance(data, dict):
        raise UserError(f"{str(path)!r} is damaged (not a mapping); restore it, or start a new run")
    return data


def config_differences(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """Config keys (besides where/how fast it runs) whose values differ between two config dicts."""
    strip = lambda d: {k: v for k, v in d.items() if k != RUN_ID_KEY}  # noqa: E731
    ca, cb = make_config(strip(a)).to_dict(), make_config(strip(b)).to_dict()
    return {k: (ca[k], cb[k]) for k in ca if k not in RESOURCE_FIELDS and ca[k] != cb[k]}


def load_run(run_dir: str | Path) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """``(checkpoint state or None, config.json or None)`` of a run directory, checked to belong together.

    Why: a checkpoint copied in from another run must not be resumed there (its config would win
    and replace the directory's ``config.json`` and ``result.json``). A checkpoint is accepted only
    when the directory's ``config.json`` exists, has the same run id (directories made before run
    ids: neither has one) and the same config apart from resource settings.
    """
    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    ck = run_dir / CHECKPOINT_NAME
    if os.path.lexists(ck) and not ck.is_file():  # a directory, a device, a broken link: not "no checkpoint yet"
        what = "a broken or looping link" if ck.is_symlink() and not ck.exists() else (
            "a directory" if ck.is_dir() else "not a regular file")
        raise UserError(f"checkpoint {str(ck)!r} is {what}; put back this run's checkpoint, or start a new run "
                        "(another --out, or --overwrite)")
    if not ck.exists():
        return None, run_config
    state = load_checkpoint(ck)
    where = f"{str(ck)!r} does not belong to the run in {str(run_dir)!r}"
    fix = ("was it copied from another run? put back this run's checkpoint, or start a new run "
           "(another --out, or --overwrite)")
    if run_config is None:
        raise UserError(f"{where}: the directory has no {RUN_CONFIG_NAME}; {fix}")
    if not isinstance(state.get("config"), dict):
        raise UserError(f"checkpoint {str(ck)!r} is not a hinterval checkpoint (its config is not a mapping)")
    diff = config_differences(state["config"], run_config)
    if diff:
        shown = ", ".join(f"{k} {short(a, 30)} vs {short(b, 30)}" for k, (a, b) in list(diff.items())[:4])
        raise UserError(f"{where}: its config differs from {RUN_CONFIG_NAME} ({shown}); {fix}")
    if state.get(RUN_ID_KEY) != run_config.get(RUN_ID_KEY):
        raise UserError(f"{where}: run id {short(state.get(RUN_ID_KEY), 40)} != {short(run_config.get(RUN_ID_KEY), 40)} "
                        f"in {RUN_CONFIG_NAME}; {fix}")
    return state, run_config
