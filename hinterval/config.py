"""Experiment configuration: one frozen dataclass, validated on construction.

The CLI builds it from flags, ``tune/search.py`` from ``preset | trial_config``, and checkpoints
store it as JSON so a resumed run rebuilds exactly the same experiment. Per-benchmark defaults
(the paper's hyperparameters where the paper has a row) live in
:data:`hinterval.presets.PRESETS`;
:func:`make_config` layers ``defaults < preset < overrides``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from hinterval.errors import UserError, one_line, short

METHODS = ("hyperinterval", "hnet", "finetune", "joint", "intercontinet", "ewc")
EMBEDDING_MODES = ("nested", "non-forced")
REG_NORMALISATIONS = ("reference", "mean")
INTERVAL_MODES = ("sound", "rump", "relaxed")
#: which layers of the target carry the weight box: every one, the output layer, or the last K
INTERVAL_SCOPE_HELP = "all | head (the output layer) | last:K (the last K weighted layers)"
DEVICES = ("auto", "cpu", "cuda")
TARGETS = ("mlp", "resnet18", "alexnet")
RAMP_MODES = ("guarded", "fixed")
#: nested mode: how earlier tasks' weight boxes are kept (see :mod:`hinterval.methods.hyperinterval`)
NESTED_HOLDS = ("penalty", "intersection")
#: where a new task's embedding starts: a fresh random draw, or the previous task's embedding
EMBEDDING_INITS = ("random", "previous")
#: class-incremental task-inference scores (see :mod:`hinterval.evaluation`); ``auto`` picks one on validation data
CIL_SCORES = ("auto", "entropy", "calibrated-entropy", "entropy-width", "worst-entropy", "worst-margin",
              "relative-margin", "consensus")
#: bounds that keep every number inside what torch and the run's bookkeeping can hold
INT64_MAX = 2**63 - 1
SEED_LIMIT = 2**64  # seeds are unsigned 64-bit (torch.manual_seed's range)
SEED_FIELDS = ("seed", "data_seed")
MAX_TASKS = 1000
MAX_WIDTH = 1_000_000
MAX_LAYERS = 100
MAX_THREADS = 1024
#: at most this many epochs per task: more is a run that never ends (iterations = epochs x samples / batch)
MAX_EPOCHS = 1_000_000
MAX_STRING = 4096
#: config files: at most this many bytes, and at most this many values once YAML aliases are expanded
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
#: keys a run directory's config.json holds besides the config (ignored when it is read back as --config)
RUN_METADATA_KEYS = ("run_id",)


def scope_depth(scope: str) -> Optional[int]:
    """How many of the last weighted layers an interval scope boxes: ``all`` -> ``None`` (every
    layer), ``head`` -> 1, ``last:K`` -> ``K``. Raises :class:`UserError` for anything else."""
    text = str(scope).strip().lower()
    if text == "all":
        return None
    if text == "head":
        return 1
    if text.startswith("last:") and text[5:].isdigit() and int(text[5:]) >= 1:
        return int(text[5:])
    raise UserError(f"interval scope must be {INTERVAL_SCOPE_HELP}, got {short(scope)}")


def parse_widths(value: Any) -> Tuple[int, ...]:
    """``"100,100"``, ``[100, 100]`` or ``100`` -> ``(100, 100)``; ``""`` -> ``()``.

    Every width must be a whole number: ``1.9`` or ``true`` is an error, not a silent ``1``.
    """
    if isinstance(value, str):
        items: Any = [v for v in value.replace(" ", "").split(",") if v]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    if len(items) > MAX_LAYERS:
        raise UserError(f"at most {MAX_LAYERS} layer widths, got {len(items)}")
    out = []
    for v in items:
        w = _whole_number(v)
        if w is None:
            raise UserError(f"layer widths must be comma-separated whole numbers like '100,100', got {short(value)}")
        if w > MAX_WIDTH:
            raise UserError(f"layer width {w} is above the limit of {MAX_WIDTH:,}")
        out.append(w)
    return tuple(out)


def _whole_number(v: Any) -> Optional[int]:
    """``v`` as an int if it is one (``3``, ``3.0``, ``"3"``); ``None`` for bools, fractions, text, lists."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one continual-learning run (see ``hinterval train --help``)."""

    benchmark: str = "split-digits"
    data_dir: Optional[str] = None
    num_tasks: Optional[int] = None
    method: str = "hyperinterval"
    # Interval embeddings
    embedding_mode: str = "non-forced"
    gamma: float = 1.0
    embedding_dim: int = 24
    embedding_init: str = "random"
    nested_hold: str = "penalty"
    # Hypernetwork
    hnet_hidden: Tuple[int, ...] = (100, 100)
    hnet_chunk_size: int = 0
    chunk_embedding_dim: int = 16
    # Target network
    target: str = "mlp"
    target_hidden: Tuple[int, ...] = (100, 100)
    interval_mode: str = "sound"
    interval_scope: str = "all"
    image_size: Optional[int] = None
    image_channels: Optional[int] = None
    # Optimisation
    beta: float = 0.01
    reg_normalisation: str = "reference"
    reg_bounds: bool = True
    lr: float = 1e-3
    batch_size: int = 64
    iters_per_task: int = 1000
    epochs_per_task: Optional[float] = None
    kappa_min: float = 0.5
    ramp_fraction: float = 0.5
    ramp: str = "guarded"
    val_every: int = 100
    # Baselines
    ewc_lambda: float = 1000.0
    intercontinet_radius: float = 0.01
    # Evaluation
    cil_alpha: float = 0.1
    cil_score: str = "auto"
    eval_batch_size: int = 2048
    # Reproducibility and resources
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"
    num_threads: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hnet_hidden", parse_widths(self.hnet_hidden))
        object.__setattr__(self, "target_hidden", parse_widths(self.target_hidden))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        object.__setattr__(self, "interval_scope", self.interval_scope.strip().lower())
        self._validate()

    def _validate(self) -> None:
        from hinterval.data.registry import BENCHMARK_NAMES  # names only: validating a config loads no torch

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        need(self.benchmark in BENCHMARK_NAMES, f"unknown benchmark {short(self.benchmark)}; choose one of: {', '.join(BENCHMARK_NAMES)}")
        need(self.method in METHODS, f"unknown method {short(self.method)}; choose one of: {', '.join(METHODS)}")
        need(self.embedding_mode in EMBEDDING_MODES, f"unknown embedding mode {short(self.embedding_mode)}; choose one of: {', '.join(EMBEDDING_MODES)}")
        need(self.reg_normalisation in REG_NORMALISATIONS, f"reg normalisation must be one of {REG_NORMALISATIONS}")
        need(self.interval_mode in INTERVAL_MODES, f"interval mode must be one of {INTERVAL_MODES}")
        scope_depth(self.interval_scope)
        need(self.device in DEVICES, f"device must be one of {DEVICES}, got {short(self.device)}")
        need(self.target in TARGETS, f"unknown target {short(self.target)}; choose one of: {', '.join(TARGETS)}")
        need(self.gamma >= 0, f"gamma (perturbation epsilon) must be >= 0, got {self.gamma}")
        need(not (self.method == "hyperinterval" and self.embedding_mode == "nested" and self.gamma == 0),
             "nested embeddings need gamma > 0 (the centre is gamma/(2d)*cos(e)); use --embedding-mode non-forced or --method hnet for gamma = 0")
        need(self.embedding_init in EMBEDDING_INITS, f"embedding init must be one of {', '.join(EMBEDDING_INITS)}, got {short(self.embedding_init)}")
        need(self.nested_hold in NESTED_HOLDS, f"nested hold must be one of {', '.join(NESTED_HOLDS)}, got {short(self.nested_hold)}")
        need(isinstance(self.reg_bounds, bool), f"reg_bounds must be true or false, got {short(self.reg_bounds)}")
        need(self.beta >= 0, f"beta (regularisation strength) must be >= 0, got {self.beta}")
        need(self.embedding_dim >= 1, f"embedding dim must be >= 1, got {self.embedding_dim}")
        need(len(self.hnet_hidden) >= 1 and min(self.hnet_hidden) >= 1, f"hnet hidden widths must be >= 1, got {self.hnet_hidden}")
        need(all(w >= 1 for w in self.target_hidden), f"target hidden widths must be >= 1, got {self.target_hidden}")
        need(self.image_size is None or 8 <= self.image_size <= 512, f"image size must be in [8, 512], got {self.image_size}")
        need(self.image_channels in (None, 1, 3), f"image channels must be 1 or 3, got {self.image_channels}")
        need(self.hnet_chunk_size >= 0, f"hnet chunk size must be >= 0 (0 = unchunked), got {self.hnet_chunk_size}")
        need(self.chunk_embedding_dim >= 1, f"chunk embedding dim must be >= 1, got {self.chunk_embedding_dim}")
        need(self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        need(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        need(self.iters_per_task >= 1, f"iterations per task must be >= 1, got {self.iters_per_task}")
        need(self.epochs_per_task is None or 0 < self.epochs_per_task <= MAX_EPOCHS,
             f"epochs per task must be > 0 and at most {MAX_EPOCHS:,}, got {self.epochs_per_task:g}"
             if self.epochs_per_task is not None else "")
        need(0 <= self.kappa_min <= 1, f"kappa min must be in [0, 1], got {self.kappa_min}")
        need(0 <= self.ramp_fraction <= 1, f"ramp fraction must be in [0, 1], got {self.ramp_fraction}")
        need(self.ramp in RAMP_MODES, f"ramp must be one of {', '.join(RAMP_MODES)}, got {self.ramp!r}")
        need(self.val_every >= 1, f"val every must be >= 1, got {self.val_every}")
        need(self.num_tasks is None or self.num_tasks >= 1, f"num tasks must be >= 1, got {self.num_tasks}")
        need(self.ewc_lambda >= 0, f"EWC lambda must be >= 0, got {self.ewc_lambda}")
        need(self.intercontinet_radius >= 0, f"InterContiNet radius must be >= 0, got {self.intercontinet_radius}")
        need(self.cil_alpha >= 0, f"CIL alpha must be >= 0, got {self.cil_alpha}")
        need(self.cil_score in CIL_SCORES, f"unknown CIL score {self.cil_score!r}; choose one of: {', '.join(CIL_SCORES)}")
        need(self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}")
        need(self.num_threads is None or self.num_threads >= 1, f"num threads must be >= 1, got {self.num_threads}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["hnet_hidden"], d["target_hidden"] = list(self.hnet_hidden), list(self.target_hidden)
        return d

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return make_config(self.to_dict(), **changes)


FIELDS = {f.name for f in dataclasses.fields(ExperimentConfig)}

_HNET_METHODS = ("hyperinterval", "hnet")


def _has_intervals(c: ExperimentConfig) -> bool:
    return c.method == "intercontinet" or (c.method == "hyperinterval" and c.gamma > 0)


#: settings a run reads only under some method, embedding mode or target:
#: key -> (whether ``cfg`` reads it, the runs that do). Every other setting is read by every run.
SETTING_USERS: Dict[str, Tuple[Callable[[ExperimentConfig], bool], str]] = {
    "gamma": (lambda c: c.method == "hyperinterval", "--method hyperinterval"),
    "embedding_mode": (lambda c: c.method == "hyperinterval", "--method hyperinterval"),
    "nested_hold": (lambda c: c.method == "hyperinterval" and c.embedding_mode == "nested",
                    "--method hyperinterval --embedding-mode nested"),
    "reg_bounds": (lambda c: c.method == "hyperinterval" and c.embedding_mode == "non-forced",
                   "--method hyperinterval --embedding-mode non-forced"),
    **{k: (lambda c: c.method in _HNET_METHODS, "--method hyperinterval or hnet")
       for k in ("beta", "embedding_dim", "embedding_init", "hnet_hidden", "hnet_chunk_size", "reg_normalisation")},
    "chunk_embedding_dim": (lambda c: c.method in _HNET_METHODS and c.hnet_chunk_size > 0,
                            "a chunked hypernetwork (--method hyperinterval or hnet with --hnet-chunk-size > 0)"),
    **{k: (lambda c: c.method in (*_HNET_METHODS, "intercontinet"), "--method hyperinterval, hnet or intercontinet")
       for k in ("kappa_min", "ramp_fraction")},
    **{k: (_has_intervals, "interval methods (--method hyperinterval with --gamma > 0, or intercontinet)")
       for k in ("ramp", "interval_mode", "interval_scope")},
    "ewc_lambda": (lambda c: c.method == "ewc", "--method ewc"),
    "intercontinet_radius": (lambda c: c.method == "intercontinet", "--method intercontinet"),
    "target_hidden": (lambda c: c.target == "mlp", "--target mlp"),
}


def unused_settings(cfg: ExperimentConfig, keys: Iterable[str]) -> List[str]:
    """Of ``keys`` (settings a user gave explicitly), those ``cfg`` never reads, one message each.

    Why: a flag of another method, embedding mode or target (``--ewc-lambda`` with ``--method
    hyperinterval``, ``--nested-hold`` in non-forced mode, ``--target-hidden`` for a CNN) would
    otherwise be ignored without a word. The run itself is well defined (every other flag holds),
    so the command line warns in one line instead of refusing; flags that contradict each other
    (a CNN target on a permuted benchmark, nested mode at gamma 0) are refused by
    :meth:`ExperimentConfig._validate` and the data checks. Config files are not checked: a saved
    config (``config.json``, ``best_config.yaml``) lists every key.
    """
    run = f"method {cfg.method}" + (f", embedding mode {cfg.embedding_mode}, gamma {cfg.gamma:g}"
                                    if cfg.method == "hyperinterval" else "") + f", target {cfg.target}"
    return [f"--{k.replace('_', '-')} has no effect on this run ({run}): it is used only with {SETTING_USERS[k][1]}; "
            "it is ignored" for k in keys if k in SETTING_USERS and not SETTING_USERS[k][0](cfg)]


#: per-field ranges checked with the types (before any value reaches torch)
_RANGES = {"seed": (0, SEED_LIMIT - 1), "data_seed": (0, SEED_LIMIT - 1), "num_tasks": (1, MAX_TASKS),
           "num_threads": (1, MAX_THREADS)}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, kind: str, value: Any) -> Any:
    """Check one field's type (config files and ``--set`` give strings, lists, ...); numbers must be finite.

    Why: ``gamma: high`` or ``seed: abc`` must be one clear error, not a ``TypeError`` later (or a
    run that multiplies a string); YAML 1.1 reads ``1e-3`` as a string, so numeric strings are accepted.
    Booleans are not numbers and numbers are not booleans; integers fit in 64 bits (seeds: unsigned),
    strings are short and free of control characters. Values are echoed bounded (:func:`short`).
    """
    base = str(kind).replace("Optional[", "").rstrip("]")
    if value is None or base not in ("int", "float", "str", "bool"):
        return value
    key = name.replace("_", "-")
    if base == "str":
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str):
            raise UserError(f"config key {name} (--{key}) must be a string, got {short(value)}")
        if not value or len(value) > MAX_STRING or any(ord(c) < 32 for c in value):
            raise UserError(f"config key {name} (--{key}) must be a non-empty string of at most {MAX_STRING} "
                            f"characters without control characters, got {short(value)}")
        return value
    if base == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise UserError(f"config key {name} (--{key}) must be true or false, got {short(value)}")
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip()) if base == "float" else int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, float) and base == "int" and math.isfinite(value) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, (int, float) if base == "float" else int):
        what = "a number" if base == "float" else "an integer"
        raise UserError(f"config key {name} (--{key}) must be {what}, got {short(value)}")
    if base == "float":
        number = float(number)
        if not math.isfinite(number):
            raise UserError(f"config key {name} (--{key}) must be a finite number, got {short(value)}")
        return number
    lo, hi = _RANGES.get(name, (-INT64_MAX - 1, INT64_MAX))
    if not lo <= number <= hi:
        if name not in _RANGES:
            raise UserError(f"config key {name} (--{key}) must fit in 64 bits (at most 2^63 - 1), got {short(number)}")
        shown = "2^64 - 1" if hi == SEED_LIMIT - 1 else str(hi)
        raise UserError(f"config key {name} (--{key}) must be between {lo} and {shown}, got {short(number)}")
    return number


