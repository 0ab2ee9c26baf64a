"""Benchmark registry: names -> loaders. Data roots come from the config, never from module code."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Optional

from hinterval.errors import UserError

if TYPE_CHECKING:  # the names alone must not load torch: configs are validated before it loads
    from hinterval.data.base import Benchmark

# name -> (loader, needs_data_dir). Loaders take keyword-only num_tasks, seed, data_dir.
_LOADERS: Dict[str, Callable[..., Benchmark]] = {}


def register(name: str) -> Callable[[Callable[..., Benchmark]], Callable[..., Benchmark]]:
    """Decorator adding a benchmark loader under ``name``."""

    def deco(fn: Callable[..., Benchmark]) -> Callable[..., Benchmark]:
        _LOADERS[name] = fn
        return fn

    return deco


@register("split-digits")
def _split_digits(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.common import resolve_tasks
    from hinterval.data.digits import split_digits

    return split_digits(num_tasks=resolve_tasks("split-digits", num_tasks, standard=5, maximum=5), seed=seed)


@register("permuted-digits")
def _permuted_digits(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.digits import permuted_digits

    return permuted_digits(num_tasks=num_tasks or 10, seed=seed)


@register("split-mnist")
def _split_mnist(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.idx import split_idx

    return split_idx("split-mnist", "mnist", num_tasks=num_tasks, seed=seed, data_dir=data_dir)


@register("permuted-mnist")
def _permuted_mnist(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.idx import permuted_idx

    return permuted_idx("permuted-mnist", "mnist", num_tasks=num_tasks, seed=seed, data_dir=data_dir)


@register("split-fashion")
def _split_fashion(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.idx import split_idx

    return split_idx("split-fashion", "fashion", num_tasks=num_tasks, seed=seed, data_dir=data_dir)


@register("permuted-fashion")
def _permuted_fashion(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.idx import permuted_idx

    return permuted_idx("permuted-fashion", "fashion", num_tasks=num_tasks, seed=seed, data_dir=data_dir)


@register("split-cifar10")
def _split_cifar10(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.cifar import split_cifar

    return split_cifar("split-cifar10", 10, num_tasks=num_tasks, seed=seed, data_dir=data_dir)


@register("split-cifar100")
def _split_cifar100(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.cifar import split_cifar

    return split_cifar("split-cifar100", 100, num_tasks=num_tasks, seed=seed, data_dir=data_dir)


@register("tinyimagenet")
def _tinyimagenet(*, num_tasks: Optional[int], seed: int, data_dir: Optional[str]) -> Benchmark:
    from hinterval.data.tinyimagenet import tinyimagenet

    return tinyimagenet(num_tasks=num_tasks, seed=seed, data_dir=data_dir)


BENCHMARK_NAMES = tuple(_LOADERS)


def load_benchmark(name: str, *, num_tasks: Optional[int] = None, seed: int = 0, data_dir: Optional[str] = None) -> Benchmark:
    """Load benchmark ``name`` (see :data:`BENCHMARK_NAMES`) with the data-split ``seed``."""
    if name not in _LOADERS:
        raise UserError(f"unknown benchmark {name!r}; choose one of: {', '.join(_LOADERS)}")
    return _LOADERS[name](num_tasks=num_tasks, seed=seed, data_dir=data_dir)


def load_for(cfg) -> Benchmark:
    """The benchmark of an :class:`~hinterval.config.ExperimentConfig`, shaped for its target:
    flat vectors for the MLP, ``(C, H, W)`` images for the CNNs (see :func:`as_images`)."""
    from hinterval.data.base import as_images

    bench = load_benchmark(cfg.benchmark, num_tasks=cfg.num_tasks, seed=cfg.data_seed, data_dir=cfg.data_dir)
    if cfg.target != "mlp" or cfg.image_size is not None or cfg.image_channels is not None:
        bench = as_images(bench, size=cfg.image_size, channels=cfg.image_channels)
    return bench


#: (standard, maximum) task counts of the benchmarks whose loaders take them from the data layout
_TASKS = {"split-digits": (5, 5), "permuted-digits": (10, None), "split-mnist": (5, 5), "permuted-mnist": (10, None),
          "split-fashion": (5, 5), "permuted-fashion": (10, None), "split-cifar10": (5, 5), "split-cifar100": (10, 10)}


def check_data(name: str, *, num_tasks: Optional[int] = None, data_dir: Optional[str] = None) -> None:
    """Pre-flight check without building tasks: the benchmark exists, its files are readable where its
    loader looks, and ``num_tasks`` fits. Raises :class:`UserError`/``DataError`` like the loader would.

    A sweep calls this before any trial starts, so a bad ``--data-dir`` is one error line instead of
    every trial failing (and being retried). Reads the raw arrays (MNIST/Fashion/CIFAR, seconds);
    for TinyImageNet only the class list and file names (no JPEG decoding).
    """
    from hinterval.data.common import resolve_tasks

    if name not in _LOADERS:
        raise UserError(f"unknown benchmark {name!r}; choose one of: {', '.join(_LOADERS)}")
    if name.endswith(("mnist", "fashion")):
        from hinterval.data.idx import load_idx_arrays

        load_idx_arrays(data_dir, "fashion" if name.endswith("fashion") else "mnist")
    elif name.startswith("split-cifar"):
        from hinterval.data.cifar import load_cifar_arrays

        load_cifar_arrays(data_dir, 100 if name.endswith("100") else 10)
    elif name == "tinyimagenet":
        from hinterval.data import tinyimagenet as ti

        root = ti.find_root(data_dir)
        wnids = ti.read_wnids(root)
        ti.list_files(root, wnids)  # every class folder and val annotation there (names only)
        resolve_tasks(name, num_tasks, standard=min(40, len(wnids) // 5), maximum=len(wnids) // 5)
    if name in _TASKS:
        resolve_tasks(name, num_tasks, standard=_TASKS[name][0], maximum=_TASKS[name][1])
