"""MNIST and Fashion-MNIST from their IDX files (raw or gzipped), read with our own small parser.

IDX format (LeCun): a big-endian 32-bit magic number ``0x0000TTNN`` (``TT`` = 0x08 for uint8,
``NN`` = number of dimensions), then ``NN`` big-endian 32-bit dimension sizes, then the data.
Images are magic 2051 (``N x 28 x 28``), labels magic 2049 (``N``).

Files are looked up directly in ``<data_dir>/`` and in ``<data_dir>/MNIST/raw/``
(``FashionMNIST/raw`` for Fashion, the layout torchvision's downloader leaves); each file may be
``.gz`` or uncompressed.

Benchmarks (validation = 10% of train per class, seeded; the official test set is the test split):

* ``split-mnist`` / ``split-fashion``: 5 tasks x 2 classes, classes in natural order
  (task ``t`` = classes ``{2t, 2t+1}``), inputs flattened 28x28 = 784 features in [0, 1].
* ``permuted-mnist`` / ``permuted-fashion``: 10 tasks (any ``num_tasks``, e.g. 100) x 10 classes;
  images zero-padded to 32x32 and flattened to 1024 features, then permuted. Task 0 is the
  identity permutation (the original images); later tasks draw permutations from the seed.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from hinterval.data.base import Benchmark, permuted_tasks, split_by_classes
from hinterval.data.common import VAL_FRACTION, default_data_dir, require_data_dir, resolve_tasks
from hinterval.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

_GZ = ", ".join(f + ".gz" for f in FILES)
_HOW = {
    "mnist": f"run `hinterval data download mnist --data-dir DIR` (or download {_GZ} once from "
             "https://ossci-datasets.s3.amazonaws.com/mnist/ into DIR) and pass --data-dir DIR",
    "fashion": "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, files in "
               f"{FASHION_DEFAULT_DIR}) or run `hinterval data download fashion-mnist --data-dir DIR` and pass "
               "--data-dir DIR",
}
_NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}
_SUBDIRS = {"mnist": ("MNIST/raw", "MNIST"), "fashion": ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist")}


#: the largest IDX payload read (header dims product); MNIST's training images are 47 MB
MAX_IDX_BYTES = 1 << 31


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse one IDX file (``.gz`` or raw) into a uint8 array, validating magic number and size.

    Why our own parser: it is short, needs no extra dependency, and lets every malformed file (wrong
    magic, truncated, corrupt gzip) become one :class:`DataError` naming the file. The header is
    read and checked first; then exactly the number of bytes it announces (at most
    :data:`MAX_IDX_BYTES`) is read from the stream, so a gzip bomb (megabytes on disk, gigabytes
    inflated) costs no more memory than an honest file.
    """
    kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
    redownload = "delete it and download again"
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"IDX file {path} is truncated ({len(head)} bytes); {redownload}")
            magic = int.from_bytes(head, "big")
            if magic != expected_magic:
                raise DataError(f"{path} is not an IDX {kind} file: magic number {magic}, expected {expected_magic}")
            ndim = magic & 0xFF
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"IDX file {path} is truncated inside its header; {redownload}")
            dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
            size = math.prod(dims)
            if size > MAX_IDX_BYTES:
                raise DataError(f"IDX file {path}: its header {dims} announces {size:,} bytes, more than the "
                                f"{MAX_IDX_BYTES:,} an IDX {kind} file may hold here (corrupt?); {redownload}")
            if path.suffix != ".gz":
                on_disk = path.stat().st_size - 4 - 4 * ndim
                if on_disk != size:
                    raise DataError(f"IDX file {path} has {on_disk} data bytes but its header {dims} needs {size} "
                                    f"(truncated or corrupt); {redownload}")
            data = f.read(size)
            if len(data) != size:
                raise DataError(f"IDX file {path} has {len(data)} data bytes but its header {dims} needs {size} "
                                f"(truncated or corrupt); {redownload}")
            if f.read(1):
                raise DataError(f"IDX file {path} holds more data than its header {dims} announces (corrupt, or not "
                                f"an IDX file); {redownload}")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc} (corrupt or truncated download? {redownload})") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def find_idx_files(data_dir: Path, flavour: str) -> List[Path]:
    """Paths of the four IDX files: the first candidate directory holding all four (raw or ``.gz``)."""
    candidates = [data_dir / s for s in _SUBDIRS[flavour]] + [data_dir]
    best_missing: Optional[List[str]] = None
    for d in candidates:
        if not d.is_dir():
            continue
        found, missing = [], []
        for name in FILES:
            hit = next((d / n for n in (name, name + ".gz") if (d / n).is_file()), None)
            (found if hit else missing).append(hit or name)
        if not missing:
            return found
        if best_missing is None or len(missing) < len(best_missing):
            best_missing = missing
    where = " or ".join(str(c) for c in candidates)
    detail = f" (missing: {', '.join(best_missing)})" if best_missing and len(best_missing) < len(FILES) else ""
    raise DataError(f"{_NAMES[flavour]} IDX files not found in {where}{detail}; expected "
                    f"{', '.join(FILES)} (each raw or .gz); {_HOW[flavour]}")


