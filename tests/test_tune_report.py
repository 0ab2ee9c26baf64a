"""Sweep reporting without Ray running: the ranking (tune/records.py), spread against noise (tune/noise.py), the
leaderboard and plots (tune/leaderboard.py, tune/plots.py), the files written (tune/report.py), and the driver-side
recorder (tune/recorder.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("ray")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from hinterval.config import FIELDS, load_config_file, make_config  # noqa: E402
from tune import noise, plots, records  # noqa: E402
from tune import report as R  # noqa: E402
from tune.recorder import SweepRecorder  # noqa: E402
from tune.records import load_records  # noqa: E402

PARAMS = ["gamma", "beta", "embedding_dim"]
SPACE = {"gamma": {"type": "loguniform", "low": 0.05, "high": 5}, "beta": {"type": "loguniform", "low": 1e-3, "high": 1},
         "embedding_dim": {"type": "choice", "values": [16, 24, 48]}}


def make_record(tid, *, status="COMPLETE", accs=(0.9, 0.8), bwt=-0.01, gamma=1.0, beta=0.01, dim=24, num_tasks=2,
                preset=False):
    cfg = make_config(benchmark="split-digits", num_tasks=num_tasks, iters_per_task=20, gamma=gamma, beta=beta,
                      embedding_dim=dim).to_dict()
    cfg.update(device="cpu", num_threads=1)
    history = []
    for t, a in enumerate(accs):
        h = {"tasks_done": t + 1, "avg_acc": a, "bwt": bwt if t else 0.0, "worst_avg_acc": a - 0.1,
             "worst_bwt": 0.0, "cil_avg_acc": a / 2, "dil_avg_acc": None, "node_id": "n1", "elapsed_s": 3.0 * (t + 1)}
        for j in range(t + 1):
            h[f"acc/til/task_{j:02d}"] = a
        history.append(h)
    return {"trial_id": tid, "status": status, "params": {"gamma": gamma, "beta": beta, "embedding_dim": dim},
            "config": cfg, "is_preset": preset, "num_tasks": num_tasks, "tasks_done": len(accs), "node_id": "n1",
            "node_ids": ["n1"], "history": history, "reruns": [], "started_at": 0.0, "wall_time_s": 3.0 * len(accs),
            "error": None, "restarts": 0}


def test_pareto_front_maximises_every_coordinate():
    pts = [(0.9, -0.1), (0.8, 0.0), (0.7, -0.05), (0.9, -0.2)]
    assert sorted(records.pareto_front(pts)) == [0, 1]


@pytest.mark.slow
def test_best_and_ranking_only_among_trials_that_finished_every_task(tmp_path):
    recs = [
        make_record("a", accs=(0.9, 0.80), preset=True),
        make_record("b", accs=(0.9, 0.85), gamma=0.3, beta=0.1, dim=16),
        # stopped by ASHA after one (easy) task: higher partial accuracy, must not win
        make_record("c", status="STOPPED", accs=(0.99,), gamma=3.0),
        make_record("d", status="ERROR", accs=(0.95,), gamma=0.1),
    ]
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "avg_acc_vs_lr.png").write_bytes(b"stale")  # a plot of an earlier report
    summary = R.write_report(tmp_path, recs, name="t", params=PARAMS, space=SPACE)
    assert summary["best"]["trial_id"] == "b"
    assert summary["complete"] == 2
    assert [r["trial_id"] for r in records.rank(recs, ["avg_acc"])] == ["b", "a", "c", "d"]  # the one ranking

    import pandas as pd

    df = pd.read_csv(tmp_path / "trials.csv")
    assert list(df["trial_id"]) == ["b", "a", "c", "d"]  # finished first, then unfinished
    for col in ("avg_acc", "bwt", "worst_avg_acc", "worst_bwt", "cil_avg_acc", "status", "tasks_done", "wall_time_s",
                "node_id", "gamma", "beta", "embedding_dim", "config"):
        assert col in df.columns
    assert df.loc[df.trial_id == "a", "is_preset"].item()

    board = (tmp_path / "leaderboard.md").read_text()
    lines = [ln for ln in board.splitlines() if ln.startswith("| ")][1:]
    assert lines[0].startswith("| 1 | b |") and lines[1].startswith("| 2 | a (preset) |")
    assert lines[2].startswith("| - | c |") and "STOPPED" in lines[2]

    cfg_path = tmp_path / "best_config.yaml"
    data = load_config_file(cfg_path)
    assert set(data) <= FIELDS and "device" not in data and "num_threads" not in data
    assert make_config(data).gamma == pytest.approx(0.3) and make_config(data).embedding_dim == 16

    pngs = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert pngs == {"acc_vs_gamma.png", "acc_vs_beta.png", "acc_vs_embedding_dim.png", "pareto.png",
                    "best_acc_matrices.png"}
    for name in pngs:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temp files


@pytest.mark.slow
def test_best_config_trains_with_the_cli(tmp_path):
    from hinterval.cli import main

    R.write_report(tmp_path, [make_record("a")], name="t", params=PARAMS, plots=False)
    rc = main(["train", "--config", str(tmp_path / "best_config.yaml"), "--out", str(tmp_path / "run"), "--num-tasks", "1",
               "--iters-per-task", "3", "--no-progress", "--no-tensorboard"])
    assert rc == 0 and json.loads((tmp_path / "run" / "result.json").read_text())["tasks_done"] == 1


def test_no_finished_trial_means_no_best_config(tmp_path):
    (tmp_path / "best_config.yaml").write_text("gamma: 1\n")  # stale file from an earlier run
    R.write_report(tmp_path, [make_record("c", status="STOPPED", accs=(0.99,))], name="t", params=PARAMS)
    assert not (tmp_path / "best_config.yaml").exists()
    assert "No trial finished every task" in (tmp_path / "leaderboard.md").read_text()


def test_report_survives_trials_without_any_result(tmp_path):
    recs = [make_record(t, status="ERROR", accs=(), gamma=g) for t, g in (("a", 1.0), ("b", 0.5))]
    for r in recs:
        r["num_tasks"] = None
    summary = R.write_report(tmp_path, recs, name="t", params=PARAMS)
    assert summary["best"] is None and (tmp_path / "trials.csv").is_file()
    assert (tmp_path / "plots" / "acc_vs_gamma.png").is_file()


def test_multi_objective_marks_the_pareto_front(tmp_path):
    recs = [make_record("a", accs=(0.9, 0.9), bwt=-0.2), make_record("b", accs=(0.9, 0.8), bwt=0.0),
            make_record("c", accs=(0.9, 0.7), bwt=-0.1)]
    summary = R.write_report(tmp_path, recs, name="t", params=PARAMS, objectives=["avg_acc", "bwt"], plots=False)
    assert summary["best"]["trial_id"] == "a"
    import pandas as pd

    df = pd.read_csv(tmp_path / "trials.csv").set_index("trial_id")
    assert df["pareto"].to_dict() == {"a": True, "b": True, "c": False}


def test_certified_accuracy_against_box_size_is_a_front_in_the_table_and_the_plots(tmp_path):
    """``--objective worst_avg_acc,box_size``: a trial with a larger box at lower certified accuracy
    is on the front; the leaderboard shows box size and gamma reached; the plots are drawn."""
    recs = [make_record(t, accs=(0.9, a), gamma=g) for t, a, g in (("a", 0.9, 0.05), ("b", 0.8, 0.4), ("c", 0.7, 0.1))]
    for r, box in zip(recs, (0.02, 0.16, 0.05)):
        r["history"][-1].update(box_size=box, gamma_reached=r["params"]["gamma"])
    summary = R.write_report(tmp_path, recs, name="t", params=PARAMS, objectives=["worst_avg_acc", "box_size"], plots=True)
    assert summary["best"]["trial_id"] == "a"
    import pandas as pd

    df = pd.read_csv(tmp_path / "trials.csv").set_index("trial_id")
    assert df["pareto"].to_dict() == {"a": True, "b": True, "c": False}
    header = next(line for line in (tmp_path / "leaderboard.md").read_text().splitlines() if line.startswith("| rank |"))
    assert "| box_size |" in header and "| gamma_reached |" in header
    assert (tmp_path / "plots" / "pareto.png").stat().st_size > 0


def test_acc_matrix_from_history():
    mat = plots.acc_matrix(make_record("a", accs=(0.9, 0.8)))
    assert mat == [[0.9, None], [0.8, 0.8]]


# --- recorder ---------------------------------------------------------------------------------------
def _result(done, acc, node="node-A"):
    return {"tasks_done": done, "num_tasks": 2, "avg_acc": acc, "bwt": 0.0, "worst_avg_acc": acc - 0.1,
            "worst_bwt": 0.0, "acc/til/task_00": acc, "node_id": node, "device": "cpu", "num_threads": 1,
            "elapsed_s": float(done), "final_avg_acc": acc if done == 2 else None, "config": {"gamma": 1.0}}


def hparams_sessions(run_dir: Path):
    """HParams plugin entries (tag, plugin data) in a TensorBoard run directory (what the HParams tab reads)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = []
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    found.append((value.tag, data))
    return found


