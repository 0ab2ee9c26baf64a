"""Confirm a sweep's winner: train the top trials again with more training seeds.

A single-seed winner of a few trials is partly luck: on split-digits two configs a few test
samples apart can swap places with another training seed. After the search, the top ``top``
trials that finished every task (in :func:`tune.records.rank` order) are trained again with
``seeds`` more training seeds (the trial's ``seed`` + 1, + 2, ...). These runs are ordinary Ray
Tune trials of a second experiment, ``<name>-confirm``: their records are in
``results/<name>/confirm/trials/``, their TensorBoard runs ``confirm-<trial>-seed<k>`` sit beside
the search's runs. They are not search trials: Optuna never learns from them; the study keeps
their outcome as a study user attribute per confirmed trial (``confirm_trial_<number>``: its
``seeds``, ``<metric>_mean``, ``<metric>_std``, ``<metric>_values``).

``confirm.json`` holds the outcome (per seed, mean ± std per config, and whether the winner's
margin over the runner-up is inside the seed noise); the leaderboard reads it.
This module reads and summarises; :mod:`tune.confirm` runs the confirmation on Ray.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hinterval import metrics as M
from hinterval.config import SEED_LIMIT
from hinterval.errors import UserError
from hinterval.strict_load import read_json_file
from tune.noise import SAMPLE_STEP, TEST_SAMPLES, sample_step
from tune.records import is_complete, last_report, load_records, point_key, rank

CONFIRM_FILE = "confirm.json"
#: the confirmation runs' records (``confirm/trials/*.json``), like a sweep's ``trials/``
CONFIRM_DIR = "confirm"
#: metrics summarised over the seeds
CONFIRM_METRICS = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT, M.WORST_BWT, M.CIL_AVG_ACC, M.DIL_AVG_ACC)


def plan(records: Sequence[Dict[str, Any]], objectives: Sequence[str], *, seeds: int, top: int) -> List[Dict[str, Any]]:
    """The configs to confirm: the ``top`` best finished trials, each with ``seeds`` new training seeds."""
    ranked = [r for r in rank(records, objectives)  # a trial without the objective (it certifies nothing) is not a winner
              if is_complete(r) and M.is_finite_number(last_report(r).get(objectives[0]))]
    chosen = ranked[: max(0, top)] if seeds > 0 else []
    out = []
    for r in chosen:
        base_seed = int(r["config"].get("seed", 0) or 0)
        out.append({"trial_id": r["trial_id"], "params": dict(r["params"]), "seed": base_seed,
                    "seeds": [(base_seed + k) % SEED_LIMIT for k in range(1, seeds + 1)]})  # the largest seed wraps to 0
    return out


def run_point(entry: Mapping[str, Any], seed: int) -> Dict[str, Any]:
    """The searcher config of one confirmation run: the trial's params with another training seed."""
    return {**entry["params"], "seed": seed}


def run_label(entry: Mapping[str, Any], seed: int) -> str:
    """TensorBoard run name of one confirmation run."""
    return f"confirm-{entry['trial_id']}-seed{seed}"


def _final(rec: Mapping[str, Any]) -> Dict[str, Optional[float]]:
    last = last_report(rec)
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
    the verdict on the winner's margin over the runner-up (``objectives[0]``); with the plan, and
    whether every planned run finished (``complete``)."""
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
    lasts = [last_report(r) for r in [*search_records, *confirm_records]]
    sample = sample_step([h.get(SAMPLE_STEP) for h in lasts], [h.get(TEST_SAMPLES) for h in lasts])
    return {"objective": objectives[0], "configs": configs, "one_sample": sample,
            "verdict": verdict(configs, ranked[1] if len(ranked) > 1 else None, objectives[0], sample=sample),
            "plan": list(entries), "complete": all(c["finished"] == len(c["seeds"]) for c in configs)}


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
            "inside_noise": abs(margin) <= noise + 1e-12}


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
    ahead = v["margin"] >= 0
    head = (f"winner {v['winner']} {'leads' if ahead else 'trails'} runner-up {v['runner_up']} ({n}) by "
            f"{v['margin']:+.4f} {v['metric']} (seed std {seed_std:.4f}{floor}): ")
    if v["inside_noise"]:
        return head + "INSIDE the noise, another seed could swap them (more seeds: --confirm-seeds, --confirm-top 2)"
    if not ahead:  # over its seeds the winner falls behind: its search run was lucky
        return head + (f"{-v['margin'] / v['noise']:.1f}x the noise, the runner-up is better over the seeds "
                       "(confirm it too: --confirm-top 2)")
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
    saved = load_confirmation(out_dir)
    if not saved or not saved.get("plan"):
        return None
    confirmation = summarize(saved["plan"], records, load_records(Path(out_dir) / CONFIRM_DIR), objectives)
    if not confirmation["configs"]:
        return None
    return confirmation


def load_confirmation(out_dir: str | Path) -> Optional[Dict[str, Any]]:
    """``confirm.json`` of a sweep, or ``None`` (never confirmed, or unreadable)."""
    path = Path(out_dir) / CONFIRM_FILE
    try:
        return read_json_file(path, "confirmation") if path.is_file() else None
    except (OSError, ValueError, UserError):
        return None
