"""tune/search.py: search spaces, the Optuna searcher, bad input, and real sweeps.

The real sweeps are small: a ``--smoke-test`` run of the command line end to end (its own local
Ray), and a multi-node sweep plus a resume on one shared ``ray.cluster_utils.Cluster`` (a head and
two worker nodes declaring 2 logical GPUs each) through the module's Python API.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("ray")
pytest.importorskip("optuna")

from hinterval.config import make_config  # noqa: E402
from hinterval.errors import UserError  # noqa: E402
from tune import search  # noqa: E402
from tune import space as S  # noqa: E402

PY = sys.executable


# --- search spaces ------------------------------------------------------------------------------------
def test_space_yaml_types_and_fixed_values():
    sp = S.parse_space({
        "gamma": {"type": "loguniform", "low": 0.05, "high": 5},
        "beta": {"type": "loguniform", "low": "1e-3", "high": 1},  # YAML 1.1 reads 1e-3 as a string
        "embedding_dim": {"type": "choice", "values": [16, 24, 48]},
        "hnet_hidden": {"type": "choice", "values": [[50, 50], "100,100"]},
        "batch_size": {"type": "int", "low": 32, "high": 128, "log": True},
        "method": ["hyperinterval", "hnet"],
        "iters_per_task": 300,
    })
    by = {p.name: p for p in sp.params}
    assert by["beta"].low == pytest.approx(1e-3) and by["gamma"].log
    assert by["hnet_hidden"].values == ("50,50", "100,100")
    assert by["method"].kind == "choice" and by["batch_size"].kind == "int"
    assert dict(sp.fixed) == {"iters_per_task": 300}
    S.validate_space(sp, {"benchmark": "split-digits"})


def test_example_space_file_is_valid_and_contains_the_preset():
    from hinterval.config import load_config_file

    sp = S.parse_space(load_config_file(REPO / "tune" / "example_space.yaml"))
    S.validate_space(sp, {"benchmark": "split-digits"})
    assert {"gamma", "beta", "embedding_dim", "hnet_hidden"} <= set(sp.names)
    point, outside = S.preset_point(sp, make_config(benchmark="split-digits"))
    assert outside == [] and point["hnet_hidden"] == "100,100"


@pytest.mark.parametrize("spec, msg", [
    ({"gamma": {"type": "loguniform", "low": 5, "high": 0.05}}, "must be smaller than high"),
    ({"gamma": {"type": "loguniform", "low": 0, "high": 1}}, "needs low > 0"),
    ({"gamma": {"type": "normal", "low": 0, "high": 1}}, "type must be one of"),
    ({"gamma": {"type": "uniform", "low": 0.1}}, "needs both"),
    ({"gama": {"type": "uniform", "low": 0.1, "high": 1}}, "unknown config key 'gama'"),
    ({"device": ["cpu", "cuda"]}, "cannot be searched"),
    ({"embedding_dim": {"type": "loguniform", "low": 8, "high": 64}}, "integer setting"),
    ({"embedding_dim": {"type": "choice", "values": []}}, "non-empty list"),
    ({"method": {"type": "uniform", "low": 0, "high": 1}}, "use type: choice"),
])
def test_invalid_space_is_a_user_error(spec, msg):
    with pytest.raises(UserError, match=msg):
        S.parse_space(spec)


def test_values_are_checked_against_the_config_before_any_trial():
    sp = S.parse_space({"method": ["hyperinterval", "nonsense"]})
    with pytest.raises(UserError, match="method = 'nonsense'"):
        S.validate_space(sp, {"benchmark": "split-digits"})


def test_flags_give_ranges_choices_or_fixed_values():
    p, v = S.parse_flag("gamma", "0.1:5")
    assert v is None and p.kind == "loguniform" and (p.low, p.high) == (0.1, 5.0)
    p, v = S.parse_flag("embedding_dim", "16,24,48")
    assert p.values == (16, 24, 48)
    p, v = S.parse_flag("hnet_hidden", "50,50;100,100")
    assert p.values == ("50,50", "100,100")
    assert S.parse_flag("beta", "0.05") == (None, 0.05)
    merged = S.merge(S.default_space(make_config()), [S.parse_flag("gamma", "0.1:5")[0]], {"beta": 0.05})
    assert "beta" not in merged.names and dict(merged.fixed) == {"beta": 0.05}


def test_default_space_contains_the_preset():
    cfg = make_config(benchmark="split-digits")
    point, outside = S.preset_point(S.default_space(cfg), cfg)
    assert outside == [] and point == {"gamma": cfg.gamma, "beta": cfg.beta, "embedding_dim": cfg.embedding_dim, "lr": cfg.lr}
    point, outside = S.preset_point(S.parse_space({"gamma": {"type": "uniform", "low": 2, "high": 3}}), cfg)
    assert point is None and "gamma" in outside[0]


def test_define_by_run_only_suggests():
    calls = []

    class OnlySuggest:  # any other attribute access would raise AttributeError
        def suggest_float(self, name, low, high, log=False):
            calls.append(("float", name, log))
            return low

        def suggest_int(self, name, low, high, log=False):
            calls.append(("int", name, log))
            return low

        def suggest_categorical(self, name, choices):
            calls.append(("cat", name, tuple(choices)))
            return choices[0]

    sp = S.parse_space({"gamma": {"type": "loguniform", "low": 0.1, "high": 1}, "embedding_dim": [16, 24],
                        "batch_size": {"type": "int", "low": 32, "high": 64}})
    assert S.suggest_config(OnlySuggest(), sp) is None
    assert calls == [("float", "gamma", True), ("cat", "embedding_dim", (16, 24)), ("int", "batch_size", False)]


# --- the searcher: ASHA-stopped trials are PRUNED, never COMPLETE ------------------------------------------
def test_searcher_evaluates_the_preset_first_and_prunes_partial_trials():
    import optuna

    from tune.searcher import make_searcher

    space = S.default_space(make_config()).to_dict()
    preset = {"gamma": 1.0, "beta": 0.01, "embedding_dim": 24, "lr": 0.001}
    limiter = make_searcher(space=space, objectives=["avg_acc"], seed=0, preset_point=preset, max_concurrent=2)
    first = limiter.suggest("t1")
    second = limiter.suggest("t2")
    assert first == preset and second != preset
    assert limiter.suggest("t3") is None  # ConcurrencyLimiter: 2 at a time
    limiter.on_trial_result("t1", {"tasks_done": 1, "avg_acc": 0.99, "final_avg_acc": None, "training_iteration": 1})
    # t1 stopped by ASHA after one task: Tune completes it with its last (partial) result
    limiter.on_trial_complete("t1", {"tasks_done": 1, "avg_acc": 0.99, "final_avg_acc": None})
    limiter.on_trial_complete("t2", {"tasks_done": 5, "avg_acc": 0.8, "final_avg_acc": 0.8})
    study = limiter.searcher._ot_study
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    assert study.best_value == pytest.approx(0.8)


def test_multi_objective_searcher_keeps_a_pareto_front():
    from tune.searcher import make_searcher

    space = S.default_space(make_config()).to_dict()
    limiter = make_searcher(space=space, objectives=["avg_acc", "bwt"], seed=1, preset_point=None, max_concurrent=4)
    for i, (a, b) in enumerate([(0.9, -0.2), (0.8, 0.0), (0.7, -0.1)]):
        limiter.suggest(f"t{i}")
        limiter.on_trial_complete(f"t{i}", {"final_avg_acc": a, "final_bwt": b})
    front = sorted(tuple(t.values) for t in limiter.searcher._ot_study.best_trials)
    assert front == [(0.8, 0.0), (0.9, -0.2)]


# --- resources ------------------------------------------------------------------------------------------
def test_resource_checks_refuse_what_would_stay_pending():
    cpu_only = [{"CPU": 2.0}]
    assert "no GPUs" in search.check_resources(cpu_only, cpus=1, gpus=0.5)
    assert "no node can hold" in search.check_resources(cpu_only, cpus=4, gpus=0)
    assert "no node can hold" in search.check_resources([{"CPU": 4, "GPU": 1}], cpus=1, gpus=2)
    assert search.check_resources([{"CPU": 0}, {"CPU": 4, "GPU": 2}], cpus=1, gpus=0.5) is None
    assert search.cluster_slots([{"CPU": 0}, {"CPU": 4, "GPU": 2}, {"CPU": 4, "GPU": 2}], cpus=1, gpus=0.5) == 8
    assert search.cluster_slots(cpu_only, cpus=1, gpus=0) == 2


def test_local_start_never_joins_another_ray_on_this_machine(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    assert search.connect(None) is True
    assert seen["address"] == "local" and str(REPO / "tune") in seen["runtime_env"]["py_modules"]
    assert search.connect("10.0.0.1:6379") is True and seen["address"] == "10.0.0.1:6379"


# --- command line: bad input is one line and exit 2, nothing touched -----------------------------------------
def _main(capsys, *argv):
    rc = search.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


@pytest.mark.parametrize("argv, msg", [
    (["--benchmark", "nope"], "unknown benchmark 'nope'"),
    (["--gamma", "5:0.05"], "must be smaller than high"),
    (["--objective", "accuracy"], "--objective"),
    (["--num-samples", "0"], "--num-samples"),
    (["--name", "../x"], "--name"),
    (["--set", "colour=red"], "unknown config key"),
    (["--resume", "--name", "never-ran"], "no sweep to resume"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, argv, msg):
    rc, err = _main(capsys, *argv, "--results-dir", str(tmp_path))
    assert rc == 2 and len(err) == 1 and msg in err[0] and err[0].startswith("search.py: error:")
    assert not any(tmp_path.iterdir())


def test_gpus_requested_on_a_machine_without_cuda_fail_fast(tmp_path, capsys):
    import torch

    if torch.cuda.device_count():
        pytest.skip("this machine has a CUDA GPU")
    rc, err = _main(capsys, "--gpus-per-trial", "0.5", "--results-dir", str(tmp_path))
    assert rc == 2 and "no CUDA GPU" in err[-1] and "--gpus-per-trial 0" in err[-1]
    assert not any(tmp_path.iterdir())


def test_bad_space_file_is_rejected(tmp_path, capsys):
    f = tmp_path / "space.yaml"
    f.write_text("gamma: {type: loguniform, low: 5, high: 0.05}\n")
    rc, err = _main(capsys, "--space", str(f), "--results-dir", str(tmp_path / "r"))
    assert rc == 2 and "gamma" in err[0] and not (tmp_path / "r").exists()


def test_existing_sweep_is_never_overwritten_without_a_flag(tmp_path, capsys):
    old = tmp_path / "split-digits" / "trials.csv"
    old.parent.mkdir()
    old.write_text("precious\n")
    rc, err = _main(capsys, "--results-dir", str(tmp_path))
    assert rc == 2 and "--resume" in err[0] and "--overwrite" in err[0]
    assert old.read_text() == "precious\n"


def test_dry_run_prints_space_and_resources_and_runs_nothing(tmp_path, capsys):
    cfg = make_config(benchmark="split-digits")
    dims = f"{cfg.embedding_dim // 2},{cfg.embedding_dim},{cfg.embedding_dim * 2}"
    rc = search.main(["--dry-run", "--results-dir", str(tmp_path), "--gpus-per-trial", "0.5", "--embedding-dim", dims])
    out = capsys.readouterr().out
    assert rc == 0 and not any(tmp_path.iterdir())
    gamma = S.default_space(cfg).params[0]
    for text in ("gamma", gamma.describe(), "embedding_dim", f"choice [{dims.replace(',', ', ')}]", "0.5 GPU",
                 f"first trial (preset): gamma={cfg.gamma}, beta={cfg.beta}, embedding_dim={cfg.embedding_dim}"):
        assert text in out, text
    # a space that excludes the preset says so instead of failing later inside Optuna
    assert search.main(["--dry-run", "--results-dir", str(tmp_path), "--embedding-dim", f"{cfg.embedding_dim + 1}"
                        f",{cfg.embedding_dim + 2}"]) == 0
    assert "preset not evaluated first" in capsys.readouterr().out


# --- end to end: the command line's --smoke-test ----------------------------------------------------------
@pytest.mark.slow
def test_smoke_test_end_to_end(tmp_path):
    from test_tune_report import hparams_sessions

    env = {**os.environ, "PYTHONPATH": ""}  # the script must find `tune` by itself
    cmd = [PY, str(REPO / "tune" / "search.py"), "--smoke-test", "--results-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "split-digits-smoke"
    assert f"results: {out}/" in proc.stdout
    import pandas as pd

    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["status"]) == {"COMPLETE"} and set(df["tasks_done"]) == {2}
    assert df["is_preset"].sum() == 1 and df["avg_acc"].notna().all() and df["node_id"].notna().all()
    assert (out / "best_config.yaml").is_file() and (out / "leaderboard.md").is_file()
    assert len(list((out / "plots").glob("*.png"))) >= 5
    for tid in df["trial_id"]:
        assert hparams_sessions(out / "tensorboard" / tid), f"no HParams entry for trial {tid}"
    assert (out / "_ray" / "split-digits-smoke").is_dir()  # Tune's own dirs under the results dir
    assert not list((out / "_ray").rglob("events.out.tfevents*")), "Tune's TBX logger should be off"


# --- multi-node on one machine: shared cluster fixture -------------------------------------------------------
@pytest.fixture(scope="module")
def fake_cluster():
    """A head (no CPUs for trials) and 2 worker nodes with 4 CPUs and 2 logical GPUs each."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=4, num_gpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.slow