def idx_files(data_dir: Optional[str], flavour: str) -> List[Path]:
    """The four IDX files read from ``data_dir`` (or ``$HINTERVAL_DATA_DIR``; for Fashion, its Debian folder)."""
    data_dir = default_data_dir(data_dir)
    if data_dir is None and flavour == "fashion" and Path(FASHION_DEFAULT_DIR).is_dir():
        data_dir = FASHION_DEFAULT_DIR
    return find_idx_files(require_data_dir(data_dir, _NAMES[flavour], _HOW[flavour]), flavour)


def load_idx_arrays(data_dir: Optional[str], flavour: str) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: uint8 images ``(N, 1, 28, 28)`` and int64 labels."""
    xtr_p, ytr_p, xte_p, yte_p = idx_files(data_dir, flavour)
    out = []
    for xp, yp in ((xtr_p, ytr_p), (xte_p, yte_p)):
        x, y = read_idx(xp, IMAGES_MAGIC), read_idx(yp, LABELS_MAGIC)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{xp}: expected images of shape (N, 28, 28), got {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{yp}: expected {len(x)} labels to match {xp}, got shape {y.shape}")
        if len(y) and int(y.max()) > 9:
            raise DataError(f"{yp}: labels must be 0..9, found {int(y.max())}")
        out += [torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))]
    if len(out[1]) == 0 or len(out[3]) == 0:
        raise DataError(f"{_NAMES[flavour]} files in {xtr_p.parent} hold no samples")
    return out[0], out[1], out[2], out[3]


def split_idx(name: str, flavour: str, *, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    """Split MNIST / Fashion: 5 x 2-way tasks, classes in natural order, 784 inputs."""
    n = resolve_tasks(name, num_tasks, standard=5, maximum=5)
    xtr, ytr, xte, yte = load_idx_arrays(data_dir, flavour)
    tasks = split_by_classes(xtr, ytr, xte, yte, classes_per_task=2, num_tasks=n, val_fraction=VAL_FRACTION,
                             seed=seed, class_order=list(range(10)), scale=255.0)
    return Benchmark(name, tasks, input_shape=(784,), classes_per_task=2, num_classes=2 * n,
                     meta={"class_order": list(range(10))})


def permuted_idx(name: str, flavour: str, *, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    """Permuted MNIST / Fashion: 10-way tasks on 32x32-padded (1024-feature) permuted images."""
    n = resolve_tasks(name, num_tasks, standard=10)
    xtr, ytr, xte, yte = load_idx_arrays(data_dir, flavour)
    tasks = permuted_tasks(xtr, ytr, xte, yte, num_tasks=n, num_features=1024, val_fraction=VAL_FRACTION,
                           seed=seed, pad_to=32, scale=255.0)
    return Benchmark(name, tasks, input_shape=(1024,), classes_per_task=10, num_classes=10 * n,
                     meta={"identity_first_task": True})
