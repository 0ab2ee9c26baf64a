"""Sweep reporting from the per-trial records: trials.csv, leaderboard.md, best_config.yaml, plots.

Only trials that finished every task are ranked and can become ``best_config.yaml``: a trial
stopped early (ASHA) or interrupted has seen fewer, easier tasks, so its average accuracy is
not comparable. Every file is written atomically (temp file + rename). Matplotlib uses Agg.
This module does not import Ray.
"""
from __future__ import annotations

import functools
import io
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hinterval import metrics as M
from hinterval.checkpoint import atomic_write
from hinterval.config import FIELDS

METRIC_COLUMNS = (M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, "dil_avg_acc", "cil_avg_acc")
#: per-machine settings left out of best_config.yaml (``hinterval train`` picks them for its machine)
MACHINE_KEYS = ("device", "num_threads")
PLOT_PARAMS = ("gamma", "beta", "embedding_dim")


def rank_keys(objectives: Sequence[str]) -> List[str]:
    """Objectives, then worst-case accuracy as the tie-breaker (several configs reach 100 % on easy benchmarks)."""
    return list(objectives) + ([M.WORST_AVG_ACC] if M.WORST_AVG_ACC not in objectives else [])


def _last(rec: Dict[str, Any]) -> Dict[str, Any]:
    return rec["history"][-1] if rec.get("history") else {}


def is_complete(rec: Dict[str, Any]) -> bool:
    """Finished every task (the only trials that are ranked)."""
    return rec.get("status") == "COMPLETE" and rec.get("num_tasks") is not None and rec["tasks_done"] >= rec["num_tasks"]


