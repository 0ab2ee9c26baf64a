"""One declaration per config setting, and everything that is derived from it.

Each field of :class:`hinterval.config.ExperimentConfig` is declared once, with
:func:`setting`: its default, help text, choices or bounds, and how a sweep may search it. From
that one declaration come the ``hinterval train`` flags (:func:`add_flags`), the type and range
checks of config files, flags and ``--set`` (:func:`check_value`), the sweep's search flags and
``--space`` checks (``tune/``), the TensorBoard HParams columns and the generated
``docs/config.md`` (:func:`markdown_table`, written by ``python -m hinterval.config``).

Why dataclass field metadata rather than a validation library: the config stays a plain frozen
dataclass that checkpoints store as JSON and rebuild, validating a config loads nothing heavy,
and the strict rules users rely on (no bool for a number, no fractional float for an integer,
one line naming the key and the expected type) are ours to state, not a library's defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from hinterval.errors import UserError, short

#: bounds that keep every number inside what torch and the run's bookkeeping can hold
INT64_MAX = 2**63 - 1
MAX_LAYERS = 100
MAX_WIDTH = 1_000_000
MAX_STRING = 4096
#: the sizes a float setting may have besides 0 (see :func:`_check_magnitude`)
MIN_MAGNITUDE, MAX_MAGNITUDE = 1e-30, 1e30
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
#: how a sweep reads ``LOW:HIGH`` for a key, and what a ``--space`` file may use
SWEEP_KINDS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Setting:
    """What a config field means and which values it takes (the metadata of one dataclass field).

    Attributes:
        help: one sentence for ``--help`` and ``docs/config.md``.
        group: the section it is listed under.
        label: the name used in error messages (default: the key with spaces).
        choices: allowed values (strings or integers); empty = any value of the type.
        minimum, maximum: inclusive bounds of a number (``exclusive_minimum``: strictly above).
        maximum_text: the maximum as users read it (``2^64 - 1``); values_text: the values, where
            neither choices nor bounds say it.
        min_items: fewest entries of a width list.
        check: extra check of a valid-typed value; raises :class:`UserError`.
        normalise: applied to a valid-typed value before it is stored (e.g. lower-casing).
        default_text: what the default means when it is ``None`` (e.g. "the benchmark's count").
        sweep: how a sweep searches the key (one of :data:`SWEEP_KINDS`); ``None``: a sweep-wide
            setting that trials may not change.
        sweep_flag: ``tune/search.py`` has a flag of its own for searching it.
        hparam: a column of the TensorBoard HParams table of a run.
        resource: says where or how fast a run goes, not what it learns; a resume may change it.
        flag: ``hinterval train`` has a flag for it.
        used_when: whether a config reads the key (``None``: every run does); used_with: those runs, in
            words (a flag given for a run that never reads it gets a warning naming them).
    """

    help: str
    group: str
    label: str = ""
    choices: Tuple[Any, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    exclusive_minimum: bool = False
    maximum_text: str = ""
    values_text: str = ""
    min_items: int = 0
    check: Optional[Callable[[Any], None]] = None
    normalise: Optional[Callable[[Any], Any]] = None
    default_text: str = ""
    sweep: Optional[str] = None
    sweep_flag: bool = False
    hparam: bool = False
    resource: bool = False
    flag: bool = True
    used_when: Optional[Callable[[Any], bool]] = None
    used_with: str = ""


def setting(default: Any, help: str, group: str, **meta: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field declared with its :class:`Setting` (see the module docstring)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help=help, group=group, **meta)})


@dataclass(frozen=True)
class Field:
    """One declared config field: its name, kind (``int``, ``float``, ``str``, ``bool``, ``widths``),
    whether ``None`` is allowed, its default and its :class:`Setting`."""

    name: str
    kind: str
    optional: bool
    default: Any
    setting: Setting

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.setting.label or self.name.replace("_", " ")


def _kind_of(hint: Any) -> Tuple[str, bool]:
    optional = False
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if typing.get_origin(hint) in (tuple, list):
        return "widths", optional
    return {bool: "bool", int: "int", float: "float", str: "str"}[hint], optional


def fields_of(cls: type) -> Dict[str, Field]:
    """The declared fields of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out: Dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        kind, optional = _kind_of(hints[f.name])
        out[f.name] = Field(f.name, kind, optional, f.default, f.metadata["setting"])
    return out


