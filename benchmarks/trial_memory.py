"""GPU memory of one sweep trial per benchmark preset: what ``--gpus-per-trial`` fraction fits.

Ray shares a GPU between trials by counting fractions (``--gpus-per-trial 0.25`` packs four trials
on a GPU); it does not limit their memory. This script measures what one trial of each preset
needs on the device, so the fraction can be chosen from a figure instead of an out-of-memory crash.

For each preset, the data set's real shape and size (random pixels: MNIST/Fashion 60k+10k 28x28,
CIFAR 50k+10k 3x32x32, TinyImageNet 100k+10k 3x64x64) goes through the library's own task
construction onto the device, as in a trial. The trainer then trains the LAST task only (the
memory peak of a run: the regulariser holds every earlier task's targets, and the evaluation after
the last task runs all task networks, class-incremental inference included), for a few iterations
at the preset's batch size, followed by that full evaluation at the preset's evaluation batch size
(gamma is set to 0.001: memory does not depend on it, and random pixels must not make the loss NaN).

Figures per preset: ``torch.cuda.max_memory_allocated`` (tensors) and ``max_memory_reserved``
(what PyTorch's caching allocator holds: what other processes cannot use), the CUDA context of
the process (``mem_get_info`` before any tensor), and the largest ``--gpus-per-trial`` of the form
1/k for which k trials fit on this GPU (context + reserved each, 10% kept free).

Usage::

    python benchmarks/trial_memory.py --device cuda --json memory.json   # every preset; on a GPU machine
    python benchmarks/trial_memory.py --device cpu --quick                # rehearse the code path (no figures)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hinterval.config import make_config  # noqa: E402
from hinterval.presets import PRESETS  # noqa: E402

GIB = 1024 ** 3
#: share of the GPU kept free when packing trials (allocator fragmentation, cuDNN workspaces)
HEADROOM = 0.10
#: (train, test) samples of the real data sets
#: perturbation radius used for the measurement (see :func:`measure`)
SMALL_GAMMA = 1e-3
SIZES = {"idx": (60_000, 10_000), "cifar": (50_000, 10_000), "tinyimagenet": (100_000, 10_000)}


def _labels(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced labels in random order (every class present, as in the real sets)."""
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


@contextlib.contextmanager
def synthetic_arrays(quick: bool) -> Iterator[None]:
    """While active, the array loaders return random data of the real sizes (``quick``: 20 + 4
    images per class), so the real task construction runs without the data sets on disk."""
    import hinterval.data.cifar as cifar
    import hinterval.data.idx as idx
    import hinterval.data.tinyimagenet as tin

    rng = np.random.default_rng(0)

    def sizes(kind: str, classes: int):
        return (20 * classes, 4 * classes) if quick else SIZES[kind]

    def images(n: int, shape) -> torch.Tensor:
        return torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))

    def load_idx_arrays(data_dir: Optional[str], flavour: str):
        ntr, nte = sizes("idx", 10)
        return (images(ntr, (1, 28, 28)), torch.from_numpy(_labels(ntr, 10, rng)),
                images(nte, (1, 28, 28)), torch.from_numpy(_labels(nte, 10, rng)))

    def load_cifar_arrays(data_dir: Optional[str], num_classes: int):
        ntr, nte = sizes("cifar", num_classes)
        return (images(ntr, (3, 32, 32)), torch.from_numpy(_labels(ntr, num_classes, rng)),
                images(nte, (3, 32, 32)), torch.from_numpy(_labels(nte, num_classes, rng)), [])

    def load_arrays(data_dir: Optional[str]):
        ntr, nte = sizes("tinyimagenet", 200)
        wnids = sorted(f"n{c:08d}" for c in range(200))
        arrays = {"x_train": images(ntr, (3, 64, 64)).numpy(), "y_train": _labels(ntr, 200, rng),
                  "x_val": images(nte, (3, 64, 64)).numpy(), "y_val": _labels(nte, 200, rng)}
        return arrays, wnids, Path("synthetic")

    saved = idx.load_idx_arrays, cifar.load_cifar_arrays, tin.load_arrays
    idx.load_idx_arrays, cifar.load_cifar_arrays, tin.load_arrays = load_idx_arrays, load_cifar_arrays, load_arrays
    try:
        yield
    finally:
        idx.load_idx_arrays, cifar.load_cifar_arrays, tin.load_arrays = saved


