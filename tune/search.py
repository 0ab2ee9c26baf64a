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
import math
import os
import re
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

TUNE_DIR = Path(__file__).resolve().parent
SWEEP_FILE = "sweep.json"
OBJECTIVES = (M.AVG_ACC, M.BWT, M.WORST_AVG_ACC, M.WORST_BWT, "dil_avg_acc", "cil_avg_acc")
#: default iterations per task for sweeps: 0 = the preset's budget, so trials are tuned at the budget the
#: preset row was measured at (session 1 used 200 to fit 2 busy cores; at 200 the preset's gamma 1
#: left split-digits tasks at chance). Measured: 8 split-digits trials at 500 it/task, 2 at a time on
#: the quiet 2-core CPU: 79 s, best avg acc 1.0000, preset trial 0.9978.
SWEEP_ITERS_PER_TASK = 0
SMOKE = dict(num_samples=2, num_tasks=2, iters_per_task=20, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0)
STORAGE_ENV = "HINTERVAL_SWEEP_STORAGE"
# flag -> config key searched or fixed by it
SPACE_FLAGS = (("--gamma", "gamma", "perturbation epsilon: LOW:HIGH (log scale) or a fixed value"),
               ("--beta", "beta", "regulariser strength: LOW:HIGH (log scale) or a fixed value"),
               ("--lr", "lr", "learning rate: LOW:HIGH (log scale) or a fixed value"),
               ("--embedding-dim", "embedding_dim", "embedding sizes to try, e.g. 16,24,48 (one value fixes it)"),
               ("--hnet-hidden", "hnet_hidden", "hypernetwork widths to try, ';'-separated, e.g. '50,50;100,100'"),
               ("--method", "method", "methods to try, e.g. hyperinterval,hnet"),
               ("--embedding-mode", "embedding_mode", "embedding modes to try: nested,non-forced"))


# --- command line ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    r.add_argument("--name", help="sweep name (default: the benchmark, '-smoke' appended for --smoke-test)")
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
def _parse_fixed(items: List[str]) -> Dict[str, Any]:
    import yaml

    from hinterval.config import FIELDS

    out: Dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in FIELDS:
            raise UserError(f"--set: unknown config key {key!r}; valid keys: {', '.join(sorted(FIELDS))}")
        if key in ("device", "num_threads", "benchmark"):
            raise UserError(f"--set {key}: chosen per trial from --gpus-per-trial/--cpus-per-trial (--benchmark for the benchmark)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--set {key}: {value[:60]!r} is not a valid value") from None
        if parsed is None:  # `--set lr=` would otherwise be silently ignored
            raise UserError(f"--set {key}= needs a value, e.g. --set {key}=VALUE")
        out[key] = parsed
    return out


