"""Item ``cil``: class-incremental inference (task id unknown).

Ours: ``evaluate_tasks(..., scenarios=("cil",), cil_score="entropy")``, every task's network on
whole batches at once. Reference style, the baseline written here: per sample, per task, run that
task's network on the one sample, score it by the entropy of its softmax, keep the lowest. Both
must agree: ``evaluate_tasks`` on the loop's samples gives the loop's per-task accuracies.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Sequence

import torch

from hinterval.config import make_config
from hinterval.data.base import Benchmark, Split
from hinterval.data.registry import load_benchmark
from hinterval.evaluation import entropy, evaluate_tasks
from hinterval.methods.registry import build_method
from hinterval.targets.factory import build_target
from speed_items.common import Timer, header, row


def reference_style_cil(predictor, benchmark: Benchmark, task_ids: Sequence[int], per_task: int) -> List[float]:
    """Per-task class-incremental accuracy over the first ``per_task`` test samples, Python loops all the way."""
    target, accs = predictor.target, []
    for tid in task_ids:
        task = benchmark.tasks[tid]
        data = task.split("test")
        n, correct = min(per_task, len(data)), 0
        for i in range(n):
            x = task.inputs(data.x[i : i + 1])
            best, best_task, best_logits = None, None, None
            for k in range(len(task_ids)):
                logits = target.forward(x, predictor.middle[k])
                score = entropy(logits)[0]
                if best is None or float(score) < best:
                    best, best_task, best_logits = float(score), k, logits
            pred = benchmark.tasks[task_ids[best_task]].classes[int(best_logits.argmax())]
            correct += int(pred == task.classes[int(data.y[i])])
        accs.append(correct / n)
    return accs


def _first_test_samples(bench: Benchmark, n: int) -> Benchmark:
    """The same benchmark with each test split cut to its first ``n`` samples (what the loop sees)."""
    tasks = [dataclasses.replace(t, test=Split(t.test.x[:n], t.test.y[:n])) for t in bench.tasks]
    return dataclasses.replace(bench, tasks=tasks)


def run(args: Any, timer: Timer) -> List[Dict[str, Any]]:
    header("3. class-incremental inference by entropy (task id unknown): evaluate_tasks(scenarios=('cil',)) vs per-sample, "
           "per-task Python loop")
    device = timer.device
    results = []
    cases = [("permuted-digits", 10)] if args.quick else [("permuted-digits", 10), ("permuted-fashion", 10)]
    for name, T in cases:
        cfg = make_config(dict(benchmark=name, device=device.type))
        bench = load_benchmark(name, num_tasks=T, seed=0).to(device)
        torch.manual_seed(0)
        method = build_method(cfg, bench, build_target(cfg, bench)).to(device)
        method.eval()
        ids = list(range(T))
        n_test = sum(len(bench.tasks[i].test) for i in ids)
        per_task = 10 if args.quick else 40
        held: Dict[str, Any] = {}

        def ours():
            held["ours"] = evaluate_tasks(method.predictor(ids), bench, ids, split="test", batch_size=cfg.eval_batch_size,
                                          cil_score="entropy", scenarios=("cil",))

        def ref():
            with torch.inference_mode():
                held["ref"] = reference_style_cil(method.predictor(ids), bench, ids, per_task)

        res = timer.compare({"ours": ours, "ref": ref}, repeats=3 if args.quick else 5)
        o = res["ours"]["best"] / n_test
        r = res["ref"]["best"] / (per_task * T)
        same = evaluate_tasks(method.predictor(ids), _first_test_samples(bench, per_task), ids, split="test",
                              batch_size=cfg.eval_batch_size, cil_score="entropy", scenarios=("cil",))["cil"]
        agree = all(abs(a - b) < 1e-9 for a, b in zip(same, held["ref"]))
        row(f"{name}: {T} tasks, {n_test} test samples (loop {per_task * T})", f"{1 / o:8.0f} /s", f"{1 / r:8.0f} /s", r / o,
            f"(samples/s; per-task accuracies on the loop's samples {'agree' if agree else 'DIFFER'})")
        results.append(dict(benchmark=name, tasks=T, ours_samples_per_s=1 / o, ref_samples_per_s=1 / r, ratio=r / o,
                            agree=agree, ours_cil_acc=held["ours"]["cil"]))
    return results
