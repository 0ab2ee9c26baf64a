"""``hinterval`` command line: train, resume, evaluate and list benchmarks.

Examples::

    hinterval train --benchmark split-digits
    hinterval train --benchmark permuted-digits --gamma 0.5 --beta 0.05 --out runs/pd
    hinterval train --out runs/pd --resume          # continue a killed run at its last task
    hinterval eval runs/pd                          # re-compute metrics from the saved model
"""
from __future__ import annotations

import argparse
import errno
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from hinterval.errors import TrainingDiverged, UserError
from hinterval.runtime import choose_omp_wait_policy

# flag -> (config field, type, help)
TRAIN_FLAGS = [
    ("--benchmark", "benchmark", str, "benchmark name (see `hinterval benchmarks`); default split-digits"),
    ("--data-dir", "data_dir", str, "directory with the benchmark's data files (not needed for *-digits)"),
    ("--num-tasks", "num_tasks", int, "number of tasks (default: the benchmark's standard count)"),
    ("--method", "method", str, "hyperinterval | hnet | finetune | joint | intercontinet | ewc"),
    ("--embedding-mode", "embedding_mode", str, "nested (universal embedding exists) | non-forced"),
    ("--gamma", "gamma", float, "perturbation epsilon: total radius budget of each task's embedding box"),
    ("--beta", "beta", float, "strength of the output regulariser that prevents forgetting"),
    ("--embedding-dim", "embedding_dim", int, "task embedding dimension d"),
    ("--hnet-hidden", "hnet_hidden", str, "hypernetwork hidden widths, e.g. 100,100"),
    ("--hnet-chunk-size", "hnet_chunk_size", int, "emit target weights in chunks of this size (0 = unchunked)"),
    ("--chunk-embedding-dim", "chunk_embedding_dim", int, "chunk embedding size (chunked hypernetwork)"),
    ("--target", "target", str, "target network: mlp | resnet18 | alexnet"),
    ("--target-hidden", "target_hidden", str, "MLP target hidden widths, e.g. 1000,1000"),
    ("--image-size", "image_size", int, "CNN input side length: 28x28 data are zero-padded to 32x32, then resized to this (e.g. 64)"),
    ("--image-channels", "image_channels", int, "CNN input channels: 3 repeats grey images into RGB"),
    ("--interval-mode", "interval_mode", str, "sound (default: exact box per layer) | rump (sound, fewer products per layer, slightly wider boxes) | relaxed (fast, NOT sound; CNNs)"),
    ("--reg-normalisation", "reg_normalisation", str, "reference (beta/t, as the paper's code) | mean (beta)"),
    ("--reg-bounds", "reg_bounds", lambda v: _parse_bool(v), "non-forced mode: also regularise earlier tasks' lower/upper weights (true/false)"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--batch-size", "batch_size", int, "training batch size"),
    ("--iters-per-task", "iters_per_task", int, "training iterations per task"),
    ("--epochs-per-task", "epochs_per_task", float, "epochs per task (overrides --iters-per-task)"),
    ("--kappa-min", "kappa_min", float, "final weight of the centre loss (worst-case loss gets 1 - kappa)"),
    ("--ramp-fraction", "ramp_fraction", float, "fraction of each task over which gamma and kappa ramp"),
    ("--ramp", "ramp", str, "guarded (default: the box grows only while the centre network stays accurate) | fixed (linear in iterations, as the paper)"),
    ("--val-every", "val_every", int, "validate (for model selection) every N iterations"),
    ("--ewc-lambda", "ewc_lambda", float, "EWC penalty strength (method ewc)"),
    ("--intercontinet-radius", "intercontinet_radius", float, "initial weight-interval radius (method intercontinet)"),
    ("--cil-alpha", "cil_alpha", float, "weight of the logit-box width in class-incremental task inference"),
    ("--cil-score", "cil_score", str, "class-incremental task inference: auto (best on validation) | entropy | calibrated-entropy | entropy-width | worst-entropy | worst-margin | relative-margin | consensus (see docs/inference.md)"),
    ("--eval-batch-size", "eval_batch_size", int, "evaluation batch size"),
    ("--seed", "seed", int, "training seed (initialisation, batches)"),
    ("--data-seed", "data_seed", int, "seed of the task construction and validation split"),
    ("--device", "device", str, "auto | cpu | cuda"),
    ("--num-threads", "num_threads", int, "torch CPU threads"),
]


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hinterval",
        description="HyperInterval continual learning: interval task embeddings, a hypernetwork mapping "
        "them to boxes of target-network weights, a worst-case loss and a no-forgetting regulariser.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a continual run and write DIR/result.json",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--config", help="YAML/JSON file of config keys (flags override it); e.g. a sweep's best_config.yaml")
    for flag, dest, typ, hlp in TRAIN_FLAGS:
        t.add_argument(flag, dest=dest, type=typ, default=None, help=hlp)
    t.add_argument("--out", help="run directory (default runs/<benchmark>-<method>-<time>)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished task")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard event files")
    t.add_argument("--debug", action="store_true", help="show full tracebacks on errors")

    e = sub.add_parser("eval", help="re-load a saved run and re-compute its final metrics")
    e.add_argument("run_dir", help="a run directory written by `hinterval train`")
    e.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's device setting)")
    e.add_argument("--debug", action="store_true", help="show full tracebacks on errors")

    sub.add_parser("benchmarks", help="list available benchmarks")
    return p


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    return {dest: getattr(args, dest) for _, dest, _, _ in TRAIN_FLAGS if getattr(args, dest) is not None}


def _check_out_dir(out: Path, *, overwrite: bool, resume: bool) -> bool:
    """Refuse to clobber a run: a non-empty dir needs --overwrite or --resume. Returns whether to empty it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a directory")
    non_empty = out.is_dir() and any(out.iterdir())
    if resume:
        return False
    if non_empty and not overwrite:
        raise UserError(f"--out {str(out)!r} is not empty; pass --resume to continue it or --overwrite to replace it")
    return non_empty


def _prepare_out_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    """:func:`_check_out_dir`, then empty (``--overwrite``) and create the directory."""
    if _check_out_dir(out, overwrite=overwrite, resume=resume):
        shutil.rmtree(out)
    if not resume:
        out.mkdir(parents=True, exist_ok=True)


def cmd_train(args: argparse.Namespace) -> int:
    from hinterval.callbacks import RunDirWriter, TensorBoardLogger
    from hinterval.checkpoint import CHECKPOINT_NAME, load_checkpoint, write_json
    from hinterval.config import load_config_file, make_config
    from hinterval.trainer import ContinualTrainer

    file_layer = load_config_file(args.config) if args.config else {}
    overrides = _overrides(args)
    if overrides.get("data_dir"):
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
    state = None
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if args.resume:
        if not args.out:
            raise UserError("--resume needs --out DIR of the run to continue")
        state = load_checkpoint(Path(args.out) / CHECKPOINT_NAME)
        cfg = make_config(state["config"], file_layer, **overrides)
    else:
        cfg = make_config(file_layer, **overrides)
    out = Path(args.out or f"runs/{cfg.benchmark}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_out_dir(out, overwrite=args.overwrite, resume=args.resume)

    trainer = ContinualTrainer(cfg, progress=not args.no_progress)  # data and device errors come before any write
    if state is not None:
        trainer.load_state(state)
        if trainer.tasks_done >= len(trainer.benchmark):
            print(f"run in {out} already finished all {trainer.tasks_done} tasks; nothing to resume", file=sys.stderr)
            return 0
        print(f"resuming {out} at task {trainer.tasks_done + 1}/{len(trainer.benchmark)}", file=sys.stderr)
    _prepare_out_dir(out, overwrite=args.overwrite, resume=args.resume)
    write_json(out / "config.json", cfg.to_dict())
    trainer.callbacks.append(RunDirWriter(out, trainer.result))
    if not args.no_tensorboard:
        trainer.callbacks.append(TensorBoardLogger(out / "tensorboard", cfg.to_dict()))
    print(f"training {cfg.method} on {cfg.benchmark} ({len(trainer.benchmark)} tasks, device {trainer.device}) -> {out}",
          file=sys.stderr)
    trainer.callbacks.append(_TaskPrinter())
    result = trainer.fit()
    print(json.dumps(_headline(result)))
    return 0


class _TaskPrinter:
    def on_task_end(self, task_id: int, metrics: Dict[str, Any], state: Dict[str, Any]) -> None:
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        print(f"task {task_id + 1}: avg_acc {fmt(metrics['avg_acc'])}  bwt {fmt(metrics['bwt'])}  "
              f"worst_avg_acc {fmt(metrics['worst_avg_acc'])}  ({metrics['task_time_s']:.1f}s)", file=sys.stderr)
        if metrics.get("task_collapsed"):
            print(f"hinterval: warning: task {task_id + 1} collapsed to chance (validation accuracy "
                  f"{metrics['task_val_acc']:.3f}); its network answers alike for every input: lower --gamma, "
                  "raise --iters-per-task or keep --ramp guarded", file=sys.stderr)


def _headline(result: Dict[str, Any]) -> Dict[str, Any]:
    keys = ("benchmark", "method", "avg_acc", "bwt", "worst_avg_acc", "worst_bwt", "tasks_done", "collapsed_tasks",
            "wall_time_s")
    out = {k: result.get(k) for k in keys}
    for s in ("dil", "cil"):
        out[f"{s}_avg_acc"] = result[s]["avg_acc"]
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    from hinterval import metrics as M
    from hinterval.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from hinterval.config import make_config
    from hinterval.trainer import ContinualTrainer

    run = Path(args.run_dir)
    state = load_checkpoint(run / CHECKPOINT_NAME)
    cfg = make_config(state["config"], **({"device": args.device} if args.device else {}))
    trainer = ContinualTrainer(cfg, progress=False)
    trainer.load_state(state)
    last = trainer.tasks_done - 1
    saved = {s: list(trainer.matrices[s][last]) for s in M.SCENARIOS}
    trainer._evaluate_after(last)
    fresh = {s: trainer.matrices[s][last] for s in M.SCENARIOS}
    result = trainer.result()
    report = _headline(result)
    report["matches_saved"] = all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)
        for s in M.SCENARIOS for a, b in zip(saved[s], fresh[s])
    )
    print(json.dumps(report))
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from hinterval.data.registry import BENCHMARK_NAMES

    for name in BENCHMARK_NAMES:
        print(name)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "eval"):  # before torch is first imported (lazily): hinterval/runtime.py
        choose_omp_wait_policy(getattr(args, "num_threads", None))
    debug = getattr(args, "debug", False)
    try:
        return {"train": cmd_train, "eval": cmd_eval, "benchmarks": cmd_benchmarks}[args.command](args)
    except UserError as exc:
        if debug:
            raise
        print(f"hinterval: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        if debug:
            raise
        print(f"hinterval: training diverged: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. disk full while saving: checkpoints are atomic, the last one is intact
        if debug:
            raise
        hint = ("; the last checkpoint is intact: free space and continue with --resume"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        print(f"hinterval: error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hinterval: interrupted; finished tasks are saved, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
