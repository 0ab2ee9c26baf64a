"""Ray Tune + Optuna sweep over full continual-learning runs.

Every trial trains one config on all tasks of a benchmark (``tune/trainable.py``) and reports
after each task; the benchmark preset (the paper/default config) is evaluated first, then
Optuna's seeded TPE sampler proposes the rest. Results land in ``results/<name>/``:
``trials.csv``, ``leaderboard.md``, ``best_config.yaml`` (for ``hinterval train --config``),
``plots/`` and ``tensorboard/`` (``tensorboard --logdir results/<name>``).

Examples::

    python tune/search.py                                  # 8 trials on split-digits, this machine
    python tune/search.py --dry-run                        # show the space and resources, run nothing
    python tune/search.py --smoke-test --overwrite         # 2 trials x 2 tasks, CPU, ~1 min
    python tune/search.py --gamma 0.1:5 --embedding-dim 16,24,48 --num-samples 20 --name wide
    python tune/search.py --space tune/example_space.yaml --objective avg_acc,bwt --scheduler asha --name pareto
    python tune/search.py --name wide --resume             # continue a killed sweep
    python tune/search.py --address auto --storage s3://BUCKET/sweeps --gpus-per-trial 0.25   # cluster head
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

if __name__ == "__main__":  # Ctrl-C while the imports load: one line, no traceback (main() takes over)
    import signal

    signal.signal(signal.SIGINT, lambda *_: (print("search.py: interrupted before the sweep started; nothing was written",
                                                   file=sys.stderr), os._exit(130)))
if __name__ == "__main__" and not __package__:
    # `python tune/search.py`: make the `tune` package importable (it is not part of the install)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hinterval import metrics as M  # noqa: E402
from hinterval.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, UserError, one_line  # noqa: E402

from tune.spec import OBJECTIVES, SPACE_FLAGS, SweepSpec  # noqa: E402

TUNE_DIR = Path(__file__).resolve().parent
SWEEP_FILE = "sweep.json"
STORAGE_ENV = "HINTERVAL_SWEEP_STORAGE"


# --- command line ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from hinterval.cli import Parser  # reads -1e-3, -inf and -1:1 as values, not as options

    p = Parser(
        prog="python tune/search.py",
        description="Hyperparameter sweep (Ray Tune + Optuna TPE) over full HyperInterval continual runs. "
        "Results go to RESULTS_DIR/NAME (default results/<benchmark>); an existing sweep of that name is "
        "never overwritten: pass --resume to continue it, --overwrite to replace it, or a new --name.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="search space: the benchmark preset's gamma, beta, lr (log ranges) and embedding_dim, replaced by "
        "--space FILE (YAML: key: {type: loguniform|uniform|int|choice, low/high | values}) and edited by the "
        "flags above.\n\nexamples:" + __doc__.split("Examples::", 1)[1],
    )
    g = p.add_argument_group("what to search")
    g.add_argument("--benchmark", default="split-digits", help="benchmark (see `hinterval benchmarks`); default split-digits")
    g.add_argument("--space", help="YAML search space; replaces the preset's default space")
    for flag, key, hlp in SPACE_FLAGS:
        g.add_argument(flag, dest=f"space_{key}", metavar="SPEC", help=hlp)
    g.add_argument("--set", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config key for every trial (repeatable), e.g. --set seed=1")
    g.add_argument("--num-tasks", type=int, help="tasks per run (default: the benchmark's standard count)")
    g.add_argument("--iters-per-task", type=int, default=None,
                   help="training iterations per task (default 0 = the preset's budget, e.g. 500 for split-digits; "
                   "8 split-digits trials then take ~1.5 min on 2 quiet CPU cores); smaller values make quick, "
                   "rougher sweeps")
    g.add_argument("--data-dir", help="benchmark data directory (made absolute here; trials run in other dirs)")
    g.add_argument("--objective", default=M.AVG_ACC,
                   help=f"metric(s) to maximise, comma-separated for multi-objective (Pareto front), "
                   f"e.g. avg_acc,bwt; from {', '.join(OBJECTIVES)}; default avg_acc")
    g.add_argument("--scheduler", choices=("none", "asha"), default="none",
                   help="asha: stop weak trials early at task boundaries (they are never ranked); default none")
    g.add_argument("--num-samples", type=int, default=8, help="number of trials (the preset counts as one); default 8")
    g.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (training seed: --set seed=N); default 0")

    r = p.add_argument_group("where and how it runs")
    r.add_argument("--name", help="sweep name (default: the benchmark, '-smoke' appended for --smoke-test; when that "
                   "sweep exists, a new name with a date-time suffix); an existing NAME needs --resume or --overwrite")
    r.add_argument("--results-dir", default="results", help="parent of the sweep's results directory; default ./results")
    r.add_argument("--address", help="Ray cluster to join ('auto' on a cluster node, or HOST:PORT); "
                   "default: start Ray on this machine")
    r.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                   help=f"where Tune keeps trial checkpoints: absolute path or s3://BUCKET/PREFIX (shared storage is "
                   f"needed on multi-node clusters); default ${STORAGE_ENV} or RESULTS_DIR/NAME/_ray")
    r.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial (also torch threads); default 1")
    r.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs per trial, fractional packs trials (0.25); default 0")
    r.add_argument("--max-concurrent", type=int, default=0,
                   help="trials running at once (0 = as many as the cluster's resources allow); default 0")
    r.add_argument("--resume", action="store_true", help="continue the sweep NAME where it stopped (finished tasks are kept)")
    r.add_argument("--overwrite", action="store_true", help="delete the existing sweep NAME and start again")
    r.add_argument("--dry-run", action="store_true", help="print the resolved search space and resources, run nothing")
    r.add_argument("--smoke-test", action="store_true", help="2 trials x 2 tasks, 20 iterations per task, on CPU")
    r.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard runs")
    r.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# --- resolving the sweep (no Ray) -----------------------------------------------------------------
def resolve(args: argparse.Namespace) -> SweepSpec:
    """Read what the command line points at (the --space file, existing sweeps for the default name),
    resolve the sweep with the pure :func:`tune.spec.sweep_spec`, and check a local sweep's data. No Ray."""
    from hinterval.config import load_config_file, make_config
    from tune.spec import sweep_spec

    from hinterval.checkpoint import resolve_path

    results_dir = resolve_path(args.results_dir, "--results-dir")
    spec = sweep_spec(args, name=args.name or default_name(args, results_dir), results_dir=str(results_dir),
                      cwd=os.getcwd(), space_data=load_config_file(args.space) if args.space else None)
    if not args.address:  # a local sweep: check the data here, once, instead of failing every trial
        from hinterval.data.registry import check_data

        cfg = make_config(spec.base)
        check_data(cfg.benchmark, num_tasks=cfg.num_tasks, data_dir=cfg.data_dir)
    return spec


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


