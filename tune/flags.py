"""The sweep's command-line values, checked: the search flags (one per config key declared
``sweep_flag``), ``--set KEY=VALUE`` items, and the bounds of the run flags (trial counts,
resources, seeds, the confirmation). Each problem is one :class:`UserError` naming the flag. No Ray.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from hinterval.config import FIELD_SPECS, FIELDS
from hinterval.errors import UserError, short
from hinterval.strict_load import load_yaml


def _space_flag_help(key: str) -> str:
    f = FIELD_SPECS[key]
    if f.kind == "widths":
        how = "widths to try, ';'-separated, e.g. '50,50;100,100' (one value fixes it)"
    elif f.setting.sweep in ("loguniform", "uniform"):
        how = f"LOW:HIGH ({'log' if f.setting.sweep == 'loguniform' else 'linear'} scale) or a fixed value"
    else:
        how = "values to try, comma-separated, e.g. " + ",".join(map(str, f.setting.choices[:2] or (16, 24, 48))) + \
              " (one value fixes it)"
    return f"{f.setting.help}. To search: {how}"


#: flag -> config key searched or fixed by it -> help (the keys declared ``sweep_flag`` in the config)
SPACE_FLAGS = tuple((f.flag, f.name, _space_flag_help(f.name)) for f in FIELD_SPECS.values() if f.setting.sweep_flag)
#: config keys ``--set`` may not fix: the sweep picks them per trial or has its own flag
NOT_SETTABLE = ("device", "num_threads", "benchmark")
#: the confirmation's (extra training seeds, configs confirmed) by default: 3 seeds counting the search's
#: own run, the winner only (its margin is judged against its seed std; a runner-up costs another wave of
#: trials and the quick start must stay short); and with --smoke-test: one extra run
CONFIRM_DEFAULT, CONFIRM_SMOKE = (2, 1), (1, 1)
#: the longest sweep name (a directory name, with room for the date-time suffix of a repeated default name)
MAX_NAME = 100
#: at most this many trials (and trials at once) in one sweep
MAX_SAMPLES = 100_000


def parse_fixed(items: List[str]) -> Dict[str, Any]:
    """``--set KEY=VALUE`` items -> config overrides (values parsed as YAML scalars)."""
    import yaml

    out: Dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in FIELDS:
            raise UserError(f"--set: unknown config key {key!r}; valid keys: {', '.join(sorted(FIELDS))}")
        if key in NOT_SETTABLE:
            raise UserError(f"--set {key}: chosen per trial from --gpus-per-trial/--cpus-per-trial (--benchmark for the benchmark)")
        try:
            parsed = load_yaml(value)
        except (yaml.YAMLError, ValueError):
            raise UserError(f"--set {key}: {value[:60]!r} is not a valid value") from None
        if parsed is None:  # `--set lr=` would otherwise be silently ignored
            raise UserError(f"--set {key}= needs a value, e.g. --set {key}=VALUE")
        if key in out and out[key] != parsed:  # the last one would silently win
            raise UserError(f"--set {key} is given twice, differently ({short(out[key])} and {short(parsed)}); give it once")
        out[key] = parsed
    return out


def check_run_flags(opt: Mapping[str, Any]) -> None:
    """The bounds of the sweep's run flags (trial counts, resources, seeds), each a one-line :class:`UserError`."""
    for flag, val, lo in (("--num-samples", opt["num_samples"], 1), ("--max-concurrent", opt["max_concurrent"], 0),
                          ("--confirm-seeds", opt.get("confirm_seeds"), 0),
                          ("--confirm-top", opt.get("confirm_top"), 1)):
        if val is None:
            continue
        if not lo <= val <= MAX_SAMPLES:
            raise UserError(f"{flag} must be between {lo} and {MAX_SAMPLES:,}, got {val}"[:200])
    cpus, gpus = opt["cpus_per_trial"], opt["gpus_per_trial"]
    if cpus <= 0 or gpus < 0:
        raise UserError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {cpus:g}, {gpus:g}")
    for flag, val in (("--cpus-per-trial", cpus), ("--gpus-per-trial", gpus)):
        if not (math.isfinite(val) and val <= 100_000 and (val == int(val) or (val < 1 and abs(val * 1e4 - round(val * 1e4)) < 1e-6))):
            raise UserError(f"{flag} {val:g}: Ray takes whole numbers, or fractions below 1 in steps of 0.0001")
    if not 0 <= opt["seed"] < 2**32:
        raise UserError(f"--seed must be between 0 and 2^32 - 1 (the TPE sampler's seed), got {opt['seed']}")
    if gpus > 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-trial above 1 must be a whole number, got {gpus:g}")
    if opt["iters_per_task"] is not None and opt["iters_per_task"] < 0:
        raise UserError(f"--iters-per-task must be >= 1 (or 0 for the preset's value), got {opt['iters_per_task']}")


def parse_address(address: str) -> Optional[Tuple[str, int]]:
    """``(host, port)`` of ``--address`` (``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST:PORT``); ``None``
    for ``auto`` (Ray finds the cluster this machine belongs to). Raises :class:`UserError` for anything else."""
    text = address.strip()
    if text == "auto":
        return None
    m = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", text)
    port = int(m.group(2)) if m else 0
    if not m or not 1 <= port <= 65535:
        why = f"port {port} is outside 1-65535" if m else "expected auto, HOST:PORT or ray://HOST:PORT"
        raise UserError(f"--address {short(address)}: {why} (e.g. --address 10.0.0.5:6379, the head's `ray start --head` port)")
    return m.group(1).strip("[]"), port
