"""Reading only regular files, and JSON without NaN (hinterval/files.py)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hinterval.errors import UserError
from hinterval.files import json_safe, open_regular, regular_file_stat, write_json


def test_nan_and_infinities_are_written_as_null(tmp_path):
    write_json(tmp_path / "r.json", {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": 0.5})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.0, None, {"c": None}], "d": 0.5}
    assert json_safe((1, "x", None)) == [1, "x", None]


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "p")
    with pytest.raises(UserError, match="named pipe"):
        open_regular(tmp_path / "p", "config file", pipes=True)  # a named FIFO even where pipes are taken
    with pytest.raises(UserError, match="named pipe"):
        regular_file_stat(tmp_path / "p", "image")


def test_devices_sockets_and_directories_are_refused(tmp_path):
    import socket

    with pytest.raises(UserError, match="character device"):
        open_regular("/dev/zero", "config file")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "s"))
    with pytest.raises(UserError, match="socket"):
        open_regular(tmp_path / "s", "config file")
    with pytest.raises(UserError, match="is a directory"):
        open_regular(tmp_path, "config file")


def test_a_regular_file_reads_and_blocks_normally(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10)
    with open_regular(tmp_path / "f", "file") as f:
        assert os.get_blocking(f.fileno()) and f.read() == b"x" * 10


def test_a_pipe_another_program_writes_is_read_where_pipes_are_taken():
    """bash's `--config <(...)`: /dev/fd/N of a pipe that already has a writer."""
    code = ("import os, sys; from hinterval.files import open_regular\n"
            "print(open_regular('/dev/stdin', 'config file', pipes=True).read().decode())\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # this checkout's hinterval
    out = subprocess.run([sys.executable, "-c", code], input="gamma: 2\n", capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "gamma: 2", out.stderr
    code_no = code.replace("pipes=True", "pipes=False")
    out = subprocess.run([sys.executable, "-c", code_no], input="x", capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0 and "not a regular file" in out.stderr
