"""Checkpoints: atomic writes survive a failing writer, corrupt or unsafe files are refused."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from hinterval.checkpoint import atomic_write, load_checkpoint, save_checkpoint, write_json
from hinterval.errors import UserError


def _state(v: float) -> dict:
    return {"config": {"benchmark": "split-digits"}, "model": {"w": torch.full((3,), v)}, "tasks_done": 1}


def test_roundtrip(tmp_path):
    save_checkpoint(_state(1.0), tmp_path / "c.pt")
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["model"]["w"], torch.ones(3))


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(_state(1.0), path)

    def disk_full(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, disk_full)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(_state(1.0), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupted"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": {}, "payload": _Evil()}, path)
    with pytest.raises(UserError, match="corrupted or not a hinterval checkpoint"):
        load_checkpoint(path)


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "r.json", {"x": float("nan")})
    assert not (tmp_path / "r.json").exists()
