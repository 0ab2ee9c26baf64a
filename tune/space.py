"""Search spaces: parsed from YAML, flags or the benchmark preset, validated before any trial runs.

A space maps :class:`~hinterval.config.ExperimentConfig` keys to distributions::

    gamma: {type: loguniform, low: 0.05, high: 5}
    beta: {type: loguniform, low: 1.0e-3, high: 1}
    embedding_dim: {type: choice, values: [16, 24, 48]}
    hnet_hidden: {type: choice, values: ["50,50", "100,100"]}
    lr: {type: loguniform, low: 3.0e-4, high: 3.0e-3}
    iters_per_task: 300          # a plain value fixes the key for every trial
    method: [hyperinterval, hnet] # a list is short for {type: choice, values: [...]}

Types: ``uniform``, ``loguniform`` (floats), ``int`` (inclusive bounds, optional ``log: true``)
and ``choice``. Layer widths are encoded as strings (``"100,100"``) because Optuna's categorical
values must be scalars. :func:`suggest_config` is the Optuna define-by-run function; it only
suggests values. This module does not import Ray.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from hinterval.config import ExperimentConfig, make_config
from hinterval.errors import UserError

KINDS = ("uniform", "loguniform", "int", "choice")
#: keys a trial may not change: they say what is run where, not how it learns
NOT_SEARCHABLE = ("benchmark", "data_dir", "num_tasks", "device", "num_threads", "eval_batch_size")
#: distribution used when a flag gives a range ``LOW:HIGH``
RANGE_KIND = {"gamma": "loguniform", "beta": "loguniform", "lr": "loguniform", "kappa_min": "uniform",
              "ramp_fraction": "uniform", "ewc_lambda": "loguniform", "cil_alpha": "loguniform"}

_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(ExperimentConfig)}


def field_kind(key: str) -> str:
    """``"int"``, ``"float"``, ``"widths"``, ``"bool"`` or ``"str"`` for a config key."""
    t = _FIELD_TYPES[key]
    if "Tuple" in t:
        return "widths"
    for k in ("bool", "int", "float"):
        if k in t:
            return k
    return "str"


@dataclass(frozen=True)
class Param:
    """One searched key: a range (``low``/``high``) or a set of ``values``."""

    name: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    values: Tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return normalise_value(self.name, value) in self.values
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return self.low <= v <= self.high  # type: ignore[operator]

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice {list(self.values)}"
        if self.kind == "int":
            return f"int [{int(self.low)}, {int(self.high)}]{' (log)' if self.log else ''}"  # type: ignore[arg-type]
        return f"{self.kind} [{self.low:g}, {self.high:g}]"

    def to_dict(self) -> Dict[str, Any]:
        if self.kind == "choice":
            return {"type": "choice", "values": list(self.values)}
        d: Dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        return d


@dataclass(frozen=True)
class SearchSpace:
    """Searched params plus fixed config overrides (``fixed``) shared by every trial."""

    params: Tuple[Param, ...]
    fixed: Tuple[Tuple[str, Any], ...] = ()

    @property
    def names(self) -> List[str]:
        return [p.name for p in self.params]

    def to_dict(self) -> Dict[str, Any]:
        return {**{p.name: p.to_dict() for p in self.params}, **dict(self.fixed)}


def suggest_config(trial: Any, space: SearchSpace) -> None:
    """Optuna define-by-run function: suggest one value per searched key, nothing else.

    Used as ``OptunaSearch(space=functools.partial(suggest_config, space=space))``; Tune reads
    the suggestions from ``trial.params``.
    """
    for p in space.params:
        if p.kind == "choice":
            trial.suggest_categorical(p.name, list(p.values))
        elif p.kind == "int":
            trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            trial.suggest_float(p.name, p.low, p.high, log=p.kind == "loguniform")


# --- building and validating ----------------------------------------------------------------------
def normalise_value(key: str, value: Any) -> Any:
    """Widths lists/tuples become ``"a,b"`` strings (Optuna choices must be scalars)."""
    if key in _FIELD_TYPES and field_kind(key) == "widths":
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
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"search space: {key}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise UserError(f"search space: {key}: {what} must be finite, got {value!r}")
    return v


def parse_param(key: str, spec: Mapping[str, Any]) -> Param:
    """One ``{type: ..., low/high | values}`` entry -> :class:`Param` (type-checked, not yet run)."""
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
            if v not in norm:
                norm.append(v)
        return Param(key, "choice", values=tuple(norm))
    if fk not in ("int", "float"):
        raise UserError(f"search space: {key}: is a {fk} setting; use type: choice with a list of values")
    if "low" not in spec or "high" not in spec:
        raise UserError(f"search space: {key}: type {kind} needs both 'low' and 'high'")
    low, high = _number(key, "low", spec["low"]), _number(key, "high", spec["high"])
    if not low < high:
        raise UserError(f"search space: {key}: low ({low:g}) must be smaller than high ({high:g})")
    log = bool(spec.get("log", False)) or kind == "loguniform"
    if log and low <= 0:
        raise UserError(f"search space: {key}: a log-scale range needs low > 0, got {low:g}")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise UserError(f"search space: {key}: int bounds must be integers, got {spec['low']!r}, {spec['high']!r}")
        return Param(key, "int", low=int(low), high=int(high), log=bool(spec.get("log", False)))
    if fk == "int":
        raise UserError(f"search space: {key}: is an integer setting; use type: int or choice, not {kind}")
    return Param(key, kind, low=low, high=high, log=log)


def parse_space(data: Mapping[str, Any]) -> SearchSpace:
    """A mapping (a parsed space.yaml) -> :class:`SearchSpace`; plain values become fixed keys."""
    if not isinstance(data, Mapping):
        raise UserError("search space must be a mapping of config key -> {type: ..., ...}")
    params: List[Param] = []
    fixed: List[Tuple[str, Any]] = []
    for key, spec in data.items():
        _check_key(key)
        if isinstance(spec, Mapping):
            params.append(parse_param(key, spec))
        elif isinstance(spec, (list, tuple)) and field_kind(key) != "widths":
            params.append(parse_param(key, {"type": "choice", "values": list(spec)}))
        elif isinstance(spec, (list, tuple)) and spec and all(isinstance(v, (list, tuple, str)) for v in spec):
            params.append(parse_param(key, {"type": "choice", "values": list(spec)}))  # [[50,50],[100,100]]
        else:
            fixed.append((key, normalise_value(key, spec)))
    return SearchSpace(tuple(params), tuple(fixed))


def _check_key(key: Any) -> None:
    if key not in _FIELD_TYPES:
        raise UserError(f"search space: unknown config key {key!r}; valid keys: {', '.join(sorted(_FIELD_TYPES))}")
    if key in NOT_SEARCHABLE:
        raise UserError(f"search space: {key!r} cannot be searched (it is a sweep-wide setting); "
                        f"use the sweep's flags (--benchmark, --num-tasks, --data-dir, --gpus-per-trial...)")


def parse_flag(key: str, text: str) -> Tuple[Optional[Param], Any]:
    """A flag value -> (searched param, None) or (None, fixed value).

    ``LOW:HIGH`` is a range (log scale for gamma/beta/lr), ``a,b,c`` a choice (``;`` separates
    width choices: ``50,50;100,100``), a single value fixes the key.
    """
    _check_key(key)
    text = str(text).strip()
    fk = field_kind(key)
    if ":" in text:
        low, _, high = text.partition(":")
        kind = "int" if fk == "int" else RANGE_KIND.get(key, "uniform")
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
            return int(text)
        if fk == "float":
            return float(text)
    except ValueError:
        raise UserError(f"--{key.replace('_', '-')}: {text!r} is not a valid {fk}") from None
    if fk == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise UserError(f"--{key.replace('_', '-')}: {text!r} is not true/false")
        return text.lower() in ("true", "1")
    return text


def merge(space: SearchSpace, params: Sequence[Param] = (), fixed: Mapping[str, Any] = ()) -> SearchSpace:
    """``space`` with ``params`` replacing/adding searched keys and ``fixed`` pinning keys."""
    fixed = dict(fixed)
    by_name = {p.name: p for p in space.params}
    for p in params:
        by_name[p.name] = p
    for k in fixed:
        by_name.pop(k, None)
    old_fixed = {k: v for k, v in space.fixed if k not in by_name}
    return SearchSpace(tuple(by_name.values()), tuple({**old_fixed, **fixed}.items()))


def default_space(preset: ExperimentConfig) -> SearchSpace:
    """The default space around a benchmark's preset: gamma, beta, lr (log ranges) and embedding size."""
    d = preset.embedding_dim
    dims = sorted({max(2, (2 * d) // 3), d, 2 * d})
    return SearchSpace((
        Param("gamma", "loguniform", low=preset.gamma / 20, high=preset.gamma * 5, log=True),
        Param("beta", "loguniform", low=preset.beta / 10, high=preset.beta * 100, log=True),
        Param("embedding_dim", "choice", values=tuple(dims)),
        Param("lr", "loguniform", low=preset.lr / 3, high=preset.lr * 3, log=True),
    ))


def validate_space(space: SearchSpace, base: Mapping[str, Any]) -> None:
    """Build a config at every range end and every choice so bad values fail now, not in trial 7."""
    if not space.params:
        raise UserError("search space is empty: give at least one key a range or a list of choices")
    base = {**base, **dict(space.fixed)}
    make_config(base)
    for p in space.params:
        probes = list(p.values) if p.kind == "choice" else [p.low, p.high]
        for v in probes:
            if p.kind == "int":
                v = int(v)
            try:
                make_config(base, **{p.name: v})
            except UserError as exc:
                raise UserError(f"search space: {p.name} = {v!r} is not a valid setting: {exc}") from None


def preset_point(space: SearchSpace, cfg: ExperimentConfig) -> Tuple[Optional[Dict[str, Any]], List[str]]:
    """The preset's values of the searched keys, or ``None`` and the keys that fall outside the space."""
    values = cfg.to_dict()
    point = {p.name: normalise_value(p.name, values[p.name]) for p in space.params}
    outside = [f"{p.name}={point[p.name]!r} not in {p.describe()}" for p in space.params if not p.contains(point[p.name])]
    if outside:
        return None, outside
    for p in space.params:
        if p.kind == "int":
            point[p.name] = int(point[p.name])
        elif p.kind in ("uniform", "loguniform"):
            point[p.name] = float(point[p.name])
    return point, []
