"""Baselines in the same harness: every method, the same trainer, one table.

Runs each method (hyperinterval, hnet, finetune, joint, intercontinet, ewc) with its DEFAULT
config (the benchmark preset) on each benchmark and seed through the library's
``train_continual`` — no training loop here — and writes ``results/comparison/``:

* ``results.json``: one record per run (metrics, accuracy matrix, wall time) or its error;
* ``table.md``: mean ± std over seeds of TIL average accuracy and BWT (plus worst-case and CIL
  accuracy) per benchmark and method; BWT of ``joint`` is n/a (it retrains old tasks);
* ``comparison.png``: bar plots of the same (matplotlib, Agg backend).

The table is also printed. A benchmark that is not registered, or whose data is missing, is
skipped with a message. Runs go to ``--jobs`` worker processes with ``--threads`` torch threads
each (1 thread per run is fastest for these small networks on a shared CPU).

Usage::

    .venv/bin/python benchmarks/compare.py                                   # everything, 3 seeds
    .venv/bin/python benchmarks/compare.py --benchmarks split-digits --seeds 0 --jobs 2
    .venv/bin/python benchmarks/compare.py --methods finetune,ewc --iters-per-task 100  # smoke run
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import code_commit, parse_list, run_script  # noqa: E402
from hinterval.errors import UserError  # noqa: E402

METHODS = ("hyperinterval", "hnet", "finetune", "joint", "intercontinet", "ewc")
BENCHMARKS = ("split-digits", "permuted-digits", "split-fashion")
#: metrics shown in the table: (result key, column title)
COLUMNS = (("avg_acc", "TIL avg acc"), ("bwt", "BWT"), ("worst_avg_acc", "worst-case acc"), ("cil_avg_acc", "CIL acc"))


def run_one(job: Dict[str, Any]) -> Dict[str, Any]:
    """One training run in a worker process; returns a JSON-safe record (errors included)."""
    from hinterval.config import make_config
    from hinterval.runtime import configure_process

    record: Dict[str, Any] = {k: job[k] for k in ("benchmark", "method", "seed")}
    overrides = {k: v for k, v in job["overrides"].items() if v is not None}
    t0 = time.perf_counter()
    try:
        cfg = make_config(dict(benchmark=job["benchmark"], method=job["method"], seed=job["seed"], **overrides))
        configure_process(cfg)  # before torch loads (OpenMP policy)
        from hinterval.trainer import train_continual

        res = train_continual(cfg, progress=False)
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
        record["error"] = f"{type(exc).__name__}: {exc}"
        return record
    record.update(
        avg_acc=res["avg_acc"], bwt=res["bwt"], worst_avg_acc=res["worst_avg_acc"], worst_bwt=res["worst_bwt"],
        cil_avg_acc=res["cil"]["avg_acc"], dil_avg_acc=res["dil"]["avg_acc"], acc_matrix=res["acc_matrix"],
        iters_per_task=cfg.iters_per_task, wall_s=time.perf_counter() - t0,
    )
    return record


def available(benchmark: str, data_dir: Optional[str]) -> Optional[str]:
    """``None`` if ``benchmark`` can be loaded here, else why not (for a skip message)."""
    from hinterval.data.registry import BENCHMARK_NAMES, load_benchmark
    from hinterval.errors import UserError

    if benchmark not in BENCHMARK_NAMES:
        return f"not registered (known: {', '.join(BENCHMARK_NAMES)})"
    try:
        load_benchmark(benchmark, num_tasks=None, seed=0, data_dir=data_dir)
    except (UserError, OSError) as exc:
        return str(exc)
    return None


def mean_std(values: Sequence[Optional[float]]) -> Optional[tuple]:
    """``(mean, sample std, n)`` of the non-missing values; ``None`` if there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def fmt(stat: Optional[tuple]) -> str:
    if stat is None:
        return "n/a"
    m, s, n = stat
    return f"{m:.4f}" if n == 1 else f"{m:.4f} ± {s:.4f}"


def summarise(records: List[Dict[str, Any]], benchmarks: Sequence[str], methods: Sequence[str]) -> List[Dict[str, Any]]:
    """One row per (benchmark, method) with mean/std statistics over the successful seeds."""
    rows = []
    for b in benchmarks:
        for m in methods:
            runs = [r for r in records if r["benchmark"] == b and r["method"] == m]
            ok = [r for r in runs if "error" not in r]
            if not runs:
                continue
            row: Dict[str, Any] = {"benchmark": b, "method": m, "seeds": len(ok), "failed": len(runs) - len(ok)}
            for key, _ in COLUMNS:
                row[key] = mean_std([r[key] for r in ok])
            row["wall_s"] = mean_std([r["wall_s"] for r in ok])
            rows.append(row)
    return rows


