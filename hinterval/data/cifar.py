"""CIFAR-10 / CIFAR-100 from the official python-pickle batches, read with a restricted unpickler.

On-disk layout (the official ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpacked in DIR):

* ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (dicts with
  ``b'data'``: uint8 ``(N, 3072)`` and ``b'labels'``: list of ints), ``batches.meta``.
* ``cifar-100-python/``: ``train``, ``test`` (``b'data'`` and ``b'fine_labels'``), ``meta``.

Either folder is accepted under ``data_dir`` or as ``data_dir`` itself. We read the pickles
ourselves, with an unpickler that only resolves the few numpy
globals an array needs, so a tampered file cannot run code.

Benchmarks (validation = 10% of train per class, seeded; the official test set is the test split):
``split-cifar10`` 5 tasks x 2 classes, ``split-cifar100`` 10 tasks x 10 classes, classes in natural
order (task ``t`` = classes ``t*k .. t*k+k-1``). Images stay uint8 ``(N, 3, 32, 32)``; inputs are
scaled to [0, 1], normalised with the usual per-channel mean/std, and flip+crop augmented in
training.
"""
from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from hinterval.data.base import Benchmark, split_by_classes
from hinterval.data.common import VAL_FRACTION, require_data_dir, resolve_tasks
from hinterval.errors import DataError

# Usual per-channel statistics of the training sets (inputs in [0, 1]).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

_SPECS = {
    10: dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
             meta="batches.meta", label_key=b"labels", names_key=b"label_names", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
             mean=CIFAR10_MEAN, std=CIFAR10_STD),
    100: dict(folder="cifar-100-python", train=["train"], test=["test"], meta="meta", label_key=b"fine_labels",
              names_key=b"fine_label_names", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", mean=CIFAR100_MEAN, std=CIFAR100_STD),
}


#: the only globals a CIFAR batch (a dict of bytes, lists and one uint8 array) names: numpy's array
#: reconstructors (``numpy.core`` in pickles written by numpy < 2, ``numpy._core`` by numpy >= 2;
#: ``_frombuffer`` in protocol-5 pickles) and, in protocol-2 pickles written by Python 3, the
#: function that encodes bytes
ALLOWED_GLOBALS = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                             *((f"{package}.multiarray", "_reconstruct") for package in ("numpy.core", "numpy._core")),
                             *((f"{package}.numeric", "_frombuffer") for package in ("numpy.core", "numpy._core"))})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array globals; anything else is a :class:`DataError`.

    Why: ``pickle.load`` on a downloaded file runs whatever callable the file names (e.g.
    ``os.system``); CIFAR batches only ever need numpy's array reconstructors.
    """

    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"{self.source}: refusing to unpickle global {module}.{name}; a CIFAR batch only "
                            "contains numpy arrays, lists and bytes (tampered or not a CIFAR file?)")
        with warnings.catch_warnings():  # numpy >= 2 warns on any numpy.core name that is not _reconstruct
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    """Load one pickle with :class:`RestrictedUnpickler`; any failure becomes a :class:`DataError`."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, str(path)).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or garbage pickles raise many types
        raise DataError(f"cannot read CIFAR pickle {path}: {type(exc).__name__}: {exc} "
                        "(corrupt download? delete it and download again)") from None


def _get(d: Dict[Any, Any], key: bytes) -> Any:
    """``d[key]`` for bytes keys (Python 2 pickles) or the str key (pickles written by Python 3)."""
    if key in d:
        return d[key]
    return d.get(key.decode())


def read_batch(path: Path, label_key: bytes) -> Tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from one batch file, validated."""
    d = load_pickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict with keys {b'data'!r} and {label_key!r}, got {type(d).__name__}")
    data, labels = _get(d, b"data"), _get(d, label_key)
    if data is None or labels is None:
        keys = ", ".join(repr(k) for k in list(d)[:8])
        raise DataError(f"{path}: expected keys {b'data'!r} and {label_key!r}, found {keys} "
                        "(wrong file for this benchmark, e.g. CIFAR-10 vs CIFAR-100?)")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: {b'data'!r} must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {label_key!r} must be {len(data)} integer labels, got {labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def find_root(data_dir: Optional[str], num_classes: int) -> Path:
    """The CIFAR folder: ``data_dir/<folder>`` or ``data_dir`` itself, whichever holds the batches."""
    spec = _SPECS[num_classes]
    how = (f"run `hinterval data download cifar{num_classes} --data-dir DIR` (or download {spec['url']} once and "
           "unpack it in DIR) and pass --data-dir DIR")
    base = require_data_dir(data_dir, f"CIFAR-{num_classes}", how)
    needed = spec["train"] + spec["test"]
    for cand in (base / spec["folder"], base):
        if all((cand / f).is_file() for f in needed):
            return cand
    probe = base / spec["folder"] if (base / spec["folder"]).is_dir() else base
    missing = [f for f in needed if not (probe / f).is_file()]
    raise DataError(f"CIFAR-{num_classes} batches not found: expected {', '.join(needed)} in {base / spec['folder']} "
                    f"or {base} (missing in {probe}: {', '.join(missing)}); {how}")


def load_cifar_arrays(data_dir: Optional[str], num_classes: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, List[str]]:
    """``(x_train, y_train, x_test, y_test, class_names)`` with uint8 ``(N, 3, 32, 32)`` images."""
    spec = _SPECS[num_classes]
    root = find_root(data_dir, num_classes)
    parts = {}
    for split in ("train", "test"):
        batches = [read_batch(root / f, spec["label_key"]) for f in spec[split]]
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"CIFAR-{num_classes} {split} labels in {root} must be 0..{num_classes - 1}, "
                            f"found {int(y.min())}..{int(y.max())}")
        parts[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    names: List[str] = []
    meta_path = root / spec["meta"]
    if meta_path.is_file():  # optional: class names for reports only
        meta = load_pickle(meta_path)
        raw = _get(meta, spec["names_key"]) if isinstance(meta, dict) else None
        if isinstance(raw, list):
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    return (*parts["train"], *parts["test"], names)


def split_cifar(name: str, num_classes: int, *, num_tasks: Optional[int], seed: int,
                data_dir: Optional[str]) -> Benchmark:
    """Split CIFAR-10 (5 x 2) or CIFAR-100 (10 x 10) in natural class order, uint8 CHW images."""
    spec = _SPECS[num_classes]
    k = 2 if num_classes == 10 else 10
    n = resolve_tasks(name, num_tasks, standard=num_classes // k, maximum=num_classes // k)
    xtr, ytr, xte, yte, names = load_cifar_arrays(data_dir, num_classes)
    present = sorted(torch.unique(ytr).tolist())
    order = list(range(num_classes))
    missing = sorted(set(order[: n * k]) - set(present))
    if missing:
        raise DataError(f"CIFAR-{num_classes} training data has no samples of class(es) {missing[:10]}")
    tasks = split_by_classes(xtr, ytr, xte, yte, classes_per_task=k, num_tasks=n, val_fraction=VAL_FRACTION,
                             seed=seed, class_order=order, flatten=False, scale=255.0, augment=True,
                             mean=spec["mean"], std=spec["std"])
    return Benchmark(name, tasks, input_shape=(3, 32, 32), classes_per_task=k, num_classes=k * n,
                     meta={"class_order": order, "class_names": names})
