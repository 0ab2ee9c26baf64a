"""TinyImageNet-200: JPEGs decoded once into a cached uint8 array file, then 40 x 5-way tasks.

On-disk layout (``tiny-imagenet-200.zip`` from http://cs231n.stanford.edu/tiny-imagenet-200.zip,
unzipped into DIR; accepted as ``DIR/tiny-imagenet-200`` or ``DIR`` itself):

* ``wnids.txt``: the 200 class ids, one per line, NOT in sorted order. Class order here is the
  *sorted* wnid list (class ``c`` = ``sorted(wnids)[c]``), so it does not depend on file order.
* ``train/<wnid>/images/*.JPEG``: 500 training images per class.
* ``val/images/*.JPEG`` + ``val/val_annotations.txt`` (tab separated: file, wnid, bbox x4):
  50 labelled images per class. The ``test/`` split has no labels, so (standard CL protocol)
  ``val`` is our *test* split and our validation split is carved from train with the seed.

Some JPEGs are grayscale: they are converted to RGB. All images are 64x64. Decoding 110k JPEGs
takes minutes, so it happens once: the arrays go to ``<root>/hinterval_cache_uint8.npz``
(written atomically: temp file + ``os.replace``, under a ``filelock`` lock so concurrent trials
do not decode twice). If the data folder is read-only the cache goes to ``$HINTERVAL_CACHE_DIR`` or
``~/.cache/hinterval`` instead, with a note on stderr. The cache records what it was built from
(:func:`fingerprint`: the label files' bytes, every image's path, label, size and time) and is
rebuilt when any of it changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from hinterval.console import progress_bar
from hinterval.files import atomic_write, open_regular, regular_file_stat, waiting_lock
from hinterval.data.base import Benchmark, split_by_classes
from hinterval.data.common import VAL_FRACTION, require_data_dir, resolve_tasks
from hinterval.errors import DataError, UserError

FOLDER = "tiny-imagenet-200"
CACHE_NAME = "hinterval_cache_uint8.npz"
CACHE_FORMAT = 2  # 2: the fingerprint covers every file's size and time and the label files' bytes
SIDE = 64
MEAN, STD = (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)  # usual TinyImageNet train statistics
HOW = ("run `hinterval data download tinyimagenet --data-dir DIR` (or download "
       "http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into DIR, giving DIR/tiny-imagenet-200/wnids.txt, "
       "train/, val/), then pass --data-dir DIR")


def find_root(data_dir: Optional[str]) -> Path:
    """``data_dir/tiny-imagenet-200`` or ``data_dir`` itself, whichever holds ``wnids.txt``."""
    base = require_data_dir(data_dir, "TinyImageNet", HOW)
    for cand in (base / FOLDER, base):
        if (cand / "wnids.txt").is_file():
            return cand
    raise DataError(f"TinyImageNet: no wnids.txt in {base / FOLDER} or {base}; {HOW}")


def read_wnids(root: Path) -> List[str]:
    """Class ids from ``wnids.txt``, sorted (the file's own order is arbitrary)."""
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()]
    if not wnids:
        raise DataError(f"TinyImageNet: {root / 'wnids.txt'} is empty; {HOW}")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"TinyImageNet: {root / 'wnids.txt'} lists a class id twice")
    return sorted(wnids)


def list_files(root: Path, wnids: List[str]) -> Tuple[List[Path], List[int], List[Path], List[int]]:
    """``(train_files, train_labels, val_files, val_labels)`` in a deterministic order."""
    index = {w: i for i, w in enumerate(wnids)}
    train_files: List[Path] = []
    train_labels: List[int] = []
    for w in wnids:
        d = root / "train" / w / "images"
        if not d.is_dir():
            raise DataError(f"TinyImageNet: missing training folder {d} for class {w} listed in wnids.txt; {HOW}")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        if not files:
            raise DataError(f"TinyImageNet: no JPEGs in {d}")
        train_files += files
        train_labels += [index[w]] * len(files)
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"TinyImageNet: missing {ann} (tab separated: file, wnid, bbox); {HOW}")
    val_files: List[Path] = []
    val_labels: List[int] = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(f"TinyImageNet: {ann} line {n} is not 'file<TAB>wnid<TAB>bbox...': {line!r}")
        fname, w = cols[0].strip(), cols[1].strip()
        if w not in index:
            raise DataError(f"TinyImageNet: {ann} line {n} names class {w!r} that is not in wnids.txt")
        p = root / "val" / "images" / fname
        if not p.is_file():
            raise DataError(f"TinyImageNet: {ann} line {n} names {p}, which does not exist")
        val_files.append(p)
        val_labels.append(index[w])
    if not val_files:
        raise DataError(f"TinyImageNet: {ann} lists no images")
    return train_files, train_labels, val_files, val_labels


def decode_jpeg(path: Path) -> np.ndarray:
    """One image as uint8 ``(3, 64, 64)``; grayscale/CMYK images are converted to RGB."""
    from PIL import Image

    try:
        with open_regular(path, "TinyImageNet image") as f, Image.open(f) as im:  # a FIFO named *.JPEG must not block
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UserError:
        raise
    except Exception as exc:  # PIL raises several types for broken files
        raise DataError(f"TinyImageNet: cannot decode {path}: {exc}; re-extract the zip") from None
    if arr.shape != (SIDE, SIDE, 3):
        raise DataError(f"TinyImageNet: {path} is {arr.shape[1]}x{arr.shape[0]}, expected {SIDE}x{SIDE}")
    return arr.transpose(2, 0, 1)