def test_multi_node_sweep_with_fractional_gpus_asha_pareto_and_resume(fake_cluster, tmp_path):
    import ray

    cluster, workers = fake_cluster
    argv = ["--address", cluster.address, "--results-dir", str(tmp_path), "--name", "mn", "--num-samples", "6",
            "--num-tasks", "2", "--iters-per-task", "5", "--gpus-per-trial", "0.5", "--cpus-per-trial", "1",
            "--max-concurrent", "8", "--scheduler", "asha", "--objective", "avg_acc,bwt", "--no-tensorboard"]
    summary = search.run_sweep(search.parse_args(argv))
    assert not ray.is_initialized()  # the sweep disconnected from the cluster it joined
    recs = summary["records"]
    assert len(recs) == 6 and all(r["status"] in ("COMPLETE", "STOPPED") for r in recs)
    worker_ids = {w.node_id for w in workers}
    used = {n for r in recs for n in r["node_ids"]}
    assert used <= worker_ids and len(used) > 1, "trials should spread over both GPU nodes"
    for node in used:  # 2 logical GPUs / 0.5 per trial: never more than 4 trials on a node at once
        spans = [(h["trial_started_at"], r["history"][-1]["reported_at"]) for r in recs if r["node_id"] == node
                 for h in r["history"][:1]]
        assert _max_overlap(spans) <= 4
    for r in recs:
        assert r["config"]["device"] == "cpu"  # logical GPUs, no CUDA: the trainable fell back to CPU
        if r["status"] == "STOPPED":
            assert r["tasks_done"] < 2
    best = summary["best"]
    assert best is not None and best["status"] == "COMPLETE" and best["tasks_done"] == 2
    # what Optuna was told: finished trials COMPLETE with their final accuracy, ASHA-stopped ones PRUNED
    import pickle

    import optuna

    state = pickle.loads(max((tmp_path / "mn" / "_ray" / "mn").glob("searcher-state-*.pkl")).read_bytes())
    study = state["_ot_study"]
    for r in recs:
        frozen = study._storage.get_trial(state["_ot_trials"][r["trial_id"]]._trial_id)
        if r["status"] == "COMPLETE":  # multi-objective: (avg_acc, bwt) after the last task
            assert frozen.state == optuna.trial.TrialState.COMPLETE
            assert frozen.values == pytest.approx([r["history"][-1]["avg_acc"], r["history"][-1]["bwt"]])
        else:
            assert frozen.state == optuna.trial.TrialState.PRUNED and frozen.values is None
    assert study.best_trials  # the Pareto front Optuna keeps
    import pandas as pd

    df = pd.read_csv(tmp_path / "mn" / "trials.csv")
    assert df.loc[df["complete"], "pareto"].any() and not df.loc[~df["complete"], "pareto"].any()
    print("multi-node statuses:", sorted((r["status"], r["node_id"][:6]) for r in recs))

    # resuming a finished sweep re-runs nothing and keeps every record
    before = {r["trial_id"]: r["history"] for r in recs}
    resumed = search.run_sweep(search.parse_args(["--address", cluster.address, "--results-dir", str(tmp_path),
                                                  "--name", "mn", "--resume"]))
    assert {r["trial_id"]: r["history"] for r in resumed["records"]} == before
    assert all(not r["reruns"] for r in resumed["records"])
    assert json.loads((tmp_path / "mn" / "sweep.json").read_text())["gpus_per_trial"] == 0.5


@pytest.mark.slow
def test_a_diverging_trial_ends_once_and_is_never_ranked(fake_cluster, tmp_path):
    cluster, _ = fake_cluster
    argv = ["--address", cluster.address, "--results-dir", str(tmp_path), "--name", "div", "--num-samples", "1",
            "--num-tasks", "2", "--iters-per-task", "5", "--lr", "1e8", "--no-tensorboard"]
    summary = search.run_sweep(search.parse_args(argv))
    [rec] = summary["records"]
    assert rec["status"] == "DIVERGED" and rec["restarts"] == 0 and "loss became nan" in rec["error"]
    assert summary["best"] is None and not (tmp_path / "div" / "best_config.yaml").exists()
    assert not summary["interrupted"]
