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
from tune import cluster, driver, prepare, search  # noqa: E402
from tune import space as S  # noqa: E402
from tune import trial_kinds as TK  # noqa: E402

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
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    by = sp.distributions
    assert by["gamma"] == FloatDistribution(0.05, 5, log=True) and by["beta"].low == pytest.approx(1e-3)
    assert by["hnet_hidden"] == CategoricalDistribution(("50,50", "100,100"))
    assert by["method"] == CategoricalDistribution(("hyperinterval", "hnet"))
    assert by["batch_size"] == IntDistribution(32, 128, log=True)
    assert dict(sp.fixed) == {"iters_per_task": 300}
    assert S.parse_space(sp.to_dict()) == sp  # what sweep.json stores reads back the same
    TK.validate_space(sp, {"benchmark": "split-digits"})


def test_example_space_file_is_valid_and_contains_the_preset():
    from hinterval.config import load_config_file

    sp = S.parse_space(load_config_file(REPO / "tune" / "example_space.yaml"))
    TK.validate_space(sp, {"benchmark": "split-digits"})
    assert {"gamma", "beta", "embedding_dim", "hnet_hidden"} <= set(sp.names)
    point, outside = TK.preset_point(sp, make_config(benchmark="split-digits"))
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
        TK.validate_space(sp, {"benchmark": "split-digits"})


def test_flags_give_ranges_choices_or_fixed_values():
    p, v = S.parse_flag("gamma", "0.1:5")
    assert v is None and p.log and (p.low, p.high) == (0.1, 5.0)
    assert S.parse_flag("kappa_min", "0.5:0.9")[0].log is False
    p, v = S.parse_flag("embedding_dim", "16,24,48")
    assert p.choices == (16, 24, 48)
    p, v = S.parse_flag("hnet_hidden", "50,50;100,100")
    assert p.choices == ("50,50", "100,100")
    assert S.parse_flag("beta", "0.05") == (None, 0.05)
    merged = S.merge(S.default_space(make_config()), {"gamma": S.parse_flag("gamma", "0.1:5")[0]}, {"beta": 0.05})
    assert "beta" not in merged.names and dict(merged.fixed) == {"beta": 0.05}


def test_default_space_contains_the_preset():
    cfg = make_config(benchmark="split-digits")
    point, outside = TK.preset_point(S.default_space(cfg), cfg)
    assert outside == [] and point == {"gamma": cfg.gamma, "beta": cfg.beta, "embedding_dim": cfg.embedding_dim, "lr": cfg.lr}
    point, outside = TK.preset_point(S.parse_space({"gamma": {"type": "uniform", "low": 2, "high": 3}}), cfg)
    assert point is None and "gamma" in outside[0]


def test_field_types_come_from_the_config_type_hints():
    assert [S.field_kind(k) for k in ("gamma", "embedding_dim", "hnet_hidden", "reg_bounds", "method",
                                      "epochs_per_task", "num_threads")] == [
        "float", "int", "widths", "bool", "str", "float", "int"]


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
    study = limiter.searcher.study()
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
    front = sorted(tuple(t.values) for t in limiter.searcher.study().best_trials)
    assert front == [(0.8, 0.0), (0.9, -0.2)]


