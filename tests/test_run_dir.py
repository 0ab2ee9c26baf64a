"""A run directory: when it may be written, and clearing it for --overwrite (hinterval/run_dir.py)."""
import pytest

from hinterval import run_dir
from hinterval.errors import UserError
from hinterval.files import LOCK_NAME


def test_a_non_empty_run_directory_needs_resume_or_overwrite(tmp_path):
    assert run_dir.check_out_dir(tmp_path / "new", overwrite=False, resume=False) is False
    (tmp_path / LOCK_NAME).write_text("")  # a lock file alone is an empty run directory
    assert run_dir.check_out_dir(tmp_path, overwrite=False, resume=False) is False
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(UserError, match="not empty: it holds a run; pass --resume"):
        run_dir.check_out_dir(tmp_path, overwrite=False, resume=False)
    assert run_dir.check_out_dir(tmp_path, overwrite=False, resume=True) is False
    assert run_dir.check_out_dir(tmp_path, overwrite=True, resume=False) is True
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="is not a directory"):
        run_dir.check_out_dir(tmp_path / "f", overwrite=True, resume=False)


def test_a_directory_that_is_not_a_run_is_never_emptied(tmp_path):
    """--overwrite deletes only what a run writes: a user's file anywhere, or no run at all, is refused."""
    (tmp_path / "result.json").write_text("{}")  # no config.json or checkpoint: not a run
    for overwrite in (False, True):
        with pytest.raises(UserError, match="not a run directory of hinterval .*'result.json'.*never deletes"):
            run_dir.check_out_dir(tmp_path, overwrite=overwrite, resume=False)
    (tmp_path / "checkpoint.pt").write_text("x")
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_text("x")  # an interrupted write of the run's own
    assert run_dir.is_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert run_dir.strangers(tmp_path) == ["notes.txt"] and not run_dir.is_run(tmp_path)
    with pytest.raises(UserError, match="'notes.txt'"):
        run_dir.check_out_dir(tmp_path, overwrite=True, resume=False)
    with pytest.raises(UserError, match="'notes.txt'"):
        run_dir.clear(tmp_path)
    assert sorted(p.name for p in run_dir.entries(tmp_path)) == [".checkpoint.pt.abc123.tmp", "checkpoint.pt",
                                                                 "notes.txt", "result.json"]


def test_clearing_keeps_the_directory_and_its_lock(tmp_path):
    (tmp_path / LOCK_NAME).write_text("123\n")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events").write_text("x")
    (tmp_path / "checkpoint.pt").write_text("x")
    run_dir.clear(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME] and run_dir.entries(tmp_path) == []
