"""Continual-learning benchmark containers: whole splits as tensors, indexed in batches.

A :class:`Task` holds its train/val/test splits as tensors (uint8 or float) plus how to turn a
batch into network input (scale to [0, 1], optional pad/flatten, optional pixel permutation).
Permuted benchmarks share one copy of the images across tasks and apply each task's permutation
to a batch on the fly, so 10 or 100 tasks cost no extra memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from hinterval.errors import DataError


@dataclass
class Split:
    """Inputs ``x`` (``(N, ...)``, raw dtype) and task-local labels ``y`` (``(N,)``, int64)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Task:
    """One task of a benchmark.

    Attributes:
        task_id: position in the sequence.
        classes: global class ids; task-local label ``k`` is global class ``classes[k]``.
        train, val, test: the splits.
        scale: inputs are divided by this (255 for uint8 images) to lie in [0, 1].
        perm: optional permutation of the flattened input features (permuted benchmarks).
        flatten: flatten each sample (MLP targets).
        pad_to: optional side length to zero-pad images to before flattening (e.g. 32).
        resize_to: optional side length images are then resized to (bilinear), e.g. 64.
        channels: optional channel count; grey images are repeated to 3 channels.
        augment: apply random flip + crop to training batches (CNN benchmarks).
    """

    task_id: int
    classes: List[int]
    train: Split
    val: Split
    test: Split
    scale: float = 1.0
    perm: Optional[Tensor] = None
    flatten: bool = True
    pad_to: Optional[int] = None
    augment: bool = False
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    resize_to: Optional[int] = None
    channels: Optional[int] = None

    def inputs(self, x: Tensor) -> Tensor:
        """Turn raw samples into float network inputs (on ``x``'s device)."""
        x = x.float() / self.scale
        if self.pad_to is not None and x.dim() >= 3 and x.shape[-1] < self.pad_to:
            total = self.pad_to - x.shape[-1]
            a = total // 2
            x = torch.nn.functional.pad(x, (a, total - a, a, total - a))
        if self.resize_to is not None and x.shape[-1] != self.resize_to:
            x = torch.nn.functional.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear",
                                                align_corners=False)
        if self.channels is not None and x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)  # grey -> RGB: the same values in every channel
        if self.mean is not None:  # channel by channel with Python numbers: a tensor made from them would be
            # copied to the GPU every batch, and each such copy waits for the GPU's queued work
            x = torch.cat([(x[:, c : c + 1] - m) / s for c, (m, s) in enumerate(zip(self.mean, self.std))], 1)
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        if self.perm is not None:
            x = x[:, self.perm]
        return x

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _replace_tensors(task: Task, mv) -> Task:
    import dataclasses

    return dataclasses.replace(
        task,
        train=Split(mv(task.train.x), mv(task.train.y)),
        val=Split(mv(task.val.x), mv(task.val.y)),
        test=Split(mv(task.test.x), mv(task.test.y)),
        perm=mv(task.perm),
    )


@dataclass
class Benchmark:
    """A sequence of tasks with a common input shape and classes-per-task.

    Attributes:
        name: registry name, e.g. ``"split-digits"``.
        tasks: the tasks in training order.
        input_shape: shape of one network input after :meth:`Task.inputs` (without batch dim).
        classes_per_task: number of task-local classes ``C``.
        num_classes: number of global classes (for class-incremental evaluation).
    """

    name: str
    tasks: List[Task]
    input_shape: Tuple[int, ...]
    classes_per_task: int
    num_classes: int
    meta: Dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def to(self, device: torch.device) -> "Benchmark":
        """Move every task's tensors to ``device``, keeping shared tensors shared."""
        cache: Dict[int, Tensor] = {}

        def mv(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None:
                return None
            if id(t) not in cache:
                cache[id(t)] = t.to(device)
            return cache[id(t)]

        import dataclasses

        return dataclasses.replace(self, tasks=[_replace_tensors(t, mv) for t in self.tasks])


def check_task_splits(tasks: List[Task]) -> None:
    """Raise :class:`DataError` unless every task has train, validation and test samples of each class.

    Why at load time: data that lacks a class in one split otherwise fails deep inside training
    (``torch.cat`` of nothing) or after hours (a division by zero when task 4 is evaluated). The
    message names the task, the split and the missing classes. Splits shared by tasks are counted once.
    """
    counted: Dict[Tuple[int, int], Tensor] = {}
    for task in tasks:
        k = len(task.classes)
        for name, label in (("train", "training"), ("val", "validation"), ("test", "test")):
            y = task.split(name).y
            key = (id(y), k)
            if key not in counted:
                flat = y.long().flatten()
                if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= k):
                    raise DataError(f"task {task.task_id + 1}/{len(tasks)}: {label} labels must be 0..{k - 1}, found "
                                    f"{int(flat.min())}..{int(flat.max())}")
                counted[key] = torch.bincount(flat.cpu(), minlength=k)
            missing = [task.classes[c] for c in range(k) if int(counted[key][c]) == 0]
            if missing:
                shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                why = (" (a class needs at least 2 training samples: one is held out for validation)"
                       if name in ("train", "val") else "")
                raise DataError(f"task {task.task_id + 1}/{len(tasks)} (classes {', '.join(map(str, task.classes[:10]))}"
                                f"{'...' if k > 10 else ''}) has no {label} samples of class {shown}{why}; "
                                "the data files are incomplete: download them again or use fewer tasks")


