"""Sweep reporting from the per-trial records: trials.csv, leaderboard.md, best_config.yaml, plots.

Only trials that finished every task are ranked and can become ``best_config.yaml``: a trial
stopped early (ASHA) or interrupted has seen fewer, easier tasks, so its average accuracy is
not comparable. :func:`rank` is the one ordering every table and the best config come from.
With the sweep's Optuna study at hand, ``leaderboard.md`` also lists hyperparameter importances
(``optuna.importance``, fANOVA) once enough trials finished. Every file is written atomically
(temp file + rename). Matplotlib uses Agg. This module does not import Ray.
"""
from __future__ import annotations

import functools
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hinterval import metrics as M
from hinterval.files import atomic_write
from hinterval.config import FIELDS

METRIC_COLUMNS = tuple(M.LABELS)
#: per-machine settings left out of best_config.yaml (``hinterval train`` picks them for its machine)
MACHINE_KEYS = ("device", "num_threads")
#: finished trials needed before hyperparameter importances are computed
MIN_IMPORTANCE_TRIALS = 4
#: accuracy axes span at least this much, so differences of a few tenths of a point do not fill a plot
MIN_ACC_SPAN = 0.1
LABELS = M.LABELS
SCENARIO_TITLES = {"til": "task-incremental (TIL)", "worst": "worst case (certified)", "dil": "domain-incremental (DIL)",
                   "cil": "class-incremental (CIL)"}


def rank_keys(objectives: Sequence[str]) -> List[str]:
    """Objectives, then worst-case accuracy as the tie-breaker (several configs reach 100 % on easy benchmarks)."""
    return list(objectives) + ([M.WORST_AVG_ACC] if M.WORST_AVG_ACC not in objectives else [])


def _last(rec: Mapping[str, Any]) -> Dict[str, Any]:
    return rec["history"][-1] if rec.get("history") else {}


def is_complete(rec: Mapping[str, Any]) -> bool:
    """Finished every task (the only trials that are ranked)."""
    return rec.get("status") == "COMPLETE" and rec.get("num_tasks") is not None and rec["tasks_done"] >= rec["num_tasks"]


