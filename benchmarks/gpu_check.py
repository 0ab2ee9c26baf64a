"""The one-shot GPU check: what a GPU trial of each preset target costs, and that it runs on the GPU.

Run once on a GPU machine (``scripts/gpu_check.sh``; under 8 minutes on one H100), or rehearsed
on the CPU (``--device cpu --quick``). Four steps, in this order; the first that fails ends the
check with ``GPU CHECK FAILED at step <name>`` and exit status 1:

1. ``step`` -- for each preset target (MLP of split-mnist, ResNet-18 of split-cifar100 at 32x32
   and of tinyimagenet at 64x64, AlexNet of split-cifar10), at the preset's batch size, the
   trainer's own steps timed between its step reports (:class:`hinterval.profiling.StepTimer`):
   the interval step (``hyperinterval``, box at full size from the first step), the point step
   (``hnet``: the same hypernetwork and target without intervals) and the plain network
   (``finetune``). Images/s of each and the interval/point cost ratio; on CUDA the CNN interval
   step once more with ``torch.backends.cudnn.benchmark`` on. Then three steps of the interval
   run (and the task's validation and evaluation) under :class:`CpuOpWatch`: on CUDA any operator
   computing on CPU tensors fails the step; CUDA's sync debug mode counts the host syncs there.
2. ``memory`` -- peak GPU memory of one sweep trial per preset (``benchmarks/trial_memory.py``:
   the data set's real size on the device, the last task's steps and the full evaluation after it)
   and the largest ``--gpus-per-trial`` of the form 1/k that fits.
3. ``train`` -- one short real ``hinterval train`` per target (split-digits, which ships with
   scikit-learn, as 32x32 or 64x64 RGB images for the CNNs); its ``result.json`` must say the device.
4. ``sweep`` -- a 2-trial sweep with ``tune/search.py --gpus-per-trial 0.5`` (``0`` on the CPU);
   every trial must report the device.

Usage::

    python benchmarks/gpu_check.py --device cuda --json results/gpu/h100.json
    python benchmarks/gpu_check.py --device cpu --quick --work /tmp/gpu-check --json /tmp/gpu-check/check.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

#: the CNN presets' chunked hypernetwork (split-digits' own is unchunked: 35 GiB with AlexNet)
CNN_HNET = ["--hnet-hidden", "100", "--hnet-chunk-size", "7000", "--embedding-dim", "48"]
#: (label, preset benchmark, flags of its short `hinterval train` run on split-digits)
TARGETS = [
    ("MLP, split-mnist preset", "split-mnist", []),
    ("ResNet-18 32x32, split-cifar100 preset", "split-cifar100",
     ["--target", "resnet18", "--image-size", "32", "--image-channels", "3", *CNN_HNET]),
    ("ResNet-18 64x64, tinyimagenet preset", "tinyimagenet",
     ["--target", "resnet18", "--image-size", "64", "--image-channels", "3", *CNN_HNET]),
    ("AlexNet 32x32, split-cifar10 preset", "split-cifar10",
     ["--target", "alexnet", "--image-size", "32", "--image-channels", "3", *CNN_HNET]),
]
#: aten operators that move or view data rather than compute: allowed on CPU tensors in a GPU step
MOVES = ("to", "_to_copy", "copy_", "lift_fresh", "lift_fresh_copy", "detach", "alias", "_local_scalar_dense", "view",
         "_unsafe_view", "empty", "set_", "clone")


class CheckFailed(RuntimeError):
    """A step found something wrong (the message says what)."""


class CpuOpWatch:
    """Records every aten operator that computes on a CPU tensor of more than one element while
    active (0-dim CPU tensors are Python numbers to CUDA kernels; data moves are in :data:`MOVES`)."""

    def __init__(self) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        found: Dict[str, int] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.overloadpacket.__name__
                if name not in MOVES:
                    for a in tree_leaves((args, kwargs or {})):
                        if isinstance(a, torch.Tensor) and a.device.type == "cpu" and a.numel() > 1:
                            found[name] = found.get(name, 0) + 1
                            break
                return func(*args, **(kwargs or {}))

        self.found, self.mode = found, Mode()

    def __enter__(self) -> "CpuOpWatch":
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)


def preset_shape(benchmark: str):
    """Input shape, classes per task and the resolved preset config of ``benchmark``, from its real
    task construction on generated arrays (no data set needed)."""
    from hinterval.config import make_config
    from hinterval.data.registry import load_for
    from trial_memory import synthetic_arrays

    cfg = make_config(benchmark=benchmark, num_tasks=1)
    with synthetic_arrays(True):
        bench = load_for(cfg.replace(data_dir="synthetic"))
    return tuple(bench.input_shape), bench.classes_per_task, cfg


def step_item(device: str, quick: bool) -> List[Dict[str, Any]]:
    """Images/s of the interval, point and plain steps for every preset target (see the module docstring)."""
    import torch

    from hinterval.profiling import StepTimer
    from hinterval.trainer import ContinualTrainer
    from speed_items.common import shape_benchmark

    dev = torch.device(device)
    rows = []
    for label, preset, _ in TARGETS:
        shape, classes, cfg = preset_shape(preset)
        # windows of 25 steps between the trainer's step reports; the CPU rehearsal of a CNN times 3
        # steps by the clock around the whole run (its validation and evaluation included: rough)
        windows = not (quick and cfg.target != "mlp")
        iters = (26 if quick else 101) if windows else 3
        over = dict(device=device, num_tasks=1, iters_per_task=iters, val_every=iters, ramp="fixed", ramp_fraction=0.0,
                    num_threads=1 if device == "cpu" else None)
        if quick and cfg.target == "mlp":
            over.update(target_hidden=(100, 100))
        base = cfg.replace(**over)
        bench = shape_benchmark(1, shape, classes, dev, n=base.batch_size)
        runs = {"interval": ("hyperinterval", False), "point": ("hnet", False), "plain": ("finetune", False)}
        if device == "cuda" and cfg.target != "mlp":
            runs["interval_cudnn_benchmark"] = ("hyperinterval", True)
        sec: Dict[str, float] = {}
        for name, (method, cudnn_benchmark) in runs.items():
            torch.backends.cudnn.benchmark = cudnn_benchmark
            timer, t0 = StepTimer(), time.perf_counter()
            ContinualTrainer(base.replace(method=method), callbacks=[timer], benchmark=bench, progress=False).fit()
            sec[name] = timer.seconds_per_step() if windows else (time.perf_counter() - t0) / iters
        torch.backends.cudnn.benchmark = False
        watch_cfg = base.replace(method="hyperinterval", iters_per_task=3, val_every=3)
        trainer = ContinualTrainer(watch_cfg, benchmark=bench, progress=False)
        if device == "cuda":  # every call that makes the host wait for the GPU warns (counted, not failed)
            torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught, CpuOpWatch() as watch:
            warnings.simplefilter("always")
            trainer.fit()
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught) if device == "cuda" else None
        row = dict(target=label, preset=preset, batch_size=base.batch_size, input_shape=list(shape),
                   timing="best 25-step window" if windows else f"whole {iters}-step run / {iters} (rehearsal)",
                   interval_mode=base.interval_mode, interval_scope=base.interval_scope,
                   target_weights=int(trainer.method.target.num_params),
                   **{f"{k}_s_per_step": v for k, v in sec.items()},
                   **{f"{k}_images_per_s": base.batch_size / v for k, v in sec.items()},
                   interval_point_ratio=sec["interval"] / sec["point"], cpu_ops=dict(watch.found),
                   host_syncs_3_steps_validation_evaluation=syncs)
        print(f"  {label}: batch {base.batch_size}, {base.interval_mode} {base.interval_scope}: interval "
              f"{row['interval_images_per_s']:,.0f} images/s, point {row['point_images_per_s']:,.0f}, plain "
              f"{row['plain_images_per_s']:,.0f}; interval/point cost {row['interval_point_ratio']:.2f}x"
              + (f"; with cudnn.benchmark {row['interval_cudnn_benchmark_images_per_s']:,.0f}"
                 if "interval_cudnn_benchmark" in sec else ""), flush=True)
        if device == "cuda" and watch.found:
            raise CheckFailed(f"{label}: operators computed on CPU tensors during GPU training steps: {watch.found}")
        rows.append(row)
    return rows


def memory_item(device: str, quick: bool) -> Dict[str, Any]:
    """Peak memory of one trial per preset and the ``--gpus-per-trial`` that fits (trial_memory.py)."""
    import torch

    from trial_memory import GIB, fits, measure, synthetic_arrays

    dev = torch.device(device)
    out: Dict[str, Any] = {"presets": []}
    if device == "cuda":
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info(dev)
        out.update(gpu=torch.cuda.get_device_name(dev), total_bytes=total,
                   context_bytes=total - free - torch.cuda.memory_reserved(dev))
    for label, preset, _ in TARGETS:
        with synthetic_arrays(quick):
            row = measure(preset, dev, steps=3, num_tasks=2 if quick else None)
        if device == "cuda":
            per_trial = row["max_memory_reserved"] + out["context_bytes"]
            row.update(per_trial_bytes=per_trial, **fits(per_trial, out["total_bytes"]))
            print(f"  {label}: peak allocated {row['max_memory_allocated'] / GIB:.2f} GiB, reserved "
                  f"{row['max_memory_reserved'] / GIB:.2f} GiB, per trial with context {per_trial / GIB:.2f} GiB: "
                  f"{row['trials_per_gpu']} per GPU, --gpus-per-trial {row['gpus_per_trial']}", flush=True)
        else:
            print(f"  {label}: {row['num_tasks']} tasks, last task trained and all evaluated in {row['wall_s']:.1f} s "
                  "(memory figures need a GPU)", flush=True)
        out["presets"].append(dict(label=label, **row))
    return out


def _run(cmd: List[str], log: Path, timeout: float) -> None:
    """Run ``cmd`` (output to ``log``); a failure raises :class:`CheckFailed` with the log's tail."""
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise CheckFailed(f"`{' '.join(cmd)}` exited {proc.returncode}: " + " | ".join(tail))


