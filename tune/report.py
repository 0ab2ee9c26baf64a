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
from hinterval.checkpoint import atomic_write, write_json
from hinterval.config import FIELDS

METRIC_COLUMNS = (M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, M.DIL_AVG_ACC, M.DIL_BWT, "cil_avg_acc")
#: per-machine settings left out of best_config.yaml (``hinterval train`` picks them for its machine)
MACHINE_KEYS = ("device", "num_threads")
#: finished trials needed before hyperparameter importances are computed
MIN_IMPORTANCE_TRIALS = 4
#: after the objectives, ties are broken by these, in order: the certified accuracy, the centre
#: network's accuracy, then forgetting
TIE_BREAKERS = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT)
#: why a sweep ranks by a metric, for the leaderboard's first line
RANK_REASONS = {
    M.WORST_AVG_ACC: "certified accuracy: every network in the task's weight box classifies the test sample correctly, "
                     "what HyperInterval trains for",
    M.AVG_ACC: "task-incremental test accuracy of each task's network",
    M.BWT: "backward transfer: accuracy lost on earlier tasks (0 = none)",
    M.WORST_BWT: "certified backward transfer",
    "cil_avg_acc": "class-incremental accuracy: the task is inferred from the outputs",
    "dil_avg_acc": "accuracy of the one universal network (nested mode)",
}
#: metrics whose spread over the finished trials is compared with their noise, and which get importances
#: when they vary (the leaderboard's metric columns)
NOISE_METRICS = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT, M.WORST_BWT, "cil_avg_acc", M.DIL_AVG_ACC)
#: a metric varies between trials when its spread exceeds this many times its noise: repeats of ONE config
#: with standard deviation s span about 2.8 s over 8 runs (the expected range of 8 normal draws)
NOISE_FACTOR = 3.0
#: metrics the confirmation table shows
CONFIRM_SHOWN = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT, "cil_avg_acc")
#: result keys of the test samples a trial is evaluated on and of the most one of them moves an average
#: accuracy (tune.trainable.TEST_SAMPLES, SAMPLE_STEP)
TEST_SAMPLES, SAMPLE_STEP = "test_samples", "sample_step"
#: accuracy axes span at least this much, so differences of a few tenths of a point do not fill a plot
MIN_ACC_SPAN = 0.1
LABELS = {M.AVG_ACC: "avg acc (TIL)", M.BWT: "BWT", M.WORST_AVG_ACC: "worst-case avg acc",
          M.WORST_BWT: "worst-case BWT", "cil_avg_acc": "CIL avg acc", M.DIL_AVG_ACC: "universal (DIL) avg acc",
          M.DIL_BWT: "universal (DIL) BWT"}
SCENARIO_TITLES = {"til": "task-incremental (TIL)", "worst": "worst case (certified)", "dil": "domain-incremental (DIL)",
                   "cil": "class-incremental (CIL)"}


