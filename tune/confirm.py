"""Confirm a sweep's winner: train the top trials again with more training seeds.

A single-seed winner of a few trials is partly luck: on split-digits two configs a few test
samples apart can swap places with another training seed. After the search, the top ``top``
trials that finished every task (in :func:`tune.report.rank` order) are trained again with
``seeds`` more training seeds (the trial's ``seed`` + 1, + 2, ...). These runs are ordinary Ray
Tune trials of a second experiment, ``<name>-confirm``: their records are in
``results/<name>/confirm/trials/``, their TensorBoard runs ``confirm-<trial>-seed<k>`` sit beside
the search's runs. They are not search trials: Optuna never learns from them; the study keeps
their outcome as user attributes of the confirmed trial (``confirm_seeds``,
``confirm_<metric>_mean``, ``confirm_<metric>_std``, ``confirm_<metric>_values``).

``confirm.json`` holds the outcome (per seed, mean ± std per config, and whether the winner's
margin over the runner-up is inside the seed noise); the report (:mod:`tune.report`) reads it.
Ray is imported only by :func:`confirm_winners`.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hinterval import metrics as M
from hinterval.checkpoint import write_json

CONFIRM_FILE = "confirm.json"
#: the confirmation runs' records (``confirm/trials/*.json``), like a sweep's ``trials/``
CONFIRM_DIR = "confirm"
#: metrics summarised over the seeds
CONFIRM_METRICS = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT, M.WORST_BWT, "cil_avg_acc", M.DIL_AVG_ACC)
#: extra training seeds per confirmed config (3 seeds counting the search's own run)
DEFAULT_SEEDS = 2
#: configs confirmed: the winner (its margin over the runner-up is judged against the winner's seed std);
#: 2 also confirms the runner-up, at the cost of another wave of trials (the quick start must stay short)
DEFAULT_TOP = 1
#: what --smoke-test confirms (seeds, top): one extra run
SMOKE = (1, 1)
ATTR_PREFIX = "confirm_"


def resolve_counts(seeds: Optional[int], top: Optional[int], *, smoke_test: bool) -> tuple:
    """``(--confirm-seeds, --confirm-top)`` with their defaults (smaller for --smoke-test)."""
    d_seeds, d_top = SMOKE if smoke_test else (DEFAULT_SEEDS, DEFAULT_TOP)
    return (d_seeds if seeds is None else seeds), (d_top if top is None else top)


def plan(records: Sequence[Dict[str, Any]], objectives: Sequence[str], *, seeds: int, top: int) -> List[Dict[str, Any]]:
    """The configs to confirm: the ``top`` best finished trials, each with ``seeds`` new training seeds."""
    from tune.report import is_complete, rank

    chosen = [r for r in rank(records, objectives) if is_complete(r)][: max(0, top)] if seeds > 0 else []
    out = []
    for r in chosen:
        base_seed = int(r["config"].get("seed", 0) or 0)
        out.append({"trial_id": r["trial_id"], "params": dict(r["params"]), "seed": base_seed,
                    "seeds": [base_seed + k for k in range(1, seeds + 1)]})
    return out


def run_point(entry: Mapping[str, Any], seed: int) -> Dict[str, Any]:
    """The searcher config of one confirmation run: the trial's params with another training seed."""
    return {**entry["params"], "seed": seed}


def run_label(entry: Mapping[str, Any], seed: int) -> str:
    """TensorBoard run name of one confirmation run."""
    return f"confirm-{entry['trial_id']}-seed{seed}"


def _final(rec: Mapping[str, Any]) -> Dict[str, Optional[float]]:
    last = rec["history"][-1] if rec.get("history") else {}
    return {m: float(last[m]) if M.is_finite_number(last.get(m)) else None for m in CONFIRM_METRICS}


def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation (``None`` below 2 values)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    mu = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return {"mean": mu, "std": sd, "n": len(vals)}