def resolve(args: argparse.Namespace) -> Dict[str, Any]:
    """Validate the command line and return the sweep spec (what ``sweep.json`` stores). No Ray."""
    from hinterval.config import load_config_file, make_config
    from hinterval.data.registry import BENCHMARK_NAMES
    from tune import space as S

    if args.benchmark not in BENCHMARK_NAMES:
        raise UserError(f"unknown benchmark {args.benchmark!r}; choose one of: {', '.join(BENCHMARK_NAMES)}")
    if args.smoke_test:
        for k, v in SMOKE.items():
            if k in ("num_tasks", "iters_per_task") and getattr(args, k) not in (None, v):
                continue  # explicit flags win for the run length
            setattr(args, k, v)
    objectives = [o.strip() for o in args.objective.split(",") if o.strip()]
    bad = [o for o in objectives if o not in OBJECTIVES] or ([] if objectives else ["(empty)"])
    if bad or len(set(objectives)) != len(objectives):
        raise UserError(f"--objective: {', '.join(bad) or 'repeated metric'} is not allowed; use metrics from {', '.join(OBJECTIVES)}")
    for flag, val, lo in (("--num-samples", args.num_samples, 1), ("--max-concurrent", args.max_concurrent, 0)):
        if val < lo:
            raise UserError(f"{flag} must be >= {lo}, got {val}")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UserError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {args.cpus_per_trial:g}, {args.gpus_per_trial:g}")
    for flag, val in (("--cpus-per-trial", args.cpus_per_trial), ("--gpus-per-trial", args.gpus_per_trial)):
        if not (math.isfinite(val) and val <= 100_000 and (val == int(val) or (val < 1 and abs(val * 1e4 - round(val * 1e4)) < 1e-6))):
            raise UserError(f"{flag} {val:g}: Ray takes whole numbers, or fractions below 1 in steps of 0.0001")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be between 0 and 2^32 - 1 (the TPE sampler's seed), got {args.seed}")
    if args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial):
        raise UserError(f"--gpus-per-trial above 1 must be a whole number, got {args.gpus_per_trial:g}")
    if args.iters_per_task is not None and args.iters_per_task < 0:
        raise UserError(f"--iters-per-task must be >= 1 (or 0 for the preset's value), got {args.iters_per_task}")
    name = args.name or (args.benchmark + ("-smoke" if args.smoke_test else ""))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")

    base: Dict[str, Any] = {"benchmark": args.benchmark}
    if args.num_tasks is not None:
        base["num_tasks"] = args.num_tasks
    iters = SWEEP_ITERS_PER_TASK if args.iters_per_task is None else args.iters_per_task
    if iters:
        base["iters_per_task"] = iters
    if args.data_dir:
        base["data_dir"] = str(Path(args.data_dir).expanduser().resolve())
    base.update(_parse_fixed(args.fixed))
    if base.get("data_dir"):
        base["data_dir"] = str(Path(str(base["data_dir"])).expanduser().resolve())
    preset_cfg = make_config(base)  # defaults < preset < fixed keys: the trial everyone compares against

    space = S.parse_space(load_config_file(args.space)) if args.space else S.default_space(preset_cfg)
    flag_params, flag_fixed = [], {}
    for _, key, _ in SPACE_FLAGS:
        text = getattr(args, f"space_{key}")
        if text is not None:
            param, value = S.parse_flag(key, text)
            if param is None:
                flag_fixed[key] = value
            else:
                flag_params.append(param)
    space = S.merge(space, flag_params, flag_fixed)
    base.update(dict(space.fixed))
    space = S.SearchSpace(space.params, ())
    S.validate_space(space, base)
    preset_cfg = make_config(base)
    point, outside = S.preset_point(space, preset_cfg)
    if not args.address:  # a local sweep: check the data here, once, instead of failing every trial
        from hinterval.data.registry import check_data

        check_data(preset_cfg.benchmark, num_tasks=preset_cfg.num_tasks, data_dir=preset_cfg.data_dir)

    results_dir = Path(args.results_dir).expanduser().resolve()
    out_dir = results_dir / name
    storage = args.storage or str(out_dir / "_ray")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return {
        "name": name, "benchmark": args.benchmark, "out_dir": str(out_dir), "storage": storage,
        "base": base, "space": space.to_dict(), "param_order": space.names, "preset_point": point, "preset_outside": outside,
        "objectives": objectives, "scheduler": args.scheduler, "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent, "seed": args.seed, "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": 0.0 if args.smoke_test else args.gpus_per_trial, "tensorboard": not args.no_tensorboard,
        "smoke_test": bool(args.smoke_test),
    }


def load_saved_spec(out_dir: Path) -> Dict[str, Any]:
    import json

    path = out_dir / SWEEP_FILE
    if not path.is_file():
        raise UserError(f"--resume: no sweep to resume in {str(out_dir)!r} (missing {SWEEP_FILE}); start it without --resume")
    try:
        spec = json.loads(path.read_text())
        order = spec.get("param_order") or list(spec["space"])  # the JSON file has sorted keys
        spec["space"] = {k: spec["space"][k] for k in order}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise UserError(f"--resume: {path} is corrupted ({type(exc).__name__}: {first}); "
                        "restore it or start the sweep again with --overwrite") from None
    return spec


def describe(spec: Dict[str, Any], *, address: Optional[str], max_concurrent: Any) -> str:
    from tune import space as S

    sp = S.parse_space(spec["space"])
    lines = [f"sweep {spec['name']!r} on {spec['benchmark']}: {spec['num_samples']} trials, objective "
             f"{', '.join(spec['objectives'])} (maximised), scheduler {spec['scheduler']}, TPE seed {spec['seed']}",
             "search space:"]
    lines += [f"  {p.name:16s} {p.describe()}" for p in sp.params]
    lines.append("fixed for every trial (on top of the benchmark preset): "
                 + ", ".join(f"{k}={v}" for k, v in spec["base"].items()))
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


def make_searcher(spec: Dict[str, Any], max_concurrent: int):
    from tune.searcher import make_searcher as _make

    return _make(space=spec["space"], objectives=spec["objectives"], seed=spec["seed"],
                 preset_point=spec["preset_point"], max_concurrent=max_concurrent)