def make_config(*layers: Mapping[str, Any], **overrides: Any) -> ExperimentConfig:
    """Build a config from ``defaults < benchmark preset < layers... < overrides``; in nested mode
    the benchmark's nested preset (:data:`hinterval.presets.NESTED_PRESETS`) sits on the preset,
    and for a CNN target in a sound mode the target's scope and gamma
    (:data:`hinterval.presets.CNN_TARGET_PRESETS`) sit on both.

    Unknown keys are rejected (a typo in a YAML file must not be silently ignored); keys must be
    names and every value's type is checked before it is used (a list as the benchmark name is an
    error, not ``TypeError: unhashable type``). The training budget is one setting in two units: a
    layer that gives ``iters_per_task`` without ``epochs_per_task`` clears an ``epochs_per_task`` of
    the layers below it (the CNN presets train by epochs; ``--iters-per-task`` must still mean what
    it says).
    """
    merged: Dict[str, Any] = {}
    by_iterations = False
    for layer in (*layers, overrides):
        given = {k: v for k, v in layer.items() if v is not None}  # None = not set
        if "iters_per_task" in given or "epochs_per_task" in given:
            by_iterations = "epochs_per_task" not in given
            if by_iterations:
                merged.pop("epochs_per_task", None)
        merged.update(given)
    bad_keys = [k for k in merged if not isinstance(k, str)]
    if bad_keys:
        raise UserError(f"config keys must be names, got {short(bad_keys[0])}")
    unknown = sorted(set(merged) - FIELDS)
    if unknown:
        shown = ", ".join(short(k, 40).strip("'") for k in unknown[:5]) + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise UserError(f"unknown config key(s): {shown}; valid keys: {', '.join(sorted(FIELDS))}")
    from hinterval.presets import CNN_TARGET_PRESETS, NESTED_PRESETS, PRESETS

    benchmark = _coerce("benchmark", "str", merged.get("benchmark", ExperimentConfig.benchmark))
    preset = {k: v for k, v in PRESETS.get(benchmark, {}).items() if not (by_iterations and k == "epochs_per_task")}
    if {**preset, **merged}.get("embedding_mode", ExperimentConfig.embedding_mode) == "nested":
        preset.update(NESTED_PRESETS.get(benchmark, {}))  # nested mode has values of its own
    chosen = {**preset, **merged}
    target = chosen.get("target", ExperimentConfig.target)
    if isinstance(target, str) and chosen.get("interval_mode", ExperimentConfig.interval_mode) != "relaxed":
        preset.update(CNN_TARGET_PRESETS.get(target, {}))  # a sound CNN box opens only on its last layers
    values = {**preset, **merged}
    try:
        return ExperimentConfig(**values)
    except TypeError as exc:
        raise UserError(f"bad config value: {exc}") from None