def load_saved_spec(out_dir: Path) -> SweepSpec:
    import json

    path = out_dir / SWEEP_FILE
    if not path.is_file():
        raise UserError(f"--resume: no sweep to resume in {str(out_dir)!r} (missing {SWEEP_FILE}); start it without --resume")
    try:
        spec = SweepSpec.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise UserError(f"--resume: {path} is corrupted ({type(exc).__name__}: {first}); "
                        "restore it or start the sweep again with --overwrite") from None
    return spec


def network_lines(spec: SweepSpec) -> List[str]:
    """What every trial builds and trains (preset + fixed keys), so a dry run shows a CNN sweep's
    network and budget before any GPU time is spent; keys the space searches are named as varying."""
    from hinterval.config import make_config

    cfg = make_config(spec["base"])
    shown = ("method", "target", "target_hidden", "interval_mode", "interval_scope", "hnet_hidden", "hnet_chunk_size", "embedding_mode",
             "epochs_per_task", "iters_per_task", "batch_size")
    varied = [k for k in shown if k in spec["space"]]
    target = cfg.target + (f" {','.join(map(str, cfg.target_hidden))}" if cfg.target == "mlp" else "")
    chunks = f", chunks of {cfg.hnet_chunk_size} weights" if cfg.hnet_chunk_size else ""
    budget = (f"{cfg.epochs_per_task:g} epochs (epochs_per_task; --iters-per-task N trains N iterations instead)"
              if cfg.epochs_per_task is not None else f"{cfg.iters_per_task} iterations")
    scope = f", box on {cfg.interval_scope} layers" if cfg.interval_scope != "all" else ""
    return [f"network per trial: {cfg.method}, target {target} ({cfg.interval_mode} intervals{scope}), hypernetwork hidden "
            f"{','.join(map(str, cfg.hnet_hidden))}{chunks}, embedding {cfg.embedding_mode}",
            f"training per task: {budget}, batch {cfg.batch_size}; evaluation batch {cfg.eval_batch_size}"
            + (f"; varied per trial: {', '.join(varied)}" if varied else "")]


