"""Checkpoints: atomic writes survive a failing writer, corrupt or unsafe files are refused."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from hinterval.checkpoint import load_checkpoint, save_checkpoint

from hinterval.files import DirectoryLock, atomic_write, write_json
from hinterval.errors import UserError



def lock_is_free(directory) -> bool:
    """Whether no process holds the directory's lock (the lock file itself may stay)."""
    try:
        DirectoryLock(directory, "test").acquire().release()
    except UserError:
        return False
    return True

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
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": {}, "payload": _Evil(marker)}, path)
    with pytest.raises(UserError, match="corrupted or not a hinterval checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Evil(marker)))  # what unrestricted unpickling does: the payload runs
    assert marker.exists()


def test_json_writes_nan_as_null(tmp_path):
    """An undefined metric never stops a run from saving its result: JSON has no NaN, so it is null."""
    write_json(tmp_path / "r.json", {"x": float("nan"), "y": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": [None, 1.0]}


# --- a failed write is reported as the OSError it is -------------------------------------------------
def test_file_size_limit_while_saving_raises_oserror_and_keeps_the_old_checkpoint(tmp_path):
    """torch.save turns a failed write into ``RuntimeError: unexpected pos``; save_checkpoint raises the OSError."""
    import errno
    import resource
    import signal

    path = tmp_path / "c.pt"
    save_checkpoint(_state(1.0), path)
    big = {"config": {}, "model": {"w": torch.zeros(200_000)}}
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(OSError) as info:
            save_checkpoint(big, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert info.value.errno == errno.EFBIG
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# --- run directories are one unit ------------------------------------------------------------------
def _write_run(run, cfg_dict, state_cfg, run_id="r1", ck_run_id="r1"):
    save_checkpoint({**_state(1.0), "config": state_cfg, **({"run_id": ck_run_id} if ck_run_id else {})},
                    run / "checkpoint.pt")
    write_json(run / "config.json", {**cfg_dict, **({"run_id": run_id} if run_id else {})})


def test_load_run_accepts_its_own_checkpoint_and_resource_changes(tmp_path):
    from hinterval.checkpoint import load_run
    from hinterval.config import make_config

    cfg = make_config().to_dict()
    _write_run(tmp_path, {**cfg, "device": "cpu", "num_threads": 2}, cfg)
    state, run_config = load_run(tmp_path)
    assert state["run_id"] == run_config["run_id"] == "r1"
    _write_run(tmp_path, cfg, cfg, run_id=None, ck_run_id=None)  # a directory from before run ids
    assert load_run(tmp_path)[0] is not None


@pytest.mark.parametrize("change,needle", [
    (dict(ck_run_id="other"), "run id"), (dict(ck_run_id=None), "run id"), (dict(run_id=None), "run id"),
    (dict(gamma=0.5), "gamma 0.5 vs 1.0")])
def test_load_run_refuses_a_foreign_checkpoint(tmp_path, change, needle):
    from hinterval.checkpoint import load_run
    from hinterval.config import make_config

    cfg = make_config().to_dict()
    state_cfg = {**cfg, "gamma": change.pop("gamma", cfg["gamma"])}
    _write_run(tmp_path, cfg, state_cfg, **change)
    with pytest.raises(UserError, match="does not belong") as info:
        load_run(tmp_path)
    assert needle in str(info.value)


@pytest.mark.slow
def test_a_run_without_a_checkpoint_resumes_from_task_1(tmp_path, capsys):
    """Stopped before task 1 finished: ``--resume`` starts again from task 1 with the directory's config and id."""
    import json

    from hinterval.cli import main

    out = tmp_path / "run"
    tiny = ["--num-tasks", "1", "--iters-per-task", "2", "--hnet-hidden", "8", "--target-hidden", "8", "--embedding-dim", "2",
            "--no-progress", "--no-tensorboard", "--device", "cpu"]
    assert main(["train", "--out", str(out), "--gamma", "0.5", *tiny]) == 0
    run_id = json.loads((out / "config.json").read_text())["run_id"]
    (out / "checkpoint.pt").unlink()
    (out / "result.json").unlink()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--no-tensorboard"]) == 0
    assert "from task 1/1: no task had finished" in capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["run_id"] == run_id and saved["gamma"] == 0.5
    assert load_checkpoint(out / "checkpoint.pt")["run_id"] == run_id
    assert lock_is_free(out)


@pytest.mark.slow
def test_sigterm_stops_a_run_with_a_message_and_resume_finishes_it(tmp_path):
    """SIGTERM: exit 143 and one line saying how to continue; the checkpoint left behind resumes."""
    import signal
    import subprocess
    import sys
    from run_signals import signal_after_first_task

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hinterval", "train", "--out", str(out), "--num-tasks", "2", "--iters-per-task", "300",
           "--hnet-hidden", "16", "--target-hidden", "16", "--embedding-dim", "2", "--no-progress", "--no-tensorboard",
           "--device", "cpu", "--num-threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, err, lines = signal_after_first_task(proc, out, signal.SIGTERM, wait_s=120, timeout_s=60)
    assert code == 143 and len(lines) == 1 and "Traceback" not in err, err
    assert "stopped by SIGTERM during task" in lines[0] and f"hinterval train --out {out} --resume" in lines[0]
    assert lock_is_free(out) and not list(out.glob(".*.tmp"))
    done = subprocess.run([sys.executable, "-m", "hinterval", "train", "--out", str(out), "--resume", "--no-progress",
                           "--no-tensorboard"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out / "checkpoint.pt")["tasks_done"] == 2


# --- locks and output paths ------------------------------------------------------------------------
def test_directory_lock_is_exclusive_and_names_its_holder(tmp_path):
    from hinterval.files import LOCK_NAME, DirectoryLock

    with DirectoryLock(tmp_path, "run directory"):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
            DirectoryLock(tmp_path, "run directory").acquire()
    assert lock_is_free(tmp_path)
    (tmp_path / LOCK_NAME).write_text("12345\n")  # left by a killed process: no lock is held on it
    with DirectoryLock(tmp_path, "run directory"):
        pass


def test_check_writable_dir(tmp_path):
    from hinterval.files import check_writable_dir

    check_writable_dir(tmp_path / "new" / "deeper", "--out")  # creatable
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []  # the probe leaves nothing
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_writable_dir(tmp_path / "f" / "run", "--out")
    with pytest.raises(UserError, match="exists and is not a directory"):
        check_writable_dir(tmp_path / "f", "--out")
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(UserError, match="broken symbolic link"):
        check_writable_dir(tmp_path / "link" / "run", "--out")