def test_recorder_writes_records_tensorboard_and_counts_reruns(tmp_path):
    preset = {"gamma": 1.0, "beta": 0.01}
    base = {"benchmark": "split-digits", "num_tasks": 2, "iters_per_task": 20}
    trial = SimpleNamespace(trial_id="t1", config={"gamma": 1.0, "beta": 0.01}, error_file=None)
    from hinterval.callbacks import HParamDomain

    domains = [HParamDomain("gamma", low=0.1, high=10, log=True), HParamDomain("beta", low=0.001, high=1, log=True)]
    rec = SweepRecorder(str(tmp_path), base=base, preset=preset, hparams=domains, metrics=["avg_acc", "bwt"])
    rec.on_trial_start(0, [], trial)
    rec.on_trial_result(0, [], trial, _result(1, 0.9))
    [r] = load_records(tmp_path)
    assert r["status"] == "RUNNING" and r["tasks_done"] == 1 and r["is_preset"] and r["config"]["gamma"] == 1.0

    # the driver is killed and the sweep resumed: a fresh (unpickled) recorder continues the record
    import pickle

    rec2 = pickle.loads(pickle.dumps(rec))
    rec2.on_trial_start(0, [], trial)
    rec2.on_trial_result(0, [], trial, {**_result(1, 0.9), "replayed": True})  # re-sent, not re-trained: ignored
    rec2.on_trial_result(0, [], trial, _result(1, 0.9))  # task 1 trained again: a rerun
    rec2.on_trial_result(0, [], trial, _result(2, 0.8, node="node-B"))
    rec2.on_trial_complete(0, [], trial)
    [r] = load_records(tmp_path)
    assert r["status"] == "COMPLETE" and r["tasks_done"] == 2 and r["reruns"] == [1] and r["restarts"] == 1
    assert r["node_ids"] == ["node-A", "node-B"] and [h["tasks_done"] for h in r["history"]] == [1, 2]
    assert "config" not in r["history"][0]

    run = tmp_path / "tensorboard" / "t1-preset"  # the preset's trial is marked in its run name
    assert [p.name for p in (tmp_path / "tensorboard").iterdir()] == ["t1-preset"]
    entries = hparams_sessions(run)
    experiment = next(d.experiment for t, d in entries if t == "_hparams_/experiment")
    declared = {h.name: h for h in experiment.hparam_infos}
    assert list(declared) == ["gamma", "beta", "preset"] and all(h.differs for h in declared.values())
    assert declared["gamma"].domain_interval.max_value == 10 and "log" in declared["gamma"].description
    assert [m.name.tag for m in experiment.metric_infos] == ["summary/avg_acc", "summary/bwt"]
    starts = [d.session_start_info for t, d in entries if t == "_hparams_/session_start_info"]
    assert starts and all(s.group_name == "t1-preset" and s.hparams["preset"].bool_value for s in starts)
    assert starts[0].hparams["gamma"].number_value == 1.0
    [end] = [d.session_end_info for t, d in entries if t == "_hparams_/session_end_info"]
    from tensorboard.plugins.hparams import api_pb2

    assert end.status == api_pb2.STATUS_SUCCESS
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars, steps = set(), {}
    for events in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        if "summary/avg_acc" in acc.Tags()["scalars"]:
            steps.setdefault("summary/avg_acc", []).extend(e.step for e in acc.Scalars("summary/avg_acc"))
    assert {"summary/avg_acc", "summary/bwt", "task_acc/til/task_00", "time/elapsed_s"} <= scalars
    assert not any(t.startswith("hparam/") or t.endswith("tasks_done") for t in scalars)
    assert sorted(set(steps["summary/avg_acc"])) == [1, 2]  # a per-task series, not one value


