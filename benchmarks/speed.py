"""Speed benchmark (Speed): our library's hot paths against the reference-style way.

Every item times LIBRARY code (style item 15: no reimplemented training loop) next to the
reference-style baseline, in the same process, interleaved (ours, ref, ours, ref, ...), and
prints OUR figure, the REFERENCE-STYLE figure and their RATIO. The machine these numbers come
from is a noisy shared CPU: the ratios are the result, absolute times are only indicative.
Times are best-of-N (the least disturbed run); the JSON report (``--json``) also has medians.

Items:

1. ``reg``   -- regulariser cost per training step as the number of previous tasks t grows:
   ours = ``HyperIntervalMethod.training_loss`` (current task + all t previous tasks in ONE
   batched hypernetwork pass) + backward; reference style = the current task's loss plus one
   hypernetwork forward per previous task (the loop is written here: it is the baseline).
2. ``step``  -- training-step throughput of the full interval step (``training_loss`` + backward
   + fused Adam) against a plain point-network step of the same target (the physical floor), for
   the MLP and the slim ResNet-18 (sound and relaxed modes), with a breakdown of where the time
   goes (hypernetwork, target interval forward/backward, optimizer).
3. ``cil``   -- class-incremental inference: ``evaluate_tasks(..., scenarios=("cil",))`` against a
   per-sample, per-task Python loop; the predictions must agree.
4. ``data``  -- whole data sets as tensors indexed in batches (``Task.inputs``) against a
   ``DataLoader`` over a per-sample ``__getitem__`` dataset (real Fashion-MNIST); TinyImageNet
   cached array load against decoding the JPEGs of every task (a generated miniature tree).
5. ``e2e``   -- wall time of full ``permuted-digits`` and ``split-digits`` runs with the default
   config (skipped with ``--quick``), and a profile (cProfile + torch.profiler top entries) of a
   few hundred training steps.

Measured (quiet 2-core CPU, 1 thread, CPU clock, full sizes, 405 s; the output and
JSON are committed as ``results/speed/cpu.txt`` / ``cpu.json``):

* reg, unchunked hnet (11.5M), target 113,610: ours/ref at t = 1, 10, 50, 100: 1.7x, 6.7x,
  17.9x, 19.6x; ours grows 4.9x over t = 1..100 (sub-linear) -> target met. Chunked (16384)
  hnet, target 2,036,010: 0.83-1.02x -- per row the chunked output layer is a matrix product
  (FLOP bound), so sharing a pass saves nothing.
* step, interval / point cost: MLP 1024-1000-1000-10 + chunked hnet: sound 7.99x (target alone
  4.77x), rump 7.02x (target alone 3.77x). The hnet output layer emits 2M weights as middle,
  centre and radius rows at 2 x 100 FLOPs per weight each: alone ~2.3x a batch-128 point step,
  so a much lower ratio is out of reach at this batch size. ResNet-18: sound 4.70x (target alone 4.53x),
  rump 4.14x (3.95x), relaxed 5.38x. FLOP floor of a sound step: middle + centre + radius
  (Rump: 2 products) = 4 convolutions per point convolution.
* cil: 56.7x (permuted-digits), 27.1x (permuted-fashion, 100k samples); predictions agree 100%.
* data: Fashion-MNIST batches 4.8x; TinyImageNet cached load 6.0x (600-JPEG miniature).
* e2e (1 thread): permuted-digits 88.1 s, split-digits 12.7 s. Top of the profile: the hypernetwork output layer's matrix products.

Usage::

    .venv/bin/python benchmarks/speed.py --quick            # < 3 min on a 2-core CPU
    .venv/bin/python benchmarks/speed.py                    # full sizes (9-15 min on 2 cores)
    .venv/bin/python benchmarks/speed.py --items reg,cil --threads 2 --json /tmp/speed.json
    .venv/bin/python benchmarks/speed.py --device cuda
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

# Before torch loads its OpenMP runtime: with --threads > 1 on a shared CPU, spinning OpenMP
# threads made every step 2-30x slower (measured; see benchmarks/acceptance.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hinterval.config import make_config  # noqa: E402
from hinterval.data.base import Benchmark, Split, Task  # noqa: E402
from hinterval.evaluation import entropy, evaluate_tasks  # noqa: E402
from hinterval.methods import build_method  # noqa: E402
from hinterval.regularizers import regularizer_weight  # noqa: E402
from hinterval.targets.mlp import MLPTarget  # noqa: E402
from hinterval.targets.resnet import ResNet18Target  # noqa: E402
from hinterval.trainer import BatchSampler, make_optimizer, train_continual  # noqa: E402

ITEMS = ("reg", "step", "cil", "data", "e2e")
REPORT: Dict[str, Any] = {}


# --- timing ---------------------------------------------------------------------------------

class Timer:
    """Times callables on a device.

    ``clock="cpu"`` measures the process's CPU time (``time.process_time``): on a shared,
    oversubscribed CPU the wall clock of a single-threaded run also counts the time the process
    waited for a core, which says nothing about the code; CPU time does not (memory stalls still
    count). It is the default for single-threaded CPU runs. ``clock="wall"`` is the wall clock
    (the only meaningful clock with several threads or on CUDA, where it synchronises around each run).
    """

    def __init__(self, device: torch.device, clock: str = "wall"):
        self.device, self.clock = device, clock
        self._now = time.process_time if clock == "cpu" else time.perf_counter

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.sync()
        return self._now()

    def once(self, fn: Callable[[], Any]) -> float:
        t0 = self.now()
        fn()
        return self.now() - t0

    def compare(self, fns: Dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> Dict[str, Dict[str, float]]:
        """Run every callable ``warmup`` times, then ``repeats`` rounds interleaved; best and median seconds."""
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: Dict[str, List[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(self.once(fn))
        return {k: {"best": min(v), "median": statistics.median(v), "runs": len(v)} for k, v in times.items()}


def fmt_time(s: float) -> str:
    return f"{s * 1e3:9.1f} ms" if s < 10 else f"{s:9.2f} s "


def row(label: str, ours: str, ref: str, ratio: float, note: str = "") -> None:
    print(f"  {label:<44} ours {ours:>14}   ref {ref:>14}   ratio {ratio:7.2f}x  {note}", flush=True)


def header(title: str) -> None:
    print(f"\n== {title}", flush=True)


# --- shared builders ------------------------------------------------------------------------

def dummy_benchmark(num_tasks: int, input_shape: Tuple[int, ...], classes: int, device: torch.device, n: int = 8) -> Benchmark:
    """A benchmark with the right task count and shapes for building methods (its data is never trained on)."""
    x = torch.rand(n, *input_shape, device=device)
    y = torch.randint(0, classes, (n,), device=device)
    split = Split(x, y)
    tasks = [Task(task_id=t, classes=list(range(t * classes, (t + 1) * classes)), train=split, val=split, test=split,
                  flatten=len(input_shape) == 1) for t in range(num_tasks)]
    return Benchmark("speed", tasks, input_shape=input_shape, classes_per_task=classes, num_classes=classes * num_tasks)


def perturb_(module: torch.nn.Module, scale: float = 1e-3) -> None:
    """Move the parameters a little (as training would) so the regulariser is non-zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


