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
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __name__ == "__main__":  # Ctrl-C while the imports load: one line, no traceback (main() takes over)
    import signal

    signal.signal(signal.SIGINT, lambda *_: (print("search.py: interrupted before the sweep started; nothing was written",
                                                   file=sys.stderr), os._exit(130)))
if __name__ == "__main__" and not __package__:
    # `python tune/search.py`: make the `tune` package importable (it is not part of the install)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hinterval.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, DownloadError, UserError, one_line  # noqa: E402
from hinterval.runtime import ctrl_c_deferred  # noqa: E402

from tune.flags import SPACE_FLAGS  # noqa: E402
from tune.spec import OBJECTIVES  # noqa: E402
from tune.signals import StopSignals  # noqa: E402
from tune.startup import SweepStartup  # noqa: E402

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
    g.add_argument("--data-dir", help="benchmark data directory (made absolute here; trials run in other dirs); default: "
                   "$HINTERVAL_DATA_DIR of each node")
    g.add_argument("--download", action="store_true",
                   help="fetch the benchmark's data where it is missing: here before a local sweep, by the first trial on "
                   "each node of a cluster (once per node; see `hinterval data`)")
    g.add_argument("--objective", default=None,
                   help=f"metric(s) to maximise, comma-separated for multi-objective (Pareto front), "
                   f"e.g. avg_acc,bwt; from {', '.join(OBJECTIVES)}; default worst_avg_acc (certified accuracy) "
                   "where every trial certifies its boxes, else avg_acc")
    g.add_argument("--scheduler", choices=("none", "asha"), default="none",
                   help="asha: stop weak trials early at task boundaries (they are never ranked); default none")
    g.add_argument("--num-samples", type=int, default=8, help="number of trials (the preset counts as one); default 8")
    g.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (training seed: --set seed=N); default 0")
    g.add_argument("--confirm-seeds", type=int, default=None, metavar="N",
                   help="after the search, train the top trials again with N more training seeds (mean ± std in the "
                   "leaderboard; 0 = no confirmation); default 2 (1 with --smoke-test)")
    g.add_argument("--confirm-top", type=int, default=None, metavar="K",
                   help="how many of the best trials to confirm; default 1, the winner (2 adds the runner-up)")

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


def every_trial_failed(summary: Dict[str, Any]) -> Optional[str]:
    """Why a finished sweep failed as a whole (``None`` if some trial finished every task): each trial
    errored or diverged, so there is no result to rank (a dry run has no trials)."""
    records = summary.get("records") or []
    if not records or summary.get("complete"):
        return None
    counts: Dict[str, int] = {}
    for r in records:
        counts[r["status"].lower()] = counts.get(r["status"].lower(), 0) + 1
    return (f"every trial failed ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), none finished its tasks; "
            "the report above names each trial's error")


def main(argv: Optional[List[str]] = None, callbacks: Sequence[Any] = ()) -> int:
    """Run the sweep command line; every failure becomes one line on stderr and a documented exit code.

    Exit codes: 0 done, 1 failed (Ray or filesystem error, internal error, every trial failed), 2 bad
    input or refused (incl. a sweep directory in use, an --address where no Ray cluster answers), 130
    interrupted, 143 SIGTERM, 129 SIGHUP (the report covers the trials so far; --resume continues).
    ``callbacks``: extra Ray Tune callbacks (``ray.tune.Callback``) for a new sweep, e.g. to be told of
    every result or to stop trials from Python (a resumed sweep keeps the callbacks it was started with).
    """
    import signal

    args = None
    SweepStartup.trials_began = False
    StopSignals.reset()
    previous_handlers: Dict[int, Any] = {}
    try:
        with contextlib.suppress(ValueError):  # ValueError: not the main thread
            signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on Ctrl-C is handled below
        previous_handlers = StopSignals.take()  # SIGTERM and SIGHUP too, as Ctrl-C (tune/signals.py)
        args = parse_args(argv)
        if args.address is not None:  # first, before seconds of imports: a wrong address is answered at once
            from tune.cluster import check_reachable, parse_address

            parse_address(args.address)
            if not args.dry_run:
                check_reachable(args.address)
        with ctrl_c_deferred():  # importing torch can lose a Ctrl-C (hinterval/runtime.py): taken right after it
            from tune.driver import run_sweep  # Ray, torch and pandas load only for a sweep, not for --help

        summary = run_sweep(args, callbacks)
        if summary.get("interrupted"):
            from tune.summary import resume_command

            code, how = StopSignals.outcome()
            print(f"search.py: {how}; the report covers the trials so far, continue with: {resume_command(summary['spec'])}",
                  file=sys.stderr)
            return code
        failed = every_trial_failed(summary)
        if failed:
            print(f"search.py: error: {failed}", file=sys.stderr)
            return EXIT_FAILED
        return 0
    except UserError as exc:
        if args is not None and args.debug:
            raise
        print(f"search.py: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except DownloadError as exc:  # an OSError whose message says in full what to do
        if args is not None and args.debug:
            raise
        print(f"search.py: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if args is not None and args.debug:
            raise
        code, how = StopSignals.outcome()
        print(f"search.py: {how}; continue with --resume" if SweepStartup.trials_began
              else f"search.py: {how} before any trial started; nothing was kept", file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - Ray, filesystem and anything else: one line, exit 1
        if args is not None and args.debug:
            raise
        kind = "" if isinstance(exc, OSError) else f"{type(exc).__name__}: "
        print(f"search.py: error: {kind}{one_line(exc)} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        StopSignals.give_back(previous_handlers)


if __name__ == "__main__":
    # Run as `tune.search`, not `__main__`, so pickled objects (searcher, callbacks) name an
    # importable module when the sweep is resumed from another process.
    from tune.cluster import keep_local_ray_on_loopback
    from tune.release import end_process
    from tune.search import main as _main

    if not any(a.startswith("--ad") for a in sys.argv[1:]):  # no --address (or an abbreviation of it): Ray starts here
        keep_local_ray_on_loopback()  # before Ray is imported: it listens on 127.0.0.1 only (docs/reliability.md)

    try:
        code = _main()
    except KeyboardInterrupt:  # at main's first instruction, or while it printed another error: still one line
        print("search.py: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    end_process(code, prog="search.py")  # lets go of Ray and the study; exits within a time limit, whatever still runs
