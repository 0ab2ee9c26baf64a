"""Experiment configuration: one frozen dataclass, each field declared once, validated on construction.

Every field is declared with :func:`hinterval.schema.setting` (default, help, choices or bounds,
how a sweep searches it); the ``hinterval train`` flags, the checks of config files and ``--set``,
the sweep's flags, the TensorBoard HParams columns and ``docs/config.md`` are all derived from
those declarations. The CLI builds the config from flags, ``tune/search.py`` from
``preset | trial_config``, and checkpoints store it as JSON so a resumed run rebuilds exactly the
same experiment. Per-benchmark defaults live in :data:`hinterval.presets.PRESETS`;
:func:`make_config` layers ``defaults < preset < overrides``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from hinterval.data.registry import BENCHMARK_NAMES
from hinterval.errors import UserError, one_line, short
from hinterval.methods.registry import METHOD_NAMES
from hinterval.presets import CNN_TARGET_PRESETS, NESTED_PRESETS, PRESETS
from hinterval.schema import Field, check_value, fields_of, setting

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
#: nested mode: ``learned`` centres ``sigma * cos(e_t)`` (the paper), or fixed, distinct ``corners`` of the common cube
NESTED_CENTRES = ("learned", "corners")
#: where a new task's embedding starts: a fresh random draw, or the previous task's embedding
EMBEDDING_INITS = ("random", "previous")
#: class-incremental task-inference scores (see :mod:`hinterval.evaluation`); ``auto`` picks one on validation data
CIL_SCORES = ("mahalanobis", "auto", "entropy", "calibrated-entropy", "entropy-width", "worst-entropy", "worst-margin",
              "relative-margin", "consensus")
SEED_LIMIT = 2**64  # seeds are unsigned 64-bit (torch.manual_seed's range)
MAX_TASKS = 1000
MAX_THREADS = 1024
#: at most this many epochs per task: more is a run that never ends (iterations = epochs x samples / batch)
MAX_EPOCHS = 1_000_000
#: config files: at most this many bytes, and at most this many values once YAML aliases are expanded
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
#: keys a run directory's config.json holds besides the config (ignored when it is read back as --config)
RUN_METADATA_KEYS = ("run_id",)


#: ``last:K`` with K in ASCII digits (``str.isdigit`` also takes "²", which ``int`` refuses)
_LAST_K = re.compile(r"last:([0-9]{1,6})", re.ASCII)


def scope_depth(scope: str) -> Optional[int]:
    """How many of the last weighted layers an interval scope boxes: ``all`` -> ``None`` (every
    layer), ``head`` -> 1, ``last:K`` -> ``K``. Raises :class:`UserError` for anything else."""
    text = str(scope).strip().lower()
    if text == "all":
        return None
    if text == "head":
        return 1
    depth = _LAST_K.fullmatch(text)
    if depth and int(depth.group(1)) >= 1:
        return int(depth.group(1))
    raise UserError(f"interval scope must be {INTERVAL_SCOPE_HELP}, got {short(scope)}")


_DATA, _EMB, _HNET, _TARGET, _OPT, _BASE, _EVAL, _RUN = (
    "benchmark and data", "interval embeddings", "hypernetwork", "target network", "optimisation",
    "baselines", "evaluation", "reproducibility and resources")
_SEED = dict(minimum=0, maximum=SEED_LIMIT - 1, maximum_text="2^64 - 1", sweep="choice")

_HNET_METHODS = ("hyperinterval", "hnet")
#: ``used_when``/``used_with`` of the settings only some runs read (see :func:`unused_settings`)
_HYPERINTERVAL = dict(used_when=lambda c: c.method == "hyperinterval", used_with="--method hyperinterval")
_HNET_ONLY = dict(used_when=lambda c: c.method in _HNET_METHODS, used_with="--method hyperinterval or hnet")
_BOX_TRAINING = dict(used_when=lambda c: c.method in (*_HNET_METHODS, "intercontinet"),
                     used_with="--method hyperinterval, hnet or intercontinet")
_INTERVALS = dict(used_when=lambda c: c.method == "intercontinet" or (c.method == "hyperinterval" and c.gamma > 0),
                  used_with="interval methods (--method hyperinterval with --gamma > 0, or intercontinet)")
_NESTED = dict(used_when=lambda c: c.method == "hyperinterval" and c.embedding_mode == "nested",
               used_with="--method hyperinterval --embedding-mode nested")
_UNIVERSAL = dict(used_when=lambda c: c.method == "hyperinterval" and c.embedding_mode == "nested"
                  and c.universal_weight > 0, used_with="--embedding-mode nested with --universal-weight > 0")
_NON_FORCED = dict(used_when=lambda c: c.method == "hyperinterval" and c.embedding_mode == "non-forced",
                   used_with="--method hyperinterval --embedding-mode non-forced")
_CHUNKED = dict(used_when=lambda c: c.method in _HNET_METHODS and c.hnet_chunk_size > 0,
                used_with="a chunked hypernetwork (--method hyperinterval or hnet with --hnet-chunk-size > 0)")
_EWC = dict(used_when=lambda c: c.method == "ewc", used_with="--method ewc")
_ONE_NETWORK = dict(used_when=lambda c: c.method in ("finetune", "ewc"), used_with="--method finetune or ewc")
_INTERCONTINET = dict(used_when=lambda c: c.method == "intercontinet", used_with="--method intercontinet")
_MLP = dict(used_when=lambda c: c.target == "mlp", used_with="--target mlp")
_BY_ITERATIONS = dict(used_when=lambda c: c.epochs_per_task is None,
                      used_with="runs without epochs_per_task (given together, epochs_per_task wins)")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one continual-learning run (see ``docs/config.md``)."""

    benchmark: str = setting("split-digits", "benchmark to learn (see `hinterval benchmarks`)", _DATA,
                             choices=BENCHMARK_NAMES)
    data_dir: Optional[str] = setting(None, "directory with the benchmark's data files (not needed for the *-digits "
                                      "benchmarks; Fashion-MNIST is found in its Debian package; `hinterval data "
                                      "download` fetches the others)", _DATA,
                                      default_text="none: $HINTERVAL_DATA_DIR", resource=True)
    num_tasks: Optional[int] = setting(None, "number of tasks", _DATA, minimum=1, maximum=MAX_TASKS,
                                       default_text="the benchmark's standard count")
    method: str = setting("hyperinterval", "continual-learning method (see docs/method.md)", _DATA,
                          choices=METHOD_NAMES, sweep="choice", sweep_flag=True, hparam=True)
    # Interval embeddings
    embedding_mode: str = setting("non-forced", "nested: every task's box holds a common universal embedding (one "
                                  "network for all tasks); non-forced: free boxes", _EMB, choices=EMBEDDING_MODES,
                                  sweep="choice", sweep_flag=True, hparam=True, **_HYPERINTERVAL)
    gamma: float = setting(1.0, "perturbation epsilon: total radius budget of each task's embedding box", _EMB,
                           minimum=0, sweep="loguniform", sweep_flag=True, hparam=True, **_HYPERINTERVAL)
    embedding_dim: int = setting(24, "task embedding dimension d", _EMB, minimum=1, sweep="choice", sweep_flag=True,
                                 hparam=True, **_HNET_ONLY)
    embedding_init: str = setting("random", "where a new task's embedding starts: a fresh random draw, or the "
                                  "previous task's embedding", _EMB, choices=EMBEDDING_INITS, sweep="choice", **_HNET_ONLY)
    nested_centres: str = setting("learned", "nested mode: learned (sigma*cos(e), as the paper) | corners (fixed, "
                                  "distinct corners of the common cube: tasks keep networks of their own)", _EMB,
                                  choices=NESTED_CENTRES, sweep="choice", **_NESTED)
    nested_hold: str = setting("penalty", "nested mode: penalty (the beta regulariser keeps earlier tasks' boxes "
                               "near where they were certified) | intersection (each new weight box is clipped into "
                               "the earlier boxes: no certificate ever drops, less room for later tasks)", _EMB,
                               choices=NESTED_HOLDS, sweep="choice", **_NESTED)
    universal_weight: float = setting(0.0, "nested mode: weight of the current task's loss on the universal "
                                      "network (0 = nothing trains it directly)", _EMB, minimum=0, sweep="uniform",
                                      **_NESTED)
    universal_hold: float = setting(1000.0, "nested mode with a universal loss: strength of the EWC-style hold on "
                                    "the universal network (the finished tasks' Fisher at its weights)", _EMB, minimum=0,
                                    sweep="loguniform", **_UNIVERSAL)
    # Hypernetwork
    hnet_hidden: Tuple[int, ...] = setting((100, 100), "hypernetwork hidden widths", _HNET, min_items=1,
                                           sweep="choice", sweep_flag=True, hparam=True, **_HNET_ONLY)
    hnet_chunk_size: int = setting(0, "emit target weights in chunks of this size (0 = unchunked)", _HNET, minimum=0,
                                   sweep="choice", hparam=True, **_HNET_ONLY)
    chunk_embedding_dim: int = setting(16, "chunk embedding size (chunked hypernetwork)", _HNET, minimum=1,
                                       sweep="choice", **_CHUNKED)
    # Target network
    target: str = setting("mlp", "target network", _TARGET, choices=TARGETS, sweep="choice")
    target_hidden: Tuple[int, ...] = setting((100, 100), "MLP target hidden widths", _TARGET, sweep="choice",
                                             hparam=True, **_MLP)
    interval_mode: str = setting("sound", "sound: the exact box of every layer | rump: sound, fewer products, "
                                 "slightly wider boxes | relaxed: fast, NOT sound (reports no certified figure)",
                                 _TARGET, choices=INTERVAL_MODES, sweep="choice", **_INTERVALS)
    interval_scope: str = setting("all", "which layers carry the weight box: all | head (the output layer) | last:K "
                                  "(the last K weighted layers; the others are the task's centre network); the CNN "
                                  "targets box their certified depth (docs/method.md)", _TARGET,
                                  check=scope_depth, normalise=lambda v: v.strip().lower(), sweep="choice",
                                  values_text="all | head | last:K", **_INTERVALS)
    image_size: Optional[int] = setting(None, "CNN input side length: 28x28 data are zero-padded to 32x32, then "
                                        "resized to this (e.g. 64)", _TARGET, minimum=8, maximum=512,
                                        default_text="the data's own size", sweep="choice")
    image_channels: Optional[int] = setting(None, "CNN input channels: 3 repeats grey images into RGB", _TARGET,
                                            choices=(1, 3), default_text="the data's own channels",
                                            sweep="choice")
    # Optimisation
    beta: float = setting(0.01, "strength of the output regulariser that prevents forgetting", _OPT, minimum=0,
                          sweep="loguniform", sweep_flag=True, hparam=True, **_HNET_ONLY)
    reg_normalisation: str = setting("reference", "reference: beta / number of earlier tasks (as the paper's code) | "
                                     "mean: beta", _OPT, choices=REG_NORMALISATIONS, sweep="choice", **_HNET_ONLY)
    reg_bounds: bool = setting(True, "non-forced mode: also regularise earlier tasks' lower and upper weights", _OPT,
                               sweep="choice", **_NON_FORCED)
    lr: float = setting(1e-3, "Adam learning rate", _OPT, label="learning rate", minimum=0, exclusive_minimum=True,
                        sweep="loguniform", sweep_flag=True, hparam=True)
    batch_size: int = setting(64, "training batch size", _OPT, minimum=1, sweep="int", hparam=True)
    iters_per_task: int = setting(1000, "training iterations per task; replaces an epochs_per_task of the preset or "
                                  "--config file (the CNN presets train by epochs)", _OPT, label="iterations per task",
                                  minimum=1, sweep="int", hparam=True, **_BY_ITERATIONS)
    epochs_per_task: Optional[float] = setting(None, "epochs per task (wins over iters_per_task given with it)", _OPT,
                                               minimum=0, exclusive_minimum=True, maximum=MAX_EPOCHS,
                                               default_text="none (iters_per_task counts)", sweep="uniform")
    kappa_min: float = setting(0.5, "final weight of the centre loss (the worst-case loss gets 1 - kappa)", _OPT,
                               minimum=0, maximum=1, sweep="uniform", **_BOX_TRAINING)
    ramp_fraction: float = setting(0.5, "fraction of each task over which gamma and kappa ramp", _OPT, minimum=0,
                                   maximum=1, sweep="uniform", **_BOX_TRAINING)
    ramp: str = setting("guarded", "guarded: the box grows only while the centre network stays accurate | fixed: "
                        "linear in iterations, as the paper", _OPT, choices=RAMP_MODES, sweep="choice", **_INTERVALS)
    val_every: int = setting(100, "validate (for model selection) every N iterations", _OPT, minimum=1,
                             sweep="int")
    # Baselines
    ewc_lambda: float = setting(1000.0, "EWC penalty strength (method ewc)", _BASE, label="EWC lambda", minimum=0,
                                sweep="loguniform", **_EWC)
    shared_head: bool = setting(False, "one output layer for every task (a single network for all tasks, reported "
                                "as the universal network) instead of a head per task", _BASE, sweep="choice",
                                **_ONE_NETWORK)
    intercontinet_radius: float = setting(0.01, "initial weight-interval radius (method intercontinet)", _BASE,
                                          label="InterContiNet radius", minimum=0, sweep="loguniform", **_INTERCONTINET)
    # Evaluation
    cil_alpha: float = setting(0.1, "weight of the logit-box width in class-incremental task inference", _EVAL,
                               label="CIL alpha", minimum=0, sweep="loguniform")
    cil_score: str = setting("mahalanobis", "class-incremental task inference: the task whose own training samples "
                             "lie nearest in its network's first-layer response; auto picks the best score on "
                             "validation data (see docs/inference.md)", _EVAL, label="CIL score", choices=CIL_SCORES, sweep="choice")
    eval_batch_size: int = setting(2048, "evaluation batch size", _EVAL, minimum=1, resource=True)
    # Reproducibility and resources
    seed: int = setting(0, "training seed (initialisation, batches)", _RUN, hparam=True, **_SEED)
    data_seed: int = setting(0, "seed of the task construction and validation split", _RUN, **_SEED)
    device: str = setting("auto", "where to train: auto picks CUDA when available", _RUN, choices=DEVICES,
                          resource=True)
    num_threads: Optional[int] = setting(None, "torch CPU threads", _RUN, minimum=1, maximum=MAX_THREADS,
                                         default_text="torch's choice", resource=True)

    def __post_init__(self) -> None:
        for name, field in FIELD_SPECS.items():
            object.__setattr__(self, name, check_value(field, getattr(self, name)))
        if self.method == "hyperinterval" and self.embedding_mode == "nested" and self.gamma == 0:
            raise UserError("nested embeddings need gamma > 0 (the centre is gamma/(2d)*cos(e)); use --embedding-mode "
                            "non-forced or --method hnet for gamma = 0")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["hnet_hidden"], d["target_hidden"] = list(self.hnet_hidden), list(self.target_hidden)
        return d

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return make_config(self.to_dict(), **changes)


