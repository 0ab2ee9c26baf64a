"""The library and the ``hinterval`` command work where Ray cannot be imported (Ray lives in ``tune/``)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Run in a fresh interpreter whose import system refuses ``ray`` (as if it were not installed).
SCRIPT = textwrap.dedent('''
    import importlib, pkgutil, sys

    class NoRay:
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, NoRay())
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the blocker did not block ray")

    import hinterval
    for mod in pkgutil.walk_packages(hinterval.__path__, "hinterval."):
        if mod.name != "hinterval.__main__":
            importlib.import_module(mod.name)

    from hinterval.cli import main
    rc = main(sys.argv[1:])
    assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules), "something imported ray"
    raise SystemExit(rc)
''')


@pytest.mark.slow
def test_import_and_train_without_ray(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--benchmark", "split-digits", "--num-tasks", "1", "--iters-per-task", "5", "--val-every", "5",
            "--hnet-hidden", "8", "--target-hidden", "8", "--embedding-dim", "2", "--device", "cpu", "--num-threads", "1",
            "--no-progress", "--no-tensorboard", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["complete"] is True and result["tasks_done"] == 1