def test_recorder_marks_only_one_preset_trial(tmp_path):
    preset = {"gamma": 1.0}
    rec = SweepRecorder(str(tmp_path), base={"benchmark": "split-digits"}, preset=preset, tensorboard=False)
    for tid in ("a", "b"):
        rec.on_trial_start(0, [], SimpleNamespace(trial_id=tid, config={"gamma": 1.0}, error_file=None))
    marks = {r["trial_id"]: r["is_preset"] for r in load_records(tmp_path)}
    assert sum(marks.values()) == 1


def test_recorder_marks_trials_the_resumed_experiment_does_not_know(tmp_path):
    rec = SweepRecorder(str(tmp_path), base={"benchmark": "split-digits"}, preset=None, tensorboard=False)
    known, lost = (SimpleNamespace(trial_id=t, config={"gamma": 1.0}, error_file=None) for t in ("k", "l"))
    for t in (known, lost):
        rec.on_trial_start(0, [], t)
    rec.on_experiment_end([known])
    status = {r["trial_id"]: r["status"] for r in load_records(tmp_path)}
    assert status == {"k": "RUNNING", "l": "LOST"}


@pytest.mark.parametrize("uri", [False, True])
def test_trial_state_round_trip_local_and_uri(tmp_path, uri):
    import torch

    from tune.trainable import TrialState

    root = (tmp_path / "states").as_uri() if uri else str(tmp_path / "states")
    st = TrialState(root, "abc")
    assert st.load() is None
    for done in (1, 2):
        st.save({"config": {"benchmark": "split-digits"}, "model": {"w": torch.ones(2) * done}, "tasks_done": done})
    back = st.load()
    assert back["tasks_done"] == 2 and torch.equal(back["model"]["w"], torch.full((2,), 2.0))


