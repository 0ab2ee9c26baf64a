"""After the last trial (or an interruption): the report files and the summary a user reads."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Dict

from hinterval import metrics as M

from tune import space as S
from tune.records import load_records, unfinished
from tune.report import write_report
from tune.searcher import STUDY_FILE, close_orphans, study_url
from tune.spec import SweepSpec


def resume_command(spec: SweepSpec) -> str:
    """The command that continues this sweep, quoted for a POSIX shell."""
    parent = Path(spec["out_dir"]).parent
    where = f" --results-dir {shlex.quote(str(parent))}" if parent != Path("results").resolve() else ""
    return f"python tune/search.py --name {shlex.quote(spec['name'])} --resume{where}"


def finish(spec: SweepSpec, *, wall_s: float, running: bool = False) -> Dict[str, Any]:
    """Write the report files and print where they are (``running``: trials may still resume)."""
    records = load_records(spec["out_dir"])
    stopped = unfinished(records, spec["num_samples"])
    has_study = (Path(spec["out_dir"]) / STUDY_FILE).is_file()
    if has_study and not (running or stopped):
        close_orphans(study_url(spec["out_dir"]), spec["name"])
    names = S.parse_space(spec["space"]).names
    summary = write_report(spec["out_dir"], records, name=spec["name"], params=names, objectives=spec["objectives"],
                           space=spec["space"], study=(study_url(spec["out_dir"]), spec["name"]) if has_study else None)
    best = summary["best"]
    statuses: Dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print(f"\nsweep {spec['name']!r}: {len(records)}/{spec['num_samples']} trials started, "
          f"{summary['complete']} finished every task ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}); "
          f"wall time {wall_s:.0f} s")
    if best is not None:
        last = best["history"][-1]
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"best trial {best['trial_id']}: avg_acc {fmt(last.get(M.AVG_ACC))}, bwt {fmt(last.get(M.BWT))}, "
              f"worst_avg_acc {fmt(last.get(M.WORST_AVG_ACC))}; " + ", ".join(f"{k}={v}" for k, v in best["params"].items()))
        preset = next((r for r in records if r.get("is_preset") and r["history"]), None)
        if preset is not None:
            print(f"preset trial {preset['trial_id']}: avg_acc {fmt(preset['history'][-1].get(M.AVG_ACC))} "
                  f"({preset['status']}, {preset['tasks_done']}/{preset['num_tasks']} tasks)")
    for r in records:
        if r["status"] in ("ERROR", "DIVERGED"):
            print(f"trial {r['trial_id']} {r['status'].lower()} after {r['tasks_done']} task(s): {r.get('error')}")
    if stopped:
        print(f"not all trials finished; continue with: {resume_command(spec)}")
    out = spec["out_dir"]
    print(f"results: {out}/  (leaderboard.md, trials.csv{', best_config.yaml' if best else ''}, plots/)")
    if spec["tensorboard"]:  # commands are shell-quoted: a path may hold spaces or $(...)
        print(f"compare trials: {shlex.join(['tensorboard', '--logdir', f'{out}/tensorboard'])}   (HParams tab: one row per trial)")
    if has_study:
        print(f"optuna study:   {shlex.join(['optuna-dashboard', study_url(out)])}")
    if best is not None:
        print(f"train the best config: {shlex.join(['hinterval', 'train', '--config', f'{out}/best_config.yaml'])}")
    summary.pop("frame", None)
    return {**summary, "spec": spec, "records": records, "wall_s": wall_s, "unfinished": stopped}
