"""Compare this tree's ``hinterval`` with an earlier git revision's, in one process.

A change that should not change behaviour (a refactoring) is checked three ways:

* ``step``: the same training step (same seed, same state, previous tasks regularised, the raw
  worst-case loss) on both: its loss, the largest relative difference of any parameter gradient,
  and its CPU time. Timing is ABBA (two builds of each, old-new-new-old, interleaved): on a shared
  CPU a build's place in memory moves its time by 10-30 %, and thread CPU time (not wall time)
  keeps other jobs' load out of the figure.
* ``train``: a short run of both revisions; ``--perturb EPS`` multiplies every trainable parameter
  by ``1 + EPS`` after initialisation, which shows how far float noise alone carries a run.

The earlier revision's package is extracted with ``git archive`` and imported under another name.

Usage::

    .venv/bin/python benchmarks/revision.py step REV [--rounds 15] [--per 6] [--cases 0,1,2,3]
    .venv/bin/python benchmarks/revision.py train REV [--perturb 1e-7] [--which old,new]
"""
from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch

ROOT = Path(__file__).resolve().parent.parent
OLD = "hinterval_rev"

#: (label, config overrides, input kind, batch size)
CASES: List[Tuple[str, Dict[str, Any], str, int]] = [
    ("split-digits preset (MLP 64-50-50-2, sound, batch 64)", dict(benchmark="split-digits"), "digits", 64),
    ("MLP 1024-400-400-10 sound, batch 128, hnet chunk 4096",
     dict(benchmark="permuted-mnist", target_hidden=(400, 400), hnet_chunk_size=4096, interval_mode="sound"), "mlp", 128),
    ("MLP 1024-400-400-10 rump, batch 128, hnet chunk 4096",
     dict(benchmark="permuted-mnist", target_hidden=(400, 400), hnet_chunk_size=4096, interval_mode="rump"), "mlp", 128),
    ("ResNet-18 slim 16x16 sound, batch 16, hnet [100] chunk 7000",
     dict(benchmark="split-cifar100", interval_mode="sound", gamma=0.1), "resnet", 16),
]