#: every field's declaration, by name (see :mod:`hinterval.schema`)
FIELD_SPECS: Dict[str, Field] = fields_of(ExperimentConfig)
FIELDS = frozenset(FIELD_SPECS)
#: config fields that only say where/how fast to run; a resume may change them
RESOURCE_FIELDS = tuple(k for k, f in FIELD_SPECS.items() if f.setting.resource)
#: fields that some benchmark preset sets (their ``--help`` default says so)
PRESET_KEYS = tuple(sorted({k for table in (PRESETS, NESTED_PRESETS, CNN_TARGET_PRESETS) for row in table.values()
                            for k in row}))

#: settings a run reads only under some method, embedding mode or target: key -> (whether a config
#: reads it, the runs that do); every other setting is read by every run (``used_when`` of the schema)
SETTING_USERS: Dict[str, Tuple[Callable[["ExperimentConfig"], bool], str]] = {
    k: (f.setting.used_when, f.setting.used_with) for k, f in FIELD_SPECS.items() if f.setting.used_when is not None}


def unused_settings(cfg: ExperimentConfig, keys: Iterable[str]) -> List[str]:
    """Of ``keys`` (settings a user gave explicitly), those ``cfg`` never reads.

    Why: a flag of another method, embedding mode or target (``--ewc-lambda`` with ``--method
    hyperinterval``, ``--nested-hold`` in non-forced mode, ``--target-hidden`` for a CNN) would
    otherwise be ignored without a word. The run itself is well defined (every other flag holds),
    so the command line warns in one line (:func:`unused_message`) instead of refusing; flags that
    contradict each other (nested mode at gamma 0, a CNN target on a permuted benchmark) are
    refused. Config files are not checked: a saved config (``config.json``, ``best_config.yaml``)
    lists every key.
    """
    return [k for k in keys if k in SETTING_USERS and not SETTING_USERS[k][0](cfg)]