def make_trainable(spec: Dict[str, Any]):
    from ray import tune

    from tune.trainable import run_trial

    setup = {"base": spec["base"], "objectives": spec["objectives"], "state_root": experiment_path(spec) + "/trial_states"}
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                               {"cpu": spec["cpus_per_trial"], "gpu": spec["gpus_per_trial"]})


def make_tuner(spec: Dict[str, Any], max_concurrent: int):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler

    from tune import space as S
    from tune.recorder import SweepRecorder

    scheduler = None
    if spec["scheduler"] == "asha":
        # one rung per finished task; max_t only caps rungs, trials end after their last task anyway
        scheduler = ASHAScheduler(time_attr=M.TASKS_DONE, metric=M.AVG_ACC, mode="max", max_t=1000, grace_period=1,
                                  reduction_factor=2)
    names = S.parse_space(spec["space"]).names
    # sort_by_metric=False: Ray's sort crashes the driver on a trial whose avg_acc is None (diverged in task 1)
    reporter = tune.CLIReporter(
        metric_columns={M.TASKS_DONE: "tasks", M.AVG_ACC: "avg_acc", M.BWT: "bwt", M.WORST_AVG_ACC: "worst_acc"},
        parameter_columns=names, max_report_frequency=30, metric=M.AVG_ACC, mode="max", sort_by_metric=False)
    recorder = SweepRecorder(spec["out_dir"], base=spec["base"], preset=spec["preset_point"], tensorboard=spec["tensorboard"])
    run_config = tune.RunConfig(
        name=spec["name"], storage_path=spec["storage"], failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[recorder, CSVLoggerCallback(), JsonLoggerCallback()], progress_reporter=reporter, verbose=1)
    tune_config = tune.TuneConfig(search_alg=make_searcher(spec, max_concurrent), scheduler=scheduler,
                                  num_samples=spec["num_samples"])
    return tune.Tuner(make_trainable(spec), tune_config=tune_config, run_config=run_config)


def experiment_path(spec: Dict[str, Any]) -> str:
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
    if args.resume:
        name = args.name or (args.benchmark + ("-smoke" if args.smoke_test else ""))
        out_dir = Path(args.results_dir).expanduser().resolve() / name
        spec = load_saved_spec(out_dir)
        print(f"resuming sweep {name!r} with its saved settings ({out_dir / SWEEP_FILE}); "
              "search/resource flags given now are ignored", file=sys.stderr)
    else:
        spec = resolve(args)
    out_dir = Path(spec["out_dir"])
    if not args.resume and _STARTUP.holds_sweep(out_dir) and not args.overwrite:
        raise UserError(f"{out_dir} already holds a sweep named {spec['name']!r}; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --name")
    if args.dry_run:
        print(describe(spec, address=args.address, max_concurrent=spec["max_concurrent"]))
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
        interrupted = False
        try:
            tuner.fit()
        except KeyboardInterrupt:  # the experiment state is saved after every result: --resume continues
            interrupted = True
    finally:
        if started_ray:
            ray.shutdown()
    summary = finish(spec, wall_s=time.time() - t0)
    summary["interrupted"] = interrupted or summary["unfinished"]  # Tune stops gracefully on the first Ctrl-C
    return summary


def finish(spec: Dict[str, Any], *, wall_s: float) -> Dict[str, Any]:
    """Write the report files and print where they are."""
    from tune import space as S
    from tune.recorder import load_records
    from tune.report import write_report

    records = load_records(spec["out_dir"])
    names = S.parse_space(spec["space"]).names
    summary = write_report(spec["out_dir"], records, name=spec["name"], params=names, objectives=spec["objectives"])
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
    unfinished = len(records) < spec["num_samples"] or any(r["status"] in ("PENDING", "RUNNING", "RETRYING") for r in records)
    for r in records:
        if r["status"] in ("ERROR", "DIVERGED"):
            print(f"trial {r['trial_id']} {r['status'].lower()} after {r['tasks_done']} task(s): {r.get('error')}")
    if unfinished:
        print(f"not all trials finished; continue with: python tune/search.py --name {spec['name']} --resume"
              + (f" --results-dir {Path(spec['out_dir']).parent}" if Path(spec["out_dir"]).parent != Path("results").resolve() else ""))
    out = spec["out_dir"]
    print(f"results: {out}/  (leaderboard.md, trials.csv{', best_config.yaml' if best else ''}, plots/)")
    if spec["tensorboard"]:
        print(f"tensorboard: tensorboard --logdir {out}")
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
