"""The sweep spec: everything a sweep runs with, resolved once from the command line.

:func:`sweep_spec` is one pure function from the parsed arguments (plus what the caller read for
them: the ``--space`` file's content, the sweep's name, the working directory) to a frozen
:class:`SweepSpec`; it reads no file and changes nothing, so the dry run, a fresh sweep and the
tests all see the same resolution. ``sweep.json`` stores the spec and ``--resume`` reads it back
(:meth:`SweepSpec.from_dict`). The spec reads like the mapping it is stored as (``spec["name"]``).
This module does not import Ray.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from hinterval import metrics as M
from hinterval.errors import UserError, short
from tune.flags import CONFIRM_DEFAULT, CONFIRM_SMOKE, MAX_NAME, SPACE_FLAGS, check_run_flags, parse_address, parse_fixed

#: metrics a sweep can maximise (``--objective``)
OBJECTIVES = M.HEADLINE_METRICS
#: default iterations per task for sweeps: 0 = the preset's budget, so trials are tuned at the budget the
#: preset row was measured at (at 200 it/task the split-digits preset's gamma 1 left tasks at chance).
#: Measured: 8 split-digits trials at 500 it/task, 2 at a time on a quiet 2-core CPU: 79 s, best avg
#: acc 1.0000, preset trial 0.9978.
SWEEP_ITERS_PER_TASK = 0
#: what --smoke-test sets (explicit --num-tasks / --iters-per-task win for the run length)
SMOKE = dict(num_samples=2, num_tasks=2, iters_per_task=20, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0)


@dataclass(frozen=True)
class SweepSpec(Mapping):
    """A resolved sweep (what ``sweep.json`` stores).

    Attributes:
        name, benchmark: the sweep's name and benchmark.
        out_dir: absolute results directory ``RESULTS_DIR/NAME``.
        storage: where Tune keeps checkpoints (absolute path or URI).
        base: config keys fixed for every trial (benchmark, run length, ``--set``, fixed space keys).
        space: searched keys in the YAML notation of :mod:`tune.space`, in search order.
        param_order: the searched keys' order (JSON files sort keys).
        preset_point: the preset's values of the searched keys (the first trial), or ``None`` when
            the preset lies outside the space (``preset_outside`` says why).
        confirm_seeds, confirm_top: the confirmation's extra training seeds and configs (0 seeds: none).
        download: fetch the benchmark's data where it is missing (``--download``).
        experiment: Tune's experiment name under ``storage`` (see :func:`experiment_name`).
    """

    name: str
    benchmark: str
    out_dir: str
    storage: str
    base: Dict[str, Any]
    space: Dict[str, Any]
    param_order: Tuple[str, ...]
    preset_point: Optional[Dict[str, Any]]
    preset_outside: Tuple[str, ...]
    objectives: Tuple[str, ...]
    scheduler: str
    num_samples: int
    max_concurrent: int
    seed: int
    cpus_per_trial: float
    gpus_per_trial: float
    tensorboard: bool
    smoke_test: bool
    confirm_seeds: int = CONFIRM_DEFAULT[0]
    confirm_top: int = CONFIRM_DEFAULT[1]
    download: bool = False
    #: Tune's experiment name under ``storage``: the name plus a random suffix given when the sweep is
    #: created, so two sweeps of one name sharing a ``--storage`` never take over each other's
    #: experiment ("" in sweeps saved before: the name)
    experiment: str = ""

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepSpec":
        """Read a stored spec back; other keys (Ray version, creation time) are ignored.

        Raises:
            KeyError, TypeError, AttributeError: a field is missing or malformed.
        """
        order = tuple(data.get("param_order") or data["space"])
        values = {k: data[k] for k in _FIELDS if k not in ("space", "param_order") and k in data or k in _REQUIRED}
        values.update(space={k: data["space"][k] for k in order}, param_order=order,
                      objectives=tuple(data["objectives"]), preset_outside=tuple(data.get("preset_outside") or ()))
        return cls(**values)


_FIELDS = tuple(f.name for f in dataclasses.fields(SweepSpec))
#: fields a stored spec must have (the others have defaults: sweeps saved before they existed resume)
_REQUIRED = tuple(f.name for f in dataclasses.fields(SweepSpec)
                  if f.default is dataclasses.MISSING and f.name not in ("space", "param_order"))


def experiment_name(spec: Mapping[str, Any]) -> str:
    """The sweep's Tune experiment under its storage (``STORAGE/<this>``)."""
    return spec.get("experiment") or spec["name"]