def load_config_file(path: str | Path) -> Dict[str, Any]:
    """Read a YAML or JSON config file into a dict (``yaml.safe_load``: no code execution).

    Why so careful: a config file is whatever a user points at. A binary file, another encoding,
    a YAML alias bomb (a few lines that expand to millions of values), a date where a number
    belongs or deep nesting must each be one error line, never a traceback or a huge message.
    UTF-8 (with or without BOM) and UTF-16/32 with a byte-order mark are read; at most
    :data:`MAX_CONFIG_BYTES` bytes and :data:`MAX_CONFIG_VALUES` values after alias expansion.
    A run directory's ``config.json`` is accepted as is (its ``run_id`` is ignored).
    """
    import codecs

    p = Path(path)
    where = f"config file {short(str(p))}"
    if not p.exists():
        raise UserError(f"{where} does not exist")
    if p.is_dir():
        raise UserError(f"{where} is a directory, not a YAML/JSON file")
    try:
        with open(p, "rb") as f:  # pipes (`--config <(...)`) work too
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"{where} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config file")
    boms = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
            (codecs.BOM_UTF16_BE, "utf-16"))
    encoding = next((enc for bom, enc in boms if raw.startswith(bom)), "utf-8-sig")
    if encoding == "utf-8-sig" and b"\0" in raw:
        raise UserError(f"{where} is a binary file (or UTF-16 without a byte-order mark), not YAML/JSON text; "
                        "save it as UTF-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{where} is not {encoding.replace('-sig', '').upper()} text (byte 0x{raw[exc.start]:02x} at "
                        f"line {line}): a binary file or another encoding? save it as UTF-8") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{where} is not valid YAML{at}: {short(exc.problem or exc.context, 120).strip(chr(39))}") from None
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise UserError(f"{where} is not valid YAML: character #x{char:02x} at position {exc.position} "
                        "is not allowed (a binary file?)") from None
    except RecursionError:
        raise UserError(f"{where} is nested too deeply to be a config") from None
    except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:  # e.g. a date like 2024-13-45
        raise UserError(f"{where} is not valid YAML: {one_line(exc, 120)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where} must contain a mapping of key: value")
    if _expanded_size(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise UserError(f"{where} expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases?); "
                        "a config is a mapping of key: value")
    return {k: v for k, v in data.items() if k not in RUN_METADATA_KEYS}


def _expanded_size(value: Any, budget: int) -> int:
    """How many values ``value`` holds with every YAML alias expanded, counting up to ``budget + 1``.

    Iterative with a budget, so a self-referencing or exponentially aliased value costs at most
    ``budget`` steps instead of expanding (or recursing) forever.
    """
    count, stack = 0, [value]
    while stack and count <= budget:
        v = stack.pop()
        count += 1
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set)):
            stack.extend(v)
    return count


def config_to_json(cfg: ExperimentConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