def unused_message(keys: Sequence[str], where: str, name: Callable[[str], str] = lambda k: k) -> str:
    """One sentence on settings that have no effect ``where``, grouped by the runs that read them:
    ``--a, --b have no effect on this run (...) and are ignored: --a, --b used only with X; --c ...``."""
    groups: Dict[str, List[str]] = {}
    for k in keys:
        groups.setdefault(SETTING_USERS[k][1], []).append(name(k))
    names = [n for ns in groups.values() for n in ns]
    verb, be = ("has", "is") if len(names) == 1 else ("have", "are")
    why = (f"used only with {next(iter(groups))}" if len(groups) == 1 else
           "; ".join(f"{', '.join(ns)} used only with {runs}" for runs, ns in groups.items()))
    return f"{', '.join(names)} {verb} no effect {where} and {be} ignored: {why}"


def run_description(cfg: ExperimentConfig) -> str:
    """``method ..., embedding mode ..., gamma ..., target ...``: what decides which settings a run reads."""
    return f"method {cfg.method}" + (f", embedding mode {cfg.embedding_mode}, gamma {cfg.gamma:g}"
                                     if cfg.method == "hyperinterval" else "") + f", target {cfg.target}"


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
    benchmark = check_value(FIELD_SPECS["benchmark"], merged.get("benchmark", ExperimentConfig.benchmark))
    preset = {k: v for k, v in PRESETS.get(benchmark, {}).items() if not (by_iterations and k == "epochs_per_task")}
    if {**preset, **merged}.get("embedding_mode", ExperimentConfig.embedding_mode) == "nested":
        preset.update(NESTED_PRESETS.get(benchmark, {}))  # nested mode has values of its own
    chosen = {**preset, **merged}
    target = chosen.get("target", ExperimentConfig.target)
    if isinstance(target, str) and chosen.get("interval_mode", ExperimentConfig.interval_mode) != "relaxed":
        preset.update(CNN_TARGET_PRESETS.get(target, {}))  # a sound CNN box opens only on its last layers
    return ExperimentConfig(**{**preset, **merged})


