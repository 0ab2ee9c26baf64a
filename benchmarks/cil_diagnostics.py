"""Why task inference works or fails: diagnostics on the models that ``benchmarks/cil.py --runs DIR`` kept.

For each benchmark (MLP targets), the mean over the seeds of:

* **live units**: per hidden layer, the share of units that are active (> 0) on at least 1 % of their
  own task's test samples, for our task networks and for the independent networks;
* **task inference** (share of test samples given to their own task) by:
  ``entropy``; ``box disagreement``: the share of 16 networks, drawn uniformly from the task's
  embedding box through the hypernetwork, whose prediction differs from the middle network's;
  ``mahalanobis`` as the library computes it (first layer before the ReLU, statistics from the
  training split); the same with statistics from the validation split; and the Mahalanobis
  distance in the last hidden layer (after the ReLU) instead of the first.

Usage::

    .venv/bin/python benchmarks/cil_diagnostics.py --runs DIR [--benchmarks split-digits,...] [--seed 0,1,2]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cil import BENCHMARKS  # noqa: E402
from harness import configure_threads, parse_list, run_script  # noqa: E402
from hinterval.errors import UserError  # noqa: E402

SAMPLES = 16  # networks drawn from each task's embedding box


def _hidden(target, weights, x) -> List:
    """For an MLP target and weights ``(T, P)``: ``[first layer before its ReLU, every hidden layer
    after its ReLU..., logits]``, each ``(T, N, units)``."""
    import torch
    import torch.nn.functional as F

    per_task = []
    for w in weights:
        p = target.unflatten(w)
        n = len(p) // 2
        h, outs = x.flatten(1), []
        for i in range(n):
            h = F.linear(h, p[2 * i], p[2 * i + 1])
            if i == 0:
                outs.append(h)
            if i < n - 1:
                h = F.relu(h)
                outs.append(h)
        per_task.append(outs + [h])
    return [torch.stack([o[k] for o in per_task]) for k in range(len(per_task[0]))]


def diagnose(runs: Path, name: str, seed: int) -> Dict[str, float]:
    import torch

    from hinterval.config import make_config
    from hinterval.data.registry import load_benchmark
    from hinterval.evaluation import FeatureStatistics, entropy
    from hinterval.trainer import ContinualTrainer

    where = runs / f"{name}-seed{seed}"
    if not (where / "hyperinterval.pt").is_file():
        raise UserError(f"no kept run in {str(where)!r}: run benchmarks/cil.py --runs {runs} first")
    saved = torch.load(where / "hyperinterval.pt", map_location="cpu", weights_only=True)
    cfg = make_config(saved["config"])
    bench = load_benchmark(name, seed=cfg.data_seed, data_dir=cfg.data_dir)
    trainer = ContinualTrainer(cfg, benchmark=bench, progress=False)
    trainer.load_state(saved["payload"])
    method = trainer.method.eval()
    independent = torch.load(where / "independent.pt", map_location="cpu", weights_only=True)["payload"][0]
    T, seen = len(bench), list(range(len(bench)))

    def split(s: str, cap: int = 2000):
        xs, ys, ts = [], [], []
        for t, task in enumerate(bench.tasks):
            d = task.split(s)
            idx = torch.linspace(0, len(d) - 1, min(len(d), cap)).round().long()
            xs.append(task.inputs(d.x[idx]))
            ys.append(d.y[idx])
            ts.append(torch.full((len(idx),), t))
        return torch.cat(xs), torch.cat(ys), torch.cat(ts)

    data = {s: split(s) for s in ("train", "val", "test")}
    out: Dict[str, float] = {}
    with torch.inference_mode():
        nets = {"ours": method.task_weights(seen).middle, "independent": independent}
        for who, weights in nets.items():
            acts = {s: _hidden(method.target, weights, data[s][0]) for s in data}
            x_t, y_t, task_t = data["test"]
            own = task_t[None, :, None] == torch.arange(T)[:, None, None]  # (T, N, 1): sample of the task
            for k, h in enumerate(acts["test"][1:-1], start=1):
                active = ((h > 0) & own).sum(1) / own.sum(1)  # (T, units)
                out[f"{who} live units, hidden layer {k}"] = float((active > 0.01).float().mean())

            def stats(s: str, layer: int) -> FeatureStatistics:
                _, y, t = data[s]
                return FeatureStatistics.fit([acts[s][layer][i][t == i] for i in range(T)],
                                             [y[t == i] for i in range(T)], bench.classes_per_task)

            def task_acc(score) -> float:
                return float((score.argmin(0) == task_t).float().mean())

            logits = acts["test"][-1]
            out[f"{who} entropy"] = task_acc(entropy(logits))
            out[f"{who} mahalanobis (first layer, training split)"] = task_acc(stats("train", 0).distance(acts["test"][0]))
            out[f"{who} mahalanobis (first layer, validation split)"] = task_acc(stats("val", 0).distance(acts["test"][0]))
            last = len(acts["test"]) - 2
            out[f"{who} mahalanobis (last hidden layer, training split)"] = task_acc(
                stats("train", last).distance(acts["test"][last]))
        centre, radius = method.embeddings.box(seen)
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(T, SAMPLES, centre.shape[1], generator=g) * 2 - 1
        drawn = method.hnet((centre[:, None] + radius[:, None] * u).reshape(T * SAMPLES, -1), None).middle
        x_t, _, task_t = data["test"]
        votes = torch.stack([_hidden(method.target, drawn[t * SAMPLES:(t + 1) * SAMPLES], x_t)[-1].argmax(-1)
                             for t in range(T)])  # (T, K, N)
        middle = _hidden(method.target, nets["ours"], x_t)[-1].argmax(-1)  # (T, N)
        disagreement = (votes != middle[:, None]).float().mean(1)
        out["ours box disagreement"] = float((disagreement.argmin(0) == task_t).float().mean())
        out["ours box disagreement: share of samples where every drawn network agrees"] = float(
            (disagreement == 0).float().mean())
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="the --runs directory of benchmarks/cil.py")
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    ap.add_argument("--seed", default="0,1,2")
    args = ap.parse_args(argv)
    seeds = parse_list(args.seed, int, "--seed")
    configure_threads(1)
    for name in [b for b in args.benchmarks.split(",") if b]:
        rows = [diagnose(Path(args.runs), name, s) for s in seeds]
        print(f"{name} (mean of seeds {seeds}; task inference = share of test samples given to their own task):")
        for key in rows[0]:
            print(f"  {key}: {sum(r[key] for r in rows) / len(rows):.4f}  (per seed: "
                  f"{', '.join(f'{r[key]:.4f}' for r in rows)})", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main, "cil_diagnostics.py")
