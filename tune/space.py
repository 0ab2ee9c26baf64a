"""Search spaces: Optuna distributions, parsed from YAML, flags or the benchmark preset, checked before any trial runs.

A space maps :class:`~hinterval.config.ExperimentConfig` keys to Optuna distributions
(``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``), which Ray's
``OptunaSearch`` takes as they are. Users write them in a small YAML/flag notation::

    gamma: {type: loguniform, low: 0.05, high: 5}       # FloatDistribution(0.05, 5, log=True)
    beta: {type: uniform, low: 0.001, high: 1}          # FloatDistribution(0.001, 1)
    batch_size: {type: int, low: 32, high: 256, log: true}  # IntDistribution (inclusive bounds)
    embedding_dim: {type: choice, values: [16, 24, 48]}  # CategoricalDistribution
    hnet_hidden: {type: choice, values: ["50,50", "100,100"]}
    method: [hyperinterval, hnet]   # a list is short for {type: choice, values: [...]}
    iters_per_task: 300             # a plain value fixes the key for every trial

Layer widths are choices of strings (``"100,100"``) because Optuna's categorical values must be
scalars. Field kinds and which keys may be searched come from the config's declarations (:mod:`hinterval.schema`). This module does not import Ray.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hinterval.config import FIELD_SPECS, ExperimentConfig
from hinterval.errors import UserError
from hinterval.methods.registry import METHODS
from hinterval.schema import ascii_float, ascii_int, parse_bool

KINDS = ("uniform", "loguniform", "int", "choice")
#: keys a trial may not change: they say what is run where, not how it learns (declared with ``sweep=None``)
NOT_SEARCHABLE = tuple(k for k, f in FIELD_SPECS.items() if f.setting.sweep is None)


def range_kind(key: str) -> str:
    """The distribution a flag's range ``LOW:HIGH`` is read as: the key's declared sweep kind
    (``loguniform`` for gamma, beta, lr...), ``uniform`` for other numbers, ``int`` for integers."""
    kind = FIELD_SPECS[key].setting.sweep
    if field_kind(key) == "int":
        return "int"
    return kind if kind in ("loguniform", "uniform") else "uniform"


def field_kind(key: str) -> str:
    """``"int"``, ``"float"``, ``"widths"``, ``"bool"`` or ``"str"`` for a config key (from its declaration)."""
    return FIELD_SPECS[key].kind


@dataclass(frozen=True)
class SearchSpace:
    """Searched keys with their distributions (in order), plus fixed config overrides shared by every trial."""

    params: Tuple[Tuple[str, BaseDistribution], ...]
    fixed: Tuple[Tuple[str, Any], ...] = ()

    @property
    def names(self) -> List[str]:
        return [k for k, _ in self.params]

    @property
    def distributions(self) -> Dict[str, BaseDistribution]:
        """What ``OptunaSearch(space=...)`` takes."""
        return dict(self.params)

    def to_dict(self) -> Dict[str, Any]:
        """The YAML notation (what ``sweep.json`` stores); :func:`parse_space` reads it back."""
        return {**{k: to_spec(d) for k, d in self.params}, **dict(self.fixed)}


def to_spec(dist: BaseDistribution) -> Dict[str, Any]:
    """A distribution in the YAML notation."""
    if isinstance(dist, CategoricalDistribution):
        return {"type": "choice", "values": list(dist.choices)}
    if isinstance(dist, IntDistribution):
        return {"type": "int", "low": dist.low, "high": dist.high, **({"log": True} if dist.log else {})}
    return {"type": "loguniform" if dist.log else "uniform", "low": dist.low, "high": dist.high}


def describe(dist: BaseDistribution) -> str:
    """One line for the dry run and the TensorBoard column description, e.g. ``loguniform [0.05, 5]``."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice {list(dist.choices)}"
    if isinstance(dist, IntDistribution):
        return f"int [{dist.low}, {dist.high}]{' (log)' if dist.log else ''}"
    return f"{'loguniform' if dist.log else 'uniform'} [{dist.low:g}, {dist.high:g}]"


