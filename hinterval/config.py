"""Experiment configuration: one frozen dataclass, validated on construction.

The CLI builds it from flags, ``tune/search.py`` from ``preset | trial_config``, and checkpoints
store it as JSON so a resumed run rebuilds exactly the same experiment. Per-benchmark defaults
(the paper's hyperparameters where the paper has a row, spec §6) live in
:data:`hinterval.presets.PRESETS`;
:func:`make_config` layers ``defaults < preset < overrides``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from hinterval.errors import UserError

METHODS = ("hyperinterval", "hnet", "finetune", "joint", "intercontinet", "ewc")
EMBEDDING_MODES = ("nested", "non-forced")
REG_NORMALISATIONS = ("reference", "mean")
INTERVAL_MODES = ("sound", "rump", "relaxed")
DEVICES = ("auto", "cpu", "cuda")
TARGETS = ("mlp", "resnet18", "alexnet")
RAMP_MODES = ("guarded", "fixed")


def parse_widths(value: Any) -> Tuple[int, ...]:
    """``"100,100"``, ``[100, 100]`` or ``100`` -> ``(100, 100)``; ``""`` -> ``()``."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    elif isinstance(value, int):
        value = [value]
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"layer widths must be comma-separated integers like '100,100', got {value!r}") from None


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one continual-learning run (see ``hinterval train --help``)."""

    benchmark: str = "split-digits"
    data_dir: Optional[str] = None
    num_tasks: Optional[int] = None
    method: str = "hyperinterval"
    # Interval embeddings (spec §2.2)
    embedding_mode: str = "non-forced"
    gamma: float = 1.0
    embedding_dim: int = 24
    # Hypernetwork (spec §2.3, §2.5)
    hnet_hidden: Tuple[int, ...] = (100, 100)
    hnet_chunk_size: int = 0
    chunk_embedding_dim: int = 16
    # Target network (spec §2.4)
    target: str = "mlp"
    target_hidden: Tuple[int, ...] = (100, 100)
    interval_mode: str = "sound"
    image_size: Optional[int] = None
    image_channels: Optional[int] = None
    # Optimisation (spec §3)
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
    # Baselines (spec §7)
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
        self._validate()

    def _validate(self) -> None:
        from hinterval.data.registry import BENCHMARK_NAMES
        from hinterval.evaluation import CIL_SCORES

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UserError(msg)

        need(self.benchmark in BENCHMARK_NAMES, f"unknown benchmark {self.benchmark!r}; choose one of: {', '.join(BENCHMARK_NAMES)}")
        need(self.method in METHODS, f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        need(self.embedding_mode in EMBEDDING_MODES, f"unknown embedding mode {self.embedding_mode!r}; choose one of: {', '.join(EMBEDDING_MODES)}")
        need(self.reg_normalisation in REG_NORMALISATIONS, f"reg normalisation must be one of {REG_NORMALISATIONS}")
        need(self.interval_mode in INTERVAL_MODES, f"interval mode must be one of {INTERVAL_MODES}")
        need(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        need(self.target in TARGETS, f"unknown target {self.target!r}; choose one of: {', '.join(TARGETS)}")
        need(self.gamma >= 0, f"gamma (perturbation epsilon) must be >= 0, got {self.gamma}")
        need(not (self.method == "hyperinterval" and self.embedding_mode == "nested" and self.gamma == 0),
             "nested embeddings need gamma > 0 (the centre is gamma/(2d)*cos(e)); use --embedding-mode non-forced or --method hnet for gamma = 0")
        need(isinstance(self.reg_bounds, bool), f"reg_bounds must be true or false, got {self.reg_bounds!r}")
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
        need(self.epochs_per_task is None or self.epochs_per_task > 0, f"epochs per task must be > 0, got {self.epochs_per_task}")
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


def _coerce(name: str, kind: str, value: Any) -> Any:
    """Check one field's type (config files and ``--set`` give strings, lists, ...); numbers must be finite.

    Why: ``gamma: high`` or ``seed: abc`` must be one clear error, not a ``TypeError`` later (or a
    run that multiplies a string); YAML 1.1 reads ``1e-3`` as a string, so numeric strings are accepted.
    """
    base = str(kind).replace("Optional[", "").rstrip("]")
    if value is None or base not in ("int", "float", "str"):
        return value
    key = name.replace("_", "-")
    if base == "str":
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, str):
            raise UserError(f"config key {name} (--{key}) must be a string, got {value!r}")
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip()) if base == "float" else int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, float) and base == "int" and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, (int, float) if base == "float" else int):
        what = "a number" if base == "float" else "an integer"
        raise UserError(f"config key {name} (--{key}) must be {what}, got {value!r}")
    if base == "float":
        number = float(number)
        if not math.isfinite(number):
            raise UserError(f"config key {name} (--{key}) must be a finite number, got {value!r}")
    return number


def make_config(*layers: Mapping[str, Any], **overrides: Any) -> ExperimentConfig:
    """Build a config from ``defaults < benchmark preset < layers... < overrides``.

    Unknown keys are rejected (a typo in a YAML file must not be silently ignored).
    """
    merged: Dict[str, Any] = {}
    for layer in (*layers, overrides):
        merged.update({k: v for k, v in layer.items() if v is not None})  # None = not set
    unknown = sorted(set(merged) - FIELDS)
    if unknown:
        raise UserError(f"unknown config key(s): {', '.join(unknown)}; valid keys: {', '.join(sorted(FIELDS))}")
    from hinterval.presets import PRESETS

    benchmark = merged.get("benchmark", ExperimentConfig.benchmark)
    values = {**PRESETS.get(benchmark, {}), **merged}
    try:
        return ExperimentConfig(**values)
    except TypeError as exc:
        raise UserError(f"bad config value: {exc}") from None


def load_config_file(path: str | Path) -> Dict[str, Any]:
    """Read a YAML or JSON config file into a dict (``yaml.safe_load``: no code execution)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {str(p)!r} does not exist")
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise UserError(f"config file {str(p)!r} is not valid YAML{where}: {what}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {str(p)!r} must contain a mapping of key: value")
    return data


def config_to_json(cfg: ExperimentConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