def pareto_front(points: Sequence[Sequence[float]]) -> List[int]:
    """Indices of the non-dominated points when every coordinate is maximised."""
    front = []
    for i, p in enumerate(points):
        dominated = any(all(q[k] >= p[k] for k in range(len(p))) and any(q[k] > p[k] for k in range(len(p)))
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def trials_frame(records: Sequence[Dict[str, Any]], *, params: Sequence[str], objectives: Sequence[str]):
    """One row per trial: status, params, metrics (final or so far), wall time, nodes, Pareto flag."""
    import pandas as pd

    rows = []
    for r in records:
        last = _last(r)
        row: Dict[str, Any] = {"trial_id": r["trial_id"], "status": r["status"], "is_preset": bool(r.get("is_preset")),
                               "tasks_done": r["tasks_done"], "num_tasks": r.get("num_tasks")}
        for p in params:
            row[p] = r["params"].get(p, r["config"].get(p))
        for m in METRIC_COLUMNS:
            row[m] = last.get(m)
        row["wall_time_s"] = r.get("wall_time_s")
        row["node_id"] = r.get("node_id")
        row["num_nodes"] = len(r.get("node_ids") or [])
        row["restarts"] = r.get("restarts", 0)
        row["reruns"] = len(r.get("reruns") or [])
        row["error"] = r.get("error")
        row["config"] = json.dumps({k: v for k, v in r["config"].items() if k in FIELDS}, sort_keys=True)
        rows.append(row)
    cols = ["trial_id", "status", "is_preset", "tasks_done", "num_tasks", *params, *METRIC_COLUMNS, "wall_time_s",
            "node_id", "num_nodes", "restarts", "reruns", "error", "config"]
    df = pd.DataFrame(rows, columns=cols)
    df["complete"] = [is_complete(r) for r in records]
    df["pareto"] = False
    done = df[df["complete"] & df[M.AVG_ACC].notna() & df[M.BWT].notna()]
    if len(done):
        front = pareto_front(done[[M.AVG_ACC, M.BWT]].astype(float).values.tolist())
        df.loc[done.index[front], "pareto"] = True
    keys = rank_keys(objectives)
    tmp = df.assign(_c=~df["complete"], **{f"_k{i}": df[k].astype(float) for i, k in enumerate(keys)})
    sort_cols = ["_c"] + [f"_k{i}" for i in range(len(keys))]
    order = tmp.sort_values(sort_cols, ascending=[True] + [False] * len(keys), na_position="last", kind="stable")
    return order.drop(columns=sort_cols).reset_index(drop=True)


def best_record(records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The complete trial with the highest primary objective (ties: the next objectives, then worst-case accuracy)."""
    done = [r for r in records if is_complete(r) and M.is_finite_number(_last(r).get(objectives[0]))]
    if not done:
        return None

    def key(r):
        last = _last(r)
        return tuple(last.get(o) if M.is_finite_number(last.get(o)) else float("-inf") for o in rank_keys(objectives))

    return max(done, key=key)


def best_config(rec: Dict[str, Any]) -> Dict[str, Any]:
    """The trial's ExperimentConfig keys, without per-machine settings and unset values."""
    return {k: v for k, v in rec["config"].items() if k in FIELDS and k not in MACHINE_KEYS and v is not None}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def leaderboard_markdown(df, *, name: str, params: Sequence[str], objectives: Sequence[str]) -> str:
    """Markdown table: complete trials ranked by the primary objective, then unfinished ones."""
    cols = ["trial", M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, "cil_avg_acc", *params, "tasks", "wall s"]
    multi = len(objectives) > 1
    if multi:
        cols.insert(1, "pareto")
    lines = [f"# Sweep `{name}`", "",
             f"Ranked by `{'`, then `'.join(rank_keys(objectives))}`{' (Pareto front over ' + ', '.join(objectives) + ' marked)' if multi else ''}; "
             "only trials that finished every task are ranked. `(preset)` marks the benchmark's paper/default config.", "",
             "| rank | " + " | ".join(cols) + " | status |", "|" + "---|" * (len(cols) + 2)]
    rank = 0
    for _, row in df.iterrows():
        trial = row["trial_id"] + (" (preset)" if row["is_preset"] else "")
        if row["complete"]:
            rank += 1
            r = str(rank)
        else:
            r = "-"
        vals = {"trial": trial, "pareto": "*" if row["pareto"] else "", "tasks": f"{row['tasks_done']}/{_fmt(row['num_tasks'])}",
                "wall s": _fmt(row["wall_time_s"], 3)}
        cells = [vals[c] if c in vals else _fmt(row[c]) for c in cols]
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {row['status']} |")
    if not df["complete"].any():
        lines += ["", "No trial finished every task yet: nothing is ranked and no best_config.yaml was written."]
    return "\n".join(lines) + "\n"


def acc_matrix(rec: Dict[str, Any], scenario: str = "til") -> List[List[Optional[float]]]:
    """``R[t][j]`` (accuracy on task j after task t) rebuilt from the per-task reports."""
    n = rec.get("num_tasks") or rec["tasks_done"]
    mat: List[List[Optional[float]]] = [[None] * n for _ in range(n)]
    for h in rec["history"]:
        t = int(h[M.TASKS_DONE]) - 1
        for j in range(t + 1):
            mat[t][j] = h.get(M.task_metric_name(scenario, j))
    return mat


# --- plots ------------------------------------------------------------------------------------------
def _save_png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_param(df, param: str, path: Path, metric: str = M.AVG_ACC) -> None:
    """Final accuracy against one hyperparameter (unfinished trials hollow, preset starred)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = df[param]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x.dropna())
    if not numeric:
        x = x.astype(str)
    has = df[metric].notna()
    done, rest = df["complete"] & has, ~df["complete"] & has
    ax.scatter(x[done], df.loc[done, metric], label="finished all tasks", color="tab:blue")
    if rest.any():
        ax.scatter(x[rest], df.loc[rest, metric], facecolors="none", edgecolors="grey", label="stopped / unfinished")
    pre = df["is_preset"] & has
    if pre.any():
        ax.scatter(x[pre], df.loc[pre, metric], marker="*", s=220, color="tab:orange", label="preset", zorder=3)
    if not has.any():
        ax.text(0.5, 0.5, "no trial has finished a task yet", ha="center", va="center", transform=ax.transAxes)
    elif numeric and param in ("gamma", "beta", "lr") and (x[has].dropna() > 0).all() and x[has].nunique() > 1:
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save_png(fig, path)
    plt.close(fig)


def plot_pareto(df, path: Path) -> None:
    """Average accuracy vs BWT of finished trials, Pareto front (both maximised) drawn as a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    d = df[df["complete"] & df[M.AVG_ACC].notna() & df[M.BWT].notna()]
    ax.scatter(d[M.BWT], d[M.AVG_ACC], color="tab:blue", label="trials")
    front = d[d["pareto"]].sort_values(M.BWT)
    if len(front):
        ax.plot(front[M.BWT], front[M.AVG_ACC], "-o", color="tab:red", label="Pareto front")
    pre = d[d["is_preset"]]
    if len(pre):
        ax.scatter(pre[M.BWT], pre[M.AVG_ACC], marker="*", s=220, color="tab:orange", label="preset", zorder=3)
    ax.set_xlabel("BWT (higher = less forgetting)")
    ax.set_ylabel("average accuracy")
    ax.set_title("accuracy vs backward transfer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save_png(fig, path)
    plt.close(fig)


def plot_matrix(rec: Dict[str, Any], path: Path) -> None:
    """Heatmap of the best trial's accuracy matrix ``R[t, j]``."""
    import matplotlib.pyplot as plt
    import numpy as np

    mat = np.array([[np.nan if v is None else v for v in row] for row in acc_matrix(rec)], dtype=float)
    n = mat.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
    for t in range(n):
        for j in range(n):
            if not np.isnan(mat[t, j]):
                ax.text(j, t, f"{mat[t, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if mat[t, j] < 0.6 else "black")
    ax.set_xticks(range(n), [str(j + 1) for j in range(n)])
    ax.set_yticks(range(n), [str(t + 1) for t in range(n)])
    ax.set_xlabel("evaluated task j")
    ax.set_ylabel("after training task t")
    ax.set_title(f"accuracy matrix, best trial {rec['trial_id']}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save_png(fig, path)
    plt.close(fig)


# --- everything --------------------------------------------------------------------------------------
def write_report(out_dir: str | Path, records: Sequence[Dict[str, Any]], *, name: str, params: Sequence[str],
                 objectives: Sequence[str] = (M.AVG_ACC,), plots: bool = True) -> Dict[str, Any]:
    """Write trials.csv, leaderboard.md, best_config.yaml (if any trial finished) and plots.

    Returns a summary: ``{"trials", "complete", "best": record or None, "files": [...]}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    out = Path(out_dir)
    files: List[Path] = []
    df = trials_frame(records, params=params, objectives=objectives)
    atomic_write(out / "trials.csv", lambda f: df.to_csv(f, index=False), mode="w")
    files.append(out / "trials.csv")
    atomic_write(out / "leaderboard.md", lambda f: f.write(leaderboard_markdown(df, name=name, params=params, objectives=objectives)),
                 mode="w")
    files.append(out / "leaderboard.md")
    best = best_record(records, objectives)
    if best is not None:
        last = _last(best)
        header = (f"# Best config of sweep {name!r}: trial {best['trial_id']}, "
                  + ", ".join(f"{o} {_fmt(last.get(o))}" for o in objectives)
                  + f"\n# Train it: hinterval train --config {out / 'best_config.yaml'}"
                  + "\n# (iters_per_task is the sweep's; raise it for a final run with --iters-per-task)\n")
        text = header + yaml.safe_dump(best_config(best), sort_keys=True)
        atomic_write(out / "best_config.yaml", lambda f: f.write(text), mode="w")
        files.append(out / "best_config.yaml")
    else:
        (out / "best_config.yaml").unlink(missing_ok=True)  # a stale one would not match these trials
    if plots and len(df):
        plot_dir = out / "plots"
        jobs = []
        for p in dict.fromkeys([*PLOT_PARAMS, *params]):
            if p not in df.columns:
                df[p] = [json.loads(c).get(p) for c in df["config"]]
            df[p] = df[p].map(lambda v: ",".join(map(str, v)) if isinstance(v, list) else v)
            jobs.append((functools.partial(plot_param, df, p), plot_dir / f"avg_acc_vs_{p}.png"))
        jobs.append((functools.partial(plot_pareto, df), plot_dir / "avg_acc_vs_bwt_pareto.png"))
        if best is not None:
            jobs.append((functools.partial(plot_matrix, best), plot_dir / "best_acc_matrix.png"))
        for plot, path in jobs:
            try:
                plot(path)
                files.append(path)
            except Exception as exc:  # noqa: BLE001 - a plot must never cost the tables above
                print(f"report: could not draw {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                plt.close("all")
    return {"trials": len(df), "complete": int(df["complete"].sum()) if len(df) else 0, "best": best,
            "files": [str(f) for f in files], "frame": df}
