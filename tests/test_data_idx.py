"""MNIST / Fashion-MNIST IDX loaders on tiny fixtures in the real on-disk format."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from data_fixtures import IDX_FILES, idx_bytes, write_idx, write_mnist
except ImportError:  # tests/ collected as a package
    from tests.data_fixtures import IDX_FILES, idx_bytes, write_idx, write_mnist

from hinterval.data.idx import FASHION_DEFAULT_DIR, read_idx
from hinterval.data.registry import BENCHMARK_NAMES, load_benchmark
from hinterval.errors import DataError, UserError


def _raw_train(folder: Path):
    """The fixture's training images/labels, read back independently of the loader."""
    def arr(name: str) -> np.ndarray:
        p = folder / name
        data = gzip.decompress(p.with_name(name + ".gz").read_bytes()) if not p.exists() else p.read_bytes()
        return np.frombuffer(data, np.uint8)

    x = arr("train-images-idx3-ubyte")[16:].reshape(-1, 28, 28)
    y = arr("train-labels-idx1-ubyte")[8:]
    return x, y


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    return tmp_path


def test_registered() -> None:
    for name in ("split-mnist", "permuted-mnist", "split-fashion", "permuted-fashion"):
        assert name in BENCHMARK_NAMES


def test_split_mnist_torchvision_layout(mnist_dir: Path) -> None:
    bench = load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=None, seed=0)
    assert len(bench) == 5 and bench.input_shape == (784,) and bench.classes_per_task == 2
    assert bench.num_classes == 10
    x_all, y_all = _raw_train(mnist_dir / "MNIST" / "raw")
    rows = {x.tobytes(): int(y) for x, y in zip(x_all, y_all)}
    for t, task in enumerate(bench.tasks):
        assert task.classes == [2 * t, 2 * t + 1]  # natural class order
        assert task.train.x.dtype == torch.uint8 and task.train.x.shape[1:] == (1, 28, 28)
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) == {0, 1}
        # val is carved from train: disjoint, together all 24 training samples of the two classes
        assert len(task.val) == 2 and len(task.train) == 22 and len(task.test) == 8
        tr = {x.numpy().tobytes() for x in task.train.x[:, 0]}
        va = [x.numpy().tobytes() for x in task.val.x[:, 0]]
        assert all(v in rows and v not in tr for v in va)
        assert all(rows[v] == task.classes[int(y)] for v, y in zip(va, task.val.y))
        inp = task.inputs(task.train.x[:3])
        assert inp.shape == (3, 784) and inp.dtype == torch.float32 and 0 <= float(inp.min()) <= float(inp.max()) <= 1


def test_split_deterministic_under_seed(mnist_dir: Path) -> None:
    a = load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=2, seed=3)
    b = load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=2, seed=3)
    c = load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=2, seed=4)
    assert len(a) == 2
    for ta, tb in zip(a.tasks, b.tasks):
        assert torch.equal(ta.val.x, tb.val.x) and torch.equal(ta.train.y, tb.train.y)
    assert any(not torch.equal(ta.val.x, tc.val.x) for ta, tc in zip(a.tasks, c.tasks))


def test_raw_files_directly_in_data_dir(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    bench = load_benchmark("split-mnist", data_dir=str(tmp_path), num_tasks=1, seed=0)
    assert len(bench) == 1 and bench.tasks[0].classes == [0, 1]


def test_permuted_mnist(mnist_dir: Path) -> None:
    bench = load_benchmark("permuted-mnist", data_dir=str(mnist_dir), num_tasks=None, seed=0)
    assert len(bench) == 10 and bench.input_shape == (1024,) and bench.classes_per_task == 10
    t0, t1 = bench.tasks[0], bench.tasks[1]
    assert torch.equal(t0.perm, torch.arange(1024))  # task 0: the original images
    x = t0.train.x[:4]
    padded = torch.nn.functional.pad(x.float() / 255.0, (2, 2, 2, 2)).reshape(4, -1)
    assert torch.allclose(t0.inputs(x), padded)
    assert t1.inputs(x).shape == (4, 1024) and not torch.equal(t1.perm, t0.perm)
    assert torch.equal(t1.inputs(x), padded[:, t1.perm])
    assert t1.train.x.data_ptr() == t0.train.x.data_ptr()  # one shared copy of the images
    assert set(t0.test.y.tolist()) == set(range(10))
    again = load_benchmark("permuted-mnist", data_dir=str(mnist_dir), num_tasks=3, seed=0)
    assert all(torch.equal(a.perm, b.perm) for a, b in zip(bench.tasks[:3], again.tasks))


def test_permuted_hundred_tasks(mnist_dir: Path) -> None:
    bench = load_benchmark("permuted-mnist", data_dir=str(mnist_dir), num_tasks=100, seed=1)
    assert len(bench) == 100 and bench.num_classes == 1000
    assert len({tuple(t.perm[:20].tolist()) for t in bench.tasks}) == 100


def test_too_many_split_tasks(mnist_dir: Path) -> None:
    with pytest.raises(UserError, match="at most 5"):
        load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=6, seed=0)