def new_experiment(spec: SweepSpec) -> SweepSpec:
    """``spec`` with a Tune experiment name of its own (``NAME-<8 hex digits>``), for a sweep being created."""
    return dataclasses.replace(spec, experiment=f"{spec.name}-{secrets.token_hex(4)}")


def confirm_counts(seeds: Optional[int], top: Optional[int], *, smoke_test: bool) -> Tuple[int, int]:
    """``(--confirm-seeds, --confirm-top)`` with their defaults (smaller for --smoke-test)."""
    d_seeds, d_top = CONFIRM_SMOKE if smoke_test else CONFIRM_DEFAULT
    return (d_seeds if seeds is None else seeds), (d_top if top is None else top)


def _absolute(path: str, cwd: str) -> str:
    if "://" in path:
        return path
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def _refuse_twice(first: Mapping[str, Any], second: Mapping[str, Any], first_name: str, second_name: str) -> None:
    """Refuse a key that two places of the command line fix to different values (the last would silently win)."""
    from hinterval.config import FIELD_SPECS
    from hinterval.schema import check_value

    for k in sorted(set(first) & set(second)):
        a, b = (check_value(FIELD_SPECS[k], v) for v in (first[k], second[k]))
        if a != b:
            name = first_name or f"--{k.replace('_', '-')}"
            raise UserError(f"{name} and {second_name} give {k} twice, differently ({short(a)} and {short(b)}); "
                            "keep one of them")


