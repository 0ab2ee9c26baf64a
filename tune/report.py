"""Sweep reporting from the per-trial records: trials.csv, leaderboard.md, best_config.yaml, plots.

:func:`write_report` rebuilds every file from the records (``trials/*.json``, the confirmation's
``confirm/trials/*.json``) each time: the ranking is :mod:`tune.records`, the tables
:mod:`tune.leaderboard`, the plots :mod:`tune.plots`. With the sweep's Optuna study at hand,
``leaderboard.md`` also lists hyperparameter importances (``optuna.importance``, fANOVA) once
enough trials finished. Every file is written atomically (temp file + rename). No Ray.
"""
from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hinterval import metrics as M
from hinterval.config import FIELDS
from hinterval.files import atomic_write, write_json
from tune import plots as P
from tune.confirmation import CONFIRM_FILE, current
from tune.leaderboard import confirmation_comment, fmt, leaderboard_markdown, trials_frame
from tune.noise import NOISE_METRICS, metric_noise
from tune.records import best_record, last_report, rank_keys

#: per-machine settings left out of best_config.yaml (``hinterval train`` picks them for its machine)
MACHINE_KEYS = ("device", "num_threads")
#: finished trials needed before hyperparameter importances are computed
MIN_IMPORTANCE_TRIALS = 4


def best_config(rec: Mapping[str, Any]) -> Dict[str, Any]:
    """The trial's ExperimentConfig keys, without per-machine settings and unset values."""
    return {k: v for k, v in rec["config"].items() if k in FIELDS and k not in MACHINE_KEYS and v is not None}


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (files that get shared or committed)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def importances(url: str, study_name: str, *, targets: Optional[Sequence[str]] = None,
                min_trials: int = MIN_IMPORTANCE_TRIALS) -> Dict[str, Any]:
    """fANOVA importances of the sweep's Optuna study for each of ``targets`` (metrics kept as user
    attributes of every finished trial, see tune.searcher; default: the study's objectives).

    Returns ``{"table": {metric: {param: share}}, "params": [...], "trials": n, "method": ...}``, or
    ``{"note": why not}`` with fewer than ``min_trials`` finished trials or no target to explain.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < min_trials:
        return {"note": f"Hyperparameter importances need at least {min_trials} trials that finished every task "
                        f"({len(done)} so far)."}
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    fns: Dict[str, Any] = {}
    for m in (names if targets is None else targets):
        if m in names:
            fns[m] = functools.partial(lambda t, i: t.values[i], i=names.index(m))
        elif all(M.is_finite_number(t.user_attrs.get(m)) for t in done):
            fns[m] = functools.partial(lambda t, m: t.user_attrs[m], m=m)
    if not fns:
        return {"note": "No importances: no metric varies between the finished trials by more than its noise "
                        "(see the spread and noise table)."}
    table = {n: get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target=f)
             for n, f in fns.items()}
    first = next(iter(table.values()))
    params = sorted({p for t in table.values() for p in t}, key=lambda p: -first.get(p, 0.0))
    return {"table": table, "params": params, "trials": len(done), "method": "fANOVA (Optuna, seed 0)"}


def write_report(out_dir: str | Path, records: Sequence[Dict[str, Any]], *, name: str, params: Sequence[str],
                 objectives: Sequence[str] = (M.AVG_ACC,), plots: bool = True,
                 space: Optional[Mapping[str, Any]] = None, study: Optional[Tuple[str, str]] = None) -> Dict[str, Any]:
    """Write trials.csv, leaderboard.md, best_config.yaml (if any trial finished) and plots.

    Args:
        space: the sweep's space in the YAML notation (choices get categorical axes, log ranges log axes).
        study: ``(storage URL, study name)`` of the sweep's Optuna study, for importances.

    Returns a summary: ``{"trials", "complete", "best": record or None, "files": [...], "importance"}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    out = Path(out_dir)
    space = dict(space or {})
    files: List[Path] = []
    confirmation = current(out, records, objectives)
    best = best_record(records, objectives)
    if confirmation and (best is None or not confirmation.get("configs")
                         or confirmation["configs"][0]["trial_id"] != best["trial_id"]):
        confirmation = None  # made for another ranking of these trials (e.g. before a resume added trials)
    if confirmation is not None:  # what the report shows, rebuilt from the records
        write_json(out / CONFIRM_FILE, confirmation)
    df = trials_frame(records, params=params, objectives=objectives, confirmation=confirmation)
    noise = metric_noise(df, confirmation)
    importance = None
    if study is not None:
        try:
            varying = [m for m in dict.fromkeys([*objectives, *NOISE_METRICS]) if m in noise and noise[m]["varies"]]
            importance = importances(*study, targets=varying)
        except Exception as exc:  # noqa: BLE001 - importances must never cost the tables
            print(f"report: no hyperparameter importances: {type(exc).__name__}: {exc}", file=sys.stderr)
    atomic_write(out / "trials.csv", lambda f: df.to_csv(f, index=False), mode="w")
    files.append(out / "trials.csv")
    board = leaderboard_markdown(df, name=name, params=params, objectives=objectives, importance=importance,
                                 confirmation=confirmation, noise=noise)
    atomic_write(out / "leaderboard.md", lambda f: f.write(board), mode="w")
    files.append(out / "leaderboard.md")
    if best is not None:
        last = last_report(best)
        header = (f"# Best config of sweep {name!r}: trial {best['trial_id']}, "
                  + ", ".join(f"{o} {fmt(last.get(o))}" for o in rank_keys(objectives)) + " (its search run)"
                  + "".join(f"\n# {line}" for line in confirmation_comment(confirmation, objectives))
                  + f"\n# Train it: {shlex.join(['hinterval', 'train', '--config', str(_shown(out / 'best_config.yaml'))])}"
                  + "\n# (iters_per_task is the sweep's; raise it for a final run with --iters-per-task)\n")
        text = header + yaml.safe_dump(best_config(best), sort_keys=True)
        atomic_write(out / "best_config.yaml", lambda f: f.write(text), mode="w")
        files.append(out / "best_config.yaml")
    else:
        (out / "best_config.yaml").unlink(missing_ok=True)  # a stale one would not match these trials
    if plots and len(df):
        plot_dir = out / "plots"
        for old in plot_dir.glob("*.png"):  # plots of trials or params no longer in this report
            old.unlink()
        pdf = df.copy()
        jobs = []
        for p in params:
            pdf[p] = pdf[p].map(lambda v: ",".join(map(str, v)) if isinstance(v, list) else v)
            jobs.append((functools.partial(P.plot_param, pdf, p, spec=space.get(p) if isinstance(space.get(p), Mapping) else {}),
                         plot_dir / f"acc_vs_{p}.png"))
        jobs.append((functools.partial(P.plot_pareto, pdf, objectives=objectives), plot_dir / "pareto.png"))
        if best is not None:
            jobs.append((functools.partial(P.plot_matrices, best), plot_dir / "best_acc_matrices.png"))
        if importance and importance.get("table"):
            jobs.append((functools.partial(P.plot_importance, importance), plot_dir / "param_importance.png"))
        for plot, path in jobs:
            try:
                plot(path)
                files.append(path)
            except Exception as exc:  # noqa: BLE001 - a plot must never cost the tables above
                print(f"report: could not draw {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                plt.close("all")
    return {"trials": len(df), "complete": int(df["complete"].sum()) if len(df) else 0, "best": best,
            "files": [str(f) for f in files], "frame": df, "importance": importance, "confirmation": confirmation,
            "noise": noise}