def stratified_split(y: Tensor, fraction: float, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    """Indices ``(keep, held_out)`` with ``fraction`` of every class held out (seeded)."""
    if y.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    keep, held = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n = max(1, int(round(len(idx) * fraction)))
        held.append(idx[:n])
        keep.append(idx[n:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(held)).values


def split_by_classes(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    classes_per_task: int,
    num_tasks: int,
    val_fraction: float,
    seed: int,
    class_order: Optional[List[int]] = None,
    **task_kwargs,
) -> List[Task]:
    """Class-incremental splits: task ``t`` gets classes ``order[t*k:(t+1)*k]``, labels 0..k-1.

    The validation split is carved from train with ``seed`` (never from test).
    """
    order = class_order if class_order is not None else sorted(torch.unique(y_train).tolist())
    needed = classes_per_task * num_tasks
    if needed > len(order):
        raise ValueError(f"{num_tasks} tasks x {classes_per_task} classes needs {needed} classes, data has {len(order)}")
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(num_tasks):
        classes = order[t * classes_per_task : (t + 1) * classes_per_task]
        lookup = torch.full((max(order) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(classes)] = torch.arange(len(classes))
        tr = torch.isin(y_train, torch.tensor(classes)).nonzero().flatten()
        te = torch.isin(y_test, torch.tensor(classes)).nonzero().flatten()
        ytr = lookup[y_train[tr].long()]
        keep, held = stratified_split(ytr, val_fraction, gen)
        tasks.append(
            Task(
                task_id=t,
                classes=list(classes),
                train=Split(x_train[tr[keep]], ytr[keep]),
                val=Split(x_train[tr[held]], ytr[held]),
                test=Split(x_test[te], lookup[y_test[te].long()]),
                **task_kwargs,
            )
        )
    check_task_splits(tasks)
    return tasks


def permuted_tasks(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    num_tasks: int,
    num_features: int,
    val_fraction: float,
    seed: int,
    **task_kwargs,
) -> List[Task]:
    """Permuted-pixel tasks sharing one copy of the data.

    Task 0 uses the identity permutation (the original images, as in the paper's code); task
    ``t > 0`` uses a permutation drawn from ``seed``, so every trial of a sweep sees the same
    tasks. Global class of label ``k`` in task ``t`` is ``t * C + k``.
    """
    gen = torch.Generator().manual_seed(seed)
    y_train, y_test = y_train.long(), y_test.long()
    keep, held = stratified_split(y_train, val_fraction, gen)
    train, val = Split(x_train[keep], y_train[keep]), Split(x_train[held], y_train[held])
    test = Split(x_test, y_test)
    n_cls = max(int(y_train.max()), int(y_test.max()) if len(y_test) else 0) + 1  # a class absent from train is reported
    tasks = []
    for t in range(num_tasks):
        perm = torch.arange(num_features) if t == 0 else torch.randperm(num_features, generator=gen)
        tasks.append(
            Task(
                task_id=t,
                classes=list(range(t * n_cls, (t + 1) * n_cls)),
                train=train,
                val=val,
                test=test,
                perm=perm,
                **task_kwargs,
            )
        )
    check_task_splits(tasks)
    return tasks


def as_images(bench: Benchmark, *, size: Optional[int] = None, channels: Optional[int] = None) -> Benchmark:
    """The benchmark with ``(C, H, W)`` image inputs for a convolutional target.

    28x28 images (MNIST, Fashion-MNIST) are zero-padded by 2 pixels on every side to 32x32 (the
    digit or garment stays at its native resolution, as the permuted benchmarks also pad);
    ``size`` then resizes the padded images (bilinear), e.g. 64 for TinyImageNet-shaped inputs,
    and ``channels=3`` repeats grey images into three equal channels. Permuted benchmarks are
    refused: a pixel permutation destroys the neighbourhoods convolutions rely on.
    """
    import dataclasses

    from hinterval.errors import UserError

    if any(t.perm is not None for t in bench.tasks):
        raise UserError(f"benchmark {bench.name!r} permutes pixels, so it has no images for a CNN target; use "
                        "--target mlp, or a split benchmark (split-fashion, split-mnist) with a CNN")
    sample = bench.tasks[0].train.x
    if sample.dim() != 4:
        raise UserError(f"benchmark {bench.name!r} stores flat {tuple(sample.shape[1:])} inputs, not images; "
                        "a CNN target needs an image benchmark (split-fashion, split-mnist, split-cifar10, "
                        "split-cifar100, tinyimagenet)")
    side = sample.shape[-1]
    pad_to = 32 if side < 32 else None
    native_side = pad_to or side
    tasks = [dataclasses.replace(t, flatten=False, pad_to=pad_to if t.pad_to is None else t.pad_to,
                                 resize_to=size if size not in (None, native_side) else None,
                                 channels=channels if channels not in (None, sample.shape[1]) else None)
             for t in bench.tasks]
    shape = (channels or sample.shape[1], size or native_side, size or native_side)
    return dataclasses.replace(bench, tasks=tasks, input_shape=shape)
