"""Acceptance benchmark for the CNN targets on real images (Fashion-MNIST, installed from Debian).

One row per case: split-fashion (the first ``--num-tasks`` two-class tasks, 28x28 images
zero-padded to 32x32) with the slim ResNet-18 and with the AlexNet-like CNN, each in a sound mode
and in the unsound ``relaxed`` mode, plus one ResNet-18 row on 64x64x3 inputs (the padded images
resized and repeated into three channels: TinyImageNet's shape). Each row prints TIL avg acc,
BWT, the certified worst-case avg acc (sound modes only; relaxed rows print "n/a (not sound)"),
``weight_box_rel_radius`` (median over weights of radius / |centre| of the task boxes), gamma and
the wall time, then the relative radius of the activations layer by layer for the last task.

Iterations are reduced to fit a 2-core CPU (``--iters``, default 300 per task, batch 64).
Targets (2 CPU cores): every row TIL >= 0.97 and BWT >= -0.01; sound rows certified >= 0.80
(AlexNet) / >= 0.50 (ResNet-18) with weight_box_rel_radius >= 0.01; the script <= 45 min.

Usage::

    .venv/bin/python benchmarks/cnn.py [--cases resnet18-sound,...] [--iters 300] [--num-tasks 2]
        [--threads 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from acceptance import NOT_SOUND_TEXT, configure_threads  # noqa: E402

#: name -> config overrides; every case also gets COMMON
CASES: Dict[str, Dict[str, Any]] = {
    "resnet18-sound": dict(target="resnet18", interval_mode="sound"),
    "resnet18-relaxed": dict(target="resnet18", interval_mode="relaxed"),
    "alexnet-rump": dict(target="alexnet", interval_mode="rump"),
    "alexnet-relaxed": dict(target="alexnet", interval_mode="relaxed"),
    "resnet18-sound-64x64x3": dict(target="resnet18", interval_mode="sound", image_size=64, image_channels=3),
}
COMMON = dict(benchmark="split-fashion", hnet_hidden=(100,), hnet_chunk_size=7000, embedding_dim=48, beta=0.01,
              lr=1e-3, batch_size=64, val_every=50, eval_batch_size=512)
TARGET_TIL, TARGET_BWT = 0.97, -0.01
TARGET_CERTIFIED = {"resnet18": 0.50, "alexnet": 0.80}
TARGET_REL_RADIUS = 0.01


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--iters", type=int, default=300, help="iterations per task")
    ap.add_argument("--num-tasks", type=int, default=2)
    ap.add_argument("--gamma", type=float, default=None, help="gamma for every case (default: the CNN preset's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    policy = configure_threads(args.threads)
    import torch

    from hinterval.config import make_config
    from hinterval.presets import CNN_SOUND_GAMMA
    from hinterval.trainer import ContinualTrainer

    gamma = CNN_SOUND_GAMMA if args.gamma is None else args.gamma
    t_all = time.perf_counter()
    rows, ok = [], True
    for name in args.cases.split(","):
        cfg = make_config({**COMMON, **CASES[name]}, gamma=gamma, iters_per_task=args.iters, num_tasks=args.num_tasks,
                          seed=args.seed, device="cpu", num_threads=args.threads)
        t0 = time.perf_counter()
        trainer = ContinualTrainer(cfg, progress=False)
        res = trainer.fit()
        wall = time.perf_counter() - t0
        rel = [r.get("weight_box_rel_radius") for r in res["tasks"]]
        reached = " ".join(f"{r['ramp_reached']:.2f}" for r in res["tasks"])
        rel_min = min(x for x in rel if x is not None)
        sound = res["certified"]
        passed = res["avg_acc"] >= TARGET_TIL and res["bwt"] >= TARGET_BWT
        if sound:
            passed &= res["worst_avg_acc"] >= TARGET_CERTIFIED[cfg.target] and rel_min >= TARGET_REL_RADIUS
        ok &= passed
        certified = f"{res['worst_avg_acc']:.4f}" if sound else NOT_SOUND_TEXT
        print(f"{name}: til_avg_acc {res['avg_acc']:.4f} bwt {res['bwt']:.4f} certified {certified} "
              f"weight_box_rel_radius {' '.join(f'{x:.4f}' for x in rel)} gamma {cfg.gamma:g} "
              f"ramp_reached {reached} "
              f"collapsed {len(res['collapsed_tasks'])} wall {wall:.0f}s [{'PASS' if passed else 'FAIL'}]", flush=True)
        profile = _profile(trainer)
        if profile:
            print("   relative radius by layer (last task, full gamma): "
                  + " ".join(f"{k}={v:.2g}" for k, v in profile), flush=True)
        rows.append(dict(case=name, avg_acc=res["avg_acc"], bwt=res["bwt"], certified=res["worst_avg_acc"],
                         weight_box_rel_radius=rel, gamma=cfg.gamma, tasks=res["tasks"], wall_s=wall,
                         radius_profile=profile, passed=passed))
    total = time.perf_counter() - t_all
    ok &= total <= 45 * 60
    print(f"cnn benchmark: {'PASS' if ok else 'FAIL'} ({total / 60:.1f} min, threads={args.threads}, "
          f"OMP_WAIT_POLICY={policy}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if ok else 1


def _profile(trainer: Any) -> List[Any]:
    """Relative radius after each layer of the last task's sound interval forward (sound modes)."""
    target, method = trainer.method.target, trainer.method
    if getattr(target, "interval_mode", "relaxed") == "relaxed" or not hasattr(target, "radius_profile"):
        return []
    t = len(trainer.benchmark) - 1
    task = trainer.benchmark.tasks[t]
    x = task.inputs(task.val.x[:256])
    out = method.task_weights([t])
    rows = target.radius_profile(x, out.centre[0], out.radius[0], w_middle=out.middle[0])
    keep = [r for r in rows if r[0].startswith(("conv", "linear", "add"))]
    return [(k, round(v, 4)) for k, v in keep]


if __name__ == "__main__":
    sys.exit(main())
