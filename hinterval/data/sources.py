"""Where each benchmark's data comes from: official URLs, sizes and MD5 sums, and where it lands.

The URLs and MD5 sums of MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 are read from torchvision's
dataset classes (their ``mirrors``/``resources``, ``url``/``tgz_md5``), so there is one list of
them; TinyImageNet is not in torchvision and is listed here. Sizes are the official files' byte
counts: a download that stops early is told from one that finished.

Each data set lands in the layout its loader reads (``hinterval/data/idx.py``, ``cifar.py``,
``tinyimagenet.py``):

* MNIST / Fashion-MNIST: the four ``*.gz`` IDX files in ``DIR/MNIST/raw`` / ``DIR/FashionMNIST/raw``
  (torchvision's layout; the loader reads the ``.gz`` files directly, nothing is unpacked);
* CIFAR-10 / CIFAR-100: the archive unpacked to ``DIR/cifar-10-batches-py`` / ``DIR/cifar-100-python``;
* TinyImageNet: the zip unpacked to ``DIR/tiny-imagenet-200``.

``HINTERVAL_TEST_DATA_SOURCES`` (for tests only) names a JSON file ``{"<data set>/<file name>":
{"url", "md5", "size"}}`` (e.g. ``"mnist/train-images-idx3-ubyte.gz"``) whose entries replace those
files' official ones, so tests can serve fixture archives from 127.0.0.1. Never set it for real
data: the checksums then come from that file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Dict, Optional, Tuple

from hinterval.errors import UserError

#: test-only override of the file table (see the module docstring)
TEST_SOURCES_ENV = "HINTERVAL_TEST_DATA_SOURCES"

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

#: byte counts of the official files (torchvision lists names and MD5 sums only)
SIZES = {
    "mnist/train-images-idx3-ubyte.gz": 9912422, "mnist/train-labels-idx1-ubyte.gz": 28881,
    "mnist/t10k-images-idx3-ubyte.gz": 1648877, "mnist/t10k-labels-idx1-ubyte.gz": 4542,
    "fashion-mnist/train-images-idx3-ubyte.gz": 26421880, "fashion-mnist/train-labels-idx1-ubyte.gz": 29515,
    "fashion-mnist/t10k-images-idx3-ubyte.gz": 4422102, "fashion-mnist/t10k-labels-idx1-ubyte.gz": 5148,
    "cifar10/cifar-10-python.tar.gz": 170498071, "cifar100/cifar-100-python.tar.gz": 169001437,
    "tinyimagenet/tiny-imagenet-200.zip": 248100043,
}


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its mirrors in the order tried, its MD5 sum and size in bytes."""

    filename: str
    urls: Tuple[str, ...]
    md5: str
    size: Optional[int]


@dataclass(frozen=True)
class DataSource:
    """A data set: its files and the folder (relative to the data directory) they end up in.

    ``unpack``: the single file is an archive whose top folder is ``folder``; otherwise the files
    themselves are the data and are placed in ``folder``.
    """

    key: str
    title: str
    files: Tuple[RemoteFile, ...]
    folder: str
    unpack: bool

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)


#: benchmark -> the data set it reads (``None``: embedded, nothing to fetch)
BENCHMARK_DATA: Dict[str, Optional[str]] = {
    "split-digits": None, "permuted-digits": None,
    "split-mnist": "mnist", "permuted-mnist": "mnist",
    "split-fashion": "fashion-mnist", "permuted-fashion": "fashion-mnist",
    "split-cifar10": "cifar10", "split-cifar100": "cifar100",
    "tinyimagenet": "tinyimagenet",
}
DATASET_KEYS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tinyimagenet")


def _file(key: str, filename: str, urls: Tuple[str, ...], md5: str) -> RemoteFile:
    return RemoteFile(filename, urls, md5, SIZES.get(f"{key}/{filename}"))


@lru_cache(maxsize=1)
def _official() -> Dict[str, DataSource]:
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST

    def idx(key: str, title: str, cls: type, folder: str) -> DataSource:
        files = tuple(_file(key, name, tuple(m + name for m in cls.mirrors), md5) for name, md5 in cls.resources)
        return DataSource(key, title, files, folder, unpack=False)

    def archive(key: str, title: str, cls: type) -> DataSource:
        return DataSource(key, title, (_file(key, cls.filename, (cls.url,), cls.tgz_md5),), cls.base_folder, unpack=True)

    tin = DataSource("tinyimagenet", "TinyImageNet-200",
                     (_file("tinyimagenet", "tiny-imagenet-200.zip", (TINYIMAGENET_URL,), TINYIMAGENET_MD5),),
                     "tiny-imagenet-200", unpack=True)
    return {"mnist": idx("mnist", "MNIST", MNIST, "MNIST/raw"),
            "fashion-mnist": idx("fashion-mnist", "Fashion-MNIST", FashionMNIST, "FashionMNIST/raw"),
            "cifar10": archive("cifar10", "CIFAR-10", CIFAR10), "cifar100": archive("cifar100", "CIFAR-100", CIFAR100),
            "tinyimagenet": tin}


def _test_overrides() -> Dict[str, Dict]:
    path = os.environ.get(TEST_SOURCES_ENV)
    if not path:
        return {}
    try:
        return dict(json.loads(open(path, encoding="utf-8").read()))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{TEST_SOURCES_ENV}={path}: cannot read it ({exc}); it is for tests only, unset it") from None


def source(key: str) -> DataSource:
    """The data set ``key`` (one of :data:`DATASET_KEYS`), with the test override applied."""
    src = _official()[key]
    over = _test_overrides()
    files = tuple(_overridden(f, over[f"{key}/{f.filename}"]) if f"{key}/{f.filename}" in over else f for f in src.files)
    return replace(src, files=files)


def _overridden(f: RemoteFile, entry: Dict) -> RemoteFile:
    return replace(f, urls=(str(entry["url"]),), md5=str(entry["md5"]), size=entry.get("size"))


def dataset_of(name: str) -> Optional[str]:
    """The data set key of a benchmark or data set name (``None``: embedded data)."""
    if name in DATASET_KEYS:
        return name
    if name in BENCHMARK_DATA:
        return BENCHMARK_DATA[name]
    known = dict.fromkeys((*BENCHMARK_DATA, *DATASET_KEYS))
    raise UserError(f"unknown benchmark or data set {name!r}; choose from: {', '.join(known)}")


def benchmarks_of(key: str) -> Tuple[str, ...]:
    """The benchmarks that read data set ``key``."""
    return tuple(b for b, k in BENCHMARK_DATA.items() if k == key)