def sweep_spec(args: argparse.Namespace, *, name: str, results_dir: str, cwd: str,
               space_data: Optional[Mapping[str, Any]] = None) -> SweepSpec:
    """Validate the command line and resolve the sweep. Pure: no file is read, ``args`` is not changed.

    Args:
        args: parsed by ``tune/search.py``'s parser.
        name: the sweep's name (``--name`` or the default the caller picked).
        results_dir: absolute parent of the sweep's directory.
        cwd: directory relative paths (``--data-dir``, ``--storage``) are taken from.
        space_data: the parsed ``--space`` file, or ``None`` for the preset's default space.

    Raises:
        UserError: any bad value, with the flag it came from.
    """
    from hinterval.config import make_config, unused_message
    from hinterval.data.registry import BENCHMARK_NAMES
    from tune import space as S
    from tune import trial_kinds as T

    if args.benchmark not in BENCHMARK_NAMES:
        raise UserError(f"unknown benchmark {args.benchmark!r}; choose one of: {', '.join(BENCHMARK_NAMES)}")
    objectives: Optional[List[str]] = None  # None: default_objectives(), once the space is known
    if args.objective is not None:
        objectives = [o.strip() for o in args.objective.split(",") if o.strip()]
        bad = [o for o in objectives if o not in OBJECTIVES] or ([] if objectives else ["(empty)"])
        if bad or len(set(objectives)) != len(objectives):
            raise UserError(f"--objective: {', '.join(bad) or 'repeated metric'} is not allowed; use metrics from "
                            f"{', '.join(OBJECTIVES)}")
    check_run_flags(vars(args))  # what the user gave, also where --smoke-test replaces it below
    if getattr(args, "address", None) is not None:
        parse_address(args.address)  # a malformed address or port: refused before anything starts
    opt = dict(vars(args))
    if args.smoke_test:
        for k, v in SMOKE.items():
            if not (k in ("num_tasks", "iters_per_task") and opt.get(k) not in (None, v)):
                opt[k] = v
    check_run_flags(opt)
    cpus, gpus = opt["cpus_per_trial"], opt["gpus_per_trial"]
    if opt.get("confirm_top") is not None and opt["confirm_top"] > opt["num_samples"]:
        raise UserError(f"--confirm-top {opt['confirm_top']} is more than the {opt['num_samples']} trials of the sweep "
                        "(--num-samples)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or len(name) > MAX_NAME:
        raise UserError(f"--name {short(name, 60)}: use letters, digits, '.', '_' and '-' only (at most {MAX_NAME} "
                        "characters), starting with a letter or digit")

    base: Dict[str, Any] = {"benchmark": args.benchmark}
    if opt["num_tasks"] is not None:
        base["num_tasks"] = opt["num_tasks"]
    iters = SWEEP_ITERS_PER_TASK if opt["iters_per_task"] is None else opt["iters_per_task"]
    if iters:
        base["iters_per_task"] = iters
    if args.data_dir:
        base["data_dir"] = args.data_dir
    fixed = parse_fixed(args.fixed)
    typed = {"num_tasks": args.num_tasks, "iters_per_task": args.iters_per_task or None, "data_dir": args.data_dir}
    _refuse_twice({k: v for k, v in typed.items() if v is not None}, fixed, "", "--set")  # --num-tasks 3 --set num_tasks=4
    base.update(fixed)
    if base.get("data_dir"):
        base["data_dir"] = _absolute(str(base["data_dir"]), cwd)  # trials run in other directories

    flag_params, flag_fixed = {}, {}
    for _, key, _ in SPACE_FLAGS:
        text = getattr(args, f"space_{key}")
        if text is not None:
            dist, value = S.parse_flag(key, text)
            if dist is None:
                flag_fixed[key] = value
            else:
                flag_params[key] = dist
    twice = sorted(k for k in set(fixed) & {*flag_params, *flag_fixed} if flag_fixed.get(k, object()) != fixed[k])
    if twice:  # `--set gamma=2 --gamma 0.1:1`: which one did the user mean?
        k = twice[0]
        raise UserError(f"--set {k}=... and --{k.replace('_', '-')} both give {k}, differently; keep one of them")
    # the default space is the one of the method/mode the trials run (`--method ewc` as `--set method=ewc`),
    # without what --set or a flag fixes
    space = (S.parse_space(space_data) if space_data is not None
             else S.default_space(make_config({**base, **flag_fixed}), exclude=(*fixed, *flag_fixed)))
    _refuse_twice(dict(space.fixed), fixed, "the --space file", "--set")  # `gamma: 1` and --set gamma=2 (flags edit a space)
    searched_and_set = sorted(set(fixed) & set(space.names))
    if searched_and_set:  # a --space file searches what --set fixes
        k = searched_and_set[0]
        raise UserError(f"--set {k}=... fixes {k}, which the --space file searches; keep one of them")
    space = S.merge(space, flag_params, flag_fixed)
    base.update(dict(space.fixed))
    space = S.SearchSpace(space.params, ())
    # settings no trial reads (another method's): the default space's are dropped, the user's stay and
    # are named in one warning line (unused_warning)
    given = {*flag_params, *flag_fixed, *(space_data or {})}
    unused = T.unused_in_every_trial(space.names, T.trial_configs(space, base))
    space = S.SearchSpace(tuple((k, d) for k, d in space.params if k not in unused or k in given), ())
    if space.params and all(k in unused for k in space.names):  # 8 trials of one config
        raise UserError("nothing this sweep searches changes its trials: "
                        + unused_message(space.names, "in any trial of this sweep") + "; search a setting they read")
    T.validate_space(space, base)
    point, outside = T.preset_point(space, make_config(base))  # the trial everyone compares against
    kinds = T.trial_configs(space, base)
    if objectives is None:
        objectives = list(T.default_objectives(kinds))
    problem = T.objective_problem(objectives, kinds)
    if problem:
        raise UserError(f"--objective: {problem}")
    confirm_seeds, confirm_top = confirm_counts(getattr(args, "confirm_seeds", None), getattr(args, "confirm_top", None),
                                                smoke_test=bool(args.smoke_test))

    out_dir = os.path.join(results_dir, name)
    return SweepSpec(
        name=name, benchmark=args.benchmark, out_dir=out_dir,
        storage=_absolute(opt["storage"] or os.path.join(out_dir, "_ray"), cwd),
        base=base, space=space.to_dict(), param_order=tuple(space.names), preset_point=point,
        preset_outside=tuple(outside), objectives=tuple(objectives), scheduler=args.scheduler,
        num_samples=opt["num_samples"], max_concurrent=opt["max_concurrent"], seed=args.seed, cpus_per_trial=cpus,
        gpus_per_trial=0.0 if args.smoke_test else gpus, tensorboard=not args.no_tensorboard,
        smoke_test=bool(args.smoke_test), confirm_seeds=confirm_seeds, confirm_top=confirm_top,
        download=bool(getattr(args, "download", False)))
