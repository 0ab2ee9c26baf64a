"""The confirmation of a sweep's winner (tune/confirm.py) without Ray running: the plan, the
statistics over seeds, the verdict on the winner's margin, the study attributes and the report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("ray")
pytest.importorskip("pandas")

from tune import confirm as C  # noqa: E402
from tune import confirmation as CF  # noqa: E402
from tune.records import point_key  # noqa: E402
from tune.spec import confirm_counts  # noqa: E402


def rec(tid, worst, avg=0.99, *, seed=0, params=None, status="COMPLETE"):
    params = dict(params or {"gamma": 1.0})
    return {"trial_id": tid, "status": status, "params": params, "config": {"seed": seed, **params},
            "num_tasks": 2, "tasks_done": 2, "is_preset": False,
            "history": [{"tasks_done": 2, "worst_avg_acc": worst, "avg_acc": avg, "bwt": 0.0, "worst_bwt": 0.0,
                         "cil_avg_acc": 0.5, "test_samples": 200, "sample_step": 1 / 200}]}


def confirm_rec(tid, entry, seed, worst, avg=0.99):
    return rec(tid, worst, avg, seed=seed, params=CF.run_point(entry, seed))


def test_plan_takes_the_best_finished_trials_and_the_next_seeds():
    recs = [rec("a", 0.90, params={"gamma": 0.5}), rec("b", 0.95, seed=7, params={"gamma": 1.0}),
            rec("c", 0.99, status="STOPPED")]
    [entry] = CF.plan(recs, ["worst_avg_acc"], seeds=2, top=1)
    assert entry == {"trial_id": "b", "params": {"gamma": 1.0}, "seed": 7, "seeds": [8, 9]}
    assert [e["trial_id"] for e in CF.plan(recs, ["worst_avg_acc"], seeds=1, top=5)] == ["b", "a"]
    assert CF.plan(recs, ["worst_avg_acc"], seeds=0, top=1) == []
    assert CF.run_point(entry, 8) == {"gamma": 1.0, "seed": 8} and CF.run_label(entry, 8) == "confirm-b-seed8"
    assert confirm_counts(None, None, smoke_test=False) == (2, 1)
    assert confirm_counts(None, None, smoke_test=True) == (1, 1)
    assert confirm_counts(3, 2, smoke_test=True) == (3, 2)


def test_mean_and_sample_std_over_seeds():
    st = CF.mean_std([0.96, 0.97, 0.98])
    assert st["mean"] == pytest.approx(0.97) and st["std"] == pytest.approx(0.01) and st["n"] == 3
    assert CF.mean_std([0.5])["std"] is None
    assert CF.fmt_stat(st) == "0.9700 ± 0.0100 (3 seeds)"


@pytest.mark.parametrize("winner_seeds, runner, inside", [
    ((0.97, 0.96, 0.98), 0.965, True),     # 0.005 ahead, seed std 0.01: inside the noise
    ((0.97, 0.971, 0.969), 0.95, False),   # 0.02 ahead, seed std 0.001 (one sample 0.005): outside
    ((0.97, 0.97, 0.97), 0.965, True),     # seeds agree to the sample, one sample ahead: still inside
    ((0.961, 0.90, 0.90), 0.96, False),    # the search run was lucky: 0.04 behind over the seeds, std 0.035
])
def test_the_verdict_flags_a_margin_inside_the_noise(winner_seeds, runner, inside):
    search = [rec("w", winner_seeds[0], params={"gamma": 1.0}), rec("r", runner, params={"gamma": 2.0})]
    [entry] = CF.plan(search, ["worst_avg_acc"], seeds=2, top=1)
    confirms = [confirm_rec(f"x{s}", entry, s, w) for s, w in zip(entry["seeds"], winner_seeds[1:])]
    out = CF.summarize([entry], search, confirms, ["worst_avg_acc"])
    [c] = out["configs"]
    assert c["seeds"] == [0, 1, 2] and c["finished"] == 3
    assert c["stats"]["worst_avg_acc"]["mean"] == pytest.approx(sum(winner_seeds) / 3)
    v = out["verdict"]
    assert v["runner_up"] == "r" and v["margin"] == pytest.approx(sum(winner_seeds) / 3 - runner)
    assert v["noise"] >= 1 / 200 and v["inside_noise"] is inside
    assert ("INSIDE the noise" in CF.verdict_line(v)) is inside
    assert ("trails" in CF.verdict_line(v)) is (v["margin"] < 0)


def test_a_failed_confirmation_run_counts_as_missing():
    search = [rec("w", 0.97), rec("r", 0.96, params={"gamma": 2.0})]
    [entry] = CF.plan(search, ["worst_avg_acc"], seeds=2, top=1)
    confirms = [confirm_rec("x1", entry, 1, 0.97), {**confirm_rec("x2", entry, 2, 0.5), "status": "ERROR"}]
    [c] = CF.summarize([entry], search, confirms, ["worst_avg_acc"])["configs"]
    assert c["finished"] == 2 and c["stats"]["worst_avg_acc"]["n"] == 2
    assert [r["status"] for r in c["runs"]] == ["COMPLETE", "COMPLETE", "ERROR"]


def test_outcome_is_kept_in_the_study_as_one_attribute_per_confirmed_trial(tmp_path):
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    for tid, v in (("w", 0.97), ("r", 0.96)):
        t = study.ask()
        t.set_user_attr("tune_trial_id", tid)
        study.tell(t, v)
    search = [rec("w", 0.97), rec("r", 0.96, params={"gamma": 2.0})]
    [entry] = CF.plan(search, ["worst_avg_acc"], seeds=2, top=1)
    out = CF.summarize([entry], search, [confirm_rec("x1", entry, 1, 0.96), confirm_rec("x2", entry, 2, 0.98)],
                      ["worst_avg_acc"])
    assert C.record_in_study(url, "s", out) == 1
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 2  # no extra trial: Optuna never learns from the confirmation
    assert [k for k in study.user_attrs if k.startswith(C.ATTR_PREFIX)] == [C.study_attr(0)]  # the winner only
    attrs = study.user_attrs[C.study_attr(study.trials[0].number)]
    assert attrs["tune_trial_id"] == "w" and attrs["seeds"] == [0, 1, 2] and attrs["finished"] == 3
    assert attrs["worst_avg_acc_values"] == [0.97, 0.96, 0.98]
    assert attrs["worst_avg_acc_mean"] == pytest.approx(0.97) and attrs["worst_avg_acc_std"] > 0
    assert C.record_in_study(url, "s", out) == 1  # a resumed sweep records it again: same attribute, same value
    assert optuna.load_study(study_name="s", storage=url).user_attrs[C.study_attr(0)] == attrs


def test_the_report_shows_the_confirmation_from_the_records(tmp_path):
    from hinterval.files import write_json
    from tune.report import write_report

    search = [rec("w", 0.97, params={"gamma": 1.0}), rec("r", 0.96, params={"gamma": 2.0})]
    [entry] = CF.plan(search, ["worst_avg_acc"], seeds=2, top=1)
    for r in [confirm_rec("x1", entry, 1, 0.96), confirm_rec("x2", entry, 2, 0.98)]:
        write_json(tmp_path / CF.CONFIRM_DIR / "trials" / f"{r['trial_id']}.json", r)
    write_json(tmp_path / CF.CONFIRM_FILE, {"plan": [entry], "complete": True})  # what confirm_winners leaves
    summary = write_report(tmp_path, search, name="s", params=["gamma"], objectives=["worst_avg_acc"], plots=False)
    assert summary["confirmation"]["configs"][0]["stats"]["worst_avg_acc"]["n"] == 3
    board = (tmp_path / "leaderboard.md").read_text()
    assert "| w | 0,1,2 | 0.9700 ± 0.0100 (3 seeds) |" in board and "INSIDE the noise" in board
    assert "0.9700 ± 0.0100 (3)" in board  # the table's column for the confirmed trial
    best = (tmp_path / "best_config.yaml").read_text()
    assert "# Confirmed over training seeds 0,1,2: worst_avg_acc 0.9700 ± 0.0100 (3 seeds)" in best
    saved = json.loads((tmp_path / CF.CONFIRM_FILE).read_text())
    assert saved["verdict"]["winner"] == "w" and saved["plan"] == [entry]
    # a confirmation made for another ranking (the winner changed after a resume) is not shown
    search2 = [rec("w", 0.97), rec("r", 0.96, params={"gamma": 2.0}), rec("n", 0.99, params={"gamma": 3.0})]
    assert write_report(tmp_path, search2, name="s", params=["gamma"], objectives=["worst_avg_acc"],
                        plots=False)["confirmation"] is None


def test_a_resumed_confirmation_keeps_its_finished_runs(tmp_path):
    """After an interruption only the unfinished runs train again; their stale records and TensorBoard
    runs go. A confirmation of another plan starts from nothing."""
    from hinterval.files import write_json

    search = [rec("w", 0.97, params={"gamma": 1.0}), rec("r", 0.95, params={"gamma": 2.0})]
    [entry] = CF.plan(search, ["worst_avg_acc"], seeds=2, top=1)
    points = [CF.run_point(entry, s) for s in entry["seeds"]]
    labels = {point_key(p): CF.run_label(entry, s) for p, s in zip(points, entry["seeds"])}
    done = confirm_rec("x1", entry, 1, 0.96)
    running = {**confirm_rec("x2", entry, 2, 0.98), "status": "RUNNING", "tasks_done": 1}
    for r in (done, running):
        write_json(tmp_path / CF.CONFIRM_DIR / "trials" / f"{r['trial_id']}.json", r)
        (tmp_path / "tensorboard" / labels[point_key(r["params"])]).mkdir(parents=True)
    assert C._runs_left(tmp_path, points, labels, same_plan=True) == [points[1]]
    assert sorted(p.name for p in (tmp_path / CF.CONFIRM_DIR / "trials").iterdir()) == ["x1.json"]
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == [labels[point_key(points[0])]]
    assert C._runs_left(tmp_path, points, labels, same_plan=False) == points
    assert not (tmp_path / CF.CONFIRM_DIR).exists()
