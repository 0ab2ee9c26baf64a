"""The universal network of nested mode: one network for all tasks, its certified bound, and two anchors.

For each benchmark, in the same run:

* **nested**: HyperInterval with ``--embedding-mode nested`` (the benchmark's nested preset,
  ``hinterval/presets.py``) through the library's trainer: nested TIL avg acc and BWT (each task's
  own embedding), the universal network's domain-incremental accuracy (DIL avg acc) and BWT, the
  certified lower bound (mean over tasks of each task's certified accuracy at the end: the universal
  network lies in every task's weight box, so it can never score below it), the test samples that
  broke the bound (must be 0), and how far apart the tasks are (mean distance between embedding
  centres; smallest relative distance between task networks: 0 = every task has the same network);
* **joint**: one network of the same target with ONE output layer trained on all tasks' data at
  once, the same total iterations (the DIL ceiling);
* **EWC**: one network with one output layer trained task after task with elastic weight
  consolidation (``--method ewc --shared-head``, the benchmark's non-nested preset): a
  one-network, no-replay anchor.

Targets (one PASS/FAIL per row, a summary line at the end):

    nested TIL >= 0.95 with BWT >= -0.01 on the digits benchmarks;
    universal DIL >= 0.90 permuted-digits, >= 0.93 split-digits, >= 0.88 split-fashion, and above EWC DIL;
    no test sample below the certified bound; each row's nested run <= 300 s.

Usage::

    .venv/bin/python benchmarks/universal.py [--benchmarks permuted-digits,split-digits,split-fashion,permuted-fashion]
        [--threads 2] [--seed 0] [--set KEY=VALUE ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import finish, parse_sets, run_script  # noqa: E402
from hinterval.config import make_config  # noqa: E402
from hinterval.runtime import configure_process  # noqa: E402

BENCHMARKS = ("permuted-digits", "split-digits", "split-fashion", "permuted-fashion")
DIL_TARGETS = {"permuted-digits": 0.90, "split-digits": 0.93, "split-fashion": 0.88}
#: nested TIL targets (avg acc, BWT) where the issue of one network per task is measured
TIL_TARGETS = {"permuted-digits": (0.95, -0.01), "split-digits": (0.95, -0.01)}
ROW_SECONDS = 300.0
#: overrides the EWC anchor takes from ``--set`` too (its schedule, data and network)
SHARED_KEYS = ("iters_per_task", "epochs_per_task", "batch_size", "lr", "num_tasks", "target_hidden", "data_dir")


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def train_joint_single(cfg, bench, seed: int) -> List[float]:
    """One network with ONE output layer trained on all tasks at once (every batch mixes all tasks);
    the same total iterations as the continual run. Returns its test accuracy per task (DIL)."""
    import torch
    import torch.nn.functional as F

    from hinterval.evaluation import evaluate_tasks
    from hinterval.methods.base import WeightBoxPredictor
    from hinterval.targets.factory import build_target
    from hinterval.trainer import iterations_for, make_optimizer

    target = build_target(cfg, bench)
    torch.manual_seed(seed)
    w = torch.nn.Parameter(target.init_weights())
    opt = make_optimizer([w], cfg.lr)
    T = len(bench.tasks)
    k = max(1, math.ceil(cfg.batch_size / T))
    for _ in range(sum(iterations_for(cfg, t) for t in bench.tasks)):
        xs, ys = [], []
        for task in bench.tasks:
            idx = torch.randint(len(task.train), (k,))
            xs.append(task.inputs(task.train.x[idx]))
            ys.append(task.train.y[idx])
        loss = F.cross_entropy(target.forward(torch.cat(xs), w), torch.cat(ys))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    pred = WeightBoxPredictor(target, w.detach().unsqueeze(0).expand(T, -1), universal=w.detach())
    return evaluate_tasks(pred, bench, list(range(T)), scenarios=("dil",))["dil"]


def _train(cfg, bench):
    from hinterval.trainer import ContinualTrainer

    t0 = time.perf_counter()
    res = ContinualTrainer(cfg, benchmark=bench, progress=False).fit()
    return res, time.perf_counter() - t0


def _row(name: str, over: Dict[str, Any], seed: int) -> Dict[str, Any]:
    from hinterval.data.registry import load_benchmark

    cfg = make_config(dict(benchmark=name, device="cpu", seed=seed, embedding_mode="nested", **over))
    bench = load_benchmark(name, seed=cfg.data_seed, data_dir=cfg.data_dir, num_tasks=cfg.num_tasks)
    res, wall = _train(cfg, bench)
    t1 = time.perf_counter()
    joint = train_joint_single(cfg, bench, seed)
    joint_wall = time.perf_counter() - t1
    shared = {k: v for k, v in over.items() if k in SHARED_KEYS}  # the same schedule and network as the nested run
    ewc_cfg = make_config(dict(benchmark=name, device="cpu", seed=seed, method="ewc", shared_head=True,
                               num_tasks=cfg.num_tasks, **shared))
    ewc, ewc_wall = _train(ewc_cfg, bench)
    return {"config": cfg.to_dict(), "til": res["avg_acc"], "bwt": res["bwt"], "universal": res["universal"] or {},
            "tasks": res["tasks"], "joint_dil": sum(joint) / len(joint), "joint_per_task": joint,
            "ewc_dil": ewc["dil"]["avg_acc"], "ewc_dil_bwt": ewc["dil"]["bwt"], "ewc_per_task": ewc["dil"]["final_accs"], "wall_s": wall, "joint_wall_s": joint_wall, "ewc_wall_s": ewc_wall}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run (e.g. nested_hold=intersection); printed with the figures")
    ap.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    policy = configure_process(make_config(dict(device="cpu", num_threads=args.threads))).omp_wait_policy
    from hinterval.data.registry import check_data

    over = parse_sets(args.set, owned={"embedding_mode": "its rows are nested mode by definition"})
    for name in [b for b in args.benchmarks.split(",") if b]:  # every bad value before the first row trains
        cfg = make_config(dict(benchmark=name, device="cpu", seed=args.seed, embedding_mode="nested", **over))
        check_data(cfg.benchmark, num_tasks=cfg.num_tasks, data_dir=cfg.data_dir)
    if over:
        print(f"overrides of the nested presets: {over}", flush=True)
    ok, report = True, {}
    for name in [b for b in args.benchmarks.split(",") if b]:
        row = _row(name, over, args.seed)
        uni, cfg = row["universal"], row["config"]
        til_min, bwt_min = TIL_TARGETS.get(name, (None, None))
        ewc_dil = row["ewc_dil"]
        checks = {
            "dil": uni.get("avg_acc") is not None and uni["avg_acc"] >= DIL_TARGETS.get(name, 0.0),
            "above_ewc": uni.get("avg_acc") is not None and ewc_dil is not None and uni["avg_acc"] > ewc_dil,
            "til": til_min is None or (row["til"] >= til_min and row["bwt"] >= bwt_min),
            "bound": uni.get("violations", 1) == 0 and all(
                a >= b for a, b in zip(uni.get("final_accs", []), uni.get("certified_bound") or [])),
            "time": row["wall_s"] <= ROW_SECONDS,
        }
        passed = all(checks.values())
        ok &= passed
        report[name] = {**row, "checks": checks, "pass": passed}
        bound = uni.get("certified_bound")
        print(f"{name}: nested TIL {_fmt(row['til'])} BWT {_fmt(row['bwt'])} | universal DIL {_fmt(uni.get('avg_acc'))} "
              f"BWT {_fmt(uni.get('bwt'))} | certified bound {_fmt(uni.get('bound_avg'))} (samples below it: "
              f"{uni.get('violations')}) | centre spread {_fmt(uni.get('centre_spread'))}, closest task networks "
              f"{_fmt(uni.get('network_min_distance'))} | joint DIL {_fmt(row['joint_dil'])} | EWC DIL {_fmt(ewc_dil)} | "
              f"centres {cfg['nested_centres']} gamma {cfg['gamma']} beta {cfg['beta']} universal_weight "
              f"{cfg['universal_weight']} | wall {row['wall_s']:.0f}s (+{row['joint_wall_s']:.0f}s joint, "
              f"+{row['ewc_wall_s']:.0f}s EWC) [{'PASS' if passed else 'FAIL'}: "
              f"{', '.join(k for k, v in checks.items() if not v) or 'all targets'}{' missed' if not passed else ' met'}]",
              flush=True)
        print(f"  per task: universal {' '.join(_fmt(v) for v in uni.get('final_accs', []))} | bound "
              f"{' '.join(_fmt(v) for v in bound or [])} | joint {' '.join(_fmt(v) for v in row['joint_per_task'])}",
              flush=True)
    return finish("universal", ok, args.threads, policy, report, args.json)


if __name__ == "__main__":
    run_script(main, "universal.py")