def describe(spec: SweepSpec, *, address: Optional[str], max_concurrent: Any) -> str:
    from tune import space as S

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
    lines.append(f"resources per trial: {spec['cpus_per_trial']:g} CPU, {spec['gpus_per_trial']:g} GPU; "
                 f"max concurrent: {max_concurrent or 'as many as fit'}; failures retried up to 2 times per trial")
    lines.append(f"ray: {'join ' + address if address else 'start locally'}; checkpoints: {spec['storage']}")
    lines.append(f"results: {spec['out_dir']}")
    return "\n".join(lines)


# --- Ray side -------------------------------------------------------------------------------------
def runtime_env() -> Dict[str, Any]:
    """Ship ``tune/`` to every worker (it is not part of the pip-installed package)."""
    return {"py_modules": [str(TUNE_DIR)], "excludes": ["__pycache__", "*.pyc"]}


def connect(address: Optional[str]) -> bool:
    """Join ``address`` or start Ray here; returns whether this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"runtime_env": runtime_env(), "log_to_driver": True, "configure_logging": True,
                              "logging_level": "warning"}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # "local": a new instance even if another Ray cluster runs on this machine
            ray.init(address="local", include_dashboard=False, **kwargs)
    except ConnectionError as exc:
        raise UserError(f"could not reach a Ray cluster at --address {address}: {exc}") from None
    return True


def check_resources(nodes: List[Dict[str, float]], *, cpus: float, gpus: float) -> Optional[str]:
    """Why trials of this size could never start on these nodes (``None`` if they can).

    A trial's CPUs and GPUs come from one node, so some alive node must hold both.
    """
    total_gpus = sum(n.get("GPU", 0) for n in nodes)
    if gpus > 0 and total_gpus == 0:
        return (f"--gpus-per-trial {gpus:g} but the Ray cluster has no GPUs (so trials would wait forever); "
                "rerun with --gpus-per-trial 0 to train on CPUs, or start GPU workers first")
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        biggest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        return (f"no node can hold one trial ({cpus:g} CPU, {gpus:g} GPU); the largest node has "
                f"{biggest.get('CPU', 0):g} CPU, {biggest.get('GPU', 0):g} GPU: lower --cpus-per-trial/--gpus-per-trial")
    return None


def cluster_slots(nodes: List[Dict[str, float]], *, cpus: float, gpus: float) -> int:
    """How many trials the nodes can run at once."""
    slots = 0
    for n in nodes:
        k = int(n.get("CPU", 0) // cpus)
        if gpus > 0:
            k = min(k, int(round(n.get("GPU", 0) / gpus, 6) // 1))
        slots += k
    return max(1, slots)


def alive_node_resources() -> List[Dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def make_searcher(spec: SweepSpec, max_concurrent: int):
    """TPE over the sweep's space, its study kept in ``results/<name>/optuna.db`` (see tune.searcher)."""
    from tune.searcher import create_study, make_searcher as _make, study_url

    attrs = {k: spec[k] for k in ("benchmark", "objectives", "space", "base", "preset_point", "seed", "scheduler")}
    storage = create_study(study_url(spec["out_dir"]), spec["name"], spec["objectives"], attrs)
    return _make(space=spec["space"], objectives=spec["objectives"], seed=spec["seed"],
                 preset_point=spec["preset_point"], max_concurrent=max_concurrent, storage=storage,
                 study_name=spec["name"])


def summary_metrics(spec: SweepSpec) -> List[str]:
    """The headline metrics TensorBoard's HParams tab lists: DIL only where a trial can be nested."""
    from hinterval.callbacks import SUMMARY_METRICS
    from hinterval.config import make_config

    modes = {make_config(spec["base"]).embedding_mode}
    searched = spec["space"].get("embedding_mode")
    if isinstance(searched, dict):  # swept: {type: choice, values: [...]}
        modes |= set(searched.get("values", ()))
    return [m for m in SUMMARY_METRICS if m != "dil_avg_acc" or "nested" in modes]


