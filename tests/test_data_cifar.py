"""CIFAR-10/100 pickle loaders (restricted unpickler) on tiny fixtures in the real on-disk format."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from data_fixtures import malicious_pickle, write_cifar10, write_cifar100
except ImportError:  # tests/ collected as a package
    from tests.data_fixtures import malicious_pickle, write_cifar10, write_cifar100

from hinterval.data.cifar import load_pickle
from hinterval.data.registry import BENCHMARK_NAMES, load_benchmark
from hinterval.errors import DataError


def test_registered() -> None:
    assert "split-cifar10" in BENCHMARK_NAMES and "split-cifar100" in BENCHMARK_NAMES


@pytest.mark.parametrize("nested", [True, False])
def test_split_cifar10(tmp_path: Path, nested: bool) -> None:
    root = write_cifar10(tmp_path)
    data_dir = tmp_path if nested else root  # data_dir or data_dir/cifar-10-batches-py
    bench = load_benchmark("split-cifar10", data_dir=str(data_dir), num_tasks=None, seed=0)
    assert len(bench) == 5 and bench.input_shape == (3, 32, 32) and bench.classes_per_task == 2
    assert bench.meta["class_names"][0] == "airplane"
    for t, task in enumerate(bench.tasks):
        assert task.classes == [2 * t, 2 * t + 1]
        assert task.train.x.dtype == torch.uint8 and task.train.x.shape[1:] == (3, 32, 32)
        assert task.augment and not task.flatten and task.scale == 255.0
        # 5 batches x 2 images per class = 10 per class; 1 per class carved out as validation
        assert len(task.train) == 18 and len(task.val) == 2 and len(task.test) == 6
        for split in (task.train, task.val, task.test):
            assert set(split.y.tolist()) == {0, 1}
        x = task.inputs(task.train.x[:4])
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32


def test_cifar10_pixels_and_labels_match_file(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    with open(root / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    bench = load_benchmark("split-cifar10", data_dir=str(tmp_path), num_tasks=1, seed=0)
    want = raw[b"data"][np.isin(raw[b"labels"], [0, 1])].reshape(-1, 3, 32, 32)
    assert np.array_equal(bench.tasks[0].test.x.numpy(), want)
    assert bench.tasks[0].test.y.tolist() == [v for v in raw[b"labels"] if v in (0, 1)]


def test_split_cifar100_deterministic(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    a = load_benchmark("split-cifar100", data_dir=str(tmp_path), num_tasks=None, seed=5)
    b = load_benchmark("split-cifar100", data_dir=str(tmp_path), num_tasks=None, seed=5)
    assert len(a) == 10 and a.classes_per_task == 10 and a.num_classes == 100
    for t, (ta, tb) in enumerate(zip(a.tasks, b.tasks)):
        assert ta.classes == list(range(10 * t, 10 * t + 10))
        assert set(ta.train.y.tolist()) == set(range(10)) and set(ta.test.y.tolist()) == set(range(10))
        assert len(ta.val) == 10 and len(ta.train) == 20  # 3 per class, 1 to validation
        assert torch.equal(ta.val.x, tb.val.x) and torch.equal(ta.train.y, tb.train.y)


def test_numpy_pickle_protocols_accepted(tmp_path: Path) -> None:
    for proto in (2, 4, 5):
        arr = np.arange(12, dtype=np.uint8).reshape(2, 6)
        p = tmp_path / f"p{proto}"
        p.write_bytes(pickle.dumps({b"data": arr, b"labels": [1, 2]}, protocol=proto))
        d = load_pickle(p)
        assert np.array_equal(d[b"data"], arr) and d[b"labels"] == [1, 2]


# --- malformed / hostile data --------------------------------------------------------------

def test_malicious_pickle_refused(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    (root / "data_batch_3").write_bytes(malicious_pickle(f"touch {marker}"))
    with pytest.raises(DataError, match=r"refusing to unpickle global .*system"):
        load_benchmark("split-cifar10", data_dir=str(tmp_path), num_tasks=None, seed=0)
    assert not marker.exists()


def test_other_globals_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil"
    p.write_bytes(pickle.dumps({b"data": [set([1])], b"labels": print}, protocol=2))
    with pytest.raises(DataError, match="refusing"):
        load_pickle(p)


def test_wrong_keys(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                    b"fine_labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=r"expected keys b'data' and b'labels'.*b'fine_labels'"):
        load_benchmark("split-cifar10", data_dir=str(tmp_path), num_tasks=None, seed=0)


def test_cifar10_files_given_to_cifar100(tmp_path: Path) -> None:
    # CIFAR-100 "train"/"test" written with CIFAR-10 keys
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for name in ("train", "test"):
        (root / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="fine_labels"):
        load_benchmark("split-cifar100", data_dir=str(tmp_path), num_tasks=None, seed=0)


def test_wrong_data_shape(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    (root / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_benchmark("split-cifar10", data_dir=str(tmp_path), num_tasks=None, seed=0)


def test_truncated_pickle(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    p = root / "data_batch_2"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_2"):
        load_benchmark("split-cifar10", data_dir=str(tmp_path), num_tasks=None, seed=0)


def test_missing_batches(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    (root / "data_batch_5").unlink()
    with pytest.raises(DataError) as err:
        load_benchmark("split-cifar10", data_dir=str(tmp_path), num_tasks=None, seed=0)
    msg = str(err.value)
    assert "data_batch_5" in msg and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg


def test_no_data_dir() -> None:
    with pytest.raises(DataError, match="cifar-100-python.tar.gz"):
        load_benchmark("split-cifar100", data_dir=None, num_tasks=None, seed=0)