def train_item(device: str, quick: bool, work: Path) -> List[Dict[str, Any]]:
    """One short real ``hinterval train`` per target on split-digits; its result must name the device."""
    iters = 3 if quick else 100
    rows = []
    for label, _, flags in TARGETS:
        if quick:  # a CNN's interval step takes seconds on a CPU
            flags = [*flags, "--batch-size", "16"]
        name = label.split(",")[0].replace(" ", "-").lower()
        out = work / f"train-{name}"
        cmd = [sys.executable, "-m", "hinterval", "train", "--benchmark", "split-digits", "--num-tasks", "2",
               "--iters-per-task", str(iters), "--val-every", str(iters), "--device", device, "--out", str(out),
               "--overwrite", "--no-progress", *flags]
        if device == "cpu":
            cmd += ["--num-threads", "1"]
        t0 = time.perf_counter()
        _run(cmd, work / f"train-{name}.log", timeout=300)
        result = json.loads((out / "result.json").read_text())
        if not str(result.get("device", "")).startswith(device):
            raise CheckFailed(f"{label}: `hinterval train --device {device}` ran on {result.get('device')!r}")
        row = dict(target=label, device=result["device"], wall_s=time.perf_counter() - t0, avg_acc=result.get("avg_acc"),
                   worst_avg_acc=result.get("worst_avg_acc"), tasks_done=result.get("tasks_done"))
        print(f"  {label}: split-digits 2 tasks x {iters} iterations on {row['device']}: TIL {row['avg_acc']:.3f}, "
              f"worst {row['worst_avg_acc'] if row['worst_avg_acc'] is None else round(row['worst_avg_acc'], 3)}, "
              f"{row['wall_s']:.0f} s", flush=True)
        rows.append(row)
    return rows


