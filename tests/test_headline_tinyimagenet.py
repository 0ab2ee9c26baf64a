"""The headline command, rehearsed: ``python tune/search.py --benchmark tinyimagenet`` on a multi-node cluster.

A generated TinyImageNet tree (the real layout: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``,
``val/val_annotations.txt``; 64x64 JPEGs written by PIL), a ``ray.cluster_utils.Cluster`` with a
head that runs no trials (``CPU: 0``, as in ``cluster.yaml``) and two worker nodes with one logical
GPU each, and the command line run as users run it: a separate process joining with ``--address``.
Every trial builds the preset's ResNet-18 target behind the chunked hypernetwork and trains it on
the CPU (logical GPUs, no CUDA) for one iteration per task (``--set epochs_per_task=0.05``: the
TinyImageNet preset counts its budget in epochs, so ``--iters-per-task`` does not apply).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
for p in (REPO, TESTS):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

pytest.importorskip("ray")
pytest.importorskip("optuna")

from data_fixtures import write_tinyimagenet  # noqa: E402
from tune import search  # noqa: E402

PY = sys.executable
#: one training iteration per task whatever the preset's batch size (10 classes x 3 images: ~13 train images a task)
TINY = ["--num-tasks", "2", "--set", "epochs_per_task=0.05"]
#: a hang guard only (about 30 s on a quiet 2-core CPU): Ray runs trials at nice +15, so next to busy
#: processes of normal priority they can wait many minutes for a core
HANG_GUARD_S = 1800


@pytest.fixture(scope="module")
def tin_data(tmp_path_factory) -> Path:
    """10 classes (2 tasks of 5), 3 training and 1 validation JPEG per class, one grayscale image."""
    base = tmp_path_factory.mktemp("tin")
    write_tinyimagenet(base, num_classes=10, n_train=3, n_val=1)
    return base


def test_dry_run_prints_the_cnn_space_and_per_trial_resources(tin_data, tmp_path, capsys):
    from hinterval.config import make_config
    from tune import space as S

    rc = search.main(["--benchmark", "tinyimagenet", "--data-dir", str(tin_data), "--dry-run", "--gpus-per-trial", "0.25",
                      "--cpus-per-trial", "2", "--results-dir", str(tmp_path), "--iters-per-task", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and not any(tmp_path.iterdir())
    cfg = make_config(benchmark="tinyimagenet")
    for name, dist in S.default_space(cfg).params:  # the searched keys with their resolved ranges
        assert name in out and S.describe(dist) in out, name
    assert f"target {cfg.target} ({cfg.interval_mode} intervals, box on {cfg.interval_scope} layers)" in out
    assert f"chunks of {cfg.hnet_chunk_size} weights" in out and f"batch {cfg.batch_size}" in out
    assert "training per task: 3 iterations" in out  # --iters-per-task replaces the preset's epochs_per_task
    assert "resources per trial: 2 CPU, 0.25 GPU" in out
    assert f"data_dir={tin_data.resolve()}" in out


@pytest.fixture(scope="module")
def two_gpu_nodes():
    """Head with no CPUs for trials plus two worker nodes of 1 CPU and 1 logical GPU each."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_tinyimagenet_sweep_on_two_gpu_nodes(tin_data, two_gpu_nodes, tmp_path):
    import pandas as pd
    import yaml

    cluster, workers = two_gpu_nodes
    env = {**os.environ, "PYTHONPATH": "", "RAY_DEDUP_LOGS": "0"}  # the script finds `tune` itself; every trial's log line
    cmd = [PY, str(REPO / "tune" / "search.py"), "--benchmark", "tinyimagenet", "--data-dir", str(tin_data),
           "--address", cluster.address, "--results-dir", str(tmp_path), "--name", "tin", "--num-samples", "2",
           *TINY, "--gpus-per-trial", "0.5", "--cpus-per-trial", "1", "--confirm-seeds", "0"]  # confirmation: test_tune_search
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / "tin"
    assert f"results: {out}/" in proc.stdout

    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["status"]) == {"COMPLETE"} and set(df["tasks_done"]) == {2}, df.to_string()
    assert df["is_preset"].sum() == 1 and df["avg_acc"].notna().all()
    # one trial per node (1 CPU each), both at once: the trials spread over both GPU workers, never the head
    assert set(df["node_id"]) == {w.node_id for w in workers}
    # each trial was given its 0.5 logical GPU (and fell back to the CPU, having no CUDA)
    assert log.count("trial got 0.5 GPU(s) from Ray but torch sees no CUDA device here") == 2, log[-4000:]
    assert "max concurrent: 2" in proc.stderr

    assert (out / "leaderboard.md").is_file() and len(list((out / "plots").glob("*.png"))) >= 1
    for tid, preset in zip(df["trial_id"], df["is_preset"]):
        run = tid + ("-preset" if preset else "")  # runs are named by trial id, the preset's marked
        assert list((out / "tensorboard" / run).rglob("events.out.tfevents*")), f"no TensorBoard run for trial {tid}"
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["benchmark"] == "tinyimagenet" and best["data_dir"] == str(tin_data.resolve())
    assert best["target"] == "resnet18" and best["num_tasks"] == 2

    # the last headline step: train the best config with the core command line
    run = tmp_path / "best-run"
    proc = subprocess.run([PY, "-m", "hinterval", "train", "--config", str(out / "best_config.yaml"), "--out", str(run),
                           "--device", "cpu", "--no-progress", "--no-tensorboard"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "result.json").is_file()