# --- 1. regulariser -------------------------------------------------------------------------

def reference_style_loss(method, ref_method, t: int, x, y, progress: float, ref_targets: List[List[torch.Tensor]]):
    """The reference's way: the current task's loss, then ONE hypernetwork forward per previous task.

    ``ref_method`` shares the hypernetwork and embeddings with ``method`` but holds no stored
    targets, so its ``training_loss`` is the current-task part only.
    """
    loss, _ = ref_method.training_loss(t, x, y, progress)
    reg = 0.0
    for j in range(t):
        centre, radius = method.embeddings.box([j])
        out = method.hnet(centre, radius if len(ref_targets[j]) == 3 else None)
        current = [out.middle, out.lower, out.upper] if len(ref_targets[j]) == 3 else [out.middle]
        reg = reg + sum(((c - tj) ** 2).sum() for c, tj in zip(current, ref_targets[j]))
    if t:
        loss = loss + regularizer_weight(method.cfg.beta, t, method.cfg.reg_normalisation) * (reg / t)
    return loss


def bench_regulariser(args, timer: Timer) -> None:
    header("1. regulariser cost per training step vs number of previous tasks t "
           "(hyperinterval, non-forced, reg on middle+lower+upper; target batch of 1 sample so the hypernetwork dominates)")
    device = timer.device
    configs = []
    # (label, target hidden, chunk, ts, repeats)
    if args.quick:
        configs.append(("MLP 1024-100-100-10 (113,610 w), unchunked hnet [100,100] (11.5M)", (100, 100), 0, (1, 10, 50), 2))
    else:
        configs.append(("MLP 1024-100-100-10 (113,610 w), unchunked hnet [100,100] (11.5M)", (100, 100), 0, (1, 10, 50, 100), 3))
        configs.append(("MLP 1024-1000-1000-10 (2,036,010 w), chunked hnet 16384 (1.7M)", (1000, 1000), 16384,
                        (1, 10, 50, 100), 2))
        if args.unchunked_full:
            configs.append(("MLP 1024-1000-1000-10 (2,036,010 w), UNCHUNKED hnet (205.6M)", (1000, 1000), 0, (1, 10), 1))
    results = []
    for label, hidden, chunk, ts, repeats in configs:
        print(f" {label}", flush=True)
        base_ms = None
        for t in ts:
            cfg = make_config(dict(benchmark="permuted-mnist", device=device.type, target_hidden=hidden,
                                   hnet_chunk_size=chunk, num_tasks=t + 1))
            bench = dummy_benchmark(t + 1, (1024,), 10, device)
            target = MLPTarget(in_features=1024, hidden=hidden, num_classes=10)
            torch.manual_seed(0)
            method = build_method(cfg, bench, target).to(device)
            ref_method = build_method(cfg, bench, target).to(device)
            ref_method.hnet, ref_method.embeddings = method.hnet, method.embeddings  # shared modules
            method.begin_task(t)  # stores the targets of tasks 0..t-1 (one batched no-grad pass)
            stored = method._reg_targets  # [middle, lower, upper], each (t, P)
            ref_targets = [[s[j : j + 1] for s in stored] for j in range(t)]
            perturb_(method.hnet)
            x, y = bench.tasks[t].inputs(bench.tasks[t].train.x[:1]), bench.tasks[t].train.y[:1]

            def ours():
                loss, _ = method.training_loss(t, x, y, 0.9)
                loss.backward()
                method.zero_grad(set_to_none=True)
                return loss.detach()

            def ref():
                loss = reference_style_loss(method, ref_method, t, x, y, 0.9, ref_targets)
                loss.backward()
                method.zero_grad(set_to_none=True)
                return loss.detach()

            # the first (untimed) run of each checks that both give the same loss (the batched
            # regulariser is exact); it also serves as the warm-up
            a, b = ours(), ref()
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (float(a), float(b))
            res = timer.compare({"ours": ours, "ref": ref}, repeats=repeats if t <= 10 else max(1, repeats - 1), warmup=0)
            o, r = res["ours"]["best"], res["ref"]["best"]
            base_ms = base_ms or o
            row(f"t = {t:>3}", fmt_time(o), fmt_time(r), r / o, f"(ours grows {o / base_ms:5.1f}x from t = {ts[0]})")
            results.append(dict(config=label, t=t, ours_s=o, ref_s=r, ratio=r / o, ours_median_s=res["ours"]["median"],
                                ref_median_s=res["ref"]["median"]))
            del method, ref_method, stored, ref_targets
    REPORT["reg"] = results


