"""Resolving a sweep from its command line, before Ray starts: its name, its spec, what it will run.

:func:`resolve` reads what the command line points at and resolves it with the pure
:func:`tune.spec.sweep_spec`; :func:`describe` is the dry run's (and the start's) summary.
This module does not import Ray.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, List, Optional

from hinterval.config import FIELD_SPECS, load_config_file, make_config
from hinterval.data.registry import check_data
from hinterval.errors import UserError, short
from hinterval.files import resolve_path, transient
from hinterval.strict_load import read_json_file

from tune import space as S
from tune.spec import SweepSpec, sweep_spec

#: the resolved spec a sweep directory keeps (``--resume`` reads it back)
SWEEP_FILE = "sweep.json"


def resolve(args: argparse.Namespace) -> SweepSpec:
    """Read what the command line points at (the --space file, existing sweeps for the default name),
    resolve the sweep with the pure :func:`tune.spec.sweep_spec`, and check a local sweep's data. No Ray."""
    results_dir = resolve_path(args.results_dir, "--results-dir")
    spec = sweep_spec(args, name=args.name or default_name(args, results_dir), results_dir=str(results_dir),
                      cwd=os.getcwd(), space_data=load_config_file(args.space) if args.space else None)
    if not args.address and not spec.download:  # a local sweep: check the data here, once, instead of failing every trial
        check_local_data(spec)
    check_trials(spec, local=not args.address)
    return spec


def check_local_data(spec: SweepSpec, *, fetch: bool = False) -> None:
    """The sweep's data readable on this machine (fetched first with ``fetch``), or one error."""
    cfg = make_config(spec.base)
    if fetch:
        from hinterval.data.download import ensure_data

        ensure_data(cfg.benchmark, cfg.data_dir, progress=True)
    check_data(cfg.benchmark, num_tasks=cfg.num_tasks, data_dir=cfg.data_dir)


def check_trials(spec: SweepSpec, *, local: bool) -> None:
    """Refuse a sweep with a kind of trial that ``hinterval train`` would refuse (a network that cannot be
    built, e.g. an interval scope deeper than the target; a model that cannot fit), by ``train``'s own check
    (:func:`hinterval.memory.check_memory`) on the benchmark's real shapes. The memory figure is this
    machine's, so only a local sweep is held to it. A sweep that joins a cluster whose data is not here
    (``--address`` with a ``--data-dir`` only the nodes have) is checked by its trials instead."""
    import torch

    from hinterval.data.registry import load_for
    from hinterval.errors import DataError
    from hinterval.memory import check_memory
    from tune.trial_kinds import check_trials_build

    device = torch.device("cuda" if spec["gpus_per_trial"] > 0 else "cpu")
    loaded: dict = {}

    def check(cfg: Any) -> None:
        key = (cfg.benchmark, cfg.num_tasks, cfg.data_dir, cfg.target == "mlp", cfg.image_size, cfg.image_channels)
        if key not in loaded:
            try:
                loaded[key] = load_for(cfg)
            except DataError:
                if local and not spec["download"]:  # with --download the driver fetches it later
                    raise
                loaded[key] = None
        if loaded[key] is not None:
            check_memory(cfg, loaded[key], device, fit=local and (device.type == "cpu" or torch.cuda.is_available()))

    check_trials_build(S.parse_space(spec["space"]), spec["base"], check)


def check_flags(args: argparse.Namespace, name: str) -> None:
    """Validate every flag as a new sweep would (:func:`tune.spec.sweep_spec`, pure), without using the
    result: a resumed sweep keeps its saved settings, but a bad value is still bad input."""
    sweep_spec(args, name=name, results_dir=str(resolve_path(args.results_dir, "--results-dir")), cwd=os.getcwd(),
               space_data=load_config_file(args.space) if args.space else None)


def plain_name(args: argparse.Namespace) -> str:
    """The benchmark's sweep name (``-smoke`` appended for --smoke-test)."""
    return args.benchmark + ("-smoke" if args.smoke_test else "")


def default_name(args: argparse.Namespace, results_dir: Path, now: Optional[float] = None) -> str:
    """The sweep's name without ``--name``: :func:`plain_name`, or, when a sweep of that name exists and
    neither --resume nor --overwrite asks for it, that name with a date-time suffix (a new sweep)."""
    name = plain_name(args)
    taken = lambda n: (results_dir / n).exists() and any((results_dir / n).iterdir())  # noqa: E731
    if args.resume or args.overwrite or not taken(name):
        return name
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    fresh, k = f"{name}-{stamp}", 2
    while taken(fresh):
        fresh, k = f"{name}-{stamp}-{k}", k + 1
    return fresh


