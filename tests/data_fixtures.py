"""Writers of tiny data fixtures in the real on-disk formats (IDX, CIFAR pickles, TinyImageNet tree).

Images are class-dependent (a per-class mean brightness plus noise) so a few training steps can
learn something; every writer is deterministic.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def class_images(labels: np.ndarray, shape: Sequence[int], num_classes: int, seed: int) -> np.ndarray:
    """uint8 images whose brightness pattern depends on the label (learnable, deterministic)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    base = (labels.astype(np.float64) + 0.5) / num_classes * 200.0
    img = base.reshape((n,) + (1,) * len(shape)) + rng.normal(0, 10, size=(n, *shape))
    return np.clip(img, 0, 255).astype(np.uint8)


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    """One IDX file: big-endian magic, big-endian dims, then the uint8 data."""
    head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, magic: int, gz: bool) -> Path:
    """Write ``arr`` as an IDX file at ``path`` (``.gz`` appended when ``gz``)."""
    data = idx_bytes(arr, magic)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_mnist(folder: Path, *, gz: bool = True, n_train_per_class: int = 12, n_test_per_class: int = 4,
                seed: int = 0) -> Dict[str, Path]:
    """The four MNIST IDX files (magic 2051 images ``N x 28 x 28``, 2049 labels) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ytr = rng.permutation(np.repeat(np.arange(10), n_train_per_class)).astype(np.uint8)
    yte = rng.permutation(np.repeat(np.arange(10), n_test_per_class)).astype(np.uint8)
    xtr, xte = class_images(ytr, (28, 28), 10, seed + 1), class_images(yte, (28, 28), 10, seed + 2)
    out = {}
    for name, arr, magic in zip(IDX_FILES, (xtr, ytr, xte, yte), (2051, 2049, 2051, 2049)):
        out[name] = write_idx(folder / name, arr, magic, gz)
    return out


def write_cifar10(folder: Path, *, n_per_class_per_batch: int = 2, n_test_per_class: int = 3, seed: int = 0,
                  protocol: int = 2) -> Path:
    """``folder/cifar-10-batches-py`` with ``data_batch_1..5``, ``test_batch`` and ``batches.meta``.

    Batches are dicts with bytes keys (as the Python 2 originals load with ``encoding='bytes'``):
    ``b'batch_label'``, ``b'labels'`` (list of int), ``b'data'`` (uint8 ``(N, 3072)``), ``b'filenames'``.
    """
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate([f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]):
        n = n_test_per_class if name == "test_batch" else n_per_class_per_batch
        y = rng.permutation(np.repeat(np.arange(10), n))
        x = class_images(y, (3072,), 10, seed + 10 + i)
        batch = {b"batch_label": f"{name} of 6".encode(), b"labels": [int(v) for v in y], b"data": x,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(len(y))]}
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"num_cases_per_batch": 10 * n_per_class_per_batch, b"num_vis": 3072,
            b"label_names": [s.encode() for s in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                    "horse", "ship", "truck")]}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return root


def write_cifar100(folder: Path, *, n_train_per_class: int = 3, n_test_per_class: int = 1, seed: int = 0,
                   protocol: int = 4) -> Path:
    """``folder/cifar-100-python`` with ``train``, ``test`` (``b'fine_labels'``, ``b'coarse_labels'``) and ``meta``."""
    root = folder / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (name, n) in enumerate((("train", n_train_per_class), ("test", n_test_per_class))):
        y = rng.permutation(np.repeat(np.arange(100), n))
        x = class_images(y, (3072,), 100, seed + 20 + i)
        batch = {b"filenames": [f"f{j}.png".encode() for j in range(len(y))], b"batch_label": name.encode(),
                 b"fine_labels": [int(v) for v in y], b"coarse_labels": [int(v) // 5 for v in y], b"data": x}
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"fine_label_names": [f"class{c}".encode() for c in range(100)],
            b"coarse_label_names": [f"super{c}".encode() for c in range(20)]}
    (root / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return root


class _SystemCall:
    """Pickles to ``os.system(command)``: what a malicious "CIFAR batch" would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def malicious_pickle(command: str) -> bytes:
    """A pickle whose loading would run ``command`` via ``os.system`` inside a CIFAR-like dict."""
    return pickle.dumps({b"data": _SystemCall(command), b"labels": [0]}, protocol=2)


def make_wnids(num_classes: int) -> List[str]:
    """WordNet-like ids, deliberately NOT sorted in the returned (file) order."""
    ids = [f"n{1000000 + 7919 * c:08d}" for c in range(num_classes)]
    return ids[1::2] + ids[0::2]


def write_tinyimagenet(folder: Path, *, num_classes: int = 10, n_train: int = 3, n_val: int = 1, seed: int = 0,
                       grayscale: Optional[str] = "train") -> Path:
    """A miniature ``folder/tiny-imagenet-200`` tree with real 64x64 JPEGs written by PIL.

    One image (a training image if ``grayscale == "train"``, a val image if ``"val"``) is saved
    as a grayscale (mode ``L``) JPEG, as some real TinyImageNet files are.
    """
    from PIL import Image

    root = folder / "tiny-imagenet-200"
    wnids = make_wnids(num_classes)
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    (root / "test" / "images").mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    order = {w: i for i, w in enumerate(sorted(wnids))}
    rng = np.random.default_rng(seed)

    def img(cls: int) -> np.ndarray:
        v = 30 + 200 * cls / max(1, num_classes - 1)
        return np.clip(v + rng.normal(0, 8, size=(64, 64, 3)), 0, 255).astype(np.uint8)

    gray_done = False
    for w in wnids:
        d = root / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for j in range(n_train):
            im = Image.fromarray(img(order[w]))
            if grayscale == "train" and not gray_done:
                im, gray_done = im.convert("L"), True
            im.save(d / f"{w}_{j}.JPEG", quality=95)
    lines = []
    k = 0
    for w in wnids:
        for _ in range(n_val):
            im = Image.fromarray(img(order[w]))
            if grayscale == "val" and not gray_done:
                im, gray_done = im.convert("L"), True
            name = f"val_{k}.JPEG"
            im.save(root / "val" / "images" / name, quality=95)
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
            k += 1
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    Image.fromarray(img(0)).save(root / "test" / "images" / "test_0.JPEG")
    return root
