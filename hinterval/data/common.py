"""Small helpers shared by the on-disk benchmark loaders (MNIST, Fashion, CIFAR, TinyImageNet)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from hinterval.errors import DataError, UserError

VAL_FRACTION = 0.1  # validation carved (stratified, seeded) from train; never from test
#: the data directory used when no --data-dir is given (each node of a cluster may set its own)
DATA_DIR_ENV = "HINTERVAL_DATA_DIR"


def default_data_dir(data_dir: Optional[str]) -> Optional[str]:
    """``data_dir``, or ``$HINTERVAL_DATA_DIR`` when it is not given.

    Why: a trial reads its data on the node it runs on; with the variable set on every node (its
    own disk, its own path) a sweep needs no ``--data-dir`` that fits every node at once.
    """
    return data_dir or os.environ.get(DATA_DIR_ENV) or None


def resolve_tasks(benchmark: str, num_tasks: Optional[int], standard: int, maximum: Optional[int] = None) -> int:
    """``num_tasks`` or the benchmark's standard count, checked against what the data allows.

    Why: a split benchmark cannot have more tasks than its classes allow, and saying so up front
    beats a ``ValueError`` from deep inside the class splitter.
    """
    n = standard if num_tasks is None else int(num_tasks)
    if n < 1:
        raise UserError(f"{benchmark}: num_tasks must be >= 1, got {n}")
    if maximum is not None and n > maximum:
        raise UserError(f"{benchmark}: at most {maximum} tasks, got num_tasks={n}")
    return n


def require_data_dir(data_dir: Optional[str], what: str, how: str) -> Path:
    """The data directory (``data_dir`` or ``$HINTERVAL_DATA_DIR``) as an absolute path, or a
    :class:`DataError` telling how to get the data."""
    data_dir = default_data_dir(data_dir)
    if data_dir is None:
        raise DataError(f"{what} needs --data-dir DIR (or ${DATA_DIR_ENV}) pointing at the data; {how}")
    path = Path(data_dir).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"{what}: data directory {path} does not exist; {how}")
    return path
