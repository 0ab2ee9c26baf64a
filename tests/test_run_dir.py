"""A run directory: when it may be written, and clearing it for --overwrite (hinterval/run_dir.py)."""
import pytest

from hinterval import run_dir
from hinterval.errors import UserError
from hinterval.files import LOCK_NAME


def test_a_non_empty_run_directory_needs_resume_or_overwrite(tmp_path):
    assert run_dir.check_out_dir(tmp_path / "new", overwrite=False, resume=False) is False
    (tmp_path / LOCK_NAME).write_text("")  # a lock file alone is an empty run directory
    assert run_dir.check_out_dir(tmp_path, overwrite=False, resume=False) is False
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(UserError, match="not empty; pass --resume"):
        run_dir.check_out_dir(tmp_path, overwrite=False, resume=False)
    assert run_dir.check_out_dir(tmp_path, overwrite=False, resume=True) is False
    assert run_dir.check_out_dir(tmp_path, overwrite=True, resume=False) is True
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="is not a directory"):
        run_dir.check_out_dir(tmp_path / "f", overwrite=True, resume=False)


def test_clearing_keeps_the_directory_and_its_lock(tmp_path):
    (tmp_path / LOCK_NAME).write_text("123\n")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events").write_text("x")
    (tmp_path / "checkpoint.pt").write_text("x")
    run_dir.clear(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME] and run_dir.entries(tmp_path) == []
