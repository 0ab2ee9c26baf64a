"""Atomic, safe checkpoint and result files.

Writes go to a temporary file in the same directory followed by ``os.replace`` (atomic on POSIX),
so a crash or a full disk never leaves a half-written file where a good one was. Checkpoints are
loaded with ``torch.load(weights_only=True)``: plain tensors and containers only, no code runs;
every zip member's CRC-32 is checked first, so a bit-flipped file is refused instead of resumed.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict

import torch

from hinterval.errors import UserError

CHECKPOINT_NAME = "checkpoint.pt"
RESULT_NAME = "result.json"


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


def save_checkpoint(state: Dict[str, Any], path: str | Path) -> None:
    """Atomically save a trainer state dict."""
    atomic_write(path, lambda f: torch.save(state, f))


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
    if not zipfile.is_zipfile(path):
        return  # not a zip: torch.load decides (and refuses anything but its legacy format)
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
    if bad is not None:
        raise ValueError(f"CRC-32 mismatch in {bad}")


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write JSON (NaN-free: ``None`` stands for undefined metrics)."""
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False)), mode="w")