def summarize(entries: Sequence[Dict[str, Any]], search_records: Sequence[Dict[str, Any]],
              confirm_records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> Dict[str, Any]:
    """Per confirmed config its runs (the search's and the confirmation's), mean ± std per metric, and
    the verdict on the winner's margin over the runner-up (``objectives[0]``)."""
    from tune.recorder import point_key
    from tune.report import is_complete, rank

    by_id = {r["trial_id"]: r for r in search_records}
    by_point = {point_key(r["params"]): r for r in confirm_records}
    configs = []
    for e in entries:
        src = by_id.get(e["trial_id"])
        if src is None:  # not a trial of these records
            continue
        runs = [{"seed": e["seed"], "trial_id": e["trial_id"], "source": "search", "status": src["status"],
                 "metrics": _final(src)}]
        for s in e["seeds"]:
            rec = by_point.get(point_key(run_point(e, s)))
            ok = rec is not None and is_complete(rec)
            runs.append({"seed": s, "trial_id": rec["trial_id"] if rec else None, "source": "confirm",
                         "status": rec["status"] if rec else "MISSING", "metrics": _final(rec) if ok else {}})
        stats = {}
        for m in CONFIRM_METRICS:
            vals = [r["metrics"].get(m) for r in runs if r["status"] == "COMPLETE"]
            if vals and all(v is not None for v in vals):
                stats[m] = mean_std(vals)
        configs.append({"trial_id": e["trial_id"], "params": e["params"], "seeds": [e["seed"], *e["seeds"]],
                        "runs": runs, "stats": stats,
                        "finished": sum(1 for r in runs if r["status"] == "COMPLETE")})
    ranked = [r for r in rank(search_records, objectives) if is_complete(r)]
    lasts = [r["history"][-1] for r in [*search_records, *confirm_records] if r.get("history")]
    steps = [float(h["sample_step"]) for h in lasts if M.is_finite_number(h.get("sample_step")) and h["sample_step"] > 0]
    counts = [int(h["test_samples"]) for h in lasts if M.is_finite_number(h.get("test_samples")) and h["test_samples"] > 0]
    sample = max(steps) if steps else (1.0 / min(counts) if counts else None)
    return {"objective": objectives[0], "configs": configs, "one_sample": sample,
            "verdict": verdict(configs, ranked[1] if len(ranked) > 1 else None, objectives[0], sample=sample)}


def verdict(configs: Sequence[Dict[str, Any]], runner_up: Optional[Dict[str, Any]], metric: str,
            sample: Optional[float] = None) -> Dict[str, Any]:
    """Is the winner ahead of the runner-up by more than the seed noise?

    The margin is the winner's mean minus the runner-up's mean (its single search value when it was
    not confirmed); the noise is the largest seed standard deviation of the confirmed configs, but
    never less than one test sample (``sample``, 1 / test samples): a few seeds can agree to the
    sample on a small test split, which says nothing about a margin of one sample. A margin at or
    below the noise is *inside* it: another seed or another test sample could swap the two.
    """
    if not configs or metric not in configs[0]["stats"] or runner_up is None:
        return {"metric": metric, "margin": None, "noise": None, "inside_noise": None}
    win = configs[0]["stats"][metric]
    other = next((c for c in configs[1:] if c["trial_id"] == runner_up["trial_id"]), None)
    if other is not None and metric in other["stats"]:
        r_mean, r_n, r_std = other["stats"][metric]["mean"], other["stats"][metric]["n"], other["stats"][metric]["std"]
    else:
        r_mean, r_n, r_std = _final(runner_up).get(metric), 1, None
    stds = [s for s in (win["std"], r_std) if s is not None]
    if r_mean is None or not stds:
        return {"metric": metric, "margin": None, "noise": None, "inside_noise": None}
    seed_std = max(stds)
    noise = max(seed_std, sample or 0.0)
    margin = win["mean"] - r_mean
    return {"metric": metric, "winner": configs[0]["trial_id"], "runner_up": runner_up["trial_id"],
            "runner_up_seeds": r_n, "margin": margin, "seed_std": seed_std, "one_sample": sample, "noise": noise,
            "inside_noise": margin <= noise + 1e-12}


def fmt_stat(stat: Optional[Mapping[str, Any]], digits: int = 4) -> str:
    """``0.9712 ± 0.0040 (3 seeds)``."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    sd = f" ± {stat['std']:.{digits}f}" if stat.get("std") is not None else ""
    return f"{stat['mean']:.{digits}f}{sd} ({stat['n']} seed{'s' if stat['n'] != 1 else ''})"


def verdict_line(v: Mapping[str, Any]) -> str:
    """One sentence on the winner's margin, for the console, the leaderboard and best_config.yaml."""
    if v.get("margin") is None:
        return "no runner-up to compare the winner with"
    n = "its search run" if v["runner_up_seeds"] == 1 else f"{v['runner_up_seeds']} seeds"
    seed_std, sample = v.get("seed_std", v["noise"]), v.get("one_sample")
    floor = f", one test sample {sample:.4f}" if sample else ""
    head = (f"winner {v['winner']} leads runner-up {v['runner_up']} ({n}) by {v['margin']:+.4f} {v['metric']} "
            f"(seed std {seed_std:.4f}{floor}): ")
    if v["inside_noise"]:
        return head + "INSIDE the noise, another seed could swap them (more seeds: --confirm-seeds, --confirm-top 2)"
    return head + f"{v['margin'] / v['noise']:.1f}x the noise, outside it"


def lines(confirmation: Mapping[str, Any]) -> List[str]:
    """Console lines: one per confirmed config, then the verdict."""
    out = []
    metric = confirmation["objective"]
    for i, c in enumerate(confirmation["configs"]):
        shown = [metric] + [m for m in (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT) if m != metric]
        stats = ", ".join(f"{m} {fmt_stat(c['stats'].get(m))}" for m in shown if m in c["stats"])
        out.append(f"confirmed {'winner' if i == 0 else f'rank {i + 1}'} {c['trial_id']} over seeds "
                   f"{','.join(map(str, c['seeds']))}: {stats or 'no seed finished'}")
    out.append(verdict_line(confirmation["verdict"]))
    return out


def current(out_dir: str | Path, records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The confirmation of a sweep as its records say now (``confirm.json``'s plan, the search's and the
    confirmation's records), or ``None`` when it was never confirmed: the report is always rebuilt from
    the records, like every other table."""
    from tune.recorder import load_records

    saved = load_confirmation(out_dir)
    if not saved or not saved.get("plan"):
        return None
    confirmation = summarize(saved["plan"], records, load_records(Path(out_dir) / CONFIRM_DIR), objectives)
    if not confirmation["configs"]:
        return None
    confirmation.update(plan=saved["plan"], complete=all(c["finished"] == len(c["seeds"]) for c in confirmation["configs"]))
    return confirmation


def load_confirmation(out_dir: str | Path) -> Optional[Dict[str, Any]]:
    """``confirm.json`` of a sweep, or ``None`` (never confirmed, or unreadable)."""
    path = Path(out_dir) / CONFIRM_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def record_in_study(url: str, study_name: str, confirmation: Mapping[str, Any]) -> int:
    """Keep the outcome as user attributes of each confirmed Optuna trial; returns how many were found.

    Optuna refuses to change a finished trial through its public API, so the attributes are written
    through the study's own storage tables (what ``study.trials[i].user_attrs`` reads back).
    """
    import optuna
    from optuna.storages._rdb import models

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    by_tune = {t.user_attrs.get("tune_trial_id"): t for t in study.get_trials(deepcopy=False)}
    found = 0
    db = storage.scoped_session()
    try:
        for c in confirmation["configs"]:
            trial = by_tune.get(c["trial_id"])
            if trial is None:
                continue
            found += 1
            attrs: Dict[str, Any] = {ATTR_PREFIX + "seeds": c["seeds"], ATTR_PREFIX + "finished": c["finished"]}
            for m, st in c["stats"].items():
                attrs[f"{ATTR_PREFIX}{m}_mean"] = st["mean"]
                attrs[f"{ATTR_PREFIX}{m}_std"] = st["std"]
                attrs[f"{ATTR_PREFIX}{m}_values"] = [r["metrics"].get(m) for r in c["runs"] if r["status"] == "COMPLETE"]
            for k, v in attrs.items():
                row = db.query(models.TrialUserAttributeModel).filter_by(trial_id=trial._trial_id, key=k).one_or_none()
                if row is None:
                    db.add(models.TrialUserAttributeModel(trial_id=trial._trial_id, key=k, value_json=json.dumps(v)))
                else:
                    row.value_json = json.dumps(v)
        db.commit()
    finally:
        db.close()
    return found


def confirm_winners(spec: Mapping[str, Any], trainable: Any, metrics: Sequence[str], args: Any,
                    max_concurrent: int) -> bool:
    """Run the confirmation (Ray is up) and write ``confirm.json``; returns whether it was interrupted.

    Args:
        spec: the sweep (:class:`tune.spec.SweepSpec`).
        trainable: the sweep's Tune trainable (with its resources).
        metrics: the headline metrics TensorBoard's HParams tab lists.
        args: the command line (``confirm_seeds``, ``confirm_top``; ``None`` = defaults).
        max_concurrent: trials at once.
    """
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.search import BasicVariantGenerator

    from tune import space as S
    from tune.recorder import SweepRecorder, load_records, point_key
    from tune.searcher import STUDY_FILE, study_url

    seeds, top = resolve_counts(getattr(args, "confirm_seeds", None), getattr(args, "confirm_top", None),
                                smoke_test=bool(spec["smoke_test"]))
    out = Path(spec["out_dir"])
    records = load_records(out)
    if any(r["status"] in ("PENDING", "RUNNING", "RETRYING") for r in records) or len(records) < spec["num_samples"]:
        return False  # the search itself is unfinished: confirm after --resume
    entries = plan(records, spec["objectives"], seeds=seeds, top=top)
    if not entries:
        return False
    done = load_confirmation(out)
    if done and done.get("complete") and done.get("plan") == entries:
        return False  # a resumed sweep that was confirmed before
    points = [run_point(e, s) for e in entries for s in e["seeds"]]
    labels = {point_key(run_point(e, s)): run_label(e, s) for e in entries for s in e["seeds"]}
    name = spec["name"] + "-" + CONFIRM_DIR
    if "://" not in spec["storage"]:  # an interrupted confirmation starts again
        shutil.rmtree(Path(spec["storage"]) / name, ignore_errors=True)
    shutil.rmtree(out / CONFIRM_DIR, ignore_errors=True)
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
        tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent),
                                    num_samples=len(points), reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=spec["storage"], failure_config=tune.FailureConfig(max_failures=2),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  callbacks=[recorder, CSVLoggerCallback(), JsonLoggerCallback()],  # Tune's results reads them
                                  progress_reporter=reporter, verbose=1))
    try:
        tuner.fit()
    except KeyboardInterrupt:
        return True
    confirmation = summarize(entries, records, load_records(out / CONFIRM_DIR), spec["objectives"])
    confirmation.update(plan=entries, complete=all(c["finished"] == len(c["seeds"]) for c in confirmation["configs"]))
    write_json(out / CONFIRM_FILE, confirmation)
    if (out / STUDY_FILE).is_file():
        try:
            record_in_study(study_url(out), spec["name"], confirmation)
        except Exception as exc:  # noqa: BLE001 - the study attributes must never cost the report
            print(f"confirm: could not record the confirmation in the Optuna study: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
    print("\n".join(lines(confirmation)), flush=True)
    return False