# --- checking values ------------------------------------------------------------------------------
def check_value(field: Field, value: Any) -> Any:
    """A value for ``field`` from a config file, a flag (a string) or code, checked and converted.

    Why so strict: ``gamma: high`` or ``seed: abc`` must be one clear error naming the key, not a
    ``TypeError`` later or a run that multiplies a string. Booleans are not numbers and numbers are
    not booleans; integers are whole (``3.0`` is 3, ``1.5`` is an error) and fit in 64 bits; numbers
    are finite; strings are short and free of control characters. YAML 1.1 reads ``1e-3`` as a
    string, so numeric strings are accepted.
    """
    if value is None:
        if field.optional:
            return None
        raise UserError(f"config key {field.name} ({field.flag}) must be set")
    convert = {"str": _as_str, "bool": _as_bool, "int": _as_int, "float": _as_float, "widths": _as_widths}[field.kind]
    value = convert(field, value)
    s = field.setting
    if s.normalise is not None:
        value = s.normalise(value)
    if s.choices and value not in s.choices:
        raise UserError(f"unknown {field.label} {short(value)}; choose one of: {', '.join(map(str, s.choices))}")
    if field.kind in ("int", "float"):
        _check_bounds(field, value)
    if field.kind == "float":
        _check_magnitude(field, value)
    if field.kind == "widths" and len(value) < s.min_items:
        raise UserError(f"{field.label} needs at least {s.min_items} width(s), got {short(value)}")
    if s.check is not None:
        s.check(value)
    return value


def _type_error(field: Field, what: str, value: Any) -> UserError:
    return UserError(f"config key {field.name} ({field.flag}) must be {what}, got {short(value)}")


def _as_str(field: Field, value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise _type_error(field, "a string", value)
    if not value or len(value) > MAX_STRING or any(ord(c) < 32 for c in value):
        raise _type_error(field, f"a non-empty string of at most {MAX_STRING} characters without control characters", value)
    return value


def parse_bool(value: Any) -> Optional[bool]:
    """``True``/``False`` for a bool or one of true/yes/on/1, false/no/off/0 (any case); else ``None``.

    The one reading of a boolean everywhere (config files, flags, ``--set``, sweep spaces)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return None


def _as_bool(field: Field, value: Any) -> bool:
    parsed = parse_bool(value)
    if parsed is None:
        raise _type_error(field, "true or false", value)
    return parsed


def whole_number(value: Any) -> Optional[int]:
    """``value`` as an int if it is one (``3``, ``3.0``, ``"3"``); ``None`` for bools, fractions, text, lists."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        return int(value) if _INT_TEXT.fullmatch(value.strip()) else None
    return None


#: numbers written in ASCII: ``int``/``float`` also take "١٢", "1_000" and full-width digits, and
#: ``str.isdigit`` takes "²", which ``int`` refuses; every number a user types is read with these
_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.ASCII | re.IGNORECASE)


def ascii_int(text: str) -> int:
    """An integer written in ASCII digits (``argparse`` ``type=``); ``ValueError`` otherwise."""
    if not isinstance(text, str) or not _INT_TEXT.fullmatch(text.strip()):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def ascii_float(text: str) -> float:
    """A number written in ASCII (``1e-3``, ``-.5``, ``inf``; ``argparse`` ``type=``); ``ValueError`` otherwise."""
    if not isinstance(text, str) or not _FLOAT_TEXT.fullmatch(text.strip()):
        raise ValueError(f"not a number: {text!r}")
    return float(text)



def _as_int(field: Field, value: Any) -> int:
    number = whole_number(value)
    if number is None:
        raise _type_error(field, "an integer", value)
    if not -INT64_MAX - 1 <= number <= INT64_MAX and field.setting.maximum is None:
        raise _type_error(field, "an integer that fits in 64 bits (at most 2^63 - 1)", number)
    return number


def _as_float(field: Field, value: Any) -> float:
    number: Any = value
    if isinstance(value, str):
        try:
            number = ascii_float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise _type_error(field, "a number", value)
    number = float(number)
    if not math.isfinite(number):
        raise _type_error(field, "a finite number", value)
    return number


def _as_widths(field: Field, value: Any) -> Tuple[int, ...]:
    """``"100,100"``, ``[100, 100]`` or ``100`` -> ``(100, 100)``; ``""`` -> ``()``."""
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
        w = whole_number(v)
        if w is None:
            raise UserError(f"layer widths must be comma-separated whole numbers like '100,100', got {short(value)}")
        if w < 1:
            raise UserError(f"{field.label} widths must be >= 1, got {short(value)}")
        if w > MAX_WIDTH:
            raise UserError(f"layer width {w} is above the limit of {MAX_WIDTH:,}")
        out.append(w)
    return tuple(out)


def _check_bounds(field: Field, value: float) -> None:
    s = field.setting
    lo, hi = s.minimum, s.maximum
    low_ok = lo is None or (value > lo if s.exclusive_minimum else value >= lo)
    high_ok = hi is None or value <= hi
    if low_ok and high_ok:
        return
    if field.kind == "int" and lo is not None and hi is not None:  # a whole range, as a type: name the key
        high = s.maximum_text or str(hi)
        raise UserError(f"config key {field.name} ({field.flag}) must be between {lo} and {high}, got {short(value)}")
    raise UserError(f"{field.label} must be {bounds_text(s)}, got {short(value)} ({field.flag})")


