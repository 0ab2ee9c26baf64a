"""Class-incremental (CIL) benchmark: our task inference next to independent networks, same run.

For each benchmark and seed:

* **ours**: HyperInterval with the benchmark's DEFAULT config (preset) through the library's
  trainer; TIL, and CIL with task inference by the default ``cil_score`` and by plain entropy, each
  with its task-inference accuracy (the share of test samples given to their own task);
* **ceiling**: independent per-task networks of the same target (architecture, lr, batch size and
  iterations as the preset), the task chosen by the lowest softmax entropy; and, for comparison,
  the same networks with the task chosen by the default ``cil_score``;
* the evaluation time of our CIL per 1,000 test samples (per-task calibration on the validation
  split included) and the wall time (training and evaluation of both).

The row of a benchmark is the mean over the seeds. Targets (PASS/FAIL per row, a summary line):

    CIL >= ceiling on every benchmark; split-digits CIL >= 0.65; permuted-digits CIL >= 0.70.

``--runs DIR`` keeps every trained model (``DIR/<benchmark>-seed<N>/``) and re-uses it when the
same settings run again, so that inference can be re-evaluated without retraining; the printed
wall time then is the one measured when the model was trained.

Usage::

    .venv/bin/python benchmarks/cil.py [--benchmarks split-digits,permuted-digits,split-fashion,permuted-fashion]
        [--seed 0,1,2] [--threads 1] [--iters-per-task N] [--set KEY=VALUE ...] [--runs DIR] [--every-score]
        [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import code_commit, configure_threads, finish, parse_list, parse_sets, run_script  # noqa: E402
from hinterval.config import make_config  # noqa: E402

BENCHMARKS = ("split-digits", "permuted-digits", "split-fashion", "permuted-fashion")
#: minimum CIL besides ">= the independent-networks ceiling"
CIL_TARGETS = {"split-digits": 0.65, "permuted-digits": 0.70}
#: settings that do not change what is trained: a kept model is re-used whatever their values
EVAL_ONLY = ("cil_score", "cil_alpha", "eval_batch_size", "num_threads")
#: the figures of a row, in print order
COLUMNS = ("cil", "cil_entropy", "task_acc", "entropy_task_acc", "ceiling_cil", "ceiling_task_acc", "til",
           "ceiling_til", "independent_same_score_cil", "eval_ms_per_1000", "eval_entropy_ms_per_1000", "wall_s")


def _mean(xs: List[float]) -> float:
    return sum(xs) / len(xs)


def train_independent(cfg, bench, seed: int):
    """One network per task, trained alone on its task (Adam, the preset's lr/batch/iterations):
    weights ``(T, P)``."""
    import torch
    import torch.nn.functional as F

    from hinterval.targets.factory import build_target
    from hinterval.trainer import BatchSampler, iterations_for, make_optimizer

    target = build_target(cfg, bench)
    weights = []
    for t, task in enumerate(bench.tasks):
        torch.manual_seed(seed * 100_003 + t)
        w = torch.nn.Parameter(target.init_weights())
        opt = make_optimizer([w], cfg.lr)
        sampler = BatchSampler(len(task.train), cfg.batch_size, w.device)
        for _ in range(iterations_for(cfg, task)):
            idx = sampler.next()
            loss = F.cross_entropy(target.forward(task.inputs(task.train.x[idx]), w), task.train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        weights.append(w.detach())
    return target, torch.stack(weights)


def _cached(path: Optional[Path], cfg, make):
    """``make()`` -> ``(payload, wall_s)``, kept in ``path`` (with the config it was made with) when given."""
    import torch

    def trained_as(config: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in config.items() if k not in EVAL_ONLY}

    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if trained_as(saved["config"]) == trained_as(cfg.to_dict()):
            return saved["payload"], saved["wall_s"]
    t0 = time.perf_counter()
    payload = make()
    wall = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": cfg.to_dict(), "payload": payload, "wall_s": wall}, path)
    return payload, wall


def run_seed(cfg, bench, seed: int, runs: Optional[Path], every_score: bool = False) -> Dict[str, float]:
    """Train (or load) ours and the independent networks for one seed; every figure of a row."""
    import torch

    from hinterval.evaluation import CIL_SCORES, evaluate_tasks
    from hinterval.methods.base import WeightBoxPredictor
    from hinterval.trainer import ContinualTrainer

    where = None if runs is None else runs / f"{cfg.benchmark}-seed{seed}"
    trainer = ContinualTrainer(cfg, benchmark=bench, progress=False)

    def train_ours():
        trainer.fit()
        return trainer.state()

    state, wall_ours = _cached(None if where is None else where / "hyperinterval.pt", cfg, train_ours)
    trainer.load_state({**state, "config": cfg.to_dict()})  # a kept model may have other EVAL_ONLY values
    (target_w,), wall_ref = _cached(None if where is None else where / "independent.pt", cfg,
                                    lambda: (train_independent(cfg, bench, seed)[1],))
    from hinterval.targets.factory import build_target
    ceiling_pred = WeightBoxPredictor(build_target(cfg, bench), target_w)
    seen = list(range(len(bench)))
    trainer.method.eval()
    n_test = sum(len(bench.tasks[t].test) for t in seen)
    t0 = time.perf_counter()
    ours = evaluate_tasks(trainer.method.predictor(seen), bench, seen, scenarios=("cil",), cil_score=cfg.cil_score,
                          cil_alpha=cfg.cil_alpha, batch_size=cfg.eval_batch_size)
    eval_s = time.perf_counter() - t0
    til = evaluate_tasks(trainer.method.predictor(seen), bench, seen, scenarios=("til",))
    t0 = time.perf_counter()
    ent = evaluate_tasks(trainer.method.predictor(seen), bench, seen, scenarios=("cil",), cil_score="entropy",
                         batch_size=cfg.eval_batch_size)
    eval_entropy_s = time.perf_counter() - t0
    ref = evaluate_tasks(ceiling_pred, bench, seen, scenarios=("til", "cil"), cil_score="entropy",
                         batch_size=cfg.eval_batch_size)
    same = evaluate_tasks(ceiling_pred, bench, seen, scenarios=("cil",), cil_score=cfg.cil_score, cil_alpha=cfg.cil_alpha,
                          batch_size=cfg.eval_batch_size)
    per_score = {}  # test CIL of every score: shown for comparison, never used to choose
    for name in CIL_SCORES if every_score else ():
        r = evaluate_tasks(trainer.method.predictor(seen), bench, seen, scenarios=("cil",), cil_score=name,
                           cil_alpha=cfg.cil_alpha, batch_size=cfg.eval_batch_size)
        per_score[name] = (_mean(r["cil"]), _mean(r["cil_details"]["task_acc"]))
    return {
        "test_cil_per_score": per_score,
        "cil": _mean(ours["cil"]), "cil_entropy": _mean(ent["cil"]), "task_acc": _mean(ours["cil_details"]["task_acc"]),
        "entropy_task_acc": _mean(ent["cil_details"]["task_acc"]),
        "ceiling_cil": _mean(ref["cil"]), "ceiling_task_acc": _mean(ref["cil_details"]["task_acc"]),
        "til": _mean(til["til"]), "ceiling_til": _mean(ref["til"]), "independent_same_score_cil": _mean(same["cil"]),
        "eval_ms_per_1000": 1000.0 * eval_s / n_test * 1000.0, "eval_entropy_ms_per_1000": 1e6 * eval_entropy_s / n_test, "wall_s": wall_ours + wall_ref + eval_s,
        "score": ours["cil_details"]["score"], "confusion": ours["cil_details"]["confusion"],
    }


def _line(name: str, label: str, row: Dict[str, float]) -> str:
    return (f"{name} {label}: CIL {row['cil']:.4f} (task inference {row['task_acc']:.4f}) | CIL entropy "
            f"{row['cil_entropy']:.4f} (task inference {row['entropy_task_acc']:.4f}) | ceiling CIL {row['ceiling_cil']:.4f} "
            f"(task inference {row['ceiling_task_acc']:.4f}) | TIL {row['til']:.4f} (independent {row['ceiling_til']:.4f}) "
            f"| independent nets with our score: CIL {row['independent_same_score_cil']:.4f} "
            f"| eval {row['eval_ms_per_1000']:.0f} ms/1000 (entropy {row['eval_entropy_ms_per_1000']:.0f}) "
            f"| wall {row['wall_s']:.0f} s")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    ap.add_argument("--seed", default="0,1,2", help="training seeds, comma-separated; the row is their mean")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--iters-per-task", type=int, default=None, help="override the presets' iterations (say so next to the figures)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run (e.g. cil_score=entropy); printed with the figures")
    ap.add_argument("--runs", default=None, help="keep trained models here and re-use them")
    ap.add_argument("--every-score", action="store_true", help="also the test CIL of every cil_score (for comparison)")
    ap.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    seeds = parse_list(args.seed, int, "--seed")
    over: Dict[str, Any] = {} if args.iters_per_task is None else {"iters_per_task": args.iters_per_task}
    over.update(parse_sets(args.set))
    names = [b for b in args.benchmarks.split(",") if b]
    from hinterval.data.registry import check_data

    for name in names:  # every bad value before any run
        for seed in seeds:
            cfg = make_config(dict(benchmark=name, device="cpu", seed=seed, num_threads=args.threads, **over))
        check_data(cfg.benchmark, num_tasks=cfg.num_tasks, data_dir=cfg.data_dir)
    policy = configure_threads(args.threads)  # before torch loads: as `hinterval train` does
    from hinterval.data.registry import load_benchmark

    print(f"code {code_commit()}; seeds {seeds}; overrides of the presets: {over or 'none'}", flush=True)
    runs = None if args.runs is None else Path(args.runs)
    ok, report = True, {}
    for name in names:
        rows = []
        for seed in seeds:
            cfg = make_config(dict(benchmark=name, device="cpu", seed=seed, num_threads=args.threads, **over))
            bench = load_benchmark(name, seed=cfg.data_seed, data_dir=cfg.data_dir)
            rows.append(run_seed(cfg, bench, seed, runs, args.every_score))
            print(_line(name, f"seed {seed} ({cfg.cil_score} -> {rows[-1]['score']})", rows[-1]), flush=True)
            if args.every_score:
                print("  test CIL (task inference) of every score: " + ", ".join(
                    f"{k} {v[0]:.4f} ({v[1]:.4f})" for k, v in rows[-1]["test_cil_per_score"].items()), flush=True)
        mean = {k: _mean([r[k] for r in rows]) for k in COLUMNS}
        per_score = {k: _mean([r["test_cil_per_score"][k][0] for r in rows]) for k in rows[0]["test_cil_per_score"]}
        need = CIL_TARGETS.get(name, 0.0)
        passed = mean["cil"] >= mean["ceiling_cil"] and mean["cil"] >= need
        ok &= passed
        report[name] = {"mean": mean, "mean_test_cil_per_score": per_score, "seeds": dict(zip(seeds, rows)),
                        "target_cil": need, "pass": passed}
        print(_line(name, f"mean of {len(seeds)} seeds", mean) + f" | target CIL >= ceiling"
              f"{f' and >= {need}' if need else ''} [{'PASS' if passed else 'FAIL'}]", flush=True)
        if args.every_score:
            print("  mean test CIL of every score: " + ", ".join(f"{k} {v:.4f}" for k, v in per_score.items()), flush=True)
    return finish("cil", ok, args.threads, policy, report, args.json)


if __name__ == "__main__":
    run_script(main, "cil.py")