def measure(benchmark: str, device: torch.device, *, steps: int, num_tasks: Optional[int]) -> Dict[str, Any]:
    """Train the last task of ``benchmark``'s preset for ``steps`` iterations, then evaluate every
    task; returns the peak memory figures (bytes; ``None`` on the CPU)."""
    from hinterval.data.registry import load_benchmark
    from hinterval.trainer import ContinualTrainer

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    cfg0 = make_config(benchmark=benchmark, num_tasks=num_tasks)
    bench = load_benchmark(benchmark, num_tasks=cfg0.num_tasks, seed=cfg0.data_seed, data_dir="synthetic")
    last = bench.tasks[-1]
    # epochs_per_task wins over iters_per_task in the trainer: this gives `steps` iterations for every preset
    epochs = steps * cfg0.batch_size / len(last.train)
    # gamma: the same tensors at any value, but an untrained network's boxes at a CNN preset's gamma can
    # overflow on random pixels (a NaN loss would end the run before the evaluation peak)
    cfg = make_config(benchmark=benchmark, num_tasks=len(bench), device=device.type, num_threads=1 if not cuda else None,
                      epochs_per_task=epochs, val_every=max(1, steps), gamma=SMALL_GAMMA)
    trainer = ContinualTrainer(cfg, benchmark=bench, progress=False)
    data_bytes = torch.cuda.memory_allocated(device) if cuda else None
    trainer.tasks_done = len(bench) - 1  # as a trial resumed at its last task
    trainer.fit()
    out: Dict[str, Any] = {
        "benchmark": benchmark, "target": cfg.target, "interval_mode": cfg.interval_mode, "num_tasks": len(bench),
        "input_shape": list(bench.input_shape), "batch_size": cfg.batch_size, "eval_batch_size": cfg.eval_batch_size,
        "train_samples_last_task": len(last.train), "test_samples": sum(len(t.test) for t in bench.tasks),
        "target_weights": int(trainer.method.target.num_params) if hasattr(trainer.method, "target") else None,
        "trainable_params": sum(p.numel() for p in trainer.method.parameters()),
        "steps": steps, "wall_s": time.perf_counter() - t0,
        "data_and_model_bytes": data_bytes,
        "max_memory_allocated": torch.cuda.max_memory_allocated(device) if cuda else None,
        "max_memory_reserved": torch.cuda.max_memory_reserved(device) if cuda else None,
    }
    del trainer, bench
    return out


def fits(per_trial: float, total: float) -> Dict[str, Any]:
    """How many trials of ``per_trial`` bytes share a GPU of ``total`` bytes, and the fraction to ask Ray for."""
    k = int((total * (1 - HEADROOM)) // per_trial)
    frac = math.floor(1000 / k) / 1000 if k >= 1 else None  # rounded down: k x frac <= 1
    return {"trials_per_gpu": k, "gpus_per_trial": frac}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    ap.add_argument("--benchmarks", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    ap.add_argument("--steps", type=int, default=3, help="training iterations on the last task (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="2 tasks and 20 + 4 images per class: checks the code path, the figures are not the presets'")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("trial_memory.py: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    unknown = [b for b in names if b not in PRESETS]
    if unknown:
        print(f"trial_memory.py: error: no preset for {', '.join(unknown)}; choose from {', '.join(PRESETS)}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    report: Dict[str, Any] = {"device": args.device, "quick": args.quick, "headroom": HEADROOM, "presets": []}
    if device.type == "cuda":
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info(device)
        context = total - free - torch.cuda.memory_reserved(device)  # this process's CUDA context (+ any other process)
        report.update(gpu=torch.cuda.get_device_name(device), total_bytes=total, context_bytes=context)
        print(f"{report['gpu']}: {total / GIB:.1f} GiB; CUDA context of one process {context / GIB:.2f} GiB")
    else:
        print("no CUDA: the same steps on the CPU (a rehearsal of the code path; memory figures need a GPU)")
    print(f"{'preset':18s} {'target':9s} {'tasks':>5s} {'batch':>5s} {'alloc GiB':>9s} {'reserved GiB':>12s} "
          f"{'per trial GiB':>13s} {'fit/GPU':>7s} {'--gpus-per-trial':>16s} {'wall s':>7s}")
    for name in names:
        with synthetic_arrays(args.quick):
            row = measure(name, device, steps=args.steps, num_tasks=2 if args.quick else None)
        if device.type == "cuda":
            per_trial = row["max_memory_reserved"] + report["context_bytes"]
            row.update(per_trial_bytes=per_trial, **fits(per_trial, report["total_bytes"]))
            cells = (f"{row['max_memory_allocated'] / GIB:9.2f} {row['max_memory_reserved'] / GIB:12.2f} "
                     f"{per_trial / GIB:13.2f} {row['trials_per_gpu']:7d} {row['gpus_per_trial'] or 'none':>16}")
        else:
            cells = f"{'n/a':>9s} {'n/a':>12s} {'n/a':>13s} {'n/a':>7s} {'n/a':>16s}"
        print(f"{name:18s} {row['target']:9s} {row['num_tasks']:5d} {row['batch_size']:5d} {cells} {row['wall_s']:7.1f}",
              flush=True)
        report["presets"].append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import run_script

    run_script(main, "trial_memory.py")