# --- 2. training-step throughput ------------------------------------------------------------

def point_step_fn(target, x, y, lr: float, device) -> Callable[[], None]:
    """A plain network step: ordinary weights (one flat Parameter), CE loss, backward, fused Adam."""
    w = torch.nn.Parameter(target.init_weights().to(device))
    opt = make_optimizer([w], lr)

    def step():
        loss = F.cross_entropy(target.forward(x, w), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def interval_step_fn(method, t: int, x, y, lr: float) -> Callable[[], None]:
    """The trainer's step: ``training_loss`` + backward + the trainer's optimizer."""
    opt = make_optimizer(method.trainable_parameters(t), lr)

    def step():
        loss, _ = method.training_loss(t, x, y, 0.9)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def target_only(method, x, y, timer: Timer, repeats: int) -> Tuple[float, float]:
    """Forward + backward of the target alone with the hypernetwork's current weights as leaves:
    the interval step's loss (middle CE + worst-case CE) against the point network's CE."""
    from hinterval.intervals import worst_case_logits

    with torch.no_grad():
        out = method.task_weights([0])
    w_m, w_c, w_r = (t[0].clone().requires_grad_() for t in (out.middle, out.centre, out.radius))
    tgt = method.target

    def interval():
        logits, c, r = tgt.forward_with_interval(x, w_m, w_c, w_r)
        (0.5 * F.cross_entropy(logits, y) + 0.5 * F.cross_entropy(worst_case_logits(c - r, c + r, y), y)).backward()
        w_m.grad = w_c.grad = w_r.grad = None

    def point():
        F.cross_entropy(tgt.forward(x, w_m), y).backward()
        w_m.grad = None

    res = timer.compare({"interval": interval, "point": point}, repeats=repeats)
    return res["interval"]["best"], res["point"]["best"]


def breakdown(method, t: int, x, y, timer: Timer, repeats: int) -> Dict[str, float]:
    """Where an interval step's time goes: hypernetwork forward, target forwards, backward, Adam."""
    from hinterval.intervals import worst_case_logits

    opt = make_optimizer(method.trainable_parameters(t), method.cfg.lr)
    names = ("hnet forward", "target forwards (middle + interval)", "backward", "optimizer step")
    parts: Dict[str, List[float]] = {k: [] for k in names}
    for _ in range(repeats + 1):  # the first round is a warm-up
        stamps = [timer.now()]
        centre, radius = method.embeddings.box([t])
        out = method.hnet(centre, radius)
        stamps.append(timer.now())
        logits_mid, c, r = method.target.forward_with_interval(x, out.middle[0], out.centre[0], out.radius[0])
        ce_mid = F.cross_entropy(logits_mid, y)
        loss = 0.5 * ce_mid + 0.5 * F.cross_entropy(worst_case_logits(c - r, c + r, y), y)
        stamps.append(timer.now())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        stamps.append(timer.now())
        opt.step()
        stamps.append(timer.now())
        for k, a, b in zip(names, stamps[:-1], stamps[1:]):
            parts[k].append(b - a)
    return {k: min(v[1:]) for k, v in parts.items()}


def bench_steps(args, timer: Timer) -> None:
    header("2. training step: full interval step (training_loss + backward + fused Adam) vs point-network step "
           "of the same target (ratio = interval cost / point cost; target: MLP <= 3.5x, ResNet-18 sound <= 4x)")
    device = timer.device
    results = []
    cases = [
        ("MLP 1024-1000-1000-10, batch 128, chunked hnet 16384", dict(benchmark="permuted-mnist", target_hidden=(1000, 1000),
                                                                      hnet_chunk_size=16384), "mlp", 128),
        ("MLP 1024-1000-1000-10, batch 128, chunked hnet 16384, rump (sound)",
         dict(benchmark="permuted-mnist", target_hidden=(1000, 1000), hnet_chunk_size=16384, interval_mode="rump"), "mlp", 128),
        ("ResNet-18 slim 32x32, batch 32, sound, hnet [100] chunk 7000",
         dict(benchmark="split-cifar100", interval_mode="sound"), "resnet", 32),
        ("ResNet-18 slim 32x32, batch 32, rump (sound), hnet [100] chunk 7000",
         dict(benchmark="split-cifar100", interval_mode="rump"), "resnet", 32),
        ("ResNet-18 slim 32x32, batch 32, relaxed, hnet [100] chunk 7000",
         dict(benchmark="split-cifar100", interval_mode="relaxed"), "resnet", 32),
    ]
    if device.type == "cuda":  # the TinyImageNet preset's shapes: 64x64 inputs, 5 classes, batch 16
        cases += [(f"ResNet-18 slim 64x64 (TinyImageNet preset), batch 16, {mode}, hnet [100] chunk 7000",
                   dict(benchmark="tinyimagenet", interval_mode=mode), "resnet64", 16) for mode in ("sound", "rump")]
    if args.quick:
        for i, mode in ((0, "sound"), (1, "rump")):
            cases[i] = (f"MLP 1024-400-400-10, batch 128, chunked hnet 4096, {mode}",
                        dict(benchmark="permuted-mnist", target_hidden=(400, 400), hnet_chunk_size=4096,
                             interval_mode=mode), "mlp", 128)
    repeats = 3 if args.quick else 5
    for label, over, kind, bs in cases:
        cfg = make_config(dict(device=device.type, **over))
        if kind == "mlp":
            bench = dummy_benchmark(2, (1024,), 10, device, n=bs)
            target = MLPTarget(in_features=1024, hidden=cfg.target_hidden, num_classes=10, interval_mode=cfg.interval_mode)
        else:
            size, classes = (64, 5) if kind == "resnet64" else (32, 10)
            bench = dummy_benchmark(2, (3, size, size), classes, device, n=bs)
            target = ResNet18Target(classes, in_channels=3, image_size=size, interval_mode=cfg.interval_mode)
        torch.manual_seed(0)
        method = build_method(cfg, bench, target).to(device)
        task = bench.tasks[0]
        x, y = task.inputs(task.train.x), task.train.y
        ours, ref = interval_step_fn(method, 0, x, y, cfg.lr), point_step_fn(target, x, y, cfg.lr, device)
        res = timer.compare({"ours": ours, "ref": ref}, repeats=repeats)
        o, r = res["ours"]["best"], res["ref"]["best"]
        print(f" {label}: target {target.num_params:,} weights, hnet {sum(p.numel() for p in method.hnet.parameters()):,} params",
              flush=True)
        row("step time (interval vs point)", fmt_time(o), fmt_time(r), o / r, "(cost ratio interval/point)")
        row("throughput samples/s", f"{bs / o:10.0f}", f"{bs / r:10.0f}", o / r)
        t_int, t_pt = target_only(method, x, y, timer, repeats)
        row("target only: interval vs point fwd+bwd", fmt_time(t_int), fmt_time(t_pt), t_int / t_pt,
            "(no hypernetwork, no optimizer)")
        parts = breakdown(method, 0, x, y, timer, repeats)
        total = sum(parts.values())
        print("    where the interval step's time goes: " + ", ".join(f"{k} {v * 1e3:.0f} ms ({v / total:.0%})"
                                                               for k, v in parts.items()), flush=True)
        results.append(dict(case=label, interval_s=o, point_s=r, cost_ratio=o / r, samples_per_s_interval=bs / o,
                            samples_per_s_point=bs / r, target_only_interval_s=t_int, target_only_point_s=t_pt,
                            target_only_ratio=t_int / t_pt, breakdown_s=parts))
        del method
    REPORT["step"] = results


# --- 3. class-incremental inference ---------------------------------------------------------

def reference_style_cil(predictor, benchmark: Benchmark, task_ids: Sequence[int], per_task: int, alpha: float) -> Tuple[int, int, List[int]]:
    """Per sample, per task: run that task's network (and its interval bounds) on the one sample,
    score it by entropy (+ alpha * box width), keep the best task; Python loops all the way."""
    target = predictor.target
    correct, total, preds = 0, 0, []
    for pos, tid in enumerate(task_ids):
        task = benchmark.tasks[tid]
        data = task.split("test")
        for i in range(min(per_task, len(data))):
            x = task.inputs(data.x[i : i + 1])
            best, best_task, best_logits = None, None, None
            for k in range(len(task_ids)):
                logits = target.forward(x, predictor.middle[k])
                score = entropy(logits)[0]
                if predictor.radius is not None and alpha > 0:
                    c, r = target.forward_interval(x, predictor.centre[k], predictor.radius[k], w_middle=predictor.middle[k])
                    score = score + alpha * (2 * r).mean()
                if best is None or float(score) < best:
                    best, best_task, best_logits = float(score), k, logits
            pred = benchmark.tasks[task_ids[best_task]].classes[int(best_logits.argmax())]
            preds.append(pred)
            correct += int(pred == task.classes[int(data.y[i])])
            total += 1
    return correct, total, preds


def bench_cil(args, timer: Timer) -> None:
    header("3. class-incremental inference (task id unknown): evaluate_tasks(scenarios=('cil',)) vs per-sample, "
           "per-task Python loop")
    device = timer.device
    results = []
    cases = [("permuted-digits", 10)] if args.quick else [("permuted-digits", 10), ("permuted-fashion", 10)]
    from hinterval.data.registry import load_benchmark
    from hinterval.targets.factory import build_target

    for name, T in cases:
        cfg = make_config(dict(benchmark=name, device=device.type))
        bench = load_benchmark(name, num_tasks=T, seed=0).to(device)
        torch.manual_seed(0)
        method = build_method(cfg, bench, build_target(cfg, bench)).to(device)
        method.eval()
        ids = list(range(T))
        n_test = sum(len(bench.tasks[i].test) for i in ids)
        per_task = 10 if args.quick else 40
        pred_holder: Dict[str, Any] = {}

        def ours():
            pred_holder["res"] = evaluate_tasks(method.predictor(ids), bench, ids, split="test",
                                                batch_size=cfg.eval_batch_size, cil_alpha=cfg.cil_alpha, scenarios=("cil",))

        def ref():
            with torch.inference_mode():
                pred_holder["ref"] = reference_style_cil(method.predictor(ids), bench, ids, per_task, cfg.cil_alpha)

        res = timer.compare({"ours": ours, "ref": ref}, repeats=3 if args.quick else 5)
        o = res["ours"]["best"] / n_test
        r = res["ref"]["best"] / (per_task * T)
        # agreement of the two on the subset the loop saw
        sub = reference_subset_agreement(method, bench, ids, per_task, cfg, pred_holder["ref"][2])
        row(f"{name}: {T} tasks, {n_test} test samples (loop {per_task * T})", f"{1 / o:8.0f} /s", f"{1 / r:8.0f} /s", r / o,
            f"(samples/s; predictions agree on {sub:.1%} of the loop's samples)")
        results.append(dict(benchmark=name, tasks=T, ours_samples_per_s=1 / o, ref_samples_per_s=1 / r, ratio=r / o,
                            agreement=sub, ours_cil_acc=pred_holder["res"]["cil"]))
    REPORT["cil"] = results


def reference_subset_agreement(method, bench, ids, per_task, cfg, ref_preds: List[int]) -> float:
    """Fraction of the loop's samples on which the vectorised CIL prediction (the library's
    predictor and task scores) equals the loop's."""
    from hinterval.evaluation import task_inference_scores

    with torch.inference_mode():
        pred = method.predictor(ids)
        class_table = torch.tensor([bench.tasks[i].classes for i in ids], device=bench.tasks[0].train.y.device)
        ours_preds = []
        for tid in ids:
            task = bench.tasks[tid]
            x = task.inputs(task.test.x[:per_task])
            mid = pred.logits(x)
            scores = task_inference_scores(mid, pred.bounds(x), cfg.cil_alpha)
            k = scores.argmin(0)
            local = mid[k, torch.arange(len(k), device=k.device)].argmax(-1)
            ours_preds += class_table[k, local].tolist()
    return sum(a == b for a, b in zip(ours_preds, ref_preds)) / len(ref_preds)


# --- 4. data --------------------------------------------------------------------------------

class PerSampleDataset(torch.utils.data.Dataset):
    """The reference's data path: one sample per ``__getitem__`` with its transform (scale, pad,
    flatten, permute) applied per sample, batched by ``DataLoader``'s default collate."""

    def __init__(self, task: Task):
        self.task = task

    def __len__(self) -> int:
        return len(self.task.train)

    def __getitem__(self, i: int):
        return self.task.inputs(self.task.train.x[i : i + 1])[0], self.task.train.y[i]


def bench_data(args, timer: Timer) -> None:
    header("4. data: whole data sets as tensors + batched indexing vs DataLoader with per-sample __getitem__")
    from hinterval.data.registry import load_benchmark

    results: Dict[str, Any] = {}
    device = timer.device
    bench = load_benchmark("permuted-fashion", num_tasks=2, seed=0).to(device)
    task = bench.tasks[1]
    bs = 128
    n_batches = 40 if args.quick else 200
    sink: List[float] = []

    def ours():
        sampler = BatchSampler(len(task.train), bs, device)
        acc = 0.0
        for _ in range(n_batches):
            idx = sampler.next()
            x, y = task.inputs(task.train.x[idx]), task.train.y[idx]
            acc += float(x[0, 0]) + int(y[0])
        sink.append(acc)

    def ref():
        loader = torch.utils.data.DataLoader(PerSampleDataset(task), batch_size=bs, shuffle=True, num_workers=0)
        acc = 0.0
        for b, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            acc += float(x[0, 0]) + int(y[0])
            if b + 1 == n_batches:
                break
        sink.append(acc)

    res = timer.compare({"ours": ours, "ref": ref}, repeats=3 if args.quick else 5)
    o, r = n_batches * bs / res["ours"]["best"], n_batches * bs / res["ref"]["best"]
    row(f"permuted Fashion-MNIST (real, {len(task.train)} train), batch {bs}", f"{o:9.0f} /s", f"{r:9.0f} /s", o / r,
        "(samples/s)")
    results["fashion"] = dict(ours_samples_per_s=o, ref_samples_per_s=r, ratio=o / r)

    # TinyImageNet: cached uint8 array vs decoding every task's JPEGs
    sys.path.insert(0, str(REPO / "tests"))
    from data_fixtures import write_tinyimagenet

    from hinterval.data import tinyimagenet as tin

    n_classes, n_train, n_val = (10, 20, 5) if args.quick else (20, 25, 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tinyimagenet(Path(tmp), num_classes=n_classes, n_train=n_train, n_val=n_val, grayscale=None)
        n_jpeg = n_classes * (n_train + n_val)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # no progress bars
            first = timer.once(lambda: load_benchmark("tinyimagenet", data_dir=tmp, seed=0))  # decode + write cache

        def ours_tin():
            load_benchmark("tinyimagenet", data_dir=tmp, seed=0)

        def ref_tin():
            wnids = tin.read_wnids(root)
            train_files, train_labels, val_files, val_labels = tin.list_files(root, wnids)
            for t in range(len(wnids) // 5):  # per task: decode its JPEGs
                cls = set(range(5 * t, 5 * t + 5))
                xs = [tin.decode_jpeg(f) for f, lab in zip(train_files, train_labels) if lab in cls]
                xs += [tin.decode_jpeg(f) for f, lab in zip(val_files, val_labels) if lab in cls]
                torch.from_numpy(__import__("numpy").stack(xs))

        res = timer.compare({"ours": ours_tin, "ref": ref_tin}, repeats=3)
        o, r = res["ours"]["best"], res["ref"]["best"]
        row(f"TinyImageNet miniature ({n_jpeg} JPEGs, {n_classes // 5} tasks): load", fmt_time(o), fmt_time(r), r / o,
            f"(cached array vs decode per task; first build with cache write {first:.2f} s)")
        results["tinyimagenet"] = dict(jpegs=n_jpeg, ours_s=o, ref_s=r, ratio=r / o, first_build_s=first)
    REPORT["data"] = results


# --- 5. end to end + profile ----------------------------------------------------------------

def bench_e2e(args, timer: Timer) -> None:
    header("5. end to end (default configs) and profile")
    from torch.profiler import ProfilerActivity, profile

    from hinterval.data.registry import load_benchmark
    from hinterval.targets.factory import build_target

    device = timer.device
    results: Dict[str, Any] = {}
    if not args.quick:
        for name in ("permuted-digits", "split-digits"):
            cfg = make_config(dict(benchmark=name, device=device.type))
            w0, c0 = time.perf_counter(), time.process_time()
            res = train_continual(cfg, progress=False)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            steps = cfg.iters_per_task * res["num_tasks"]
            print(f"  {name}: wall {wall:.1f} s (process CPU {cpu:.1f} s) for {steps} steps + validation/evaluation, "
                  f"TIL avg acc {res['avg_acc']:.4f}, BWT {res['bwt']:.4f}, worst avg acc {res['worst_avg_acc']:.4f}, "
                  f"CIL avg acc {res['cil']['avg_acc']:.4f}", flush=True)
            results[name] = dict(wall_s=wall, cpu_s=cpu, steps=steps, avg_acc=res["avg_acc"], bwt=res["bwt"],
                                 worst_avg_acc=res["worst_avg_acc"], cil_avg_acc=res["cil"]["avg_acc"])
    # cProfile of a short permuted-digits run (defaults, fewer iterations); a 1-step run first so
    # that lazy imports are not profiled
    tasks, iters = (2, 100) if args.quick else (3, 200)
    bench = load_benchmark("permuted-digits", num_tasks=tasks, seed=0)
    cfg = make_config(dict(benchmark="permuted-digits", device=device.type, num_tasks=tasks, iters_per_task=iters))
    train_continual(cfg.replace(iters_per_task=1, num_tasks=1), benchmark=load_benchmark("permuted-digits", num_tasks=1),
                    progress=False)
    prof = cProfile.Profile()
    w0 = time.perf_counter()
    prof.enable()
    train_continual(cfg, benchmark=bench, progress=False)
    prof.disable()
    wall = time.perf_counter() - w0
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    print(f"  cProfile: permuted-digits {tasks} tasks x {iters} steps (+ validation and evaluation), wall {wall:.1f} s; "
          "top by own time:")
    for ln in lines[start : start + 13]:
        print("    " + ln[:150])
    results["cprofile_top"] = lines[start : start + 13]

    # torch.profiler over training steps only (task 2: with the regulariser)
    bench = bench.to(device)
    cfg = make_config(dict(benchmark="permuted-digits", device=device.type))
    torch.manual_seed(0)
    method = build_method(cfg, bench, build_target(cfg, bench)).to(device)
    method.begin_task(1)
    task = bench.tasks[1]
    sampler = BatchSampler(len(task.train), cfg.batch_size, device)
    opt = make_optimizer(method.trainable_parameters(1), cfg.lr)
    n_steps = 50 if args.quick else 200
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as p:
        for i in range(n_steps):
            idx = sampler.next()
            loss, _ = method.training_loss(1, task.inputs(task.train.x[idx]), task.train.y[idx], i / n_steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    table = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print(f"  torch.profiler: {n_steps} training steps of permuted-digits task 2 (with the regulariser), top ops:")
    for ln in table.splitlines():
        print("    " + ln[:130])
    results["torch_profiler_top"] = table.splitlines()
    REPORT["e2e"] = results


# --- main -----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default=",".join(ITEMS), help=f"comma-separated subset of {', '.join(ITEMS)}")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, no end-to-end runs (< 3 min on 2 cores)")
    ap.add_argument("--unchunked-full", action="store_true",
                    help="item 1 also with the UNCHUNKED 205.6M-parameter hnet for the 2M-weight target (t = 1, 10; slow)")
    ap.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                    help="cpu = process CPU time, wall = wall clock; auto: cpu for 1 thread on CPU, else wall")
    ap.add_argument("--json", help="write all figures to this JSON file")
    args = ap.parse_args()
    items = [s for s in args.items.split(",") if s]
    bad = [s for s in items if s not in ITEMS]
    if bad:
        ap.error(f"unknown item(s) {bad}; choose from {ITEMS}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU here")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = args.clock if args.clock != "auto" else ("cpu" if args.threads == 1 and device.type == "cpu" else "wall")
    if clock == "cpu" and (args.threads > 1 or device.type == "cuda"):
        ap.error("--clock cpu needs --threads 1 on --device cpu (CPU time of several threads or a GPU is not a duration)")
    timer = Timer(device, clock)
    print(f"speed benchmark: device {device}, threads {args.threads} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
          f"clock {clock}, torch {torch.__version__}, "
          f"{'quick' if args.quick else 'full'} sizes; times are best-of-N, interleaved", flush=True)
    t0 = time.perf_counter()
    fns = {"reg": bench_regulariser, "step": bench_steps, "cil": bench_cil, "data": bench_data, "e2e": bench_e2e}
    for item in items:
        fns[item](args, timer)
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s")
    REPORT["meta"] = dict(device=str(device), threads=args.threads, clock=clock, quick=args.quick, torch=torch.__version__, total_s=total)
    if args.json:
        Path(args.json).write_text(json.dumps(REPORT, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