def rank_keys(objectives: Sequence[str]) -> List[str]:
    """Objectives, then :data:`TIE_BREAKERS` (several configs reach 100 % on easy benchmarks)."""
    return list(objectives) + [k for k in TIE_BREAKERS if k not in objectives]


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
    """Indices of the non-dominated points when every coordinate is maximised."""
    front = []
    for i, p in enumerate(points):
        dominated = any(all(q[k] >= p[k] for k in range(len(p))) and any(q[k] > p[k] for k in range(len(p)))
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


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


def confirm_metrics(objectives: Sequence[str]) -> List[str]:
    """The metrics whose confirmation (mean ± std over seeds) the tables show: the ranking keys that are accuracies."""
    return [m for m in rank_keys(objectives) if m in (M.WORST_AVG_ACC, M.AVG_ACC, "cil_avg_acc", M.DIL_AVG_ACC)][:2] \
        or [objectives[0]]


def trials_frame(records: Sequence[Dict[str, Any]], *, params: Sequence[str], objectives: Sequence[str],
                 confirmation: Optional[Mapping[str, Any]] = None):
    """One row per trial in :func:`rank` order: status, params, metrics (final or so far), wall time, nodes,
    Pareto flag (over :func:`front_axes`), and for confirmed trials the seeds and mean/std of
    :func:`confirm_metrics` (see tune.confirm)."""
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
        row[TEST_SAMPLES] = last.get(TEST_SAMPLES)
        row[SAMPLE_STEP] = last.get(SAMPLE_STEP)
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
    cols = ["trial_id", "status", "is_preset", "tasks_done", "num_tasks", *params, *METRIC_COLUMNS, TEST_SAMPLES, SAMPLE_STEP, "collapsed_tasks",
            M.RAMP_REACHED, "scope", "wall_time_s",
            "node_id", "num_nodes", "restarts", "reruns", "error", "config", "complete"]
    df = pd.DataFrame(rows, columns=cols)
    df["pareto"] = _mark_front(df, front_axes(objectives)) if len(df) else []
    confirmed = {c["trial_id"]: c for c in (confirmation or {}).get("configs", [])}
    df["confirm_seeds"] = [confirmed[t]["finished"] if t in confirmed else None for t in df["trial_id"]]
    for m in confirm_metrics(objectives):
        for k in ("mean", "std"):
            df[f"confirm_{m}_{k}"] = [confirmed[t]["stats"].get(m, {}).get(k) if t in confirmed else None
                                      for t in df["trial_id"]]
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


def _same_rank(a, b, keys: Sequence[str]) -> bool:
    """Whether two finished trials tie on every ranking key (equal or both missing)."""
    for k in keys:
        x, y = a[k], b[k]
        fx, fy = M.is_finite_number(x), M.is_finite_number(y)
        if fx != fy or (fx and abs(float(x) - float(y)) > 1e-12):
            return False
    return True


def one_sample(df) -> Optional[float]:
    """The most one test sample moves an average accuracy in the finished trials (their ``sample_step``,
    else 1 / their test samples; ``None`` when the trials did not report either)."""
    done = df[df["complete"]] if len(df) else df
    if not len(done):
        return None
    steps = [float(v) for v in done.get(SAMPLE_STEP, []) if M.is_finite_number(v) and v > 0]
    if steps:
        return max(steps)
    counts = [int(v) for v in done.get(TEST_SAMPLES, []) if M.is_finite_number(v) and v > 0]
    return 1.0 / min(counts) if counts else None


def metric_noise(df, confirmation: Optional[Mapping[str, Any]] = None,
                 metrics: Sequence[str] = NOISE_METRICS) -> Dict[str, Dict[str, Any]]:
    """Per metric: its spread over the finished trials and its noise, and whether it varies beyond it.

    The noise is the larger of one test sample (:func:`one_sample`) and the largest seed standard
    deviation the confirmation measured for that metric. A metric *varies* when its spread exceeds
    :data:`NOISE_FACTOR` times its noise; only such metrics get hyperparameter importances (the
    variance of a metric that does not vary is noise, and fANOVA would share that noise out).
    """
    done = df[df["complete"]] if len(df) else df
    sample = one_sample(df)
    out: Dict[str, Dict[str, Any]] = {}
    for m in metrics:
        if m not in done or not len(done):
            continue
        vals = [float(v) for v in done[m] if M.is_finite_number(v)]
        if len(vals) != len(done) or not vals:
            continue
        stds = [c["stats"][m]["std"] for c in (confirmation or {}).get("configs", [])
                if m in c.get("stats", {}) and c["stats"][m].get("std") is not None]
        seed_std = max(stds) if stds else None
        noise = max([v for v in (sample, seed_std) if v is not None], default=None)
        spread = max(vals) - min(vals)
        out[m] = {"lo": min(vals), "hi": max(vals), "spread": spread, "trials": len(vals), "sample": sample,
                  "seed_std": seed_std, "noise": noise,
                  "varies": spread > 0 and (noise is None or spread > NOISE_FACTOR * noise)}
    return out


def _samples(x: float, sample: Optional[float]) -> str:
    if not sample:
        return ""
    k = x / sample
    return f" ({k:.0f} test sample{'s' if round(k) != 1 else ''})"


def rank_line(objectives: Sequence[str], noise: Mapping[str, Mapping[str, Any]]) -> str:
    """The leaderboard's first line: what the trials are ranked by and why."""
    keys = rank_keys(objectives)
    first = keys[0]
    head = (f"Ranked by `{first}` ({RANK_REASONS.get(first, first)}), ties broken by `{'`, then `'.join(keys[1:])}`"
            if len(objectives) == 1 else
            f"Ranked by `{'`, then `'.join(keys)}` (Pareto front over {', '.join(objectives)} marked `*`)")
    spans = []
    for m in dict.fromkeys([first, M.AVG_ACC, M.WORST_AVG_ACC]):
        n = noise.get(m)
        if n is not None:
            spans.append(f"`{m}` spans {n['lo']:.4f}–{n['hi']:.4f}{_samples(n['spread'], n['sample'])}")
    why = f"; over the {next(iter(noise.values()))['trials']} finished trials " + ", ".join(spans) if spans else ""
    flat = [m for m in (M.AVG_ACC, M.WORST_AVG_ACC) if m in noise and not noise[m]["varies"]]
    if flat:
        why += f", so `{'`, `'.join(flat)}` cannot separate them (within {NOISE_FACTOR:g}x its noise)"
    return head + why + "."


def _cell_confirm(row, m: str) -> str:
    mean, std, n = row.get(f"confirm_{m}_mean"), row.get(f"confirm_{m}_std"), row.get("confirm_seeds")
    if not M.is_finite_number(mean):
        return ""
    sd = f" ± {std:.4f}" if M.is_finite_number(std) else ""
    return f"{mean:.4f}{sd} ({int(n)})"


def leaderboard_markdown(df, *, name: str, params: Sequence[str], objectives: Sequence[str],
                         importance: Optional[Dict[str, Any]] = None, confirmation: Optional[Mapping[str, Any]] = None,
                         noise: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """Markdown: what the trials are ranked by and why, the table (complete trials ranked, ``=`` for a tie,
    then unfinished ones), the confirmation over more seeds, each metric's spread against its noise,
    and the importances of the metrics that vary."""
    noise = dict(noise if noise is not None else metric_noise(df, confirmation))
    keys = rank_keys(objectives)
    shown = list(dict.fromkeys([*keys[:2], M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, "cil_avg_acc"]))
    conf = confirm_metrics(objectives) if confirmation else []
    cols = ["trial", *shown, *[f"{m} over seeds" for m in conf], *params, "scope", M.RAMP_REACHED, "tasks", "wall s"]
    multi = len(objectives) > 1
    if multi:
        cols.insert(1, "pareto")
    lines = [f"# Sweep `{name}`", "", rank_line(objectives, noise), "",
             "Only trials that finished every task are ranked; `=` marks a rank tied on every ranking key. "
             "`(preset)` marks the benchmark's paper/default config; `(N collapsed)` a trial in which N tasks ended at "
             "chance accuracy; `scope` names the layers the worst-case figure is certified for; `ramp_reached` is the "
             "lowest share of gamma any task's box trained at (`(box never opened)`: 0, so its gamma changed nothing)"
             + ("; `over seeds`: mean ± std over the trial's seed and the confirmation's (number of seeds)." if conf else "."),
             "", "| rank | " + " | ".join(cols) + " | status |", "|" + "---|" * (len(cols) + 2)]
    position, shown, prev = 0, 0, None
    for _, row in df.iterrows():
        trial = row["trial_id"] + (" (preset)" if row["is_preset"] else "")
        if row["collapsed_tasks"]:
            trial += f" ({row['collapsed_tasks']} collapsed)"
        if row[M.RAMP_REACHED] == 0:
            trial += " (box never opened)"
        if row["complete"]:
            position += 1  # competition ranking: 1, 2, 2=, 4
            tied = prev is not None and _same_rank(prev, row, keys)
            shown = shown if tied else position
            r = f"{shown}=" if tied else str(shown)
            prev = row
        else:
            r = "-"
        vals = {"trial": trial, "pareto": "*" if row["pareto"] else "", "tasks": f"{row['tasks_done']}/{_fmt(row['num_tasks'])}",
                "wall s": _fmt(row["wall_time_s"], 3)}
        vals.update({f"{m} over seeds": _cell_confirm(row, m) for m in conf})
        cells = [vals[c] if c in vals else _fmt(row[c]) for c in cols]
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {row['status']} |")
    if not df["complete"].any():
        lines += ["", "No trial finished every task yet: nothing is ranked and no best_config.yaml was written."]
    if confirmation:
        lines += ["", "## Confirmation over more training seeds", "", confirmation_text(confirmation)]
    if noise:
        sample = next(iter(noise.values()))["sample"]
        lines += ["", "## Spread and noise", "",
                  f"Each metric's range over the finished trials against its noise: one test sample"
                  + (f" ({sample:.4f}: the most one sample moves an average over the tasks)" if sample else "")
                  + " or, where larger, the seed standard deviation the confirmation measured. A metric whose range is "
                  f"within {NOISE_FACTOR:g}x its noise (what repeats of one config would show) does not tell the trials "
                  "apart and gets no importances.", "",
                  "| metric | range | spread | one test sample | seed std | varies |", "|---|---|---|---|---|---|"]
        for m, n in noise.items():
            lines.append(f"| {m} | {n['lo']:.4f}–{n['hi']:.4f} | {n['spread']:.4f} | {_fmt(n['sample'])} | "
                         f"{_fmt(n['seed_std'])} | {'yes' if n['varies'] else 'no: within noise'} |")
    if importance is not None:
        lines += ["", "## Hyperparameter importance", ""]
        if importance.get("table"):
            targets = list(importance["table"])
            lines += [f"{importance['method']} over the {importance['trials']} trials that finished every task, for the "
                      "metrics that vary beyond their noise: the share of each metric's variance across trials explained "
                      "by each hyperparameter (each column sums to 1). With a handful of trials it is a rough guide, "
                      "not a measurement.", "",
                      "| hyperparameter | " + " | ".join(targets) + " |", "|" + "---|" * (len(targets) + 1)]
            for p in importance["params"]:
                lines.append(f"| {p} | " + " | ".join(f"{importance['table'][t].get(p, 0.0):.2f}" for t in targets) + " |")
        else:
            lines.append(importance["note"])
    return "\n".join(lines) + "\n"


def confirmation_text(confirmation: Mapping[str, Any]) -> str:
    """The confirmation as markdown: per config the seeds' values and mean ± std, then the verdict."""
    from tune.confirm import fmt_stat, verdict_line

    metrics = [m for m in CONFIRM_SHOWN if any(m in c["stats"] for c in confirmation["configs"])]
    out = [f"The top {len(confirmation['configs'])} trial(s) trained again with more training seeds (ordinary Tune "
           "trials of the experiment `<name>-confirm`, TensorBoard runs `confirm-<trial>-seed<k>`; not search trials). "
           f"Mean ± sample std over the seeds:", "",
           "| trial | seeds | " + " | ".join(metrics) + " | per seed (" + metrics[0] + ") |",
           "|" + "---|" * (len(metrics) + 3)] if metrics else []
    for c in confirmation["configs"]:
        if not metrics:
            break
        per_seed = ", ".join(f"{r['seed']}: {_fmt(r['metrics'].get(metrics[0]))}" if r["status"] == "COMPLETE"
                             else f"{r['seed']}: {r['status'].lower()}" for r in c["runs"])
        out.append(f"| {c['trial_id']} | {','.join(map(str, c['seeds']))} | "
                   + " | ".join(fmt_stat(c["stats"].get(m)) for m in metrics) + f" | {per_seed} |")
    out += ["", verdict_line(confirmation["verdict"]) + "."]
    return "\n".join(out)


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

    from tune.confirm import CONFIRM_FILE, current

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
        last = _last(best)
        header = (f"# Best config of sweep {name!r}: trial {best['trial_id']}, "
                  + ", ".join(f"{o} {_fmt(last.get(o))}" for o in rank_keys(objectives)) + " (its search run)"
                  + "".join(f"\n# {line}" for line in confirmation_comment(confirmation, objectives))
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
            "files": [str(f) for f in files], "frame": df, "importance": importance, "confirmation": confirmation,
            "noise": noise}


def confirmation_comment(confirmation: Optional[Mapping[str, Any]], objectives: Sequence[str]) -> List[str]:
    """best_config.yaml's comment lines on the winner's confirmation (none when it was not confirmed)."""
    if not confirmation or not confirmation.get("configs"):
        return []
    from tune.confirm import fmt_stat, verdict_line

    win = confirmation["configs"][0]
    stats = ", ".join(f"{m} {fmt_stat(win['stats'].get(m))}" for m in confirm_metrics(objectives) if m in win["stats"])
    return [f"Confirmed over training seeds {','.join(map(str, win['seeds']))}: {stats or 'no seed finished'} (mean ± std)",
            verdict_line(confirmation["verdict"])]
