"""Reading YAML and JSON text in which a key given twice is an error, not "the last one wins".

Why: ``yaml.safe_load`` and ``json.loads`` silently keep the last of two equal keys, so a config
file with ``gamma: 0.1`` on line 3 and ``gamma: 5`` on line 40 runs with 5 and nobody is told. Both
formats define a mapping's keys as unique; every config file, search space, run ``config.json``,
``sweep.json`` and sweep record is read through :func:`load_yaml` or :func:`load_json`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

from hinterval.errors import short


class DuplicateKey(ValueError):
    """A mapping names one key twice; ``lines`` are 1-based line numbers where known (YAML)."""

    def __init__(self, key: Any, lines: Optional[Tuple[int, int]] = None):
        where = "" if not lines else f" (line {lines[0]})" if lines[0] == lines[1] else f" (lines {lines[0]} and {lines[1]})"
        super().__init__(f"key {short(key)} is given twice{where}; give it once")
        self.key, self.lines = key, lines


def _unique_pairs(pairs: Iterable[Tuple[Any, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def load_json(text: str | bytes) -> Any:
    """``json.loads`` that raises :class:`DuplicateKey` (a ``ValueError``) for a key given twice."""
    return json.loads(text, object_pairs_hook=_unique_pairs)


def _loader() -> Any:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` (no code runs) that refuses a key given twice in one mapping.

        Keys merged in with ``<<: *alias`` may be overridden (that is what a merge is for); two
        explicit keys may not.
        """

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                        continue
                    key = self.construct_object(key_node, deep=False)
                    line = key_node.start_mark.line + 1
                    try:
                        if key in seen:
                            raise DuplicateKey(key, (seen[key], line))
                        seen[key] = line
                    except TypeError:  # an unhashable key: the base class reports it
                        continue
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


_LOADER: List[Any] = []


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that raises :class:`DuplicateKey` for a key given twice in one mapping."""
    import yaml

    if not _LOADER:
        _LOADER.append(_loader())
    return yaml.load(text, Loader=_LOADER[0])  # noqa: S506 - a SafeLoader subclass


def read_json_file(path: str | Path, what: str, limit: int = 64 << 20) -> Any:
    """The JSON document in regular file ``path`` (at most ``limit`` bytes read): a FIFO or device is a
    :class:`~hinterval.errors.UserError` (:func:`~hinterval.files.open_regular`), a key given twice a
    :class:`DuplicateKey`."""
    from hinterval.files import open_regular

    with open_regular(path, what) as f:
        return load_json(f.read(limit))
