"""Item ``reg``: the regulariser's cost per training step as the number of earlier tasks ``t`` grows.

Ours: ``HyperIntervalMethod.training_loss`` (the current task and all ``t`` earlier tasks in one
batched hypernetwork pass) + backward. Reference style, the baseline written here: the current
task's loss (the same method with ``beta = 0``) plus one hypernetwork forward per earlier task
against targets stored when the task started. Before timing, both give the same loss.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from hinterval.config import make_config
from hinterval.methods.registry import build_method
from hinterval.regularizers import regularizer_weight
from hinterval.targets.mlp import MLPTarget
from speed_items.common import Timer, fmt_time, header, row, shape_benchmark


def _outputs(method, j: int, bounds: bool) -> List[torch.Tensor]:
    """What the regulariser keeps fixed for task ``j``: middle (and lower, upper) hypernetwork outputs."""
    centre, radius = method.embeddings.box([j])
    out = method.hnet(centre, radius if bounds else None)
    return [out.middle, out.lower, out.upper] if bounds else [out.middle]


def run(args: Any, timer: Timer) -> List[Dict[str, Any]]:
    header("1. regulariser cost per training step vs number of previous tasks t "
           "(hyperinterval, non-forced, reg on middle+lower+upper; target batch of 1 sample so the hypernetwork dominates)")
    device = timer.device
    # (label, target hidden, chunk, ts, repeats)
    configs = [("MLP 1024-100-100-10 (113,610 w), unchunked hnet [100,100] (11.5M)", (100, 100), 0,
                (1, 10, 50) if args.quick else (1, 10, 50, 100), 2 if args.quick else 3)]
    if not args.quick:
        configs.append(("MLP 1024-1000-1000-10 (2,036,010 w), chunked hnet 16384 (1.7M)", (1000, 1000), 16384,
                        (1, 10, 50, 100), 2))
        if args.unchunked_full:
            configs.append(("MLP 1024-1000-1000-10 (2,036,010 w), UNCHUNKED hnet (205.6M)", (1000, 1000), 0, (1, 10), 1))
    results = []
    for label, hidden, chunk, ts, repeats in configs:
        print(f" {label}", flush=True)
        base = None
        for t in ts:
            cfg = make_config(dict(benchmark="permuted-mnist", device=device.type, target_hidden=hidden,
                                   hnet_chunk_size=chunk, num_tasks=t + 1))
            bench = shape_benchmark(t + 1, (1024,), 10, device)
            target = MLPTarget(in_features=1024, hidden=hidden, num_classes=10)
            method = build_method(cfg, bench, target).to(device)
            plain = build_method(cfg.replace(beta=0.0), bench, target).to(device)  # no stored targets: current task only
            bounds = cfg.gamma > 0 and (cfg.embedding_mode == "nested" or cfg.reg_bounds)  # what the method keeps fixed
            with torch.no_grad():
                stored = [[o.clone() for o in _outputs(method, j, bounds)] for j in range(t)]
                method.begin_task(t)  # ours stores the same targets (one batched pass)
                for p in method.hnet.parameters():  # move the weights as training would: a non-zero regulariser
                    p.add_(1e-3 * torch.randn_like(p))
            plain.load_state_dict(method.state_dict())
            weight = regularizer_weight(cfg.beta, t, cfg.reg_normalisation)
            x, y = bench.tasks[t].inputs(bench.tasks[t].train.x[:1]), bench.tasks[t].train.y[:1]

            def ours():
                loss, _ = method.training_loss(t, x, y, 1.0)
                loss.backward()
                method.zero_grad(set_to_none=True)
                return loss.detach()

            def ref():
                loss, _ = plain.training_loss(t, x, y, 1.0)
                reg = sum(((c - s) ** 2).sum() for j in range(t) for c, s in zip(_outputs(plain, j, bounds), stored[j]))
                loss = loss + weight * reg / t
                loss.backward()
                plain.zero_grad(set_to_none=True)
                return loss.detach()

            a, b = ours(), ref()  # also the warm-up
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (float(a), float(b))
            res = timer.compare({"ours": ours, "ref": ref}, repeats=repeats if t <= 10 else max(1, repeats - 1), warmup=0)
            o, r = res["ours"]["best"], res["ref"]["best"]
            base = base or o
            row(f"t = {t:>3}", fmt_time(o), fmt_time(r), r / o, f"(ours grows {o / base:5.1f}x from t = {ts[0]})")
            results.append(dict(config=label, t=t, ours_s=o, ref_s=r, ratio=r / o, ours_median_s=res["ours"]["median"],
                                ref_median_s=res["ref"]["median"]))
            del method, plain, stored
    return results
