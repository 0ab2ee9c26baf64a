"""The sweep's tables: one row per trial (trials.csv) and the leaderboard (leaderboard.md).

The leaderboard says what the trials are ranked by and why, ranks the finished trials (``=`` for
a tie on every ranking key), shows the confirmation over more training seeds, each metric's spread
against its noise, and the hyperparameter importances of the metrics that vary. No Ray.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hinterval import metrics as M
from hinterval.config import FIELDS
from tune.confirmation import fmt_stat, verdict_line
from tune.noise import NOISE_FACTOR, SAMPLE_STEP, TEST_SAMPLES, metric_noise
from tune.records import confirm_metrics, front_axes, is_complete, last_report, pareto_front, rank, rank_keys, same_rank

METRIC_COLUMNS = tuple(M.LABELS)
#: why a sweep ranks by a metric, for the leaderboard's first line
RANK_REASONS = {
    M.WORST_AVG_ACC: "certified accuracy: every network in the task's weight box classifies the test sample correctly, "
                     "what HyperInterval trains for",
    M.AVG_ACC: "task-incremental test accuracy of each task's network",
    M.BWT: "backward transfer: accuracy lost on earlier tasks (0 = none)",
    M.WORST_BWT: "certified backward transfer",
    M.CIL_AVG_ACC: "class-incremental accuracy: the task is inferred from the outputs",
    M.DIL_AVG_ACC: "accuracy of the one universal network (nested mode)",
}
#: metrics the confirmation table shows
CONFIRM_SHOWN = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT, M.CIL_AVG_ACC)


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: ``n/a`` for missing, ``yes``/blank for flags, 4 decimals (significant digits when tiny)."""
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def certified_scope(config: Mapping[str, Any]) -> str:
    """Which weights a trial's worst-case figure is certified for: its interval scope, or
    ``relaxed (not certified)`` for the unsound mode."""
    if config.get("interval_mode") == "relaxed":
        return "relaxed (not certified)"
    return str(config.get("interval_scope") or "all")


def _mark_front(df, axes: Sequence[str]):
    done = df[df["complete"] & df[list(axes)].notna().all(axis=1)]
    flags = [False] * len(df)
    if len(done):
        for i in pareto_front(done[list(axes)].astype(float).values.tolist()):
            flags[df.index.get_loc(done.index[i])] = True
    return flags


def trials_frame(records: Sequence[Dict[str, Any]], *, params: Sequence[str], objectives: Sequence[str],
                 confirmation: Optional[Mapping[str, Any]] = None):
    """One row per trial in :func:`rank` order: status, params, metrics (final or so far), wall time, nodes,
    Pareto flag (over :func:`front_axes`), and for confirmed trials the seeds and mean/std of
    :func:`confirm_metrics` (see tune.confirmation)."""
    import pandas as pd

    rows = []
    for r in rank(records, objectives):
        last = last_report(r)
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
    shown = list(dict.fromkeys([*keys[:2], M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, M.CIL_AVG_ACC]))
    shown += [m for m in (M.BOX_SIZE, M.GAMMA_REACHED) if m not in shown and df[m].notna().any()]
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
            tied = prev is not None and same_rank(prev, row, keys)
            shown = shown if tied else position
            r = f"{shown}=" if tied else str(shown)
            prev = row
        else:
            r = "-"
        vals = {"trial": trial, "pareto": "*" if row["pareto"] else "", "tasks": f"{row['tasks_done']}/{fmt(row['num_tasks'])}",
                "wall s": fmt(row["wall_time_s"], 3)}
        vals.update({f"{m} over seeds": _cell_confirm(row, m) for m in conf})
        cells = [vals[c] if c in vals else fmt(row[c]) for c in cols]
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {row['status']} |")
    if not df["complete"].any():
        lines += ["", "No trial finished every task yet: nothing is ranked and no best_config.yaml was written."]
    if confirmation:
        lines += ["", "## Confirmation over more training seeds", "", confirmation_text(confirmation)]
    if noise:
        sample = next(iter(noise.values()))["sample"]
        lines += ["", "## Spread and noise", "",
                  "Each metric's range over the finished trials against its noise: one test sample"
                  + (f" ({sample:.4f}: the most one sample moves an average over the tasks)" if sample else "")
                  + " or, where larger, the seed standard deviation the confirmation measured. A metric whose range is "
                  f"within {NOISE_FACTOR:g}x its noise (what repeats of one config would show) does not tell the trials "
                  "apart and gets no importances.", "",
                  "| metric | range | spread | one test sample | seed std | varies |", "|---|---|---|---|---|---|"]
        for m, n in noise.items():
            lines.append(f"| {m} | {n['lo']:.4f}–{n['hi']:.4f} | {n['spread']:.4f} | {fmt(n['sample'])} | "
                         f"{fmt(n['seed_std'])} | {'yes' if n['varies'] else 'no: within noise'} |")
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
    metrics = [m for m in CONFIRM_SHOWN if any(m in c["stats"] for c in confirmation["configs"])]
    out = [f"The top {len(confirmation['configs'])} trial(s) trained again with more training seeds (ordinary Tune "
           "trials of the experiment `<name>-confirm`, TensorBoard runs `confirm-<trial>-seed<k>`; not search trials). "
           f"Mean ± sample std over the seeds:", "",
           "| trial | seeds | " + " | ".join(metrics) + " | per seed (" + metrics[0] + ") |",
           "|" + "---|" * (len(metrics) + 3)] if metrics else []
    for c in confirmation["configs"]:
        if not metrics:
            break
        per_seed = ", ".join(f"{r['seed']}: {fmt(r['metrics'].get(metrics[0]))}" if r["status"] == "COMPLETE"
                             else f"{r['seed']}: {r['status'].lower()}" for r in c["runs"])
        out.append(f"| {c['trial_id']} | {','.join(map(str, c['seeds']))} | "
                   + " | ".join(fmt_stat(c["stats"].get(m)) for m in metrics) + f" | {per_seed} |")
    out += ["", verdict_line(confirmation["verdict"]) + "."]
    return "\n".join(out)


def confirmation_comment(confirmation: Optional[Mapping[str, Any]], objectives: Sequence[str]) -> List[str]:
    """best_config.yaml's comment lines on the winner's confirmation (none when it was not confirmed)."""
    if not confirmation or not confirmation.get("configs"):
        return []
    win = confirmation["configs"][0]
    stats = ", ".join(f"{m} {fmt_stat(win['stats'].get(m))}" for m in confirm_metrics(objectives) if m in win["stats"])
    return [f"Confirmed over training seeds {','.join(map(str, win['seeds']))}: {stats or 'no seed finished'} (mean ± std)",
            verdict_line(confirmation["verdict"])]
