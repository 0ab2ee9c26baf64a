"""``hinterval`` command line: train, resume, evaluate and list benchmarks.

Examples::

    hinterval train --benchmark split-digits
    hinterval train --benchmark permuted-digits --gamma 0.5 --beta 0.05 --out runs/pd
    hinterval train --out runs/pd --resume          # continue a killed run at its last task
    hinterval eval runs/pd                          # re-compute metrics from the saved model
    hinterval data download split-mnist --data-dir ~/data   # fetch a benchmark's data (checksums verified)
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import re
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional

from hinterval import metrics as M
from hinterval import run_dir
from hinterval.config import FIELD_SPECS, PRESET_KEYS, load_config_file, make_config
from hinterval.data.commands import add_data_parser, cmd_data
from hinterval.console import TaskPrinter, headline, shared_network_line, universal_line
from hinterval.errors import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, DownloadError, Stopped, TrainingDiverged, UserError,
                              one_line)
from hinterval.files import json_safe, open_regular
from hinterval.runtime import ProcessConfig, configure_process, ctrl_c_deferred
from hinterval.schema import add_flags, ascii_float, ascii_int, flagged
from hinterval.strict_load import load_json

#: a command-line word that is a negative number in any notation: -1, -.5, -1e-3, -inf, -nan, -1:1
_NEGATIVE_NUMBER = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)
#: how such a word travels through argparse, which takes a word starting with "-" for an option and
#: any other for a value; int() and float() ignore this leading whitespace (a vertical tab: no one types it)
_VALUE_MARK = "\v"


def _as_value(word: str) -> str:
    return _VALUE_MARK + word if _NEGATIVE_NUMBER.match(word) else word


def _as_typed(value: Any) -> Any:
    """A parsed value (or list of them) as the user typed it."""
    if isinstance(value, list):
        return [_as_typed(v) for v in value]
    if isinstance(value, str) and value.startswith(_VALUE_MARK) and _NEGATIVE_NUMBER.match(value[len(_VALUE_MARK):]):
        return value[len(_VALUE_MARK):]
    return value


class Parser(argparse.ArgumentParser):
    """``argparse`` that reads every negative number as a value: ``--gamma -inf``, ``--lr -1e-3``
    and ``--gamma -1:1`` (a sweep range) reach the value checks, which say what is wrong with them.

    Why: plain ``argparse`` takes only ``-1`` and ``-0.5`` as numbers and anything else starting
    with ``-`` as an option, so ``--lr -1e-3`` was refused with "expected one argument". No option of
    these programs starts with a digit, a dot, ``inf`` or ``nan``, so nothing is lost. Such words are
    marked as values before parsing and unmarked in the result and in error messages (public
    ``parse_known_args`` and ``error`` only: argparse has no setting for this).

    ``type=int`` and ``type=float`` read ASCII numbers only (:func:`~hinterval.schema.ascii_int`):
    Python's ``int`` also takes "١٢" and "1_000", which the config checks refuse.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", int, ascii_int)  # argparse looks `type=` up here; its message still says "int"
        self.register("type", float, ascii_float)

    def parse_known_args(self, args: Optional[List[str]] = None, namespace: Optional[argparse.Namespace] = None):
        words = sys.argv[1:] if args is None else list(args)
        namespace, extras = super().parse_known_args([_as_value(w) for w in words], namespace)
        for key, value in vars(namespace).items():
            setattr(namespace, key, _as_typed(value))
        return namespace, _as_typed(extras)

    def error(self, message: str) -> NoReturn:
        super().error(message.replace(repr(_VALUE_MARK)[1:-1] + "-", "-").replace(_VALUE_MARK + "-", "-"))


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="hinterval",
        description="HyperInterval continual learning: interval task embeddings, a hypernetwork mapping "
        "them to boxes of target-network weights, a worst-case loss and a no-forgetting regulariser.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    # --debug before or after the command: a sub-command's own default would reset the main one
    debug = dict(action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")

    t = sub.add_parser("train", help="train (or resume) a continual run and write DIR/result.json",
                       description="Train (or resume) a continual run. Every config key has a flag below; values are "
                       "checked like config-file values. Layers: defaults < the benchmark's preset < --config file < "
                       "flags. docs/config.md lists every key.")
    t.add_argument("--config", help="YAML/JSON file of config keys (flags override it); e.g. a sweep's best_config.yaml")
    t.add_argument("--out", help="run directory (default: runs/<benchmark>-<method>-<time>)")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out (a run directory only: a directory holding "
                   "other files is refused, never emptied)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished task")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard event files")
    t.add_argument("--download", action="store_true",
                   help="fetch the benchmark's data into --data-dir first if it is missing (see `hinterval data`)")
    t.add_argument("--debug", **debug)
    add_flags(t, FIELD_SPECS, PRESET_KEYS)

    e = sub.add_parser("eval", help="re-load a saved run and re-compute its final metrics")
    e.add_argument("run_dir", help="a run directory written by `hinterval train`")
    e.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's device setting)")
    e.add_argument("--data-dir", default=None, help="the benchmark's data directory, if it moved since the run "
                   "(default: the run's data_dir setting)")
    e.add_argument("--debug", **debug)

    sub.add_parser("benchmarks", help="list available benchmarks")
    add_data_parser(sub, debug)
    return p


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config keys given as flags (as strings: the config checks them like config-file values)."""
    return {f.name: getattr(args, f.name) for f in flagged(FIELD_SPECS) if getattr(args, f.name) is not None}


def _process_config(args: argparse.Namespace) -> ProcessConfig:
    """The device and thread count a ``train``/``eval`` command will run with, read before torch loads
    (flags, then ``--config``, then the run directory's ``config.json``) so that
    :func:`~hinterval.runtime.configure_process` can still choose the OpenMP wait policy. Values
    that do not validate are left to the command, which reports them."""
    run_dir = args.run_dir if args.command == "eval" else (args.out if args.resume else None)
    layers: List[Dict[str, Any]] = []
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, UserError):
        if run_dir:
            with open_regular(Path(run_dir) / "config.json", "run config") as f:  # a FIFO there must not block
                layers.append(dict(load_json(f.read(1 << 20))))
    if getattr(args, "config", None):
        args.config_layer = _read_config_once(args.config)  # a pipe (`--config <(...)`) can be read only once
        layers.append(args.config_layer if isinstance(args.config_layer, dict) else {})
    layers.append({"device": args.device, "num_threads": getattr(args, "num_threads", None)})
    wanted: Dict[str, Any] = {}
    for layer in layers:
        wanted.update({k: layer[k] for k in ("device", "num_threads") if layer.get(k) is not None})
    try:
        return make_config(wanted)
    except UserError:
        return make_config()


def resume_command(out: Path) -> str:
    """The command that continues the run in ``out``, shell-quoted (``--out 'my run $(x)'`` stays one word)."""
    return shlex.join(["hinterval", "train", "--out", str(out), "--resume"])


def _read_config_once(path: str) -> Any:
    """The ``--config`` file's keys, or the :class:`UserError` that reading it raised (reported later)."""
    try:
        return load_config_file(path)
    except UserError as exc:
        return exc


class _Run:
    """Where a ``train`` command is, for the message an interruption prints."""

    def __init__(self) -> None:
        self.out: Optional[Path] = None
        self.trainer: Any = None
        self.started = False  # the run directory holds this run's config.json

    def stopped(self, how: str) -> str:
        if not self.started or self.out is None:
            return f"hinterval: {how} before training started; nothing was written"
        total = len(self.trainer.benchmark)
        done = self.trainer.tasks_done
        again = resume_command(self.out)
        if done >= total:
            return f"hinterval: {how} after the last task; the run in {self.out} is complete"
        if done == 0:
            return (f"hinterval: {how} during task 1/{total}; no task had finished, `{again}` starts the run again "
                    "from task 1")
        return (f"hinterval: {how} during task {done + 1}/{total}; {done} finished task(s) are saved in {self.out}: "
                f"continue with `{again}`")


_RUN = _Run()


def cmd_train(args: argparse.Namespace) -> int:
    """``hinterval train``: the run directory is locked from the first write (or, resuming, from the first read)."""
    with contextlib.ExitStack() as stack:
        return _train(args, stack)


def _train(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    from hinterval.callbacks import TensorBoardLogger
    from hinterval.checkpoint import CHECKPOINT_NAME, RESULT_NAME, RUN_CONFIG_NAME, RUN_ID_KEY, load_run, new_run_id
    from hinterval.config import run_description, unused_message, unused_settings
    from hinterval.files import DirectoryLock, check_writable_dir, resolve_path, write_json
    from hinterval.run_layout import TENSORBOARD_DIR
    from hinterval.trainer import ContinualTrainer

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    if args.out is not None and not args.out.strip():
        raise UserError("--out is empty; give the run directory, e.g. --out runs/my-run")
    file_layer = (args.config_layer if hasattr(args, "config_layer")  # read once, while the process was set up
                  else _read_config_once(args.config) if args.config else {})
    if isinstance(file_layer, UserError):  # reported now, in its turn
        raise file_layer
    overrides = _overrides(args)
    if overrides.get("data_dir"):
        overrides["data_dir"] = str(resolve_path(overrides["data_dir"], "--data-dir"))
    state, lock, run_id = None, None, new_run_id()
    if args.resume:
        if not args.out:
            raise UserError("--resume needs --out DIR of the run to continue")
        out = Path(args.out)
        if not out.is_dir():
            raise UserError(f"--resume: {str(out)!r} is not a run directory (it does not exist); start the run without --resume")
        check_writable_dir(out, "--out")
        lock = stack.enter_context(DirectoryLock(out, "run directory"))  # the checkpoint cannot change under us now
        state, run_config = load_run(out)
        if state is None and run_config is None:
            if run_dir.entries(out):  # a user's files: no hint that would delete them
                raise UserError(f"--resume: no run in {str(out)!r} (no {RUN_CONFIG_NAME} or checkpoint; it holds other "
                                "files); start the run in another --out")
            raise UserError(f"--resume: no run in {str(out)!r} (no {RUN_CONFIG_NAME} or checkpoint); run without --resume "
                            "to start it")
        if state is None and (out / RESULT_NAME).exists():  # a finished run lost its checkpoint: do not train over it
            raise UserError(f"--resume: {str(out)!r} holds a run's {RESULT_NAME} but no {CHECKPOINT_NAME}; restore the "
                            "checkpoint to continue it, or start again with --overwrite")
        run_id = (run_config or {}).get(RUN_ID_KEY)  # None: a directory from before run ids, kept as it is
        base = state["config"] if state is not None else {k: v for k, v in run_config.items() if k != RUN_ID_KEY}
        cfg = make_config(base, file_layer, **overrides)
    else:
        cfg = make_config(file_layer, **overrides)
        out = Path(args.out or f"runs/{cfg.benchmark}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
        check_writable_dir(out, "--out")  # before any work: a bad --out is exit 2, not an errno after the data loads
        run_dir.check_out_dir(out, overwrite=args.overwrite, resume=False)
    _RUN.out = out

    callbacks: List[Any] = [run_dir.BoundRunDirWriter(out, run_id)]  # callbacks write nothing before the first task ends
    if not args.no_tensorboard:
        callbacks.append(TensorBoardLogger(out / TENSORBOARD_DIR, cfg.to_dict()))
    callbacks.append(TaskPrinter(cfg.interval_scope, intervals=FIELD_SPECS["ramp"].setting.used_when(cfg)))
    if args.download:  # the data on this machine before the loader looks for it
        from hinterval.data.download import ensure_data

        ensure_data(cfg.benchmark, cfg.data_dir, progress=not args.no_progress)
    # data and device errors come before any write
    trainer = ContinualTrainer(cfg, callbacks=callbacks, progress=not args.no_progress)
    _RUN.trainer = trainer
    if state is not None:
        trainer.load_state(state)
        if trainer.tasks_done >= len(trainer.benchmark):
            print(f"run in {out} already finished all {trainer.tasks_done} tasks; nothing to resume", file=sys.stderr)
            return 0
        print(f"resuming {out} at task {trainer.tasks_done + 1}/{len(trainer.benchmark)}", file=sys.stderr)
    elif args.resume:
        print(f"resuming {out} from task 1/{len(trainer.benchmark)}: no task had finished", file=sys.stderr)
    if lock is None:
        out.mkdir(parents=True, exist_ok=True)
        stack.enter_context(DirectoryLock(out, "run directory"))
        if run_dir.check_out_dir(out, overwrite=args.overwrite, resume=False):  # again, now that no one else can write here
            run_dir.clear(out)
    write_json(out / RUN_CONFIG_NAME, {**cfg.to_dict(), **({RUN_ID_KEY: run_id} if run_id else {})})
    _RUN.started = True
    unused = unused_settings(cfg, overrides)  # a flag this method/mode/target never reads: said once the run starts
    if unused:
        text = unused_message(unused, f"on this run ({run_description(cfg)})", lambda k: FIELD_SPECS[k].flag)
        print(f"hinterval: warning: {text}", file=sys.stderr)
    print(f"training {cfg.method} on {cfg.benchmark} ({len(trainer.benchmark)} task{'s' if len(trainer.benchmark) != 1 else ''}, device {trainer.device}) -> {out}",
          file=sys.stderr)
    if trainer.certifies and not trainer.method.target.boxes_every_layer:
        print(f"worst_avg_acc is certified for {trainer.certificate}; it says nothing about other weights of the "
              "unboxed layers", file=sys.stderr)
    result = trainer.fit()
    if result.get("universal"):
        print(universal_line(result["universal"]), file=sys.stderr)
        shared = shared_network_line(result["universal"])
        if shared:
            print(shared, file=sys.stderr)
    print(json.dumps(json_safe(headline(result))))  # JSON has no NaN: an undefined metric is null
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hinterval.checkpoint import CHECKPOINT_NAME, load_run
    from hinterval.config import make_config
    from hinterval.trainer import ContinualTrainer

    run = Path(args.run_dir)
    state, _ = load_run(run)
    if state is None:
        raise UserError(f"no checkpoint at {str(run / CHECKPOINT_NAME)!r}: not a run directory of `hinterval train`, "
                        "or no task finished there yet")
    from hinterval.files import resolve_path

    changed = {"device": args.device, "data_dir": str(resolve_path(args.data_dir, "--data-dir")) if args.data_dir else None}
    cfg = make_config(state["config"], {k: v for k, v in changed.items() if v})  # where it runs, not what it learned
    trainer = ContinualTrainer(cfg, progress=False)
    trainer.load_state(state)
    last = trainer.tasks_done - 1
    if last < 0:
        raise UserError(f"the checkpoint in {str(run)!r} holds no finished task; nothing to evaluate")
    saved = {s: list(trainer.matrices[s][last]) for s in M.SCENARIOS}
    fresh = trainer.evaluate()  # replaces that row: the report below is the re-computed one
    result = trainer.result()
    report = headline(result)
    report["matches_saved"] = all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)
        for s in M.SCENARIOS for a, b in zip(saved[s], fresh[s])
    )
    print(json.dumps(json_safe(report)))
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from hinterval.data.registry import BENCHMARK_NAMES

    for name in BENCHMARK_NAMES:
        print(name)
    return 0


def _stop_on_signals() -> Dict[int, Any]:
    """SIGTERM/SIGHUP raise :class:`Stopped` (unwinding like Ctrl-C) where they would kill silently.

    Only signals still at their default action are taken (``nohup`` keeps SIGHUP ignored); returns
    the previous handlers for :func:`_restore`. A no-op outside the main thread.
    """
    def handler(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    previous: Dict[int, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        try:
            if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
                previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return previous


def _restore(previous: Dict[int, Any]) -> None:
    for sig, old in previous.items():
        try:
            signal.signal(sig, old)
        except (ValueError, OSError):
            pass


def _quiet_thread_errors(debug: bool) -> Any:
    """Background writers (TensorBoard's) re-raise their I/O error in the main thread, which prints
    it as one line; the thread's own traceback is dropped unless ``--debug``. Returns the old hook."""
    old = threading.excepthook

    def hook(hook_args: Any) -> None:
        if debug:
            old(hook_args)
        elif not issubclass(hook_args.exc_type, OSError):
            print(f"hinterval: warning: background thread failed: {hook_args.exc_type.__name__}: "
                  f"{one_line(hook_args.exc_value or hook_args.exc_type())}", file=sys.stderr)

    threading.excepthook = hook
    return old


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; every failure becomes one line on stderr and a documented exit code.

    Exit codes (``hinterval.errors``): 0 done, 1 the run failed (diverged, I/O error, out of memory,
    internal error), 2 bad input or refused, 130 Ctrl-C, 143 SIGTERM (129 SIGHUP). ``--debug``
    shows tracebacks instead.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before _main's handlers were in place, or while they printed: still one line
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        print(_RUN.stopped("interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Optional[List[str]]) -> int:
    global _RUN
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    previous: Dict[int, Any] = {}
    old_hook = threading.excepthook
    try:  # everything from here on, the signal handlers' set-up included, is answered by the handlers below
        _RUN = _Run()
        previous = _stop_on_signals()
        _quiet_thread_errors(debug)
        args = build_parser().parse_args(argv)  # argparse's own errors: usage + one line, exit 2
        debug = getattr(args, "debug", False)
        if args.command in ("train", "eval"):  # before torch is first imported (lazily): hinterval/runtime.py
            configure_process(_process_config(args))
            with ctrl_c_deferred():  # torch's import can lose a Ctrl-C (see there): taken right after it
                import torch  # noqa: F401
        return {"train": cmd_train, "eval": cmd_eval, "benchmarks": cmd_benchmarks, "data": cmd_data}[args.command](args)
    except UserError as exc:
        if debug:
            raise
        print(f"hinterval: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except TrainingDiverged as exc:
        if debug:
            raise
        print(f"hinterval: training diverged: {one_line(exc, 500)}", file=sys.stderr)
        return EXIT_FAILED
    except DownloadError as exc:  # an OSError whose message says in full what to do
        if debug:
            raise
        print(f"hinterval: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # e.g. disk full while saving: checkpoints are atomic, the last one is intact
        if debug:
            raise
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and _RUN.started:
            again = f"`{resume_command(_RUN.out)}`"
            saved = (_RUN.out / "checkpoint.pt").is_file()
            hint = (f"; the checkpoint of the last saved task is intact: free space, then continue with {again}" if saved
                    else f"; no task was saved yet: free space, then {again} starts the run again from task 1")
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = "; free space and run again"
        print(f"hinterval: error: {one_line(exc)}{hint}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError as exc:
        if debug:
            raise
        print(f"hinterval: error: out of memory ({one_line(exc, 200)}); use a smaller model or batch size", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if debug:
            raise
        print(_RUN.stopped("interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Stopped as exc:
        if debug:
            raise
        print(_RUN.stopped(f"stopped by {exc}"), file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the net under everything: one line, exit 1
        if debug:
            raise
        oom = "out of memory" in str(exc).lower()
        what = "out of memory" if oom else f"{type(exc).__name__}: {one_line(exc)}"
        print(f"hinterval: error: {what} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        _restore(previous)
        threading.excepthook = old_hook


if __name__ == "__main__":
    sys.exit(main())