def test_study_is_kept_on_disk_and_continues_after_the_searcher_is_pickled(tmp_path):
    import pickle

    import optuna

    from tune.searcher import close_orphans, create_study, make_searcher, study_url

    url = study_url(tmp_path)
    space = S.default_space(make_config()).to_dict()
    preset = {"gamma": 1.0, "beta": 0.01, "embedding_dim": 24, "lr": 0.001}
    storage = create_study(url, "sw", ["avg_acc"], {"benchmark": "split-digits"})
    limiter = make_searcher(space=space, objectives=["avg_acc"], seed=0, preset_point=preset, max_concurrent=4,
                            storage=storage, study_name="sw")
    assert limiter.suggest("t1") == preset
    limiter.on_trial_result("t1", {"tasks_done": 1, "avg_acc": 0.95, "final_avg_acc": None})
    limiter.on_trial_complete("t1", {"tasks_done": 2, "avg_acc": 0.9, "worst_avg_acc": 0.8, "final_avg_acc": 0.9})
    limiter.suggest("t2")
    # Tune pickles the searcher into the experiment state; --resume unpickles it in a new driver
    resumed = pickle.loads(pickle.dumps(limiter))
    resumed.on_trial_complete("t2", {"tasks_done": 2, "avg_acc": 0.7, "worst_avg_acc": 0.6, "final_avg_acc": 0.7})
    resumed.suggest("t3")  # asked, then the driver dies for good: never told
    assert close_orphans(url, "sw") == 1

    assert optuna.get_all_study_names(url) == ["sw"]  # the same study, not a second one
    study = optuna.load_study(study_name="sw", storage=url)
    assert study.metric_names == ["avg_acc"] and study.user_attrs["benchmark"] == "split-digits"
    t1, t2, t3 = study.trials
    assert (t1.state, t1.value, t1.params) == (optuna.trial.TrialState.COMPLETE, 0.9, preset)
    assert t1.user_attrs == {"tune_trial_id": "t1", "preset": True, "avg_acc": 0.9, "worst_avg_acc": 0.8,
                             "tasks_done": 2}
    assert t1.intermediate_values == {1: 0.95}  # per-task progress for the dashboard
    assert t2.value == 0.7 and not t2.user_attrs["preset"] and t3.state == optuna.trial.TrialState.FAIL


def test_hparams_metrics_list_dil_only_when_a_trial_can_be_nested():
    nested = {"type": "choice", "values": ["nested", "non-forced"]}
    assert "dil_avg_acc" not in driver.summary_metrics({"base": {"benchmark": "split-digits"}, "space": {}})
    assert "dil_avg_acc" in driver.summary_metrics({"base": {"benchmark": "split-digits"},
                                                    "space": {"embedding_mode": nested}})
    assert "dil_avg_acc" in driver.summary_metrics({"base": {"benchmark": "split-digits", "embedding_mode": "nested"},
                                                    "space": {}})


def test_asha_rungs_follow_the_first_objective():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    spec = {"scheduler": "asha", "objectives": ["worst_avg_acc", "avg_acc"]}
    asha = driver.make_scheduler(spec)
    assert asha.metric == "worst_avg_acc" and driver.make_scheduler({**spec, "scheduler": "none"}) is None
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(3)]
    for t in trials:
        asha.on_trial_add(None, t)
    # after task 1: avg_acc ranks t2 first, worst-case accuracy ranks it last -> ASHA stops t2
    acts = [asha.on_trial_result(None, t, {"tasks_done": 1, "avg_acc": a, "worst_avg_acc": w})
            for t, a, w in zip(trials, (0.90, 0.91, 0.99), (0.80, 0.81, 0.10))]
    assert acts[2] == TrialScheduler.STOP and acts[1] == TrialScheduler.CONTINUE
    # an undefined rung metric (None) lets the trial go on instead of failing
    assert asha.on_trial_result(None, trials[0], {"tasks_done": 2, "worst_avg_acc": None}) == TrialScheduler.CONTINUE
    # ... and ends it without a rung entry: the scheduler forgets it (a second end changes nothing)
    for _ in range(2):
        asha.on_trial_complete(None, trials[0], {"tasks_done": 2, "worst_avg_acc": None})
    with pytest.raises(KeyError):
        asha.on_trial_remove(None, trials[0])


# --- resources ------------------------------------------------------------------------------------------
def test_resource_checks_refuse_what_would_stay_pending():
    cpu_only = [{"CPU": 2.0}]
    assert "no GPUs" in cluster.check_resources(cpu_only, cpus=1, gpus=0.5)
    assert "no node can hold" in cluster.check_resources(cpu_only, cpus=4, gpus=0)
    assert "no node can hold" in cluster.check_resources([{"CPU": 4, "GPU": 1}], cpus=1, gpus=2)
    assert cluster.check_resources([{"CPU": 0}, {"CPU": 4, "GPU": 2}], cpus=1, gpus=0.5) is None
    assert cluster.cluster_slots([{"CPU": 0}, {"CPU": 4, "GPU": 2}, {"CPU": 4, "GPU": 2}], cpus=1, gpus=0.5) == 8
    assert cluster.cluster_slots(cpu_only, cpus=1, gpus=0) == 2


