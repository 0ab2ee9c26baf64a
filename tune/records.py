"""A sweep's trial records (``trials/<id>.json``) and the one ranking every table reads.

Only trials that finished every task are ranked: a trial stopped early (ASHA) or interrupted has
seen fewer, easier tasks, so its average accuracy is not comparable. :func:`rank` is the one
ordering the leaderboard, trials.csv, best_config.yaml and the confirmation come from. No Ray.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hinterval import metrics as M
from hinterval.errors import UserError
from hinterval.strict_load import read_json_file

#: after the objectives, ties are broken by these, in order: the certified accuracy, the centre
#: network's accuracy, then forgetting
TIE_BREAKERS = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT)
#: the ranking keys that are accuracies: the ones a confirmation over seeds is shown for
ACCURACIES = (M.WORST_AVG_ACC, M.AVG_ACC, M.CIL_AVG_ACC, M.DIL_AVG_ACC)


def point_key(params: Mapping[str, Any]) -> str:
    """A searcher config as one string (sorted JSON, floats to 12 significant digits), to look points up by."""
    return json.dumps({k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in params.items()}, sort_keys=True)

def same_point(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two searcher configs are the same point (floats compared to 1e-9 relative)."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) or isinstance(y, float):
            try:
                if not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12):
                    return False
            except (TypeError, ValueError):
                return False
        elif x != y:
            return False
    return True


def load_records(out_dir: str | Path) -> List[Dict[str, Any]]:
    """All ``trials/*.json`` records of a sweep, in trial start order."""
    recs = []
    for p in sorted((Path(out_dir) / "trials").glob("*.json")):
        try:
            recs.append(read_json_file(p, "trial record"))
        except (OSError, ValueError, UserError):
            continue  # written atomically, so only foreign files land here
    return sorted(recs, key=lambda r: (r.get("started_at") or 0, r["trial_id"]))


def rank_keys(objectives: Sequence[str]) -> List[str]:
    """Objectives, then :data:`TIE_BREAKERS` (several configs reach 100 % on easy benchmarks)."""
    return list(objectives) + [k for k in TIE_BREAKERS if k not in objectives]


def last_report(rec: Mapping[str, Any]) -> Dict[str, Any]:
    """The trial's latest per-task report (``{}`` before its first task)."""
    return rec["history"][-1] if rec.get("history") else {}


def unfinished(records: Sequence[Mapping[str, Any]], expected: int) -> bool:
    """Whether an experiment of ``expected`` trials stopped before each ended (fewer records, or one still
    pending, running or retrying): Tune stops gracefully on Ctrl-C, so this is how an interruption shows."""
    return len(records) < expected or any(r.get("status") in ("PENDING", "RUNNING", "RETRYING") for r in records)


def is_complete(rec: Mapping[str, Any]) -> bool:
    """Finished every task (the only trials that are ranked)."""
    return rec.get("status") == "COMPLETE" and rec.get("num_tasks") is not None and rec["tasks_done"] >= rec["num_tasks"]


def rank(records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> List[Dict[str, Any]]:
    """Trials in leaderboard order: finished ones by :func:`rank_keys` (missing values last), then the rest.

    The one ranking: the leaderboard, trials.csv and :func:`best_record` all read it.
    """
    keys = rank_keys(objectives)

    def key(r: Mapping[str, Any]) -> Tuple:
        last = last_report(r)
        return (not is_complete(r),) + tuple(-last[k] if M.is_finite_number(last.get(k)) else math.inf for k in keys)

    return sorted(records, key=key)  # stable: ties keep the trials' start order


def best_record(records: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The first of :func:`rank`, if it finished every task with a finite primary objective."""
    ranked = rank(records, objectives)
    if ranked and is_complete(ranked[0]) and M.is_finite_number(last_report(ranked[0]).get(objectives[0])):
        return ranked[0]
    return None


def same_rank(a, b, keys: Sequence[str]) -> bool:
    """Whether two finished trials tie on every ranking key (equal or both missing)."""
    for k in keys:
        x, y = a[k], b[k]
        fx, fy = M.is_finite_number(x), M.is_finite_number(y)
        if fx != fy or (fx and abs(float(x) - float(y)) > 1e-12):
            return False
    return True


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


def confirm_metrics(objectives: Sequence[str]) -> List[str]:
    """The metrics whose confirmation (mean ± std over seeds) the tables show: the ranking keys that are accuracies."""
    return [m for m in rank_keys(objectives) if m in ACCURACIES][:2] \
        or [objectives[0]]
