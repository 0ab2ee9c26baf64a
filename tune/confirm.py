"""Run a sweep's confirmation: the top trials trained again with more training seeds, on Ray.

What is confirmed and how it is summarised is :mod:`tune.confirmation`; this module runs those
trials as a second Tune experiment (``<name>-confirm``), writes ``confirm.json`` and keeps the
outcome in the sweep's Optuna study. Ray is imported only by :func:`confirm_winners`.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

from hinterval import metrics as M
from hinterval.files import write_json
from tune.confirmation import (CONFIRM_DIR, CONFIRM_FILE, lines, load_confirmation, plan, run_label, run_point,
                               summarize)
from tune.records import is_complete, load_records, point_key, unfinished
from tune.spec import experiment_name

ATTR_PREFIX = "confirm_"


def study_attr(trial_number: int) -> str:
    """The study user attribute that holds the confirmation of Optuna trial ``trial_number``."""
    return f"{ATTR_PREFIX}trial_{trial_number}"


def record_in_study(url: str, study_name: str, confirmation: Mapping[str, Any]) -> int:
    """Keep the outcome in the study: one user attribute :func:`study_attr` per confirmed trial, holding
    its ``tune_trial_id``, the ``seeds``, how many ``finished``, and per metric ``<metric>_mean``,
    ``<metric>_std`` and ``<metric>_values``; returns how many confirmed trials were found.

    Why the study and not the trial: Optuna never changes a finished trial.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url)
    by_tune = {t.user_attrs.get("tune_trial_id"): t for t in study.get_trials(deepcopy=False)}
    found = 0
    for c in confirmation["configs"]:
        trial = by_tune.get(c["trial_id"])
        if trial is None:
            continue
        found += 1
        outcome: Dict[str, Any] = {"tune_trial_id": c["trial_id"], "seeds": c["seeds"], "finished": c["finished"]}
        for m, st in c["stats"].items():
            outcome[f"{m}_mean"], outcome[f"{m}_std"] = st["mean"], st["std"]
            outcome[f"{m}_values"] = [r["metrics"].get(m) for r in c["runs"] if r["status"] == "COMPLETE"]
        study.set_user_attr(study_attr(trial.number), outcome)
    return found


def _runs_left(out: Path, points: Sequence[Dict[str, Any]], labels: Mapping[str, str], *, same_plan: bool) -> list:
    """The confirmation runs still to train. A confirmation of the same plan that was interrupted keeps
    its finished runs (their records and TensorBoard runs); the others' traces go, so each run is
    recorded once. Another plan (the search ranked differently) starts from nothing."""
    runs_dir = out / CONFIRM_DIR
    if not same_plan:
        shutil.rmtree(runs_dir, ignore_errors=True)
    finished = set()
    for rec in load_records(runs_dir):
        if is_complete(rec):
            finished.add(point_key(rec["params"]))
        else:
            (runs_dir / "trials" / f"{rec['trial_id']}.json").unlink(missing_ok=True)
    todo = [p for p in points if point_key(p) not in finished]
    for p in todo:
        shutil.rmtree(out / "tensorboard" / labels[point_key(p)], ignore_errors=True)
    return todo


def confirm_winners(spec: Mapping[str, Any], trainable: Any, metrics: Sequence[str], max_concurrent: int) -> bool:
    """Run the confirmation (Ray is up) and write ``confirm.json``; returns whether it was interrupted.

    Args:
        spec: the sweep (:class:`tune.spec.SweepSpec`).
        trainable: the sweep's Tune trainable (with its resources).
        metrics: the headline metrics TensorBoard's HParams tab lists.
        max_concurrent: trials at once.
    """
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.search import BasicVariantGenerator

    from tune import space as S
    from tune.recorder import SweepRecorder
    from tune.searcher import STUDY_FILE, study_url

    seeds, top = spec["confirm_seeds"], spec["confirm_top"]  # the sweep's own, also when it is resumed
    out = Path(spec["out_dir"])
    records = load_records(out)
    if unfinished(records, spec["num_samples"]):
        return False  # the search itself is unfinished: confirm after --resume
    entries = plan(records, spec["objectives"], seeds=seeds, top=top)
    if not entries:
        return False
    done = load_confirmation(out)
    if done and done.get("complete") and done.get("plan") == entries:
        return False  # a resumed sweep that was confirmed before
    points = [run_point(e, s) for e in entries for s in e["seeds"]]
    labels = {point_key(run_point(e, s)): run_label(e, s) for e in entries for s in e["seeds"]}
    name = experiment_name(spec) + "-" + CONFIRM_DIR
    if "://" not in spec["storage"]:  # Tune's state of an interrupted confirmation: a new experiment runs what is left
        shutil.rmtree(Path(spec["storage"]) / name, ignore_errors=True)
    todo = _runs_left(out, points, labels, same_plan=bool(done) and done.get("plan") == entries)
    space = S.parse_space(spec["space"])
    hparams = list(S.tensorboard_hparams(space))
    # the search's HParams columns (preset included, False here), so TensorBoard shows both kinds of run in one table
    recorder = SweepRecorder(str(out / CONFIRM_DIR), base=spec["base"], preset=spec["preset_point"], tensorboard=spec["tensorboard"],
                             hparams=hparams, metrics=metrics, tensorboard_dir=str(out / "tensorboard"), run_labels=labels)
    print(f"\nconfirming the top {len(entries)} trial(s) with {seeds} more training seed(s) each: "
          + "; ".join(f"{e['trial_id']} seeds {','.join(map(str, e['seeds']))}" for e in entries), flush=True)
    reporter = tune.CLIReporter(metric_columns={M.TASKS_DONE: "tasks", M.AVG_ACC: "avg_acc", M.WORST_AVG_ACC: "worst_acc"},
                                parameter_columns=[*space.names, "seed"], max_report_frequency=30, sort_by_metric=False)
    tuner = tune.Tuner(
        trainable,
        param_space={k: None for k in points[0]},  # every key a point sets must exist; the points fill them in
        tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=todo, max_concurrent=max_concurrent),
                                    num_samples=len(todo), reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=spec["storage"], failure_config=tune.FailureConfig(max_failures=2),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # as the search: 1 snapshots the experiment at every checkpoint
                                  callbacks=[recorder, CSVLoggerCallback(), JsonLoggerCallback()],  # Tune's results reads them
                                  progress_reporter=reporter, verbose=1))
    try:
        if todo:
            tuner.fit()
        stopped = False
    except KeyboardInterrupt:
        stopped = True
    runs = load_records(out / CONFIRM_DIR)
    confirmation = summarize(entries, records, runs, spec["objectives"])
    write_json(out / CONFIRM_FILE, confirmation)  # the report shows what finished; --resume runs it again
    if stopped or unfinished(runs, len(points)):  # Tune stops gracefully on Ctrl-C: no exception reaches here
        return True
    if (out / STUDY_FILE).is_file():
        try:
            record_in_study(study_url(out), spec["name"], confirmation)
        except Exception as exc:  # noqa: BLE001 - the study attributes must never cost the report
            print(f"confirm: could not record the confirmation in the Optuna study: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
    print("\n".join(lines(confirmation)), flush=True)
    return False