def sweep_item(device: str, quick: bool, work: Path) -> Dict[str, Any]:
    """A 2-trial sweep sharing one GPU (``--gpus-per-trial 0.5``); every trial must report the device."""
    gpus = "0.5" if device == "cuda" else "0"
    cmd = [sys.executable, "tune/search.py", "--benchmark", "split-digits", "--num-samples", "2", "--num-tasks", "2",
           "--iters-per-task", "3" if quick else "100", "--confirm-seeds", "0", "--gpus-per-trial", gpus,
           "--cpus-per-trial", "1", "--results-dir", str(work / "sweeps"), "--name", "gpu-check", "--overwrite",
           "--no-tensorboard"]
    t0 = time.perf_counter()
    _run(cmd, work / "sweep.log", timeout=400)
    devices = []
    for path in sorted((work / "sweeps").rglob("result.json")):
        for line in path.read_text().splitlines():
            if line.strip().startswith("{"):
                devices.append(json.loads(line).get("device"))
    reported = sorted(set(d for d in devices if d is not None))
    if not devices or reported != [device]:
        raise CheckFailed(f"the sweep's trials reported devices {reported or 'none'}, expected {device!r} "
                          f"(--gpus-per-trial {gpus}); see {work / 'sweep.log'}")
    out = dict(gpus_per_trial=float(gpus), trial_reports=len(devices), devices=reported, wall_s=time.perf_counter() - t0)
    print(f"  2 trials, --gpus-per-trial {gpus}: {len(devices)} task reports, all on {device}, "
          f"{out['wall_s']:.0f} s", flush=True)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="rehearsal sizes: fewer steps, 2-task data sets, 10-iteration runs")
    ap.add_argument("--steps", default="step,memory,train,sweep", help="comma-separated subset of the steps")
    ap.add_argument("--work", default="/tmp/hinterval-gpu-check", help="run directories and logs of the train and sweep steps")
    ap.add_argument("--json", help="write every figure to this JSON file (also after a failed step)")
    args = ap.parse_args(argv)
    from hinterval.config import make_config
    from hinterval.runtime import configure_process

    settings = configure_process(make_config(dict(device=args.device, num_threads=1 if args.device == "cpu" else None)))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check.py: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    report: Dict[str, Any] = dict(device=args.device, gpu=gpu, quick=args.quick, torch=torch.__version__,
                                  torch_threads=settings.torch_threads, steps={})
    print(f"GPU check: device {args.device}{f' ({gpu})' if gpu else ''}, torch {torch.__version__}, "
          f"{'rehearsal sizes' if args.quick else 'preset sizes'}", flush=True)
    steps: Dict[str, Callable[[], Any]] = {
        "step": lambda: step_item(args.device, args.quick), "memory": lambda: memory_item(args.device, args.quick),
        "train": lambda: train_item(args.device, args.quick, work), "sweep": lambda: sweep_item(args.device, args.quick, work)}
    chosen = [s for s in args.steps.split(",") if s]
    unknown = [s for s in chosen if s not in steps]
    if unknown:
        ap.error(f"unknown step(s) {unknown}; choose from {', '.join(steps)}")
    t_all, status = time.perf_counter(), 0
    for name in chosen:
        t0 = time.perf_counter()
        print(f"\n[{name}]", flush=True)
        try:
            report["steps"][name] = steps[name]()
        except Exception as exc:  # noqa: BLE001 - every failure ends the check naming its step
            report["failed"] = dict(step=name, error=f"{type(exc).__name__}: {exc}")
            print(f"\nGPU CHECK FAILED at step {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            status = 1
            break
        finally:
            report.setdefault("seconds", {})[name] = time.perf_counter() - t0
    report["total_s"] = time.perf_counter() - t_all
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    if status == 0:
        print(f"\nGPU check passed: {', '.join(chosen)} in {report['total_s']:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