# --- malformed / missing data: one clear DataError -------------------------------------------

def test_no_data_dir() -> None:
    with pytest.raises(DataError, match=r"--data-dir.*t10k-labels-idx1-ubyte\.gz.*https://"):
        load_benchmark("split-mnist", data_dir=None, num_tasks=None, seed=0)


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark("split-mnist", data_dir=str(tmp_path / "nope"), num_tasks=None, seed=0)


def test_missing_file_is_named(mnist_dir: Path) -> None:
    (mnist_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=None, seed=0)
    msg = str(err.value)
    assert "missing: t10k-labels-idx1-ubyte" in msg and "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg


def test_empty_dir_names_all_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_benchmark("permuted-mnist", data_dir=str(tmp_path), num_tasks=None, seed=0)
    assert all(f in str(err.value) for f in IDX_FILES)


def test_wrong_magic(mnist_dir: Path) -> None:
    raw = mnist_dir / "MNIST" / "raw"
    # labels file where the images file should be
    shutil.copy(raw / "train-labels-idx1-ubyte.gz", raw / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=None, seed=0)


def test_truncated_raw(tmp_path: Path) -> None:
    files = write_mnist(tmp_path, gz=False)
    p = files["train-images-idx3-ubyte"]
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_benchmark("split-mnist", data_dir=str(tmp_path), num_tasks=None, seed=0)


def test_truncated_gzip(mnist_dir: Path) -> None:
    p = mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=None, seed=0)


def test_tiny_header(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "x", 2051)


def test_label_count_mismatch(mnist_dir: Path) -> None:
    raw = mnist_dir / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), 2049, gz=True)
    with pytest.raises(DataError, match="labels"):
        load_benchmark("split-mnist", data_dir=str(mnist_dir), num_tasks=None, seed=0)


def test_idx_roundtrip(tmp_path: Path) -> None:
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "f").write_bytes(idx_bytes(arr, 2051))
    assert np.array_equal(read_idx(tmp_path / "f", 2051), arr)


def _write_band_mnist(folder: Path, n_train_per_class: int = 30, n_test_per_class: int = 10) -> None:
    """MNIST files in which class ``c`` is a bright band at rows ``2c + 4 .. 2c + 6`` on dim noise."""
    rng = np.random.default_rng(0)
    for split, n, magic_x, magic_y in (("train", n_train_per_class, 2051, 2049), ("t10k", n_test_per_class, 2051, 2049)):
        y = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
        x = rng.integers(0, 60, size=(len(y), 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 * c + 4 : 2 * c + 7] = 220
        write_idx(folder / f"{split}-images-idx3-ubyte", x, magic_x, gz=True)
        write_idx(folder / f"{split}-labels-idx1-ubyte", y, magic_y, gz=True)


@pytest.mark.slow
def test_end_to_end_split_mnist_learns(tmp_path: Path) -> None:
    """IDX files on disk -> loader -> trainer: both tasks of a learnable fixture are learnt (chance is 0.5)."""
    from hinterval.config import make_config
    from hinterval.trainer import train_continual

    _write_band_mnist(tmp_path)
    cfg = make_config(dict(benchmark="split-mnist", data_dir=str(tmp_path), iters_per_task=60, val_every=20,
                           batch_size=32, device="cpu", num_tasks=2, target_hidden=(32,), hnet_hidden=(16,)))
    res = train_continual(cfg, progress=False)
    assert res["tasks_done"] == 2 and res["avg_acc"] >= 0.9


@pytest.mark.skipif(not Path(FASHION_DEFAULT_DIR).is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist() -> None:
    bench = load_benchmark("split-fashion", data_dir=None, num_tasks=None, seed=0)
    assert len(bench) == 5
    assert sum(len(t.train) + len(t.val) for t in bench.tasks) == 60000
    assert sum(len(t.test) for t in bench.tasks) == 10000
    assert all(len(t.val) == 1200 for t in bench.tasks)
    x = bench.tasks[0].inputs(bench.tasks[0].train.x[:8])
    assert x.shape == (8, 784) and float(x.max()) <= 1.0
