"""benchmarks/trial_memory.py: the --gpus-per-trial arithmetic, the real-size synthetic data, and a CPU run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import trial_memory as T  # noqa: E402

GIB = 1024 ** 3


@pytest.mark.parametrize("per_trial_gib, total_gib", [(5.3, 80), (0.9, 24), (30, 40), (50, 40), (10, 100)])
def test_fraction_packs_as_many_trials_as_fit_and_no_more(per_trial_gib, total_gib):
    got = T.fits(per_trial_gib * GIB, total_gib * GIB)
    k, frac = got["trials_per_gpu"], got["gpus_per_trial"]
    usable = total_gib * (1 - T.HEADROOM)
    assert k * per_trial_gib <= usable < (k + 1) * per_trial_gib
    if k == 0:
        assert frac is None
    else:
        assert k * frac <= 1 + 1e-9 and (k + 1) * frac > 1  # Ray packs exactly k trials per GPU


def test_synthetic_data_has_the_real_sizes_and_is_restored():
    import hinterval.data.tinyimagenet as tin
    from hinterval.data.registry import load_benchmark

    original = tin.load_arrays
    with T.synthetic_arrays(quick=False):
        bench = load_benchmark("split-cifar100", num_tasks=None, seed=0, data_dir="synthetic")
    assert tin.load_arrays is original
    assert len(bench) == 10 and bench.input_shape == (3, 32, 32)
    per_task = [len(t.train) + len(t.val) for t in bench.tasks]
    assert per_task == [5000] * 10 and sum(len(t.test) for t in bench.tasks) == 10_000  # CIFAR-100's 500 + 100 per class


@pytest.mark.slow
def test_cpu_rehearsal_and_bad_input(tmp_path, capsys):
    import json

    assert T.main(["--device", "cpu", "--quick", "--benchmarks", "split-digits", "--json", str(tmp_path / "m.json")]) == 0
    [row] = json.loads((tmp_path / "m.json").read_text())["presets"]
    assert row["benchmark"] == "split-digits" and row["max_memory_allocated"] is None and row["num_tasks"] == 2
    assert T.main(["--device", "cpu", "--benchmarks", "nope"]) == 2
    assert "no preset for nope" in capsys.readouterr().err