@pytest.mark.slow
def test_leaderboard_marks_trials_with_collapsed_tasks(tmp_path):
    healthy, collapsed = make_record("h", accs=(0.9, 0.9)), make_record("k", accs=(0.9, 0.7), gamma=5.0)
    collapsed["history"][-1]["collapsed_tasks"] = 1
    R.write_report(tmp_path, [healthy, collapsed], name="t", params=PARAMS, space=SPACE)
    board = (tmp_path / "leaderboard.md").read_text()
    assert "k (1 collapsed)" in board and "h (" not in board
    import pandas as pd

    df = pd.read_csv(tmp_path / "trials.csv").set_index("trial_id")
    assert df.loc["k", "collapsed_tasks"] == 1 and df.loc["h", "collapsed_tasks"] == 0


@pytest.mark.slow
def test_leaderboard_shows_the_scope_and_flags_a_box_that_never_opened(tmp_path):
    opened, held = make_record("o", accs=(0.9, 0.9)), make_record("z", accs=(0.9, 0.8), gamma=5.0)
    opened["history"][-1]["ramp_reached"], held["history"][-1]["ramp_reached"] = 1.0, 0.0
    opened["config"]["interval_scope"] = "last:3"
    held["config"]["interval_mode"] = "relaxed"
    R.write_report(tmp_path, [opened, held], name="t", params=PARAMS, space=SPACE)
    board = (tmp_path / "leaderboard.md").read_text()
    assert "z (box never opened)" in board and "o (box" not in board
    assert "last:3" in board and "relaxed (not certified)" in board
    import pandas as pd

    df = pd.read_csv(tmp_path / "trials.csv").set_index("trial_id")
    assert df.loc["o", "scope"] == "last:3" and df.loc["z", "ramp_reached"] == 0.0


def _final(tid, *, worst, avg, bwt=0.0, cil=0.5, step=1 / 450, gamma=1.0):
    rec = make_record(tid, accs=(avg, avg), gamma=gamma)
    rec["history"][-1].update(worst_avg_acc=worst, avg_acc=avg, bwt=bwt, cil_avg_acc=cil, test_samples=450,
                              sample_step=step)
    return rec


