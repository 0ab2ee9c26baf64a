"""Item ``data``: whole data sets as tensors, indexed in batches, against per-sample loading.

Fashion-MNIST (real, from the Debian package): the trainer's ``BatchSampler`` + ``Task.inputs``
against a ``DataLoader`` over a per-sample ``__getitem__`` dataset. TinyImageNet: the cached
array load of ``load_benchmark`` against decoding every task's JPEGs, on a miniature folder
generated here in the real layout.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from hinterval.data import tinyimagenet as tin
from hinterval.data.base import Task
from hinterval.data.registry import load_benchmark
from hinterval.trainer import BatchSampler
from speed_items.common import Timer, fmt_time, header, row


class PerSampleDataset(torch.utils.data.Dataset):
    """The reference's data path: one sample per ``__getitem__`` with its transform (scale, pad,
    flatten, permute) applied per sample, batched by ``DataLoader``'s default collate."""

    def __init__(self, task: Task):
        self.task = task

    def __len__(self) -> int:
        return len(self.task.train)

    def __getitem__(self, i: int):
        return self.task.inputs(self.task.train.x[i : i + 1])[0], self.task.train.y[i]


def write_miniature_tinyimagenet(folder: Path, num_classes: int, n_train: int, n_val: int) -> Path:
    """``folder/tiny-imagenet-200`` with ``num_classes`` classes of 64x64 JPEGs (wnids, train/, val/)."""
    from PIL import Image

    root = folder / "tiny-imagenet-200"
    wnids = [f"n{1000000 + 7919 * c:08d}" for c in range(num_classes)]
    rng = np.random.default_rng(0)

    def save(path: Path, c: int) -> None:
        img = np.clip(30 + 200 * c / num_classes + rng.normal(0, 8, size=(64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path, quality=95)

    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for c, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        for j in range(n_train):
            save(root / "train" / w / "images" / f"{w}_{j}.JPEG", c)
        for j in range(n_val):
            name = f"val_{c}_{j}.JPEG"
            save(root / "val" / "images" / name, c)
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def run(args: Any, timer: Timer) -> Dict[str, Any]:
    header("4. data: whole data sets as tensors + batched indexing vs DataLoader with per-sample __getitem__")
    results: Dict[str, Any] = {}
    device = timer.device
    bench = load_benchmark("permuted-fashion", num_tasks=2, seed=0).to(device)
    task = bench.tasks[1]
    bs = 128
    n_batches = 40 if args.quick else 200
    sink: List[float] = []

    def ours():
        sampler = BatchSampler(len(task.train), bs, device)
        acc = 0.0
        for _ in range(n_batches):
            idx = sampler.next()
            x, y = task.inputs(task.train.x[idx]), task.train.y[idx]
            acc += float(x[0, 0]) + int(y[0])
        sink.append(acc)

    def ref():
        loader = torch.utils.data.DataLoader(PerSampleDataset(task), batch_size=bs, shuffle=True, num_workers=0)
        acc = 0.0
        for b, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            acc += float(x[0, 0]) + int(y[0])
            if b + 1 == n_batches:
                break
        sink.append(acc)

    res = timer.compare({"ours": ours, "ref": ref}, repeats=3 if args.quick else 5)
    o, r = n_batches * bs / res["ours"]["best"], n_batches * bs / res["ref"]["best"]
    row(f"permuted Fashion-MNIST (real, {len(task.train)} train), batch {bs}", f"{o:9.0f} /s", f"{r:9.0f} /s", o / r,
        "(samples/s)")
    results["fashion"] = dict(ours_samples_per_s=o, ref_samples_per_s=r, ratio=o / r)

    n_classes, n_train, n_val = (10, 20, 5) if args.quick else (20, 25, 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_miniature_tinyimagenet(Path(tmp), n_classes, n_train, n_val)
        n_jpeg = n_classes * (n_train + n_val)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # no progress bars
            first = timer.once(lambda: load_benchmark("tinyimagenet", data_dir=tmp, seed=0))  # decode + write cache

        def ours_tin():
            load_benchmark("tinyimagenet", data_dir=tmp, seed=0)

        def ref_tin():
            wnids = tin.read_wnids(root)
            train_files, train_labels, val_files, val_labels = tin.list_files(root, wnids)
            for t in range(len(wnids) // 5):  # per task: decode its JPEGs
                cls = set(range(5 * t, 5 * t + 5))
                xs = [tin.decode_jpeg(f) for f, lab in zip(train_files, train_labels) if lab in cls]
                xs += [tin.decode_jpeg(f) for f, lab in zip(val_files, val_labels) if lab in cls]
                torch.from_numpy(np.stack(xs))

        res = timer.compare({"ours": ours_tin, "ref": ref_tin}, repeats=3)
        o, r = res["ours"]["best"], res["ref"]["best"]
        row(f"TinyImageNet miniature ({n_jpeg} JPEGs, {n_classes // 5} tasks): load", fmt_time(o), fmt_time(r), r / o,
            f"(cached array vs decode per task; first build with cache write {first:.2f} s)")
        results["tinyimagenet"] = dict(jpegs=n_jpeg, ours_s=o, ref_s=r, ratio=r / o, first_build_s=first)
    return results