def make_trainable(spec: SweepSpec):
    from ray import tune

    from tune.trainable import run_trial

    setup = {"base": spec["base"], "objectives": spec["objectives"], "state_root": experiment_path(spec) + "/trial_states"}
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                               {"cpu": spec["cpus_per_trial"], "gpu": spec["gpus_per_trial"]})


def make_scheduler(spec: SweepSpec):
    """ASHA on the first objective (``--scheduler asha``), one rung per finished task; else ``None``."""
    if spec["scheduler"] != "asha":
        return None
    from tune.searcher import FiniteMetricASHA

    # max_t only caps rungs, trials end after their last task anyway
    return FiniteMetricASHA(time_attr=M.TASKS_DONE, metric=spec["objectives"][0], mode="max", max_t=1000,
                            grace_period=1, reduction_factor=2)


def make_tuner(spec: SweepSpec, max_concurrent: int):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from tune import space as S
    from tune.recorder import SweepRecorder

    scheduler = make_scheduler(spec)
    space = S.parse_space(spec["space"])
    names = space.names
    # sort_by_metric=False: Ray's sort crashes the driver on a trial whose avg_acc is None (diverged in task 1)
    reporter = tune.CLIReporter(
        metric_columns={M.TASKS_DONE: "tasks", M.AVG_ACC: "avg_acc", M.BWT: "bwt", M.WORST_AVG_ACC: "worst_acc"},
        parameter_columns=names, max_report_frequency=30, metric=M.AVG_ACC, mode="max", sort_by_metric=False)
    recorder = SweepRecorder(spec["out_dir"], base=spec["base"], preset=spec["preset_point"], tensorboard=spec["tensorboard"],
                             hparams=S.tensorboard_hparams(space), metrics=summary_metrics(spec))
    run_config = tune.RunConfig(
        name=spec["name"], storage_path=spec["storage"], failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[recorder, CSVLoggerCallback(), JsonLoggerCallback()], progress_reporter=reporter, verbose=1)
    tune_config = tune.TuneConfig(search_alg=make_searcher(spec, max_concurrent), scheduler=scheduler,
                                  num_samples=spec["num_samples"])
    return tune.Tuner(make_trainable(spec), tune_config=tune_config, run_config=run_config)


def experiment_path(spec: SweepSpec) -> str:
    return spec["storage"].rstrip("/") + "/" + spec["name"]


def _set_tune_env() -> None:
    # CLIReporter's table instead of the new console output; our own TensorBoard runs instead of
    # Tune's TBX logger (it would add `ray/tune/*` runs under results/<name>); save the experiment
    # state every 2 s (trials also keep their own latest state, see tune.trainable.TrialState).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")


