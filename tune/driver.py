"""Running a sweep: the searcher, scheduler and Tuner built from a :class:`~tune.spec.SweepSpec`, and
the run itself from the checks before Ray starts to the report after the last trial."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from hinterval import metrics as M
from hinterval.config import make_config
from hinterval.errors import UserError
from hinterval.files import resolve_path, write_json

from tune import cluster
from tune import space as S
from tune import node_data
from tune.prepare import (SWEEP_FILE, check_flags, check_local_data, check_sweep_dir, describe, load_saved_spec,
                          plain_name, resolve)
from tune.spec import SweepSpec, experiment_name, new_experiment
from tune.trial_kinds import unused_warning
from tune.signals import StopSignals
from tune.startup import STARTUP
from tune.trust import StateSigner, load_key, put_back, signed_state
from tune.summary import finish


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

    modes = {make_config(spec["base"]).embedding_mode}
    searched = spec["space"].get("embedding_mode")
    if isinstance(searched, dict):  # swept: {type: choice, values: [...]}
        modes |= set(searched.get("values", ()))
    return [m for m in SUMMARY_METRICS if m != M.DIL_AVG_ACC or "nested" in modes]


def make_trainable(spec: SweepSpec):
    from ray import tune

    from tune.trainable import run_trial

    setup = {"base": spec["base"], "objectives": spec["objectives"], "state_root": experiment_path(spec) + "/trial_states",
             "download": spec["download"]}
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


def make_tuner(spec: SweepSpec, max_concurrent: int, callbacks: Sequence[Any] = ()):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from tune.recorder import SweepRecorder

    scheduler = make_scheduler(spec)
    space = S.parse_space(spec["space"])
    names = space.names
    # sort_by_metric=False: Ray's sort crashes the driver on a trial whose avg_acc is None (diverged in task 1)
    reporter = tune.CLIReporter(
        metric_columns={M.TASKS_DONE: "tasks", M.AVG_ACC: "avg_acc", M.BWT: "bwt", M.WORST_AVG_ACC: "worst_acc"},
        parameter_columns=names, max_report_frequency=30, metric=spec["objectives"][0], mode="max", sort_by_metric=False)
    recorder = SweepRecorder(spec["out_dir"], base=spec["base"], preset=spec["preset_point"], tensorboard=spec["tensorboard"],
                             hparams=S.tensorboard_hparams(space), metrics=summary_metrics(spec))
    run_config = tune.RunConfig(
        name=experiment_name(spec), storage_path=spec["storage"], failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[recorder, CSVLoggerCallback(), JsonLoggerCallback(), *callbacks], progress_reporter=reporter, verbose=1)
    tune_config = tune.TuneConfig(search_alg=make_searcher(spec, max_concurrent), scheduler=scheduler,
                                  num_samples=spec["num_samples"], reuse_actors=True)  # no process start per trial
    return tune.Tuner(make_trainable(spec), tune_config=tune_config, run_config=run_config)


def experiment_path(spec: SweepSpec) -> str:
    return spec["storage"].rstrip("/") + "/" + experiment_name(spec)


def set_tune_env() -> None:
    # CLIReporter's table instead of the new console output; our own TensorBoard runs instead of
    # Tune's TBX logger (it would add `ray/tune/*` runs under results/<name>); save the experiment
    # state every 2 s (trials also keep their own latest state, see tune.trainable.TrialState).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")


def _run_sweep(args: argparse.Namespace, callbacks: Sequence[Any] = ()) -> Dict[str, Any]:
    """Run (or resume) a sweep as the command line describes; returns the report summary.

    Raises:
        UserError: bad input, an existing sweep without --resume/--overwrite, or resources the
            cluster cannot provide. Nothing on disk is changed before these checks pass.
    """
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    for flag, value in (("--name", args.name), ("--results-dir", args.results_dir)):
        if value is not None and not value.strip():  # "" would silently mean the default
            raise UserError(f"{flag} is empty; leave it out for the default, or give one")
    if args.resume:
        name = args.name or plain_name(args)
        out_dir = resolve_path(args.results_dir, "--results-dir") / name
        check_flags(args, name)  # bad values are refused on --resume too, though the saved settings are used
        spec = load_saved_spec(out_dir)
        signed_state(out_dir, experiment_name(spec))  # a stranger's Tune state is refused before anything starts
        print(f"search.py: resuming sweep {name!r} with its saved settings ({out_dir / SWEEP_FILE}); "
              "search, confirmation and resource flags given now are ignored", file=sys.stderr)
    else:
        spec = resolve(args)
        if spec["name"] != (args.name or plain_name(args)):
            print(f"search.py: {Path(spec['out_dir']).parent / plain_name(args)} holds an earlier sweep; this one is "
                  f"{spec['name']!r} -> {spec['out_dir']} (--name NAME picks the name)", file=sys.stderr)
    out_dir = Path(spec["out_dir"])
    check_sweep_dir(out_dir, spec["name"], resume=args.resume, overwrite=args.overwrite)
    warning = unused_warning(spec)  # settings no trial reads: said with the sweep's description
    if args.dry_run:
        print(describe(spec, address=args.address, max_concurrent=spec["max_concurrent"]))
        if warning:
            print(f"search.py: {warning}", file=sys.stderr)
        return {"dry_run": True, "spec": spec}

    STARTUP.check_writable(out_dir)
    if spec["download"] and not args.address:  # a local sweep: fetched here once, progress shown, before Ray starts
        check_local_data(spec, fetch=True)
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
    load_key(create=True)  # the key that signs Tune's state (tune/trust.py): a key others can read is refused now
    STARTUP.claim(out_dir, spec["name"], resume=args.resume, overwrite=args.overwrite, debug=args.debug)
    if args.resume:  # Tune's state is unpickled: only the copy this user's driver signed goes back (tune/trust.py)
        put_back(experiment_path(spec), signed_state(out_dir, experiment_name(spec)))  # checked again, under the lock
    set_tune_env()
    started_ray = cluster.connect(args.address)
    StopSignals.take()  # ray.init replaced SIGTERM's handler with one that aborts mid-fit
    t0 = time.time()
    try:
        nodes = cluster.alive_node_resources()
        problem = cluster.check_resources(nodes, cpus=spec["cpus_per_trial"], gpus=spec["gpus_per_trial"])
        if problem:
            raise UserError(problem)
        if args.address:  # trials read their data on their own nodes: checked there before the first one
            node_data.check_before_trials(spec)
        hosts = {n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")}
        if len(hosts) > 1 and "://" not in spec["storage"]:
            print(f"search.py: warning: {len(hosts)} machines share this sweep but checkpoints go to the local path "
                  f"{spec['storage']}; unless it is shared (NFS), pass --storage s3://BUCKET/PREFIX", file=sys.stderr)
        max_concurrent = spec["max_concurrent"] or min(
            spec["num_samples"], cluster.cluster_slots(nodes, cpus=spec["cpus_per_trial"], gpus=spec["gpus_per_trial"]))
        if args.resume:
            if not tune.Tuner.can_restore(experiment_path(spec)):
                raise UserError(f"--resume: no Tune experiment state at {experiment_path(spec)}; start the sweep again "
                                "with --overwrite")
            tuner = tune.Tuner.restore(experiment_path(spec), trainable=make_trainable(spec), resume_errored=True)
        else:
            STARTUP.clear(out_dir)  # --overwrite: the old sweep goes now that every check passed (dir and lock stay)
            spec = new_experiment(spec)
            write_json(out_dir / SWEEP_FILE, {**spec, "ray": ray.__version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
            tuner = make_tuner(spec, max_concurrent, callbacks)
        STARTUP.started()
        print(describe(spec, address=args.address, max_concurrent=max_concurrent), file=sys.stderr)
        if warning:
            print(f"search.py: {warning}", file=sys.stderr)
        interrupted = False
        signer = StateSigner(experiment_path(spec), out_dir, experiment_name(spec))
        signer.start()
        try:
            tuner.fit()
        except KeyboardInterrupt:  # the experiment state is saved after every result: --resume continues
            interrupted = True
        finally:
            unsigned = signer.stop()
            if unsigned is not None:
                print(f"search.py: warning: could not keep the signed copy of Tune's state for --resume "
                      f"({type(unsigned).__name__}: {unsigned})", file=sys.stderr)
        interrupted = interrupted or StopSignals.received is not None  # Tune stopped gracefully on SIGTERM/SIGHUP
        if not interrupted:  # the top trials again with more training seeds (tune/confirm.py)
            from tune.confirm import confirm_winners

            interrupted = confirm_winners(spec, make_trainable(spec), summary_metrics(spec), max_concurrent)
    finally:
        if started_ray:
            ray.shutdown()
    summary = finish(spec, wall_s=time.time() - t0, running=interrupted)
    summary["interrupted"] = interrupted or summary["unfinished"]  # Tune stops gracefully on the first Ctrl-C
    return summary


def run_sweep(args: argparse.Namespace, callbacks: Sequence[Any] = ()) -> Dict[str, Any]:
    """:func:`_run_sweep`, then release the sweep directory (cleaned up if no trial started)."""
    try:
        summary = _run_sweep(args, callbacks)
    except BaseException:
        STARTUP.end(failed=True)
        raise
    STARTUP.end(failed=False)
    return summary