def rank(records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> List[Dict[str, Any]]:
    """Trials in leaderboard order: finished ones by :func:`rank_keys` (missing values last), then the rest.

    The one ranking: the leaderboard, trials.csv and :func:`best_record` all read it.
    """
    keys = rank_keys(objectives)

    def key(r: Mapping[str, Any]) -> Tuple:
        last = _last(r)
        return (not is_complete(r),) + tuple(-last[k] if M.is_finite_number(last.get(k)) else math.inf for k in keys)

    return sorted(records, key=key)  # stable: ties keep the trials' start order


def best_record(records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The first of :func:`rank`, if it finished every task with a finite primary objective."""
    ranked = rank(records, objectives)
    if ranked and is_complete(ranked[0]) and M.is_finite_number(_last(ranked[0]).get(objectives[0])):
        return ranked[0]
    return None


def pareto_front(points: Sequence[Sequence[float]]) -> List[int]:
    """Indices of the non-dominated points when every coordinate is maximised.

    Optuna's ``study.best_trials`` of an in-memory study holding one finished trial per point, so
    the front is the one Optuna (and optuna-dashboard) would show for these values."""
    import optuna

    if not points:
        return []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        study = optuna.create_study(directions=["maximize"] * max(2, len(points[0])))
        for p in points:
            values = [float(v) for v in p]
            study.add_trial(optuna.trial.create_trial(values=values + values[:1] * (2 - len(values))))
        return sorted(t.number for t in study.best_trials)
    finally:
        optuna.logging.set_verbosity(verbosity)


def front_axes(objectives: Sequence[str]) -> Tuple[str, str]:
    """The two metrics of the Pareto flag: the first two objectives, or avg acc vs worst-case avg acc
    for a single objective (both are maximised and, unlike BWT, they differ between trials)."""
    return (objectives[0], objectives[1]) if len(objectives) > 1 else (M.AVG_ACC, M.WORST_AVG_ACC)


def _mark_front(df, axes: Sequence[str]):
    done = df[df["complete"] & df[list(axes)].notna().all(axis=1)]
    flags = [False] * len(df)
    if len(done):
        for i in pareto_front(done[list(axes)].astype(float).values.tolist()):
            flags[df.index.get_loc(done.index[i])] = True
    return flags


def trials_frame(records: Sequence[Dict[str, Any]], *, params: Sequence[str], objectives: Sequence[str]):
    """One row per trial in :func:`rank` order: status, params, metrics (final or so far), wall time, nodes,
    Pareto flag (over :func:`front_axes`)."""
    import pandas as pd

    rows = []
    for r in rank(records, objectives):
        last = _last(r)
        row: Dict[str, Any] = {"trial_id": r["trial_id"], "status": r["status"], "is_preset": bool(r.get("is_preset")),
                               "tasks_done": r["tasks_done"], "num_tasks": r.get("num_tasks")}
        for p in params:
            row[p] = r["params"].get(p, r["config"].get(p))
        for m in METRIC_COLUMNS:
            row[m] = last.get(m)
        row["collapsed_tasks"] = int(last.get("collapsed_tasks") or 0)
        row[M.RAMP_REACHED] = last.get(M.RAMP_REACHED)
        row["scope"] = certified_scope(r["config"])
        row["wall_time_s"] = r.get("wall_time_s")
        row["node_id"] = r.get("node_id")
        row["num_nodes"] = len(r.get("node_ids") or [])
        row["restarts"] = r.get("restarts", 0)
        row["reruns"] = len(r.get("reruns") or [])
        row["error"] = r.get("error")
        row["config"] = json.dumps({k: v for k, v in r["config"].items() if k in FIELDS}, sort_keys=True)
        row["complete"] = is_complete(r)
        rows.append(row)
    cols = ["trial_id", "status", "is_preset", "tasks_done", "num_tasks", *params, *METRIC_COLUMNS, "collapsed_tasks",
            M.RAMP_REACHED, "scope", "wall_time_s",
            "node_id", "num_nodes", "restarts", "reruns", "error", "config", "complete"]
    df = pd.DataFrame(rows, columns=cols)
    df["pareto"] = _mark_front(df, front_axes(objectives)) if len(df) else []
    return df


def certified_scope(config: Mapping[str, Any]) -> str:
    """Which weights a trial's worst-case figure is certified for: its interval scope, or
    ``relaxed (not certified)`` for the unsound mode."""
    if config.get("interval_mode") == "relaxed":
        return "relaxed (not certified)"
    return str(config.get("interval_scope") or "all")


def best_config(rec: Mapping[str, Any]) -> Dict[str, Any]:
    """The trial's ExperimentConfig keys, without per-machine settings and unset values."""
    return {k: v for k, v in rec["config"].items() if k in FIELDS and k not in MACHINE_KEYS and v is not None}


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (files that get shared or committed)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def leaderboard_markdown(df, *, name: str, params: Sequence[str], objectives: Sequence[str],
                         importance: Optional[Dict[str, Any]] = None) -> str:
    """Markdown table: complete trials ranked by the primary objective, then unfinished ones; importances below."""
    cols = ["trial", M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, M.CIL_AVG_ACC, *params, "scope", M.RAMP_REACHED,
            "tasks", "wall s"]
    multi = len(objectives) > 1
    if multi:
        cols.insert(1, "pareto")
    lines = [f"# Sweep `{name}`", "",
             f"Ranked by `{'`, then `'.join(rank_keys(objectives))}`{' (Pareto front over ' + ', '.join(objectives) + ' marked)' if multi else ''}; "
             "only trials that finished every task are ranked. `(preset)` marks the benchmark's paper/default config; "
             "`(N collapsed)` a trial in which N tasks ended at chance accuracy; `scope` names the layers the worst-case "
             "figure is certified for; `ramp_reached` is the lowest share of gamma any task's box trained at "
             "(`(box never opened)`: 0, so its gamma changed nothing).", "",
             "| rank | " + " | ".join(cols) + " | status |", "|" + "---|" * (len(cols) + 2)]
    rank_no = 0
    for _, row in df.iterrows():
        trial = row["trial_id"] + (" (preset)" if row["is_preset"] else "")
        if row["collapsed_tasks"]:
            trial += f" ({row['collapsed_tasks']} collapsed)"
        if row[M.RAMP_REACHED] == 0:
            trial += " (box never opened)"
        if row["complete"]:
            rank_no += 1
            r = str(rank_no)
        else:
            r = "-"
        vals = {"trial": trial, "pareto": "*" if row["pareto"] else "", "tasks": f"{row['tasks_done']}/{_fmt(row['num_tasks'])}",
                "wall s": _fmt(row["wall_time_s"], 3)}
        cells = [vals[c] if c in vals else _fmt(row[c]) for c in cols]
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {row['status']} |")
    if not df["complete"].any():
        lines += ["", "No trial finished every task yet: nothing is ranked and no best_config.yaml was written."]
    if importance is not None:
        lines += ["", "## Hyperparameter importance", ""]
        if importance.get("table"):
            targets = list(importance["table"])
            lines += [f"{importance['method']} over the {importance['trials']} trials that finished every task: the "
                      "share of each metric's variance across trials explained by each hyperparameter (each column "
                      "sums to 1). With a handful of trials it is a rough guide, not a measurement.", "",
                      "| hyperparameter | " + " | ".join(targets) + " |", "|" + "---|" * (len(targets) + 1)]
            for p in importance["params"]:
                lines.append(f"| {p} | " + " | ".join(f"{importance['table'][t].get(p, 0.0):.2f}" for t in targets) + " |")
        else:
            lines.append(importance["note"])
    return "\n".join(lines) + "\n"


def acc_matrix(rec: Mapping[str, Any], scenario: str = "til") -> List[List[Optional[float]]]:
    """``R[t][j]`` (accuracy on task j after task t) rebuilt from the per-task reports."""
    n = rec.get("num_tasks") or rec["tasks_done"]
    mat: List[List[Optional[float]]] = [[None] * n for _ in range(n)]
    for h in rec["history"]:
        t = int(h[M.TASKS_DONE]) - 1
        for j in range(t + 1):
            mat[t][j] = h.get(M.task_metric_name(scenario, j))
    return mat


# --- importances --------------------------------------------------------------------------------------
def importances(url: str, study_name: str, *, extra_targets: Sequence[str] = (M.WORST_AVG_ACC,),
                min_trials: int = MIN_IMPORTANCE_TRIALS) -> Dict[str, Any]:
    """fANOVA importances of the sweep's Optuna study, per objective and per ``extra_targets`` metric
    (a user attribute of every finished trial, see tune.searcher).

    Returns ``{"table": {metric: {param: share}}, "params": [...], "trials": n, "method": ...}``, or
    ``{"note": why not}`` with fewer than ``min_trials`` finished trials.
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
    targets: Dict[str, Any] = {n: functools.partial(lambda t, i: t.values[i], i=i) for i, n in enumerate(names)}
    for m in extra_targets:
        if m not in targets and all(M.is_finite_number(t.user_attrs.get(m)) for t in done):
            targets[m] = functools.partial(lambda t, m: t.user_attrs[m], m=m)
    table = {n: get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target=f)
             for n, f in targets.items()}
    first = table[names[0]]
    params = sorted({p for t in table.values() for p in t}, key=lambda p: -first.get(p, 0.0))
    return {"table": table, "params": params, "trials": len(done), "method": "fANOVA (Optuna, seed 0)"}


# --- plots ------------------------------------------------------------------------------------------
def _save_png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def acc_limits(values: Sequence[float]) -> Tuple[float, float]:
    """Y range of an accuracy axis: the data, widened downwards to span at least :data:`MIN_ACC_SPAN`
    (so 0.993 vs 1.000 looks as small as it is), within [0, 1] plus a margin for the markers."""
    vals = [float(v) for v in values if M.is_finite_number(v)]
    if not vals:
        return 0.0, 1.02
    lo, hi = min(vals), max(vals)
    if hi - lo < MIN_ACC_SPAN:
        lo = max(0.0, hi - MIN_ACC_SPAN)
        hi = max(hi, lo + MIN_ACC_SPAN)
    pad = 0.04 * (hi - lo)
    return max(-0.01, lo - pad), min(1.02, hi + pad)


def _param_axis(ax, df, param: str, spec: Mapping[str, Any]):
    """x positions of the trials on ``param``'s axis: categories for choices (evenly spaced, jittered
    so equal values stay visible), log scale for log-uniform ranges."""
    import numpy as np

    x = df[param]
    if spec.get("type") == "choice" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x.dropna()):
        cats = [str(v) for v in spec.get("values", [])] or sorted({str(v) for v in x.dropna()})
        cats += sorted({str(v) for v in x.dropna()} - set(cats))
        pos = {c: i for i, c in enumerate(cats)}
        xs = np.array([pos.get(str(v), np.nan) for v in x], dtype=float)
        counts: Dict[float, int] = {}
        for i, v in enumerate(xs):  # spread equal categories sideways
            if not np.isnan(v):
                k = counts.get(v, 0)
                counts[v] = k + 1
                xs[i] = v + (0.08 * ((k + 1) // 2) * (1 if k % 2 else -1))
        ax.set_xticks(range(len(cats)), cats)
        ax.set_xlim(-0.6, len(cats) - 0.4)
        return xs
    if spec.get("type") == "loguniform" or spec.get("log"):
        ax.set_xscale("log")
    return x.astype(float).values


def plot_param(df, param: str, path: Path, spec: Mapping[str, Any] = {},
               metrics: Sequence[str] = (M.AVG_ACC, M.WORST_AVG_ACC)) -> None:
    """Final accuracy and worst-case accuracy against one hyperparameter (unfinished trials hollow, preset starred)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        xs = _param_axis(ax, df, param, spec)
        has = df[metric].notna().values
        done, rest = df["complete"].values & has, ~df["complete"].values & has
        ax.scatter(xs[done], df.loc[done, metric], s=46, label="finished all tasks", color="tab:blue", alpha=0.85)
        if rest.any():
            ax.scatter(xs[rest], df.loc[rest, metric], s=46, facecolors="none", edgecolors="grey",
                       label="stopped / unfinished")
        pre = df["is_preset"].values & has
        if pre.any():
            ax.scatter(xs[pre], df.loc[pre, metric], marker="*", s=260, color="tab:orange", label="preset", zorder=3)
        if not has.any():
            ax.text(0.5, 0.5, "no trial has finished a task yet", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.set_ylim(*acc_limits(df.loc[has, metric]))
            vals = df.loc[done, metric]
            if len(vals):
                ax.set_title(f"{LABELS.get(metric, metric)}: {vals.min():.3f}–{vals.max():.3f} over finished trials",
                             fontsize=10)
        ax.set_xlabel(param + (" (log scale)" if ax.get_xscale() == "log" else ""), fontsize=10)
        ax.set_ylabel(LABELS.get(metric, metric), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"final accuracy vs {param}", fontsize=11)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def pareto_plot_axes(df, objectives: Sequence[str]) -> Tuple[str, str]:
    """The Pareto plot's axes: the first two objectives unless one is the same for every finished trial
    (e.g. BWT 0 everywhere), then avg acc vs worst-case avg acc."""
    axes = front_axes(objectives)
    done = df[df["complete"]]
    if len(objectives) > 1 and any(done[a].dropna().nunique() <= 1 for a in axes):
        return M.AVG_ACC, M.WORST_AVG_ACC
    return axes


def plot_pareto(df, path: Path, objectives: Sequence[str] = (M.AVG_ACC,)) -> None:
    """Two maximised metrics of the finished trials, their Pareto front drawn as a line."""
    import matplotlib.pyplot as plt

    xa, ya = pareto_plot_axes(df, objectives)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    d = df[df["complete"] & df[xa].notna() & df[ya].notna()]
    ax.scatter(d[xa], d[ya], s=46, color="tab:blue", label="finished trials")
    if len(d):
        idx = pareto_front(d[[xa, ya]].astype(float).values.tolist())
        front = d.iloc[idx].sort_values(xa)
        ax.plot(front[xa], front[ya], "-o", color="tab:red", label="Pareto front")
        for _, row in front.iterrows():
            ax.annotate(row["trial_id"], (row[xa], row[ya]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for a, setter in ((xa, ax.set_xlim), (ya, ax.set_ylim)):
            if "acc" in a:
                setter(*acc_limits(d[a]))
    pre = d[d["is_preset"]]
    if len(pre):
        ax.scatter(pre[xa], pre[ya], marker="*", s=260, color="tab:orange", label="preset", zorder=3)
    ax.set_xlabel(LABELS.get(xa, xa) + " (higher is better)")
    ax.set_ylabel(LABELS.get(ya, ya) + " (higher is better)")
    ax.set_title(f"Pareto front: {LABELS.get(xa, xa)} vs {LABELS.get(ya, ya)}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def plot_matrices(rec: Mapping[str, Any], path: Path) -> None:
    """Heatmaps of the best trial's accuracy matrices ``R[t, j]``: TIL, worst case, CIL (and DIL when defined).

    Each panel's colour range is its data widened to span at least :data:`MIN_ACC_SPAN`, and every
    cell is printed, so near-perfect matrices are neither one flat colour nor exaggerated.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    mats = {}
    for s in ("til", "worst", "cil", "dil"):
        m = np.array([[np.nan if v is None else v for v in row] for row in acc_matrix(rec, s)], dtype=float)
        if not np.isnan(m).all():
            mats[s] = m
    n = next(iter(mats.values())).shape[0] if mats else 0
    side = max(3.4, 0.75 * n + 1.4)
    fig, axes = plt.subplots(1, max(1, len(mats)), figsize=(side * max(1, len(mats)), side), squeeze=False)
    for ax, (s, mat) in zip(axes[0], mats.items()):
        vals = mat[~np.isnan(mat)]
        lo, hi = acc_limits(vals.tolist())
        im = ax.imshow(mat, vmin=lo, vmax=hi, cmap="viridis")
        for t in range(n):
            for j in range(n):
                if not np.isnan(mat[t, j]):
                    ax.text(j, t, f"{mat[t, j]:.3f}", ha="center", va="center", fontsize=8,
                            color="white" if mat[t, j] < lo + 0.6 * (hi - lo) else "black")
        ax.set_xticks(range(n), [str(j + 1) for j in range(n)])
        ax.set_yticks(range(n), [str(t + 1) for t in range(n)])
        ax.set_xlabel("evaluated task j")
        ax.set_ylabel("after training task t")
        ax.set_title(SCENARIO_TITLES[s], fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"accuracy matrices of the best trial {rec['trial_id']}", fontsize=11)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def plot_importance(importance: Mapping[str, Any], path: Path) -> None:
    """Horizontal bars: each hyperparameter's importance for each metric."""
    import matplotlib.pyplot as plt
    import numpy as np

    params, table = list(importance["params"]), importance["table"]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.55 * len(params) * max(1, len(table)) ** 0.5))
    height = 0.8 / len(table)
    for i, (target, imp) in enumerate(table.items()):
        y = np.arange(len(params)) + i * height - 0.4 + height / 2
        ax.barh(y, [imp.get(p, 0.0) for p in params], height=height, label=LABELS.get(target, target))
    ax.set_yticks(range(len(params)), params)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("importance (share of variance across trials)")
    ax.set_title(f"hyperparameter importance, {importance['method']}, {importance['trials']} finished trials", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


# --- everything --------------------------------------------------------------------------------------
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
    df = trials_frame(records, params=params, objectives=objectives)
    importance = None
    if study is not None:
        try:
            importance = importances(*study)
        except Exception as exc:  # noqa: BLE001 - importances must never cost the tables
            print(f"report: no hyperparameter importances: {type(exc).__name__}: {exc}", file=sys.stderr)
    atomic_write(out / "trials.csv", lambda f: df.to_csv(f, index=False), mode="w")
    files.append(out / "trials.csv")
    board = leaderboard_markdown(df, name=name, params=params, objectives=objectives, importance=importance)
    atomic_write(out / "leaderboard.md", lambda f: f.write(board), mode="w")
    files.append(out / "leaderboard.md")
    best = best_record(records, objectives)
    if best is not None:
        last = _last(best)
        header = (f"# Best config of sweep {name!r}: trial {best['trial_id']}, "
                  + ", ".join(f"{o} {_fmt(last.get(o))}" for o in objectives)
                  + f"\n# Train it: hinterval train --config {_shown(out / 'best_config.yaml')}"
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
            jobs.append((functools.partial(plot_param, pdf, p, spec=space.get(p) if isinstance(space.get(p), Mapping) else {}),
                         plot_dir / f"acc_vs_{p}.png"))
        jobs.append((functools.partial(plot_pareto, pdf, objectives=objectives), plot_dir / "pareto.png"))
        if best is not None:
            jobs.append((functools.partial(plot_matrices, best), plot_dir / "best_acc_matrices.png"))
        if importance and importance.get("table"):
            jobs.append((functools.partial(plot_importance, importance), plot_dir / "param_importance.png"))
        for plot, path in jobs:
            try:
                plot(path)
                files.append(path)
            except Exception as exc:  # noqa: BLE001 - a plot must never cost the tables above
                print(f"report: could not draw {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                plt.close("all")
    return {"trials": len(df), "complete": int(df["complete"].sum()) if len(df) else 0, "best": best,
            "files": [str(f) for f in files], "frame": df, "importance": importance}