def extract(rev: str, into: str) -> None:
    """``git archive`` the revision's ``hinterval/`` into ``into/hinterval_rev`` with its imports renamed."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hinterval"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=tar, check=True)
    pkg = Path(into) / OLD
    (Path(into) / "hinterval").rename(pkg)
    for f in pkg.rglob("*.py"):
        f.write_text(re.sub(r"\bhinterval(?=[. ])", OLD, f.read_text()))
    sys.path.insert(0, into)


def step_fn(pkg: str, over: Dict[str, Any], kind: str, bs: int) -> Tuple[Callable[[], float], List[torch.nn.Parameter]]:
    """One HyperInterval training step of task 1 (task 0 regularised) of package ``pkg``."""
    mod = lambda name: importlib.import_module(f"{pkg}.{name}")  # noqa: E731
    cfg = mod("config").make_config(dict(device="cpu", ramp="fixed", **over))
    base = mod("data.base")
    if kind == "digits":
        bench = mod("data.registry").load_benchmark("split-digits", num_tasks=2)
        target = mod("targets.mlp").MLPTarget(in_features=64, hidden=cfg.target_hidden, num_classes=2,
                                              interval_mode=cfg.interval_mode)
    else:
        shape = (1024,) if kind == "mlp" else (3, 16, 16)
        g = torch.Generator().manual_seed(0)
        split = base.Split(torch.rand(bs, *shape, generator=g), torch.randint(0, 10, (bs,), generator=g))
        tasks = [base.Task(task_id=i, classes=list(range(10 * i, 10 * i + 10)), train=split, val=split, test=split,
                           flatten=kind == "mlp") for i in range(2)]
        bench = base.Benchmark("revision", tasks, input_shape=shape, classes_per_task=10, num_classes=20)
        if kind == "mlp":
            target = mod("targets.mlp").MLPTarget(in_features=1024, hidden=cfg.target_hidden, num_classes=10,
                                                  interval_mode=cfg.interval_mode)
        else:
            target = mod("targets.resnet").ResNet18Target(10, 3, image_size=16, interval_mode=cfg.interval_mode)
    torch.manual_seed(0)
    method = mod("methods").build_method(cfg, bench, target)
    method.begin_task(1)
    with torch.no_grad():  # move away from the stored targets, so the regulariser has gradients
        for p in method.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    task = bench.tasks[1]
    x, y = task.inputs(task.train.x[:bs]), task.train.y[:bs]
    params = list(method.parameters())

    def step() -> float:
        for p in params:
            p.grad = None
        loss, _ = method.training_loss(1, x, y, ramp=1.0)
        loss.backward()
        return float(loss.detach())

    return step, params


def cmd_step(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    for i in [int(c) for c in args.cases.split(",")]:
        label, over, kind, bs = CASES[i]
        grads: Dict[str, Tuple[float, List[torch.Tensor]]] = {}
        for pkg in (OLD, "hinterval"):
            step, params = step_fn(pkg, over, kind, bs)
            loss = step()
            grads[pkg] = (loss, [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params])
        rel = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
                  for a, b in zip(grads[OLD][1], grads["hinterval"][1]))
        builds = [(pkg, step_fn(pkg, over, kind, bs)[0]) for pkg in (OLD, "hinterval", "hinterval", OLD)]
        times: Dict[str, List[float]] = {OLD: [], "hinterval": []}
        for _ in range(args.rounds):
            for pkg, step in builds:
                for _ in range(args.per):
                    t0 = time.thread_time()
                    step()
                    times[pkg].append(time.thread_time() - t0)
        o, n = statistics.median(times[OLD]), statistics.median(times["hinterval"])
        print(f"{label}: loss {args.rev} {grads[OLD][0]!r} this {grads['hinterval'][0]!r}, largest relative gradient "
              f"difference {rel:.1e}; median step CPU time {args.rev} {o * 1e3:.2f} ms, this {n * 1e3:.2f} ms, "
              f"this/{args.rev} {n / o:.3f} ({len(times[OLD])} steps each)", flush=True)


def cmd_train(args: argparse.Namespace) -> None:
    for which in args.which.split(","):
        pkg = OLD if which == "old" else "hinterval"
        hyp = importlib.import_module(f"{pkg}.methods.hyperinterval")
        init = hyp.HyperIntervalMethod.__init__

        def perturbed(self: Any, *a: Any, _init: Callable = init, **k: Any) -> None:
            _init(self, *a, **k)
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(1 + args.perturb)

        hyp.HyperIntervalMethod.__init__ = perturbed
        cfg = importlib.import_module(f"{pkg}.config").make_config(
            dict(benchmark="split-digits", num_tasks=2, iters_per_task=100, num_threads=1))
        res = importlib.import_module(f"{pkg}.trainer").train_continual(cfg, progress=False)
        hyp.HyperIntervalMethod.__init__ = init
        print(f"{which} ({args.rev if which == 'old' else 'this tree'}), perturb {args.perturb:g}: TIL {res['acc_matrix']} "
              f"worst-case {res['worst']['acc_matrix']} weight-box relative radius "
              f"{[t['weight_box_rel_radius'] for t in res['tasks']]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("step", help="one step's loss, gradients and CPU time")
    p.add_argument("rev")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--per", type=int, default=6, help="steps per build and round")
    p.add_argument("--cases", default=",".join(str(i) for i in range(len(CASES))))
    p = sub.add_parser("train", help="a short split-digits run (2 tasks, 100 iterations each)")
    p.add_argument("rev")
    p.add_argument("--perturb", type=float, default=0.0)
    p.add_argument("--which", default="old,new")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extract(args.rev, tmp)
        sys.path.insert(0, str(ROOT))
        {"step": cmd_step, "train": cmd_train}[args.command](args)


if __name__ == "__main__":
    main()
