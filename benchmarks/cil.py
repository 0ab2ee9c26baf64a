"""Class-incremental (CIL) and universal-network (DIL) benchmark with its reference points.

For each benchmark, in the same run:

* **ours**: HyperInterval with the benchmark's DEFAULT config (preset) through the library's
  trainer; TIL, BWT, worst-case accuracy, and CIL with task inference by the plain entropy rule
  and by the configured ``cil_score`` (``auto``: the score with the best task-inference accuracy on
  the validation split), each with its task-inference accuracy;
* **ceiling**: independent per-task networks of the same target (architecture, lr, batch size and
  iterations as the preset), the task chosen by the lowest softmax entropy;
* **universal** (``--universal``): HyperInterval in nested mode with the settings in
  :data:`UNIVERSAL` (TIL, DIL = the single network from the universal embedding, worst-case), next
  to a single network of the same target trained jointly on all tasks (shared output layer: the
  DIL reference) and to the non-forced TIL of the ``ours`` row. ``spread`` is how different the
  generated task networks are: mean ``|W_t - mean W|`` over mean ``|W_t|`` (0 = one network).

Targets (one PASS/FAIL per line, a summary line at the end):

    CIL >= ceiling on every benchmark; permuted-digits, permuted-fashion CIL >= 0.60;
    split-digits CIL >= 0.55; universal DIL >= 0.90 and nested TIL within 0.01 of non-forced.

Usage::

    .venv/bin/python benchmarks/cil.py [--benchmarks permuted-digits,split-digits,split-fashion,permuted-fashion]
        [--universal split-digits,permuted-digits] [--threads 2] [--seed 0] [--iters-per-task N]
        [--set KEY=VALUE ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
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
#: minimum CIL (besides ">= the independent-networks ceiling")
CIL_TARGETS = {"permuted-digits": 0.60, "permuted-fashion": 0.60, "split-digits": 0.55}
#: nested-mode settings of the universal rows (on top of the preset), one row each
UNIVERSAL: Dict[str, List[Dict[str, Any]]] = {
    "split-digits": [dict(embedding_mode="nested"), dict(embedding_mode="nested", kappa_min=1.0),
                     dict(embedding_mode="nested", gamma=24.0, kappa_min=0.9), dict(embedding_mode="nested", gamma=24.0, kappa_min=1.0)],
    "permuted-digits": [dict(embedding_mode="nested"), dict(embedding_mode="nested", kappa_min=1.0)],
}
DIL_TARGET, NESTED_TIL_GAP = 0.90, 0.01


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _mean(xs: List[float]) -> float:
    return sum(xs) / len(xs)


def train_independent(cfg, bench, seed: int):
    """One network per task, trained alone on its task (Adam, the preset's lr/batch/iterations)."""
    import torch
    import torch.nn.functional as F

    from hinterval.methods.base import WeightBoxPredictor
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
    return WeightBoxPredictor(target, torch.stack(weights))


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


def run_ours(cfg, bench) -> Dict[str, Any]:
    """Train with the library's trainer; CIL of the final model under the entropy rule and under ``cfg.cil_score``."""
    import torch

    from hinterval.evaluation import CIL_CANDIDATES, evaluate_tasks
    from hinterval.trainer import ContinualTrainer

    t0 = time.perf_counter()
    trainer = ContinualTrainer(cfg, benchmark=bench, progress=False)
    res = trainer.fit()
    wall = time.perf_counter() - t0
    seen = list(range(len(bench)))
    trainer.method.eval()
    pred = trainer.method.predictor(seen)
    spread = None
    if hasattr(trainer.method, "task_weights"):  # how different the generated task networks are
        with torch.no_grad():
            w = trainer.method.task_weights(seen).middle
            spread = float((w - w.mean(0)).norm(dim=1).mean() / w.norm(dim=1).mean())
    per_score = {}  # test CIL of every candidate: shown for transparency, never used to choose
    for name in CIL_CANDIDATES:
        r = evaluate_tasks(pred, trainer.benchmark, seen, scenarios=("cil",), cil_score=name, cil_alpha=cfg.cil_alpha,
                           batch_size=cfg.eval_batch_size)
        per_score[r["cil_details"]["score"]] = (_mean(r["cil"]), _mean(r["cil_details"]["task_acc"]))
    ent = per_score["entropy"]
    return {
        "til": res["avg_acc"], "bwt": res["bwt"], "worst": res["worst_avg_acc"], "dil": res["dil"]["avg_acc"],
        "cil": res["cil"]["avg_acc"], "cil_score": res["cil"].get("score"), "cil_task_acc": _mean(res["cil"]["task_acc"]),
        "val_task_acc": res["cil"].get("val_task_acc"), "confusion": res["cil"].get("confusion"),
        "cil_entropy": ent[0], "cil_entropy_task_acc": ent[1], "test_cil_per_score": per_score,
        "weight_spread": spread, "wall_s": wall, "config": cfg.to_dict(),
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    ap.add_argument("--universal", default=",".join(UNIVERSAL), help="benchmarks with a nested-mode row ('' for none)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters-per-task", type=int, default=None, help="override the presets' iterations (say so next to the figures)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run (e.g. gamma=0.05); printed with the figures")
    ap.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    # before torch loads: OpenMP wait policy, threads, glibc memory policy (as `hinterval train`)
    policy = configure_process(make_config(dict(device="cpu", num_threads=args.threads))).omp_wait_policy
    from hinterval.data.registry import check_data, load_benchmark
    from hinterval.evaluation import evaluate_tasks
    over: Dict[str, Any] = {} if args.iters_per_task is None else {"iters_per_task": args.iters_per_task}
    over.update(parse_sets(args.set))
    for name in {*args.benchmarks.split(","), *args.universal.split(",")} - {""}:  # every bad value before any run
        cfg = make_config(dict(benchmark=name, device="cpu", seed=args.seed, **over))
        check_data(cfg.benchmark, num_tasks=cfg.num_tasks, data_dir=cfg.data_dir)
    if over:
        print(f"overrides of the presets: {over}", flush=True)
    ok, report = True, {}
    for name in [b for b in args.benchmarks.split(",") if b]:
        cfg = make_config(dict(benchmark=name, device="cpu", seed=args.seed, **over))
        bench = load_benchmark(name, seed=cfg.data_seed, data_dir=cfg.data_dir)
        ours = run_ours(cfg, bench)
        t0 = time.perf_counter()
        ref = evaluate_tasks(train_independent(cfg, bench, args.seed), bench, list(range(len(bench))),
                             scenarios=("til", "cil"), cil_score="entropy", batch_size=cfg.eval_batch_size)
        ceiling = {"til": _mean(ref["til"]), "cil": _mean(ref["cil"]), "task_acc": _mean(ref["cil_details"]["task_acc"]),
                   "wall_s": time.perf_counter() - t0}
        need = max(ceiling["cil"], CIL_TARGETS.get(name, 0.0))
        passed = ours["cil"] >= need
        ok &= passed
        report[name] = {"ours": ours, "ceiling": ceiling, "target_cil": need, "pass": passed}
        print(f"{name}: ours TIL {_fmt(ours['til'])} BWT {_fmt(ours['bwt'])} worst {_fmt(ours['worst'])} | "
              f"CIL entropy {_fmt(ours['cil_entropy'])} (task inference {_fmt(ours['cil_entropy_task_acc'])}) | "
              f"CIL {cfg.cil_score}->{ours['cil_score']} {_fmt(ours['cil'])} (task inference {_fmt(ours['cil_task_acc'])}) | "
              f"ceiling: independent nets TIL {_fmt(ceiling['til'])} CIL {_fmt(ceiling['cil'])} "
              f"(task inference {_fmt(ceiling['task_acc'])}) | wall {ours['wall_s']:.0f}s+{ceiling['wall_s']:.0f}s | "
              f"target CIL >= {need:.4f} [{'PASS' if passed else 'FAIL'}]", flush=True)
        print(f"  validation task-inference accuracy per score: "
              f"{json.dumps({k: round(v, 4) for k, v in (ours['val_task_acc'] or {}).items()})}; test CIL per score "
              f"(not used to choose): {json.dumps({k: round(v[0], 4) for k, v in ours['test_cil_per_score'].items()})}",
              flush=True)
    for name in [b for b in args.universal.split(",") if b]:
        base = report.get(name, {}).get("ours")
        base_cfg = make_config(dict(benchmark=name, device="cpu", seed=args.seed, **over))
        bench = load_benchmark(name, seed=base_cfg.data_seed, data_dir=base_cfg.data_dir)
        if base is None:
            base = run_ours(base_cfg, bench)
        joint = None
        for variant in UNIVERSAL.get(name, [{"embedding_mode": "nested"}]):
            cfg = make_config({"benchmark": name, "device": "cpu", "seed": args.seed, **over, **variant})
            nested = run_ours(cfg, bench)
            if joint is None:
                joint = _mean(train_joint_single(cfg, bench, args.seed))
            passed = nested["dil"] is not None and nested["dil"] >= DIL_TARGET and nested["til"] >= base["til"] - NESTED_TIL_GAP
            ok &= passed
            report.setdefault(f"{name}/universal", []).append(
                {"settings": variant, "nested": nested, "non_forced_til": base["til"], "joint_single_dil": joint, "pass": passed})
            print(f"{name} universal ({cfg.embedding_mode}, gamma={cfg.gamma}, kappa_min={cfg.kappa_min}, beta={cfg.beta}, "
                  f"d={cfg.embedding_dim}): TIL {_fmt(nested['til'])} DIL {_fmt(nested['dil'])} worst {_fmt(nested['worst'])} "
                  f"BWT {_fmt(nested['bwt'])} CIL {_fmt(nested['cil'])} spread {_fmt(nested['weight_spread'])} | "
                  f"non-forced TIL {_fmt(base['til'])} spread {_fmt(base['weight_spread'])} | "
                  f"joint single network DIL {_fmt(joint)} | wall {nested['wall_s']:.0f}s | target DIL >= {DIL_TARGET}, "
                  f"TIL >= non-forced - {NESTED_TIL_GAP} [{'PASS' if passed else 'FAIL'}]", flush=True)
    return finish("cil", ok, args.threads, policy, report, args.json)


if __name__ == "__main__":
    run_script(main, "cil.py")
