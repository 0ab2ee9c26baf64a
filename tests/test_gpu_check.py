"""benchmarks/gpu_check.py: the watch for operators computing on the CPU, and a failing step named."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import gpu_check  # noqa: E402


def test_cpu_op_watch_names_operators_on_cpu_tensors_and_ignores_numbers_and_moves() -> None:
    x = torch.ones(3)
    with gpu_check.CpuOpWatch() as watch:
        y = x * 2
        torch.tensor(1.0) + torch.tensor(2.0)  # 0-dim: Python numbers to a CUDA kernel
        y.clone()
    assert watch.found == {"mul": 1}


def test_a_failing_step_is_named_with_exit_status_1(tmp_path, capsys, monkeypatch) -> None:
    def broken(device, quick):
        raise gpu_check.CheckFailed("an operator ran on the CPU")

    monkeypatch.setattr(gpu_check, "step_item", broken)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--steps", "step", "--work", str(tmp_path), "--json", str(out)]) == 1
    assert "GPU CHECK FAILED at step step: CheckFailed: an operator ran on the CPU" in capsys.readouterr().err
    assert '"step": "step"' in out.read_text()