def load_config_file(path: str | Path) -> Dict[str, Any]:
    """Read a YAML or JSON config file into a dict (a ``yaml.SafeLoader``: no code execution; a key
    given twice is refused, see :mod:`hinterval.strict_load`).

    Why so careful: a config file is whatever a user points at. A binary file, another encoding,
    a YAML alias bomb (a few lines that expand to millions of values), a date where a number
    belongs or deep nesting must each be one error line, never a traceback or a huge message.
    UTF-8 (with or without BOM) and UTF-16/32 with a byte-order mark are read; at most
    :data:`MAX_CONFIG_BYTES` bytes and :data:`MAX_CONFIG_VALUES` values after alias expansion.
    A run directory's ``config.json`` is accepted as is (its ``run_id`` is ignored).
    """
    import codecs

    from hinterval.files import open_regular

    p = Path(path)
    where = f"config file {short(str(p))}"
    if not p.exists():
        raise UserError(f"{where} does not exist")
    try:
        with open_regular(p, "config file", pipes=True) as f:  # a pipe from `--config <(...)` too, never a named FIFO
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

    from hinterval.strict_load import DuplicateKey, load_yaml

    try:
        data = load_yaml(text)
    except DuplicateKey as exc:
        raise UserError(f"{where}: {exc}") from None
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


if __name__ == "__main__":  # python -m hinterval.config > docs/config.md
    import sys

    from hinterval.schema import markdown_table

    sys.stdout.write(markdown_table(FIELD_SPECS, PRESET_KEYS))