def decode_all(files: List[Path], desc: str) -> np.ndarray:
    """Decode ``files`` into one ``(N, 3, 64, 64)`` uint8 array with a progress bar where bars are shown
    (:func:`~hinterval.console.progress_shown`; threads: PIL releases the GIL while decoding)."""
    out = np.empty((len(files), 3, SIDE, SIDE), dtype=np.uint8)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        for i, arr in enumerate(progress_bar(pool.map(decode_jpeg, files, chunksize=64), desc, total=len(files),
                                             mininterval=1.0)):
            out[i] = arr
    return out


def fingerprint(root: Path, wnids: List[str], train_files: List[Path], train_labels: List[int],
                val_files: List[Path], val_labels: List[int]) -> str:
    """What the cache was built from: the class list, every image's path, label, size and modification
    time, and the bytes of ``wnids.txt`` and ``val/val_annotations.txt``.

    Why so much: a cache keyed on file counts alone was reused after ``val_annotations.txt`` changed
    (same counts, other labels), and training silently used the old labels. Stat-ing 110k files
    costs about a second; reading them again would cost the minutes the cache saves. An image
    replaced in place with the same size and time is not noticed (as by ``make``).
    """
    h = hashlib.sha256()
    for name in ("wnids.txt", "val/val_annotations.txt"):
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for files, labels in ((train_files, train_labels), (val_files, val_labels)):
        for p, y in zip(files, labels):
            st = regular_file_stat(p, "TinyImageNet image")  # a FIFO is refused before decoding starts
            h.update(f"{p.relative_to(root)}\t{y}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return json.dumps({"format": CACHE_FORMAT, "wnids": wnids, "n_train": len(train_files), "n_val": len(val_files),
                       "side": SIDE, "sources": h.hexdigest()}, sort_keys=True)


def dir_writable(d: Path) -> bool:
    """Whether we can create files in ``d`` (tried for real: ``os.access`` lies for root and on NFS)."""
    try:
        with tempfile.TemporaryFile(dir=d):
            return True
    except OSError:
        return False


def cache_path(root: Path) -> Path:
    """``<root>/hinterval_cache_uint8.npz``, or a per-root file in the user cache dir if ``root`` is read-only."""
    if dir_writable(root):
        return root / CACHE_NAME
    base = Path(os.environ.get("HINTERVAL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hinterval")
    key = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    path = base / f"tinyimagenet-{key}-{CACHE_NAME}"
    print(f"hinterval: {root} is read-only; caching decoded TinyImageNet in {path}", file=sys.stderr)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"TinyImageNet: cannot create cache dir {base} ({exc}); set HINTERVAL_CACHE_DIR to a writable folder") from None
    return path


def _read_cache(path: Path, expected: str) -> Optional[Dict[str, np.ndarray]]:
    """The cached arrays if ``path`` exists, is readable and matches ``expected``; else ``None``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != expected:
                return None
            return {k: z[k] for k in ("x_train", "y_train", "x_val", "y_val")}
    except Exception:  # a stale or broken cache is rebuilt, never fatal
        return None


def load_arrays(data_dir: Optional[str]) -> Tuple[Dict[str, np.ndarray], List[str], Path]:
    """Decoded ``x_train, y_train, x_val, y_val`` (uint8 images, int64 labels), sorted wnids, cache path."""
    root = find_root(data_dir)
    wnids = read_wnids(root)
    train_files, train_labels, val_files, val_labels = list_files(root, wnids)
    fp = fingerprint(root, wnids, train_files, train_labels, val_files, val_labels)
    path = cache_path(root)
    lock = path.with_name(path.name + ".lock")
    try:
        with waiting_lock(lock, f"decoding TinyImageNet into {path}"):
            arrays = _read_cache(path, fp)
            if arrays is None:
                print(f"hinterval: decoding TinyImageNet JPEGs once into {path}", file=sys.stderr)
                arrays = {
                    "x_train": decode_all(train_files, "decode train"),
                    "y_train": np.asarray(train_labels, dtype=np.int64),
                    "x_val": decode_all(val_files, "decode val"),
                    "y_val": np.asarray(val_labels, dtype=np.int64),
                }
                atomic_write(path, lambda f: np.savez(f, fingerprint=np.array(fp), **arrays))
    except OSError as exc:
        raise DataError(f"TinyImageNet: cannot write cache {path} ({exc}); set HINTERVAL_CACHE_DIR to a writable folder") from None
    return arrays, wnids, path


def tinyimagenet(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    """TinyImageNet: ``num_tasks`` (default 40) x 5-way tasks over the sorted class ids."""
    arrays, wnids, path = load_arrays(data_dir)
    k = 5
    if len(wnids) < k:
        raise DataError(f"TinyImageNet: wnids.txt lists {len(wnids)} classes, a task needs {k}; {HOW}")
    # 40 tasks for the real 200 classes; fewer only if the folder holds fewer classes
    n = resolve_tasks("tinyimagenet", num_tasks, standard=min(40, len(wnids) // k), maximum=len(wnids) // k)
    xtr, ytr = torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"])
    xte, yte = torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["y_val"])
    order = list(range(len(wnids)))
    tasks = split_by_classes(xtr, ytr, xte, yte, classes_per_task=k, num_tasks=n, val_fraction=VAL_FRACTION,
                             seed=seed, class_order=order, flatten=False, scale=255.0, augment=True,
                             mean=MEAN, std=STD)
    return Benchmark("tinyimagenet", tasks, input_shape=(3, SIDE, SIDE), classes_per_task=k, num_classes=k * n,
                     meta={"wnids": wnids, "cache": str(path)})