def contains(key: str, dist: BaseDistribution, value: Any) -> bool:
    """Whether a config value lies in the distribution (widths compared as ``"a,b"`` strings)."""
    if isinstance(dist, CategoricalDistribution):
        return normalise_value(key, value) in dist.choices
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return dist.low <= v <= dist.high


# --- building and validating ----------------------------------------------------------------------
def normalise_value(key: str, value: Any) -> Any:
    """Widths lists/tuples become ``"a,b"`` strings (Optuna choices must be scalars)."""
    if key in FIELD_SPECS and field_kind(key) == "widths":
        if isinstance(value, (list, tuple)):
            return ",".join(str(int(v)) for v in value)
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return ",".join(v for v in value.replace(" ", "").split(",") if v)
    return value


def _number(key: str, what: str, value: Any) -> float:
    # YAML 1.1 reads ``1e-3`` (no dot) as a string: accept it as a number here
    if isinstance(value, bool):
        raise UserError(f"search space: {key}: {what} must be a number, got {value!r}")
    try:
        v = ascii_float(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise UserError(f"search space: {key}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise UserError(f"search space: {key}: {what} must be finite, got {value!r}")
    return v


def parse_param(key: str, spec: Mapping[str, Any]) -> BaseDistribution:
    """One ``{type: ..., low/high | values}`` entry -> an Optuna distribution (type-checked, not yet run)."""
    kind = spec.get("type")
    if kind not in KINDS:
        raise UserError(f"search space: {key}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {"type", "values"} if kind == "choice" else {"type", "low", "high", "log"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise UserError(f"search space: {key}: unexpected field(s) {', '.join(extra)} for type {kind} "
                        f"(allowed: {', '.join(sorted(allowed))})")
    fk = field_kind(key)
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, (list, tuple)) or not values:
            raise UserError(f"search space: {key}: choice needs a non-empty list 'values', got {values!r}")
        norm: List[Any] = []
        for v in values:
            v = normalise_value(key, v)
            if not isinstance(v, (str, int, float, bool)) or v is None:
                raise UserError(f"search space: {key}: choice values must be numbers or strings, got {v!r}")
            if fk == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
                raise UserError(f"search space: {key}: is an integer setting, got choice value {v!r}")
            if fk == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
                v = float(v)
            if v in norm:  # a repeated value is a typo (16,16 for 16,24), not a weight
                raise UserError(f"search space: {key}: choice lists {v!r} more than once; give each value once")
            norm.append(v)
        return CategoricalDistribution(tuple(norm))
    if fk not in ("int", "float"):
        raise UserError(f"search space: {key}: is a {fk} setting; use type: choice with a list of values")
    if "low" not in spec or "high" not in spec:
        raise UserError(f"search space: {key}: type {kind} needs both 'low' and 'high'")
    low, high = _number(key, "low", spec["low"]), _number(key, "high", spec["high"])
    if not low < high:
        fix = f"; to fix {key} for every trial give the value alone ({key}: {low:g})" if low == high else ""
        raise UserError(f"search space: {key}: low ({low:g}) must be smaller than high ({high:g}){fix}")
    if not isinstance(spec.get("log", False), bool):  # "false" as text would be true
        raise UserError(f"search space: {key}: log must be true or false, got {spec['log']!r}")
    log = bool(spec.get("log", False)) or kind == "loguniform"
    if log and low <= 0:
        raise UserError(f"search space: {key}: a log-scale range needs low > 0, got {low:g}")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise UserError(f"search space: {key}: int bounds must be integers, got {spec['low']!r}, {spec['high']!r}")
        return IntDistribution(int(low), int(high), log=bool(spec.get("log", False)))
    if fk == "int":
        raise UserError(f"search space: {key}: is an integer setting; use type: int or choice, not {kind}")
    return FloatDistribution(low, high, log=log)


def parse_space(data: Mapping[str, Any]) -> SearchSpace:
    """A mapping (a parsed space.yaml) -> :class:`SearchSpace`; plain values become fixed keys."""
    if not isinstance(data, Mapping):
        raise UserError("search space must be a mapping of config key -> {type: ..., ...}")
    params: List[Tuple[str, BaseDistribution]] = []
    fixed: List[Tuple[str, Any]] = []
    for key, spec in data.items():
        _check_key(key)
        if isinstance(spec, Mapping):
            params.append((key, parse_param(key, spec)))
        elif isinstance(spec, (list, tuple)) and field_kind(key) != "widths":
            params.append((key, parse_param(key, {"type": "choice", "values": list(spec)})))
        elif isinstance(spec, (list, tuple)) and spec and all(isinstance(v, (list, tuple, str)) for v in spec):
            params.append((key, parse_param(key, {"type": "choice", "values": list(spec)})))  # [[50,50],[100,100]]
        else:
            fixed.append((key, normalise_value(key, spec)))
    return SearchSpace(tuple(params), tuple(fixed))


def _check_key(key: Any) -> None:
    if key not in FIELD_SPECS:
        raise UserError(f"search space: unknown config key {key!r}; valid keys: {', '.join(sorted(FIELD_SPECS))}")
    if key in NOT_SEARCHABLE:
        raise UserError(f"search space: {key!r} cannot be searched (it is a sweep-wide setting); "
                        f"use the sweep's flags (--benchmark, --num-tasks, --data-dir, --gpus-per-trial...)")


def parse_flag(key: str, text: str) -> Tuple[Optional[BaseDistribution], Any]:
    """A flag value -> (distribution, None) or (None, fixed value).

    ``LOW:HIGH`` is a range (log scale for gamma/beta/lr), ``a,b,c`` a choice (``;`` separates
    width choices: ``50,50;100,100``), a single value fixes the key.
    """
    _check_key(key)
    text = str(text).strip()
    fk = field_kind(key)
    if ":" in text:
        low, _, high = text.partition(":")
        kind = range_kind(key)
        return parse_param(key, {"type": kind, "low": low, "high": high}), None
    sep = ";" if fk == "widths" else ","
    items = [t.strip() for t in text.split(sep) if t.strip()]
    if not items:
        raise UserError(f"--{key.replace('_', '-')}: empty value")
    values = [_convert(key, fk, t) for t in items]
    if len(values) == 1:
        return None, values[0]
    return parse_param(key, {"type": "choice", "values": values}), None


def _convert(key: str, fk: str, text: str) -> Any:
    try:
        if fk == "int":
            return ascii_int(text)
        if fk == "float":
            return ascii_float(text)
    except ValueError:
        raise UserError(f"--{key.replace('_', '-')}: {text!r} is not a valid {fk}") from None
    if fk == "bool":
        parsed = parse_bool(text)
        if parsed is None:
            raise UserError(f"--{key.replace('_', '-')}: {text!r} is not true/false")
        return parsed
    return text


def merge(space: SearchSpace, params: Mapping[str, BaseDistribution] = (), fixed: Mapping[str, Any] = ()) -> SearchSpace:
    """``space`` with ``params`` replacing/adding searched keys and ``fixed`` pinning keys."""
    fixed = dict(fixed)
    by_name = {**dict(space.params), **dict(params)}
    for k in fixed:
        by_name.pop(k, None)
    old_fixed = {k: v for k, v in space.fixed if k not in by_name}
    return SearchSpace(tuple(by_name.items()), tuple({**old_fixed, **fixed}.items()))


def default_space(preset: ExperimentConfig, exclude: Sequence[str] = ()) -> SearchSpace:
    """The default space around a benchmark's preset: the one its method declares
    (:data:`hinterval.methods.registry.METHODS`; for HyperInterval gamma, beta and lr on log
    ranges and the embedding size), without the keys in ``exclude`` (fixed or searched otherwise:
    a range around a fixed ``gamma: 0`` would be empty)."""
    return parse_space({k: v for k, v in METHODS[preset.method].space(preset).items() if k not in exclude})


def tensorboard_hparams(space: SearchSpace) -> List[Any]:
    """The swept keys as TensorBoard HParams domains (choices discrete, ranges intervals)."""
    from hinterval.callbacks import HParamDomain

    out = []
    for k, d in space.params:
        if isinstance(d, CategoricalDistribution):
            out.append(HParamDomain(k, values=tuple(d.choices), description=describe(d)))
        else:
            out.append(HParamDomain(k, low=d.low, high=d.high, log=d.log, description=describe(d)))
    return out
