"""The sweep's plots (PNG, Matplotlib's Agg backend): accuracy against each hyperparameter, the
Pareto front, the best trial's accuracy matrices and the hyperparameter importances.

Accuracy axes span at least :data:`MIN_ACC_SPAN`, so 0.993 vs 1.000 looks as small as it is.
Every file is written atomically. No Ray.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hinterval import metrics as M
from hinterval.files import atomic_write
from tune.records import front_axes, pareto_front

#: accuracy axes span at least this much, so differences of a few tenths of a point do not fill a plot
MIN_ACC_SPAN = 0.1
LABELS = M.LABELS
SCENARIO_TITLES = {"til": "task-incremental (TIL)", "worst": "worst case (certified)", "dil": "domain-incremental (DIL)",
                   "cil": "class-incremental (CIL)"}


def acc_matrix(rec: Mapping[str, Any], scenario: str = "til") -> List[List[Optional[float]]]:
    """``R[t][j]`` (accuracy on task j after task t) rebuilt from the per-task reports."""
    n = rec.get("num_tasks") or rec["tasks_done"]
    mat: List[List[Optional[float]]] = [[None] * n for _ in range(n)]
    for h in rec["history"]:
        t = int(h[M.TASKS_DONE]) - 1
        for j in range(t + 1):
            mat[t][j] = h.get(M.task_metric_name(scenario, j))
    return mat


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
               metrics: Sequence[str] = (M.AVG_ACC, M.WORST_AVG_ACC, M.BOX_SIZE)) -> None:
    """Final accuracy, worst-case accuracy and certified box size (where a trial reports one)
    against one hyperparameter (unfinished trials hollow, preset starred)."""
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if m in df and (df[m].notna().any() or m != M.BOX_SIZE)]
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
            if "acc" in metric:
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
    # below the axes: inside, it would hide the longest bars
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(3, len(table)), frameon=False)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)