def markdown_table(rows: List[Dict[str, Any]]) -> str:
    head = ["benchmark", "method", "seeds", *(title for _, title in COLUMNS), "time/run (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seeds = f"{r['seeds']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        wall = "n/a" if r["wall_s"] is None else f"{r['wall_s'][0]:.0f}"
        cells = [r["benchmark"], r["method"], seeds, *(fmt(r[k]) for k, _ in COLUMNS), wall]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_plot(rows: List[Dict[str, Any]], benchmarks: Sequence[str], methods: Sequence[str], path: Path) -> None:
    """Grouped bars: TIL avg acc (top) and BWT (bottom) per benchmark, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = [b for b in benchmarks if any(r["benchmark"] == b for r in rows)]
    fig, axes = plt.subplots(2, len(benchmarks), figsize=(4.5 * len(benchmarks), 6.5), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for col, b in enumerate(benchmarks):
        by_method = {r["method"]: r for r in rows if r["benchmark"] == b}
        for row_i, (key, title) in enumerate((("avg_acc", "TIL avg acc"), ("bwt", "BWT"))):
            ax = axes[row_i][col]
            for i, m in enumerate(methods):
                stat = by_method.get(m, {}).get(key)
                if stat is None:
                    ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                    continue
                ax.bar(i, stat[0], yerr=stat[1] if stat[2] > 1 else None, color=colours[i % 10], capsize=3)
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels(methods, rotation=35, ha="right", fontsize=8)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_title(f"{b}: {title}", fontsize=10)
            if key == "avg_acc":
                ax.set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--iters-per-task", type=int, default=None, help="override every preset (shrinks the run)")
    ap.add_argument("--data-dir", default=None, help="data root for benchmarks that need files (e.g. split-fashion)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--out", default="results/comparison", help="output directory")
    args = ap.parse_args(argv)

    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    seeds = parse_list(args.seeds, int, "--seeds")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    from hinterval.config import make_config

    names = parse_list(args.benchmarks, str, "--benchmarks")
    for b in names:  # every bad name or value before the first run (a missing data set is skipped below)
        for m in methods:
            for s in seeds:
                make_config(dict(benchmark=b, method=m, seed=s), **{k: v for k, v in dict(
                    iters_per_task=args.iters_per_task, device=args.device, num_threads=args.threads).items() if v is not None})
    benchmarks = []
    for b in names:
        why = available(b, args.data_dir)
        if why is None:
            benchmarks.append(b)
        else:
            print(f"skipping benchmark {b}: {why}", flush=True)
    if not benchmarks:
        print("no benchmark available; nothing to do", file=sys.stderr)
        return 1

    overrides = dict(iters_per_task=args.iters_per_task, data_dir=args.data_dir, device=args.device, num_threads=args.threads)
    jobs = [dict(benchmark=b, method=m, seed=s, threads=args.threads, overrides=overrides)
            for b in benchmarks for m in methods for s in seeds]
    print(f"{len(jobs)} runs: {len(benchmarks)} benchmarks x {len(methods)} methods x {len(seeds)} seeds, "
          f"{args.jobs} at a time", flush=True)
    t0 = time.perf_counter()
    records: List[Dict[str, Any]] = []
    # spawn, not fork: a forked torch process can deadlock in its thread pools.
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        for rec in pool.map(run_one, jobs):
            records.append(rec)
            if "error" in rec:
                status = "FAILED " + rec["error"]
            else:
                bwt = "n/a" if rec["bwt"] is None else f"{rec['bwt']:+.4f}"
                status = f"avg_acc {rec['avg_acc']:.4f} bwt {bwt} ({rec['wall_s']:.0f} s)"
            print(f"  {rec['benchmark']:>16} {rec['method']:>13} seed {rec['seed']}: {status}", flush=True)

    rows = summarise(records, benchmarks, methods)
    table = markdown_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/compare.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    import torch

    header = (f"# Method comparison\n\nCommand: `{command.strip()}`  \nCode: commit {code_commit()}; "
              f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average at the end "
              f"{os.getloadavg()[0]:.2f}.  \n"
              f"Seeds: {', '.join(map(str, seeds))}; iters/task: {args.iters_per_task or 'preset'}; device: {args.device}; "
              f"torch {torch.__version__}; total wall time {time.perf_counter() - t0:.0f} s.  \n"
              "Cells: mean ± sample std over seeds (mean only for one seed). BWT n/a for joint (it keeps training "
              "old tasks); worst-case accuracy only for interval methods; TIL for the weight-space baselines uses a "
              "shared trunk with one output head per task.\n\n")
    (out / "table.md").write_text(header + table + "\n")
    (out / "results.json").write_text(json.dumps({"command": command.strip(), "runs": records}, indent=1))
    bar_plot(rows, benchmarks, methods, out / "comparison.png")
    print()
    print(table)
    print(f"\nwrote {out}/table.md, {out}/results.json, {out}/comparison.png")
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    run_script(main, "compare.py")