def test_local_start_never_joins_another_ray_on_this_machine(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    assert cluster.connect(None) is True
    assert seen["address"] == "local" and str(REPO / "tune") in seen["runtime_env"]["py_modules"]
    assert cluster.connect("10.0.0.1:6379") is True and seen["address"] == "10.0.0.1:6379"


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
    (old.parent / "sweep.json").write_text("{}")
    rc, err = _main(capsys, "--results-dir", str(tmp_path), "--name", "split-digits")
    assert rc == 2 and "already holds a sweep" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert old.read_text() == "precious\n"


def test_a_directory_without_sweep_json_is_no_sweep_and_never_emptied(tmp_path, capsys):
    mine = tmp_path / "mine" / "notes.md"
    mine.parent.mkdir()
    mine.write_text("keep me\n")
    for flags in ((), ("--overwrite",)):
        rc, err = _main(capsys, "--results-dir", str(tmp_path), "--name", "mine", *flags)
        assert rc == 2 and "holds no sweep" in err[0] and "already holds" not in err[0], err
    assert mine.read_text() == "keep me\n"


def test_another_drivers_passing_files_are_not_content(tmp_path):
    """A lock file, a write probe or a temporary file of a sweep being set up does not make a directory 'not empty'."""
    from tune.prepare import check_sweep_dir

    d = tmp_path / "s"
    d.mkdir()
    for name in (".hinterval.lock", ".hinterval-write-test-abc", ".sweep.json.x1y2z3.tmp"):
        (d / name).write_text("")
    check_sweep_dir(d, "s", resume=False, overwrite=False)


def test_the_spec_is_resolved_by_one_pure_function(tmp_path):
    import dataclasses

    from tune.spec import SweepSpec, sweep_spec

    args = search.parse_args(["--smoke-test", "--gamma", "0.1:2", "--set", "seed=3", "--data-dir", "d", "--beta", "0.02"])
    before = dict(vars(args))
    spec = sweep_spec(args, name="x", results_dir=str(tmp_path), cwd="/somewhere")
    assert vars(args) == before  # the arguments are not changed (the smoke settings live in the spec)
    assert spec == sweep_spec(args, name="x", results_dir=str(tmp_path), cwd="/somewhere")
    assert (spec.num_samples, spec.base["num_tasks"], spec.base["seed"], spec.base["beta"]) == (2, 2, 3, 0.02)
    assert spec.base["data_dir"] == "/somewhere/d" and spec.storage == str(tmp_path / "x" / "_ray")
    assert spec.param_order == ("gamma", "embedding_dim", "lr") and spec["space"]["gamma"]["low"] == 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "y"
    assert SweepSpec.from_dict(json.loads(json.dumps({**spec.to_dict(), "ray": "2.x"}))) == spec  # sweep.json


def test_without_a_name_a_second_sweep_gets_a_fresh_name(tmp_path, capsys):
    (tmp_path / "split-digits").mkdir()
    (tmp_path / "split-digits" / "trials.csv").write_text("precious\n")
    assert search.main(["--dry-run", "--results-dir", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    [line] = [ln for ln in cap.out.splitlines() if ln.startswith("results: ")]
    fresh = Path(line.split(": ", 1)[1])
    assert fresh.parent == tmp_path and fresh.name.startswith("split-digits-20") and "this one is" in cap.err
    assert (tmp_path / "split-digits" / "trials.csv").read_text() == "precious\n"
    # two sweeps started in the same second stay apart; --resume and --overwrite keep the plain name
    args = search.parse_args(["--results-dir", str(tmp_path)])
    first = prepare.default_name(args, tmp_path, now=0.0)
    (tmp_path / first).mkdir()
    (tmp_path / first / "sweep.json").write_text("{}")
    assert prepare.default_name(args, tmp_path, now=0.0) == first + "-2"
    assert prepare.default_name(search.parse_args(["--resume"]), tmp_path) == "split-digits"


def test_dry_run_prints_space_and_resources_and_runs_nothing(tmp_path, capsys):
    cfg = make_config(benchmark="split-digits")
    dims = f"{cfg.embedding_dim // 2},{cfg.embedding_dim},{cfg.embedding_dim * 2}"
    rc = search.main(["--dry-run", "--results-dir", str(tmp_path), "--gpus-per-trial", "0.5", "--embedding-dim", dims])
    out = capsys.readouterr().out
    assert rc == 0 and not any(tmp_path.iterdir())
    gamma = S.default_space(cfg).distributions["gamma"]
    for text in ("gamma", S.describe(gamma), "embedding_dim", f"choice [{dims.replace(',', ', ')}]", "0.5 GPU",
                 f"first trial (preset): gamma={cfg.gamma}, beta={cfg.beta}, embedding_dim={cfg.embedding_dim}"):
        assert text in out, text
    # a space that excludes the preset says so instead of failing later inside Optuna
    assert search.main(["--dry-run", "--results-dir", str(tmp_path), "--embedding-dim", f"{cfg.embedding_dim + 1}"
                        f",{cfg.embedding_dim + 2}"]) == 0
    assert "preset not evaluated first" in capsys.readouterr().out



def test_settings_no_trial_reads_are_dropped_from_the_default_space_and_named_when_given(tmp_path, capsys):
    """A sweep of ewc does not search the hypernetwork's gamma/beta/embedding size; a setting the user
    fixes or searches that no trial reads is named in one warning line (the sweep still runs)."""
    assert search.main(["--dry-run", "--results-dir", str(tmp_path), "--method", "ewc"]) == 0
    out, err = capsys.readouterr()
    space = out.split("search space:", 1)[1].split("fixed for every trial", 1)[0]
    assert "lr" in space and not any(k in space for k in ("gamma", "beta", "embedding_dim")), space
    assert "ewc_lambda" in space, space  # the flag picks the method's own default space, as --set method=ewc does
    assert "no effect" not in err
    assert search.main(["--dry-run", "--results-dir", str(tmp_path), "--method", "hnet", "--set", "intercontinet_radius=0.5",
                        "--gamma", "0.1:1"]) == 0
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("search.py: warning: gamma, intercontinet_radius have no effect in any trial"), err
    assert "intercontinet_radius" in lines[0] and "gamma            loguniform [0.1, 1]" in out
    # read by some trials (method searched): no warning, and the default space keeps gamma
    assert search.main(["--dry-run", "--results-dir", str(tmp_path), "--method", "hyperinterval,ewc",
                        "--set", "ewc_lambda=5"]) == 0
    out, err = capsys.readouterr()
    assert "no effect" not in err and "gamma" in out.split("search space:", 1)[1].split("fixed for", 1)[0]


# --- end to end: the command line's --smoke-test, then TensorBoard and optuna-dashboard over it -------------
@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    """A finished 2-trial sweep made by the command line exactly as a user runs it."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "PYTHONPATH": ""}  # the script must find `tune` by itself
    cmd = [PY, str(REPO / "tune" / "search.py"), "--smoke-test", "--results-dir", str(tmp_path)]
    # ~1 min alone on 2 cores; the margin is for a machine shared with other jobs
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, tmp_path / "split-digits-smoke"


@pytest.mark.slow
def test_smoke_test_end_to_end(smoke_sweep):
    from test_tune_report import hparams_sessions

    proc, out = smoke_sweep
    assert f"results: {out}/" in proc.stdout
    assert f"tensorboard --logdir {out}/tensorboard" in proc.stdout
    assert f"optuna-dashboard sqlite:///{out}/optuna.db" in proc.stdout
    import pandas as pd

    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["status"]) == {"COMPLETE"} and set(df["tasks_done"]) == {2}
    assert df["is_preset"].sum() == 1 and df["avg_acc"].notna().all() and df["node_id"].notna().all()
    assert (out / "best_config.yaml").is_file() and (out / "leaderboard.md").is_file()
    assert {p.name for p in (out / "plots").glob("*.png")} == {
        "acc_vs_gamma.png", "acc_vs_beta.png", "acc_vs_embedding_dim.png", "acc_vs_lr.png", "pareto.png",
        "best_acc_matrices.png"}
    runs = {p.name for p in (out / "tensorboard").iterdir()}
    winner = df["trial_id"][0]  # ranked by the certified accuracy, every trial certifies its boxes
    assert runs == {t + ("-preset" if pre else "") for t, pre in zip(df["trial_id"], df["is_preset"])} | {
        f"confirm-{winner}-seed1"}  # --smoke-test confirms the winner with one more training seed
    confirmation = json.loads((out / "confirm.json").read_text())
    assert [c["trial_id"] for c in confirmation["configs"]] == [winner] and confirmation["complete"]
    assert confirmation["configs"][0]["seeds"] == [0, 1] and confirmation["configs"][0]["finished"] == 2
    assert f"confirmed winner {winner} over seeds 0,1: worst_avg_acc " in proc.stdout
    assert df["confirm_seeds"][0] == 2 and df["confirm_seeds"][1:].isna().all()
    board = (out / "leaderboard.md").read_text()
    assert board.splitlines()[2].startswith("Ranked by `worst_avg_acc` (certified accuracy")
    assert "## Confirmation over more training seeds" in board and "## Spread and noise" in board
    assert "# Confirmed over training seeds 0,1: worst_avg_acc " in (out / "best_config.yaml").read_text()
    for run in runs:
        assert hparams_sessions(out / "tensorboard" / run), f"no HParams entry for run {run}"
    experiment = json.loads((out / "sweep.json").read_text())["experiment"]
    assert experiment.startswith("split-digits-smoke-") and (out / "_ray" / experiment).is_dir()  # Tune's own dirs
    assert not list((out / "_ray").rglob("events.out.tfevents*")), "Tune's TBX logger should be off"
    assert "need at least 4 trials" in (out / "leaderboard.md").read_text()  # importances wait for more trials


def _post_json(url: str, body: dict) -> dict:
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_tensorboard_hparams_view_over_http(smoke_sweep):
    """What the HParams tab shows, read from a real TensorBoard server's data API on 127.0.0.1."""
    import re
    import urllib.parse
    import urllib.request

    import pandas as pd

    _, out = smoke_sweep
    df = pd.read_csv(out / "trials.csv")
    cmd = [PY, "-m", "tensorboard.main", "--logdir", str(out / "tensorboard"), "--host", "127.0.0.1", "--port", "0",
           "--load_fast", "false", "--reload_interval", "1"]
    tb = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = None
        for line in tb.stderr:  # "TensorBoard 2.x at http://127.0.0.1:PORT/ (Press CTRL+C to quit)"
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if m:
                base = m.group(1)
                break
        assert base, "TensorBoard did not start"
        deadline = time.time() + 60
        while True:  # the first load of the event files runs in the background
            exp = _post_json(base + "/data/plugin/hparams/experiment", {"experimentName": ""})
            if exp.get("hparamInfos") or time.time() > deadline:
                break
            time.sleep(0.5)
        infos = {h["name"]: h for h in exp["hparamInfos"]}
        assert set(infos) == {"gamma", "beta", "embedding_dim", "lr", "preset"}
        assert all(h["differs"] for h in infos.values())
        assert infos["gamma"]["domainInterval"]["minValue"] > 0 and "log scale" in infos["gamma"]["description"]
        assert infos["embedding_dim"]["domainDiscrete"] and infos["preset"]["type"] == "DATA_TYPE_BOOL"
        tags = [m["name"]["tag"] for m in exp["metricInfos"]]
        assert tags == ["summary/avg_acc", "summary/bwt", "summary/worst_avg_acc", "summary/worst_bwt",
                        "summary/cil_avg_acc", "summary/box_size"]  # no DIL: no trial runs in nested mode
        groups = _post_json(base + "/data/plugin/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 100,
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
        by_name = {g["name"]: g for g in groups["sessionGroups"]}
        expected = {t + ("-preset" if pre else ""): t for t, pre in zip(df["trial_id"], df["is_preset"])}
        [confirm] = json.loads((out / "confirm.json").read_text())["configs"]
        confirm_run = f"confirm-{confirm['trial_id']}-seed1"
        assert set(by_name) == set(expected) | {confirm_run}  # one session group per trial and per confirmation run
        g = by_name[confirm_run]  # the confirmed trial's hyperparameters, the other seed's figures
        assert g["hparams"]["gamma"] == pytest.approx(confirm["params"]["gamma"]) and g["hparams"]["preset"] is False
        assert {m["name"]["tag"]: m["value"] for m in g["metricValues"]}["summary/avg_acc"] == pytest.approx(
            confirm["runs"][1]["metrics"]["avg_acc"], abs=1e-6)
        for name, tid in expected.items():
            g, row = by_name[name], df.set_index("trial_id").loc[tid]
            assert g["hparams"]["preset"] == name.endswith("-preset")
            assert g["hparams"]["gamma"] == pytest.approx(row["gamma"])
            assert [s["status"] for s in g["sessions"]] == ["STATUS_SUCCESS"]
            final = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
            assert final["summary/avg_acc"] == pytest.approx(row["avg_acc"], abs=1e-6)
            # "Show Metrics": the per-task series behind the metric column
            q = urllib.parse.urlencode({"run": name, "tag": "summary/avg_acc"})
            with urllib.request.urlopen(f"{base}/data/plugin/scalars/scalars?{q}", timeout=10) as resp:
                series = json.loads(resp.read())
            assert [step for _, step, _ in series] == [1, 2]
    finally:
        tb.terminate()
        tb.wait(timeout=30)


@pytest.mark.slow
def test_optuna_study_opens_in_optuna_dashboard(smoke_sweep):
    import optuna
    import pandas as pd

    _, out = smoke_sweep
    url = f"sqlite:///{out}/optuna.db"
    df = pd.read_csv(out / "trials.csv")
    study = optuna.load_study(study_name="split-digits-smoke", storage=url)
    assert {t.user_attrs["tune_trial_id"]: t.value for t in study.trials} == pytest.approx(
        dict(zip(df["trial_id"], df["worst_avg_acc"])))  # the default objective: every trial certifies its boxes
    confirmed = {v["tune_trial_id"]: v for k, v in study.user_attrs.items() if k.startswith("confirm_trial_")}
    assert list(confirmed) == [df["trial_id"][0]] and len(study.trials) == 2  # attributes, not extra search trials
    attrs = confirmed[df["trial_id"][0]]
    assert attrs["seeds"] == [0, 1] and len(attrs["avg_acc_values"]) == 2
    assert attrs["avg_acc_mean"] == pytest.approx(sum(attrs["avg_acc_values"]) / 2)
    dashboard = pytest.importorskip("optuna_dashboard")
    from wsgiref.util import setup_testing_defaults

    app = dashboard.wsgi(url)  # what `optuna-dashboard sqlite:///...` serves

    def get(path):
        env = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(env)
        status = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:300])
        return json.loads(body)

    [summary] = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "split-digits-smoke" and summary["directions"] == ["maximize"]
    detail = get(f"/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == 2 and {t["state"] for t in detail["trials"]} == {"Complete"}
    assert detail["objective_names"] == ["worst_avg_acc"] and detail["has_intermediate_values"]
    assert {a["key"] for a in detail["union_user_attrs"]} >= {"tune_trial_id", "preset", "worst_avg_acc"}


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
    """Most trials running at once: the sweep benchmark's own count (benchmarks/sweep.py)."""
    import importlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("sweep").max_overlap(intervals)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


@pytest.mark.slow
def test_multi_node_sweep_with_fractional_gpus_asha_pareto_and_resume(fake_cluster, tmp_path):
    import ray

    cluster, workers = fake_cluster
    argv = ["--address", cluster.address, "--results-dir", str(tmp_path), "--name", "mn", "--num-samples", "6",
            "--num-tasks", "2", "--iters-per-task", "5", "--gpus-per-trial", "0.5", "--cpus-per-trial", "1",
            "--max-concurrent", "8", "--scheduler", "asha", "--objective", "avg_acc,bwt", "--no-tensorboard"]
    summary = driver.run_sweep(search.parse_args(argv))
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

    experiment = json.loads((tmp_path / "mn" / "sweep.json").read_text())["experiment"]
    state = pickle.loads(max((tmp_path / "mn" / "_ray" / experiment).glob("searcher-state-*.pkl")).read_bytes())
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
    resumed = driver.run_sweep(search.parse_args(["--address", cluster.address, "--results-dir", str(tmp_path),
                                                  "--name", "mn", "--resume"]))
    assert {r["trial_id"]: r["history"] for r in resumed["records"]} == before
    assert all(not r["reruns"] for r in resumed["records"])
    url = f"sqlite:///{tmp_path}/mn/optuna.db"  # the resumed sweep continued the same Optuna study
    assert optuna.get_all_study_names(url) == ["mn"]
    trials = optuna.load_study(study_name="mn", storage=url).trials
    assert len(trials) == 6 and not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert {t.user_attrs["tune_trial_id"] for t in trials} == set(before)
    assert json.loads((tmp_path / "mn" / "sweep.json").read_text())["gpus_per_trial"] == 0.5


@pytest.mark.slow
def test_a_diverging_trial_ends_once_and_is_never_ranked(fake_cluster, tmp_path):
    cluster, _ = fake_cluster
    argv = ["--address", cluster.address, "--results-dir", str(tmp_path), "--name", "div", "--num-samples", "1",
            "--num-tasks", "2", "--iters-per-task", "5", "--lr", "1e8", "--no-tensorboard"]
    summary = driver.run_sweep(search.parse_args(argv))
    [rec] = summary["records"]
    assert rec["status"] == "DIVERGED" and rec["restarts"] == 0 and "loss became nan" in rec["error"]
    assert summary["best"] is None and not (tmp_path / "div" / "best_config.yaml").exists()
    assert not summary["interrupted"]


def test_the_default_objective_is_certified_accuracy_where_every_trial_certifies(tmp_path):
    from tune.spec import sweep_spec

    def resolve(*argv):
        args = search.parse_args(["--results-dir", str(tmp_path), *argv])
        return sweep_spec(args, name="x", results_dir=str(tmp_path), cwd=str(tmp_path))["objectives"]

    assert resolve() == ("worst_avg_acc",)
    assert resolve("--benchmark", "permuted-digits") == ("worst_avg_acc",)
    assert resolve("--method", "hyperinterval,hnet") == ("avg_acc",)  # hnet certifies nothing
    assert resolve("--set", "interval_mode=relaxed") == ("avg_acc",)
    assert resolve("--set", "method=ewc", "--gamma", "1") == ("avg_acc",)
    assert resolve("--objective", "avg_acc,bwt") == ("avg_acc", "bwt")
    assert resolve("--objective", "worst_avg_acc,box_size") == ("worst_avg_acc", "box_size")
    assert resolve("--set", "target=resnet18") == ("worst_avg_acc", "box_size")  # a CNN sweep: the front
    for bad in (["--confirm-seeds", "-1"], ["--confirm-top", "0"]):
        with pytest.raises(UserError, match=bad[0]):
            resolve(*bad)
    assert TK.certifies(make_config(method="intercontinet")) and not TK.certifies(make_config(gamma=0.0))
    assert not TK.certifies(make_config(method="hnet")) and not TK.certifies(make_config(interval_mode="relaxed"))
    space = S.parse_space({"gamma": {"type": "uniform", "low": 0.0, "high": 1.0}})
    assert TK.default_objectives(TK.trial_configs(space, {"benchmark": "split-digits"})) == ("avg_acc",)  # gamma 0 at one end


def test_a_sweep_that_could_rank_nothing_or_changes_nothing_is_refused(tmp_path, capsys):
    """An objective no trial reports, and a space whose every key no trial reads: one line, exit 2."""
    base = ["--dry-run", "--results-dir", str(tmp_path)]
    assert search.main([*base, "--method", "ewc", "--objective", "worst_avg_acc"]) == 2
    assert "no trial of this sweep does" in capsys.readouterr().err
    assert search.main([*base, "--objective", "dil_avg_acc"]) == 2  # the preset is non-forced: no universal network
    assert "universal network" in capsys.readouterr().err
    assert search.main([*base, "--embedding-mode", "nested", "--objective", "dil_avg_acc"]) == 0
    capsys.readouterr()
    (tmp_path / "space.yaml").write_text("ewc_lambda: {type: loguniform, low: 1, high: 100}\n")
    assert search.main([*base, "--space", str(tmp_path / "space.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing this sweep searches changes its trials" in err[0], err


def test_the_confirmation_counts_are_part_of_the_saved_sweep(tmp_path):
    """A resumed sweep confirms as it was started: the counts live in the spec (sweep.json), and a
    sweep.json saved before they existed resumes with the defaults."""
    from tune.spec import CONFIRM_DEFAULT, SweepSpec, sweep_spec

    args = search.parse_args(["--results-dir", str(tmp_path), "--confirm-seeds", "0"])
    spec = sweep_spec(args, name="x", results_dir=str(tmp_path), cwd=str(tmp_path))
    assert (spec["confirm_seeds"], spec["confirm_top"]) == (0, CONFIRM_DEFAULT[1])
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict())))["confirm_seeds"] == 0
    old = {k: v for k, v in spec.to_dict().items() if not k.startswith("confirm_")}
    assert SweepSpec.from_dict(old)["confirm_seeds"] == CONFIRM_DEFAULT[0]



def test_what_set_or_a_flag_fixes_leaves_the_default_space(tmp_path):
    """`--set lr=0.01` fixes lr (the default space no longer searches it); `--gamma 0` fixes gamma at 0
    (a range around 0 would be empty)."""
    from tune.spec import sweep_spec

    def resolve(*argv):
        return sweep_spec(search.parse_args(["--results-dir", str(tmp_path), *argv]), name="x", results_dir=str(tmp_path),
                          cwd=str(tmp_path))

    spec = resolve("--set", "lr=0.01", "--set", "embedding_dim=8")
    assert "lr" not in spec["space"] and "embedding_dim" not in spec["space"] and spec["base"]["lr"] == 0.01
    spec = resolve("--gamma", "0")
    assert "gamma" not in spec["space"] and spec["base"]["gamma"] == 0.0 and spec["objectives"] == ("avg_acc",)


# --- before Ray: every kind of trial builds, addresses, one Tune experiment per sweep ---------------------------
def test_shaping_configs_cover_every_combination_of_shaping_choices():
    space = S.parse_space({"interval_scope": ["head", "last:2"], "target_hidden": ["100", "100,100"],
                           "gamma": {"type": "loguniform", "low": 0.1, "high": 1}})
    points = [p for p, _ in TK.shaping_configs(space, {"benchmark": "split-digits"})]
    assert points[0] == {}  # the fixed settings alone come first
    assert len(points) == 1 + 2 * 2 * 2
    assert {"interval_scope": "last:2", "target_hidden": "100", "gamma": 0.1} in points


def test_shaping_configs_stay_bounded_for_large_spaces(monkeypatch):
    monkeypatch.setattr(TK, "MAX_COMBINATIONS", 4)
    space = S.parse_space({"embedding_dim": [2, 4, 8], "hnet_hidden": ["8", "16", "32"], "method": ["hnet", "hyperinterval"]})
    points = [p for p, _ in TK.shaping_configs(space, {"benchmark": "split-digits"})]
    assert len(points) == 1 + 2 * (3 + 3)  # each kind of trial with one shaping setting at a time
    assert all("method" in p for p in points[1:])


def test_check_trials_build_names_the_combination_train_refuses():
    space = S.parse_space({"interval_scope": ["head", "last:3"], "target_hidden": ["100", "100,100"]})
    seen = []

    def check(cfg):
        seen.append((cfg.interval_scope, cfg.target_hidden))
        if cfg.interval_scope == "last:3" and len(cfg.target_hidden) == 1:
            raise UserError("too deep")

    with pytest.raises(UserError, match=r"interval_scope=last:3, target_hidden=100 could not run: too deep"):
        TK.check_trials_build(space, {"benchmark": "split-digits"}, check)


@pytest.mark.parametrize("text, parsed", [("auto", None), ("10.0.0.5:6379", ("10.0.0.5", 6379)),
                                          ("ray://head.local:10001", ("head.local", 10001)), ("[::1]:6379", ("::1", 6379))])
def test_parse_address_accepts_ray_addresses(text, parsed):
    assert cluster.parse_address(text) == parsed


def test_check_reachable_refuses_a_closed_port_quickly():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t = time.time()
    with pytest.raises(UserError, match=f"--address 127.0.0.1:{port}"):
        cluster.check_reachable(f"127.0.0.1:{port}")
    assert time.time() - t < 5


def test_new_sweeps_get_their_own_tune_experiment(tmp_path):
    from tune.spec import experiment_name, new_experiment

    args = search.parse_args(["--results-dir", str(tmp_path), "--name", "same", "--storage", str(tmp_path / "shared")])
    spec = prepare.resolve(args)
    assert experiment_name(spec) == "same"  # a sweep saved before experiments had names of their own
    a, b = new_experiment(spec), new_experiment(spec)
    assert experiment_name(a).startswith("same-") and experiment_name(a) != experiment_name(b)
    assert driver.experiment_path(a) == str(tmp_path / "shared" / experiment_name(a))
    assert type(spec).from_dict(json.loads(json.dumps(a.to_dict()))).experiment == a.experiment