def check_sweep_dir(out_dir: Path, name: str, *, resume: bool, overwrite: bool) -> None:
    """Refuse a results directory that is not empty, unless it holds a sweep and --resume or --overwrite
    asks for it. A directory without ``sweep.json`` (a user's files) is never a sweep: --overwrite, which
    deletes what is there, is refused for it too."""
    found = sorted(p.name for p in out_dir.iterdir() if not transient(p.name)) if out_dir.is_dir() else []
    if resume or not found:
        return
    if not (out_dir / SWEEP_FILE).is_file():
        shown = ", ".join(short(n, 40) for n in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise UserError(f"{out_dir} is not empty and holds no sweep (no {SWEEP_FILE}; it holds {shown}); choose another "
                        "--name or --results-dir (--overwrite replaces only a sweep, it never deletes other files)")
    if not overwrite:
        raise UserError(f"{out_dir} already holds a sweep named {name!r}; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --name")


def load_saved_spec(out_dir: Path) -> SweepSpec:
    path = out_dir / SWEEP_FILE
    if not path.is_file():
        other = out_dir.is_dir() and not all(transient(p.name) for p in out_dir.iterdir())
        raise UserError(f"--resume: no sweep to resume in {str(out_dir)!r} (missing {SWEEP_FILE}); "
                        + ("it holds other files: start the sweep with another --name" if other else "start it without --resume"))
    try:
        spec = SweepSpec.from_dict(read_json_file(path, "sweep state"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise UserError(f"--resume: {path} is corrupted ({type(exc).__name__}: {first}); "
                        "restore it or start the sweep again with --overwrite") from None
    return spec


def network_lines(spec: SweepSpec) -> List[str]:
    """What every trial builds and trains (preset + fixed keys), so a dry run shows a CNN sweep's
    network and budget before any GPU time is spent; keys the space searches are named as varying."""
    cfg = make_config(spec["base"])
    shown = ("method", "target", "target_hidden", "interval_mode", "interval_scope", "hnet_hidden", "hnet_chunk_size", "embedding_mode",
             "epochs_per_task", "iters_per_task", "batch_size")
    varied = [k for k in shown if k in spec["space"]]
    target = cfg.target + (f" {','.join(map(str, cfg.target_hidden))}" if cfg.target == "mlp" else "")
    chunks = f", chunks of {cfg.hnet_chunk_size} weights" if cfg.hnet_chunk_size else ""
    budget = (f"{cfg.epochs_per_task:g} epochs (epochs_per_task; --iters-per-task N trains N iterations instead)"
              if cfg.epochs_per_task is not None else f"{cfg.iters_per_task} iterations")
    scope = f", box on {cfg.interval_scope} layers" if cfg.interval_scope != "all" else ""
    reads = lambda key: FIELD_SPECS[key].setting.used_when(cfg)  # noqa: E731 - what this method builds
    intervals = f" ({cfg.interval_mode} intervals{scope})" if reads("interval_mode") else ""
    hnet = (f", hypernetwork hidden {','.join(map(str, cfg.hnet_hidden))}{chunks}" if reads("hnet_hidden") else "")
    embedding = f", embedding {cfg.embedding_mode}" if reads("embedding_mode") else ""
    return [f"network per trial: {cfg.method}, target {target}{intervals}{hnet}{embedding}",
            f"training per task: {budget}, batch {cfg.batch_size}; evaluation batch {cfg.eval_batch_size}"
            + (f"; varied per trial: {', '.join(varied)}" if varied else "")]


def describe(spec: SweepSpec, *, address: Optional[str], max_concurrent: Any) -> str:
    sp = S.parse_space(spec["space"])
    lines = [f"sweep {spec['name']!r} on {spec['benchmark']}: {spec['num_samples']} trials, objective "
             f"{', '.join(spec['objectives'])} (maximised), scheduler {spec['scheduler']}, TPE seed {spec['seed']}",
             "search space:"]
    lines += [f"  {k:16s} {S.describe(d)}" for k, d in sp.params]
    lines.append("fixed for every trial (on top of the benchmark preset): "
                 + ", ".join(f"{k}={v}" for k, v in spec["base"].items()))
    lines += network_lines(spec)
    if spec["preset_point"] is not None:
        lines.append("first trial (preset): " + ", ".join(f"{k}={v}" for k, v in spec["preset_point"].items()))
    else:
        lines.append("preset not evaluated first, it lies outside the space: " + "; ".join(spec["preset_outside"]))
    seeds, top = spec["confirm_seeds"], spec["confirm_top"]
    lines.append(f"then: the best {top} trial(s) trained again with {seeds} more training seed(s) each "
                 f"({seeds * top} more runs; --confirm-seeds, --confirm-top)" if seeds else
                 "then: no confirmation over more seeds (--confirm-seeds 0)")
    lines.append(f"resources per trial: {spec['cpus_per_trial']:g} CPU, {spec['gpus_per_trial']:g} GPU; "
                 f"max concurrent: {max_concurrent or 'as many as fit'}; failures retried up to 2 times per trial")
    if spec["download"]:
        lines.append("data: fetched where it is missing (--download): " + ("by the first trial on each node" if address
                                                                           else "here, before Ray starts"))
    lines.append(f"ray: {'join ' + address if address else 'start locally'}; checkpoints: {spec['storage']}"
                 + (f" (experiment {spec['experiment']})" if spec["experiment"] else ""))
    lines.append(f"results: {spec['out_dir']}")
    return "\n".join(lines)