def _run_sweep(args: argparse.Namespace) -> Dict[str, Any]:
    """Run (or resume) a sweep as the command line describes; returns the report summary.

    Raises:
        UserError: bad input, an existing sweep without --resume/--overwrite, or resources the
            cluster cannot provide. Nothing on disk is changed before these checks pass.
    """
    from hinterval.checkpoint import write_json

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    for flag, value in (("--name", args.name), ("--results-dir", args.results_dir)):
        if value is not None and not value.strip():  # "" would silently mean the default
            raise UserError(f"{flag} is empty; leave it out for the default, or give one")
    if args.resume:
        name = args.name or plain_name(args)
        from hinterval.checkpoint import resolve_path

        out_dir = resolve_path(args.results_dir, "--results-dir") / name
        spec = load_saved_spec(out_dir)
        print(f"resuming sweep {name!r} with its saved settings ({out_dir / SWEEP_FILE}); "
              "search/resource flags given now are ignored", file=sys.stderr)
    else:
        spec = resolve(args)
        if spec["name"] != (args.name or plain_name(args)):
            print(f"search.py: {Path(spec['out_dir']).parent / plain_name(args)} holds an earlier sweep; this one is "
                  f"{spec['name']!r} -> {spec['out_dir']} (--name NAME picks the name)", file=sys.stderr)
    out_dir = Path(spec["out_dir"])
    if not args.resume and _STARTUP.holds_sweep(out_dir) and not args.overwrite:
        raise UserError(f"{out_dir} already holds a sweep named {spec['name']!r}; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --name")
    from tune.spec import unused_warning

    warning = unused_warning(spec)
    if args.dry_run:
        print(describe(spec, address=args.address, max_concurrent=spec["max_concurrent"]))
        if warning:
            print(f"search.py: {warning}", file=sys.stderr)
        return {"dry_run": True, "spec": spec}

    _STARTUP.check_writable(out_dir)
    import ray
    from ray import tune

    if spec["gpus_per_trial"] > 0 and not args.address and not ray.is_initialized():
        import torch

        have = torch.cuda.device_count()
        if have == 0:  # a local Ray would have no GPUs: fail before starting it
            raise UserError(f"--gpus-per-trial {spec['gpus_per_trial']:g} but this machine has no CUDA GPU; rerun with "
                            "--gpus-per-trial 0 to train on CPUs, or --address to join a cluster with GPUs")
        if spec["gpus_per_trial"] > have:  # no trial would ever be scheduled
            raise UserError(f"--gpus-per-trial {spec['gpus_per_trial']:g} but this machine has only {have} CUDA GPU(s); "
                            f"rerun with --gpus-per-trial {have} or less, or --address to join a cluster with more")
    _STARTUP.claim(out_dir, spec["name"], resume=args.resume, overwrite=args.overwrite, debug=args.debug)
    _set_tune_env()
    started_ray = connect(args.address)
    t0 = time.time()
    try:
        nodes = alive_node_resources()
        problem = check_resources(nodes, cpus=spec["cpus_per_trial"], gpus=spec["gpus_per_trial"])
        if problem:
            raise UserError(problem)
        hosts = {n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")}
        if len(hosts) > 1 and "://" not in spec["storage"]:
            print(f"search.py: warning: {len(hosts)} machines share this sweep but checkpoints go to the local path "
                  f"{spec['storage']}; unless it is shared (NFS), pass --storage s3://BUCKET/PREFIX", file=sys.stderr)
        max_concurrent = spec["max_concurrent"] or min(
            spec["num_samples"], cluster_slots(nodes, cpus=spec["cpus_per_trial"], gpus=spec["gpus_per_trial"]))
        if args.resume:
            if not tune.Tuner.can_restore(experiment_path(spec)):
                raise UserError(f"--resume: no Tune experiment state at {experiment_path(spec)}; start the sweep again "
                                "with --overwrite")
            tuner = tune.Tuner.restore(experiment_path(spec), trainable=make_trainable(spec), resume_errored=True)
        else:
            _STARTUP.clear(out_dir)  # --overwrite: the old sweep goes now that every check passed (dir and lock stay)
            write_json(out_dir / SWEEP_FILE, {**spec, "ray": ray.__version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
            tuner = make_tuner(spec, max_concurrent)
        _STARTUP.started()
        print(describe(spec, address=args.address, max_concurrent=max_concurrent), file=sys.stderr)
        if warning:
            print(f"search.py: {warning}", file=sys.stderr)
        interrupted = False
        try:
            tuner.fit()
        except KeyboardInterrupt:  # the experiment state is saved after every result: --resume continues
            interrupted = True
    finally:
        if started_ray:
            ray.shutdown()
    summary = finish(spec, wall_s=time.time() - t0, running=interrupted)
    summary["interrupted"] = interrupted or summary["unfinished"]  # Tune stops gracefully on the first Ctrl-C
    return summary


def finish(spec: SweepSpec, *, wall_s: float, running: bool = False) -> Dict[str, Any]:
    """Write the report files and print where they are (``running``: trials may still resume)."""
    from tune import space as S
    from tune.recorder import load_records
    from tune.report import write_report
    from tune.searcher import STUDY_FILE, close_orphans, study_url

    records = load_records(spec["out_dir"])
    unfinished = len(records) < spec["num_samples"] or any(r["status"] in ("PENDING", "RUNNING", "RETRYING") for r in records)
    has_study = (Path(spec["out_dir"]) / STUDY_FILE).is_file()
    if has_study and not (running or unfinished):
        close_orphans(study_url(spec["out_dir"]), spec["name"])
    names = S.parse_space(spec["space"]).names
    summary = write_report(spec["out_dir"], records, name=spec["name"], params=names, objectives=spec["objectives"],
                           space=spec["space"], study=(study_url(spec["out_dir"]), spec["name"]) if has_study else None)
    best = summary["best"]
    statuses: Dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print(f"\nsweep {spec['name']!r}: {len(records)}/{spec['num_samples']} trials started, "
          f"{summary['complete']} finished every task ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}); "
          f"wall time {wall_s:.0f} s")
    if best is not None:
        last = best["history"][-1]
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"best trial {best['trial_id']}: avg_acc {fmt(last.get(M.AVG_ACC))}, bwt {fmt(last.get(M.BWT))}, "
              f"worst_avg_acc {fmt(last.get(M.WORST_AVG_ACC))}; " + ", ".join(f"{k}={v}" for k, v in best["params"].items()))
        preset = next((r for r in records if r.get("is_preset") and r["history"]), None)
        if preset is not None:
            print(f"preset trial {preset['trial_id']}: avg_acc {fmt(preset['history'][-1].get(M.AVG_ACC))} "
                  f"({preset['status']}, {preset['tasks_done']}/{preset['num_tasks']} tasks)")
    for r in records:
        if r["status"] in ("ERROR", "DIVERGED"):
            print(f"trial {r['trial_id']} {r['status'].lower()} after {r['tasks_done']} task(s): {r.get('error')}")
    if unfinished:
        print(f"not all trials finished; continue with: python tune/search.py --name {spec['name']} --resume"
              + (f" --results-dir {Path(spec['out_dir']).parent}" if Path(spec["out_dir"]).parent != Path("results").resolve() else ""))
    out = spec["out_dir"]
    print(f"results: {out}/  (leaderboard.md, trials.csv{', best_config.yaml' if best else ''}, plots/)")
    if spec["tensorboard"]:
        print(f"compare trials: tensorboard --logdir {out}/tensorboard   (HParams tab: one row per trial)")
    if has_study:
        print(f"optuna study:   optuna-dashboard {study_url(out)}")
    if best is not None:
        print(f"train the best config: hinterval train --config {out}/best_config.yaml")
    summary.pop("frame", None)
    return {**summary, "spec": spec, "records": records, "wall_s": wall_s, "unfinished": unfinished}


def run_sweep(args: argparse.Namespace) -> Dict[str, Any]:
    """:func:`_run_sweep`, then release the sweep directory (cleaned up if no trial started)."""
    try:
        summary = _run_sweep(args)
    except BaseException:
        _STARTUP.end(failed=True)
        raise
    _STARTUP.end(failed=False)
    return summary


# --- before the first trial: one driver per sweep directory, quiet Ray start-up ---------------------
class _SweepStartup:
    """What a sweep driver sets up before its first trial, and undoes if it fails there.

    Why: two drivers with one ``--name`` would mix their trials, search spaces and ``sweep.json``;
    a sweep that fails while Ray starts must not leave a ``sweep.json``/``_ray`` that later blocks
    the same command; and an error found before any trial should be one line, not Ray's start-up
    warnings plus the line. So: :meth:`claim` creates and exclusively locks the sweep directory and
    checks it holds no other sweep in one step (a second driver is refused with one line, exit 2),
    and holds back stderr until :meth:`started`; :meth:`end` releases the lock and, if the sweep
    failed before any trial started (and was not a resume), removes what this driver created.
    """

    #: whether trials may have run in this process (what an interruption message can promise)
    trials_began = False

    def __init__(self) -> None:
        self.lock: Any = None
        self.out_dir: Optional[Path] = None
        self.created: List[Path] = []
        self.resume = self.dirty = self.ray_was_up = False
        self._saved_fd: Optional[int] = None
        self._buf: Any = None

    @staticmethod
    def holds_sweep(out_dir: Path) -> bool:
        """Whether ``out_dir`` holds anything besides a lock file."""
        from hinterval.checkpoint import LOCK_NAME

        return out_dir.is_dir() and any(p.name != LOCK_NAME for p in out_dir.iterdir())

    @staticmethod
    def check_writable(out_dir: Path) -> None:
        from hinterval.checkpoint import check_writable_dir

        check_writable_dir(out_dir, "--results-dir")  # a file or a read-only place: exit 2 before Ray starts

    def claim(self, out_dir: Path, name: str, *, resume: bool, overwrite: bool, debug: bool) -> None:
        from hinterval.checkpoint import DirectoryLock

        created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # made here: removed again on a failure
        try:
            out_dir.mkdir(parents=True)
        except FileExistsError:
            created = []
        lock = DirectoryLock(out_dir, f"sweep {name!r} in").acquire()
        if not resume and not overwrite and self.holds_sweep(out_dir):  # checked again, now under the lock
            lock.release()
            raise UserError(f"{out_dir} already holds a sweep named {name!r}; pass --resume to continue it, "
                            "--overwrite to replace it, or choose another --name")
        self.lock, self.out_dir, self.created, self.resume = lock, out_dir, created, resume
        import ray

        self.ray_was_up = ray.is_initialized()
        if not debug:
            sys.stderr.flush()
            import tempfile

            self._buf = tempfile.TemporaryFile()
            self._saved_fd = os.dup(2)
            os.dup2(self._buf.fileno(), 2)

    def clear(self, out_dir: Path) -> None:
        """Before the first write of a new sweep: remove an old sweep's files (``--overwrite``), keeping the
        directory and its lock. From here on the directory holds only what this driver writes."""
        from hinterval.checkpoint import LOCK_NAME

        self.dirty = True
        for p in out_dir.iterdir():
            if p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def started(self) -> None:
        """Ray is up and every check passed: show what it printed meanwhile."""
        self._stderr_back(replay=True)
        _SweepStartup.trials_began = True

    def _stderr_back(self, *, replay: bool) -> None:
        if self._saved_fd is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None
        self._buf.seek(0)
        text = self._buf.read().decode(errors="replace")
        self._buf.close()
        if replay and text:
            sys.stderr.write(text)
            sys.stderr.flush()

    def end(self, *, failed: bool) -> None:
        self._stderr_back(replay=not failed)
        lock, out_dir, created, dirty = self.lock, self.out_dir, self.created, self.dirty
        if failed and lock is not None and not self.ray_was_up:  # e.g. Ctrl-C inside ray.init: end what it started
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
        self.__init__()  # type: ignore[misc]
        if lock is None or out_dir is None:
            return
        from hinterval.checkpoint import LOCK_NAME

        undo = failed and dirty and not any((out_dir / "trials").glob("*.json"))  # wrote, but no trial ever started
        if undo:
            for p in out_dir.iterdir():
                if p.name != LOCK_NAME:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        lock.release()
        for d in created if failed else []:  # removed only if empty: directories this driver made and never used
            with contextlib.suppress(OSError):
                d.rmdir()


_STARTUP = _SweepStartup()


def main(argv: Optional[List[str]] = None) -> int:
    """Run the sweep command line; every failure becomes one line on stderr and a documented exit code.

    Exit codes: 0 done, 1 failed (Ray or filesystem error, internal error), 2 bad input or refused
    (incl. a sweep directory in use), 130 interrupted (the report covers the trials so far).
    """
    import signal

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on Ctrl-C is handled below
    except ValueError:  # not the main thread
        pass
    args = None
    _SweepStartup.trials_began = False
    try:
        args = parse_args(argv)
        summary = run_sweep(args)
        if summary.get("interrupted"):
            print("search.py: interrupted; the report covers the trials so far, continue with --resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        return 0
    except UserError as exc:
        if args is not None and args.debug:
            raise
        print(f"search.py: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        if args is not None and args.debug:
            raise
        print("search.py: interrupted; continue with --resume" if _SweepStartup.trials_began
              else "search.py: interrupted before any trial started; nothing was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - Ray, filesystem and anything else: one line, exit 1
        if args is not None and args.debug:
            raise
        kind = "" if isinstance(exc, OSError) else f"{type(exc).__name__}: "
        print(f"search.py: error: {kind}{one_line(exc)} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    # Run as `tune.search`, not `__main__`, so pickled objects (searcher, callbacks) name an
    # importable module when the sweep is resumed from another process.
    from tune.search import main as _main

    sys.exit(_main())