def test_ranked_by_certified_accuracy_then_avg_acc_then_bwt_and_ties_are_marked(tmp_path):
    recs = [_final("a", worst=0.95, avg=1.0), _final("b", worst=0.97, avg=0.99), _final("c", worst=0.97, avg=0.995),
            _final("d", worst=0.97, avg=0.995, bwt=-0.01), _final("e", worst=0.97, avg=0.995, bwt=-0.01)]
    assert records.rank_keys(["worst_avg_acc"]) == ["worst_avg_acc", "avg_acc", "bwt"]
    assert records.rank_keys(["avg_acc"]) == ["avg_acc", "worst_avg_acc", "bwt"]
    assert [r["trial_id"] for r in records.rank(recs, ["worst_avg_acc"])] == ["c", "d", "e", "b", "a"]
    R.write_report(tmp_path, recs, name="t", params=PARAMS, objectives=["worst_avg_acc"], plots=False)
    board = (tmp_path / "leaderboard.md").read_text()
    ranks = [ln.split("|")[1].strip() for ln in board.splitlines() if ln.startswith("| ") and "COMPLETE" in ln]
    assert ranks == ["1", "2", "2=", "4", "5"]  # d and e tie on every ranking key
    first = board.splitlines()[2]
    assert first.startswith("Ranked by `worst_avg_acc` (certified accuracy") and "ties broken by `avg_acc`, then `bwt`" in first
    assert "`worst_avg_acc` spans 0.9500–0.9700 (9 test samples)" in first


def test_a_metric_within_its_noise_gets_no_importances():
    import pandas as pd

    df = pd.DataFrame({"complete": [True] * 4, "worst_avg_acc": [0.94, 0.95, 0.96, 0.97],
                       "avg_acc": [1.0, 0.9978, 0.9978, 0.9956], "bwt": [0.0] * 4, "sample_step": [1 / 450] * 4})
    spread = noise.metric_noise(df)
    assert spread["worst_avg_acc"]["varies"] and spread["worst_avg_acc"]["noise"] == pytest.approx(1 / 450)
    assert not spread["avg_acc"]["varies"]  # 2 test samples apart: within 3 samples
    assert not spread["bwt"]["varies"]
    confirmation = {"configs": [{"stats": {"worst_avg_acc": {"mean": 0.97, "std": 0.011, "n": 3}}}]}
    noisy = noise.metric_noise(df, confirmation)  # a seed std of 0.011: 0.03 is within 3x of it
    assert noisy["worst_avg_acc"]["seed_std"] == 0.011 and not noisy["worst_avg_acc"]["varies"]


@pytest.mark.slow
def test_importances_only_for_the_metrics_that_vary(tmp_path):
    optuna = pytest.importorskip("optuna")
    from tune.searcher import create_study

    url = f"sqlite:///{tmp_path}/optuna.db"
    create_study(url, "s", ["worst_avg_acc"], {})
    study = optuna.load_study(study_name="s", storage=url)
    recs = []
    for i, g in enumerate([0.1, 0.3, 1.0, 3.0, 0.2, 2.0]):
        worst, avg = 0.93 + 0.01 * i, 1.0 - (i % 2) / 450
        t = study.ask({"gamma": optuna.distributions.FloatDistribution(0.05, 5, log=True)})
        for k, v in (("worst_avg_acc", worst), ("avg_acc", avg), ("bwt", 0.0), ("tune_trial_id", f"t{i}")):
            t.set_user_attr(k, v)
        study.tell(t, worst)
        recs.append(_final(f"t{i}", worst=worst, avg=avg, gamma=g))
    summary = R.write_report(tmp_path, recs, name="s", params=["gamma"], objectives=["worst_avg_acc"], plots=False,
                             study=(url, "s"))
    assert list(summary["importance"]["table"]) == ["worst_avg_acc"]  # avg_acc moves by one sample, bwt not at all
    board = (tmp_path / "leaderboard.md").read_text()
    assert "| avg_acc | 0.9978–1.0000 | 0.0022 | 0.0022 | n/a | no: within noise |" in board
    assert "| hyperparameter | worst_avg_acc |" in board