def _check_magnitude(field: Field, value: float) -> None:
    """A float setting ends up in float32 tensors, where a size below ~1e-38 is 0 and above ~3e38 infinite
    (``--gamma 1e-300`` made a box of width 0 and a 0/0 metric): refuse sizes outside
    [:data:`MIN_MAGNITUDE`, :data:`MAX_MAGNITUDE`], with room for what is derived from them (gamma / 2d)."""
    if value == 0 or MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE:
        return
    s = field.setting
    zero = "0 or " if (s.minimum is None or s.minimum < 0 or (s.minimum == 0 and not s.exclusive_minimum)) else ""
    size = "small" if abs(value) < 1 else "large"
    raise UserError(f"{field.label} {value:g} is too {size} for the 32-bit floats it is computed in; use {zero}a value "
                    f"between {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} in size ({field.flag})")


def bounds_text(s: Setting) -> str:
    """``>= 0``, ``> 0``, ``in [0, 1]``, ... (empty: unbounded)."""
    lo, hi = s.minimum, s.maximum
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    high = s.maximum_text or (fmt(hi) if hi is not None else "")
    if lo is not None and hi is not None:
        return f"in ({fmt(lo)}, {high}]" if s.exclusive_minimum else f"in [{fmt(lo)}, {high}]"
    if lo is not None:
        return f"> {fmt(lo)}" if s.exclusive_minimum else f">= {fmt(lo)}"
    if hi is not None:
        return f"<= {high}"
    return ""


# --- what is derived ------------------------------------------------------------------------------
def default_text(field: Field) -> str:
    """The default as a user reads it."""
    if field.setting.default_text:
        return field.setting.default_text
    if field.kind == "widths":
        return ",".join(map(str, field.default)) or "(none)"
    if field.kind == "bool":
        return "true" if field.default else "false"
    return f"{field.default:g}" if isinstance(field.default, float) else str(field.default)


def values_text(field: Field) -> str:
    """The values a field takes, for ``--help`` and the docs."""
    s = field.setting
    if s.values_text:
        return s.values_text
    if s.choices:
        return " | ".join(map(str, s.choices))
    what = {"int": "integer", "float": "number", "str": "text", "bool": "true | false",
            "widths": "comma-separated widths, e.g. 100,100"}[field.kind]
    bounds = bounds_text(s)
    return f"{what} {bounds}".strip() if field.kind in ("int", "float") else what


def help_text(field: Field, preset_keys: Sequence[str]) -> str:
    """``--help`` line: what it does, its values and its real default (or that presets set it)."""
    default = default_text(field)
    if field.name in preset_keys:
        default = f"the benchmark preset's value, else {default}"
    return f"{field.setting.help} [{values_text(field)}] (default: {default})"


def add_flags(parser: argparse.ArgumentParser, fields: Mapping[str, Field], preset_keys: Sequence[str]) -> None:
    """One ``--flag`` per field, in argument groups. Values stay strings here: :func:`check_value`
    checks them like config-file values, so a flag and a config key give the same error."""
    groups: Dict[str, Any] = {}
    for f in fields.values():
        if not f.setting.flag:
            continue
        group = groups.get(f.setting.group) or groups.setdefault(f.setting.group, parser.add_argument_group(f.setting.group))
        metavar = "{" + ",".join(map(str, f.setting.choices)) + "}" if 0 < len(f.setting.choices) <= 4 else f.name.upper()
        group.add_argument(f.flag, dest=f.name, default=None, metavar=metavar, help=help_text(f, preset_keys))


def flagged(fields: Mapping[str, Field]) -> Iterator[Field]:
    return (f for f in fields.values() if f.setting.flag)


def markdown_table(fields: Mapping[str, Field], preset_keys: Sequence[str]) -> str:
    """The config reference (``docs/config.md``), one table row per field, grouped."""
    lines: List[str] = [
        "# Configuration reference",
        "",
        "Generated from the config declaration (`hinterval/config.py`) by `python -m hinterval.config`;",
        "a test fails when this file is out of date. Every key can be given in a `--config` YAML/JSON file,",
        "as a `hinterval train` flag (`--key-with-dashes`) or, in a sweep, with `--set key=value`.",
        "Layers: defaults < the benchmark's preset (`hinterval/presets.py`) < `--config` file < flags.",
        "",
        "Sweep column: how `tune/search.py` searches the key (a range `LOW:HIGH` is read on that scale;",
        "`choice` takes a list), `flag` when the sweep has a flag of its own for it, `-` when trials may not",
        "change it. Resource keys may change when a run is resumed. A key \"used only with\" some runs has no",
        "effect on others: given as a flag there, it is named in a warning line.",
    ]
    group = None
    for f in fields.values():
        if f.setting.group != group:
            group = f.setting.group
            lines += ["", f"## {group}", "", "| key | values | default | sweep | what it does |", "|---|---|---|---|---|"]
        default = default_text(f) + (" (preset)" if f.name in preset_keys else "")
        sweep = f.setting.sweep or "-"
        if f.setting.sweep_flag:
            sweep += ", flag"
        if f.setting.resource:
            sweep += " (resource)"
        used = f" (used only with {f.setting.used_with})" if f.setting.used_with else ""
        lines.append(f"| `{f.name}` | {values_text(f).replace('|', '&#124;')} | {default} | {sweep} | "
                     f"{(f.setting.help + used).replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"

