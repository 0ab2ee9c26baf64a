"""Item ``step``: the trainer's training step, HyperInterval against a plain network of the same target.

Both run through :class:`hinterval.trainer.ContinualTrainer` on one task of random data of the
right shapes; a :class:`hinterval.profiling.StepTimer` reads the clock at the trainer's step
reports. The box is at full size from the first step (``ramp="fixed"``, ``ramp_fraction=0``):
the guarded warm-up would hold it at zero on data that cannot be learnt, timing point steps. Ours: ``hyperinterval`` (hypernetwork, interval forward, worst-case loss, fused Adam).
Reference: ``finetune``, the target's own weights trained directly with cross-entropy (the
physical floor of a step). A :class:`hinterval.profiling.StepProfiler` window of the first run
says where the interval step's time goes; the target alone (its public forwards with leaf
weights, forward + backward) separates the target's share from the hypernetwork's.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

import torch

from hinterval.config import make_config
from hinterval.profiling import StepProfiler, StepTimer
from hinterval.targets.factory import build_target
from hinterval.trainer import ContinualTrainer
from speed_items.common import Timer, fmt_time, header, row, shape_benchmark


def _cases(quick: bool, device: torch.device):
    """(label, config overrides, input shape, classes)."""
    mlp = dict(benchmark="permuted-mnist", target_hidden=(1000, 1000), hnet_chunk_size=16384)
    resnet = dict(benchmark="split-cifar100")
    cases = [("MLP 1024-1000-1000-10, batch 128, chunked hnet 16384, sound", {**mlp, "interval_mode": "sound"}, (1024,), 10),
             ("MLP 1024-1000-1000-10, batch 128, chunked hnet 16384, rump (sound)", {**mlp, "interval_mode": "rump"}, (1024,), 10)]
    cases += [(f"ResNet-18 slim 32x32, batch 32, {mode}, hnet [100] chunk 7000", {**resnet, "interval_mode": mode},
               (3, 32, 32), 10) for mode in ("sound", "rump", "relaxed")]
    if device.type == "cuda":  # the TinyImageNet preset's shapes: 64x64 inputs, 5 classes, batch 16
        cases += [(f"ResNet-18 slim 64x64 (TinyImageNet preset), batch 16, {mode}, hnet [100] chunk 7000",
                   dict(benchmark="tinyimagenet", interval_mode=mode), (3, 64, 64), 5) for mode in ("sound", "rump")]
    if quick:
        small = dict(benchmark="permuted-mnist", target_hidden=(400, 400), hnet_chunk_size=4096)
        cases = [(f"MLP 1024-400-400-10, batch 128, chunked hnet 4096, {mode}", {**small, "interval_mode": mode}, (1024,), 10)
                 for mode in ("sound", "rump")] + cases[2:3]
    return cases


def _target_alone(target, weights, x, timer: Timer, repeats: int):
    """Forward + backward of the target alone (weights as leaves): interval (middle + box) vs point."""
    w_m, w_c, w_r = (w.detach().clone().requires_grad_() for w in weights)

    def interval():
        mid, c, r = target.forward_with_interval(x, w_m, w_c, w_r)
        (mid.sum() + c.sum() + r.sum()).backward()
        w_m.grad = w_c.grad = w_r.grad = None

    def point():
        target.forward(x, w_m).sum().backward()
        w_m.grad = None

    res = timer.compare({"interval": interval, "point": point}, repeats=repeats)
    return res["interval"]["best"], res["point"]["best"]


def run(args: Any, timer: Timer) -> List[Dict[str, Any]]:
    header("2. training step through the trainer: hyperinterval vs finetune (a plain network of the same target) "
           "(ratio = interval cost / point cost)")
    device = timer.device
    clock = time.process_time if timer.clock == "cpu" else time.perf_counter
    iters = 76 if args.quick else 101  # several windows between the trainer's step reports
    results = []
    for label, over, shape, classes in _cases(args.quick, device):
        base = make_config(dict(device=device.type, num_tasks=1, iters_per_task=iters, val_every=iters, ramp="fixed",
                                ramp_fraction=0.0, **over))
        bench = shape_benchmark(1, shape, classes, device, n=base.batch_size)
        times: Dict[str, StepTimer] = {"hyperinterval": StepTimer(clock), "finetune": StepTimer(clock)}
        profiler, trainer = StepProfiler(task_id=0, start_report=1), None
        for rnd in range(1 if args.quick else 2):  # interleaved rounds
            for method, t in times.items():
                cbs = [t] + ([profiler] if rnd == 0 and method == "hyperinterval" else [])
                tr = ContinualTrainer(base.replace(method=method), callbacks=cbs, benchmark=bench, progress=False)
                tr.fit()
                trainer = tr if method == "hyperinterval" else trainer
        # the profiled window ran slower: it does not count
        o = min(w.seconds / w.steps for w in times["hyperinterval"].windows if w.first_step != profiler.first_step)
        r = times["finetune"].seconds_per_step()
        target = trainer.method.target
        print(f" {label}: target {target.num_params:,} weights, hnet "
              f"{sum(p.numel() for p in trainer.method.hnet.parameters()):,} params", flush=True)
        row("step time (interval vs point)", fmt_time(o), fmt_time(r), o / r, "(cost ratio interval/point)")
        row("throughput samples/s", f"{base.batch_size / o:10.0f}", f"{base.batch_size / r:10.0f}", o / r)
        with torch.no_grad():
            out = trainer.method.task_weights([0])
        x = bench.tasks[0].inputs(bench.tasks[0].train.x)
        t_int, t_pt = _target_alone(target, (out.middle[0], out.centre[0], out.radius[0]), x, timer, 3 if args.quick else 5)
        row("target only: interval vs point fwd+bwd", fmt_time(t_int), fmt_time(t_pt), t_int / t_pt,
            "(no hypernetwork, no optimizer)")
        parts = profiler.phases()
        total = sum(parts.values())
        print(f"    where the interval step's time goes ({profiler.steps} steps under torch.profiler, which slows them): "
              + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items()), flush=True)
        results.append(dict(case=label, interval_s=o, point_s=r, cost_ratio=o / r, samples_per_s_interval=base.batch_size / o,
                            samples_per_s_point=base.batch_size / r, target_only_interval_s=t_int, target_only_point_s=t_pt,
                            target_only_ratio=t_int / t_pt, breakdown_s=parts))
        del trainer
    return results
