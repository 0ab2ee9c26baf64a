"""TinyImageNet loader on a miniature tiny-imagenet-200 tree of real JPEGs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from data_fixtures import make_wnids, write_tinyimagenet
except ImportError:  # tests/ collected as a package
    from tests.data_fixtures import make_wnids, write_tinyimagenet

import hinterval.data.tinyimagenet as tin
from hinterval.data.registry import BENCHMARK_NAMES, load_benchmark
from hinterval.errors import DataError, UserError


@pytest.fixture(scope="module")
def tin_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once per module; tests copy it when they modify or cache into it."""
    base = tmp_path_factory.mktemp("tin")
    write_tinyimagenet(base, num_classes=10, n_train=3, n_val=1)
    return base


@pytest.fixture
def tin_dir(tin_template: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(tin_template, tmp_path / "data")
    return tmp_path / "data"


def test_registered() -> None:
    assert "tinyimagenet" in BENCHMARK_NAMES


def test_fixture_wnids_unsorted() -> None:
    ids = make_wnids(10)
    assert ids != sorted(ids)


def test_load_tasks(tin_dir: Path) -> None:
    bench = load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)
    root = tin_dir / "tiny-imagenet-200"
    wnids = sorted((root / "wnids.txt").read_text().split())
    assert bench.meta["wnids"] == wnids  # class c = sorted(wnids)[c]
    assert len(bench) == 2 and bench.classes_per_task == 5 and bench.input_shape == (3, 64, 64)
    for t, task in enumerate(bench.tasks):
        assert task.classes == list(range(5 * t, 5 * t + 5))
        assert task.train.x.dtype == torch.uint8 and task.train.x.shape[1:] == (3, 64, 64)
        assert task.augment and not task.flatten and task.scale == 255.0
        # 3 train images per class: 1 carved out as validation; val/ (1 per class) is the test split
        assert len(task.train) == 10 and len(task.val) == 5 and len(task.test) == 5
        assert sorted(task.train.y.tolist()) == sorted(list(range(5)) * 2)
        for split in (task.val, task.test):
            assert sorted(split.y.tolist()) == [0, 1, 2, 3, 4]
        assert task.inputs(task.train.x[:2]).shape == (2, 3, 64, 64)
    # labels follow the sorted wnids: brightness of the fixture grows with the sorted class index
    means = [float(t.test.x[t.test.y == k].float().mean()) for t in bench.tasks for k in range(5)]
    assert means == sorted(means)


def test_grayscale_jpeg_becomes_rgb(tmp_path: Path) -> None:
    from PIL import Image

    write_tinyimagenet(tmp_path, num_classes=5, n_train=2, n_val=1, grayscale="val")
    gray = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG"
    with Image.open(gray) as im:
        assert im.mode == "L"
    bench = load_benchmark("tinyimagenet", data_dir=str(tmp_path / "tiny-imagenet-200"), num_tasks=1, seed=0)
    x = bench.tasks[0].test.x
    assert x.shape == (5, 3, 64, 64)
    arr = tin.decode_jpeg(gray)
    assert arr.shape == (3, 64, 64) and np.array_equal(arr[0], arr[1]) and np.array_equal(arr[1], arr[2])


def test_cache_created_once_and_reused(tin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tin_dir / "tiny-imagenet-200" / tin.CACHE_NAME
    a = load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)
    assert cache.is_file()
    mtime = cache.stat().st_mtime_ns

    def no_decode(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path} again despite the cache")

    monkeypatch.setattr(tin, "decode_jpeg", no_decode)
    b = load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)
    assert cache.stat().st_mtime_ns == mtime
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp file
    for ta, tb in zip(a.tasks, b.tasks):
        assert torch.equal(ta.train.x, tb.train.x) and torch.equal(ta.test.y, tb.test.y)
    c = load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=1)
    assert any(not torch.equal(ta.val.x, tc.val.x) for ta, tc in zip(a.tasks, c.tasks))


def test_stale_cache_rebuilt(tin_dir: Path) -> None:
    root = tin_dir / "tiny-imagenet-200"
    load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=1, seed=0)
    w = sorted((root / "wnids.txt").read_text().split())[0]
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "train" / w / "images" / f"{w}_new.JPEG")
    bench = load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=1, seed=0)
    assert len(bench.tasks[0].train) + len(bench.tasks[0].val) == 16


def test_cache_rebuilt_when_val_labels_change(tin_dir: Path) -> None:
    """Same file counts, other labels in val_annotations.txt: the cache must not keep the old labels."""
    root = tin_dir / "tiny-imagenet-200"
    _, _, path = tin.load_arrays(str(tin_dir))
    before = tin.load_arrays(str(tin_dir))[0]["y_val"].copy()
    ann = root / "val" / "val_annotations.txt"
    rows = [ln.split("\t") for ln in ann.read_text().splitlines() if ln.strip()]
    labels = [r[1] for r in rows]
    rotated = labels[1:] + labels[:1]  # every image now names its neighbour's class
    ann.write_text("".join("\t".join([r[0], w, *r[2:]]) + "\n" for r, w in zip(rows, rotated)))
    after = tin.load_arrays(str(tin_dir))[0]["y_val"]
    assert len(after) == len(before) and not np.array_equal(after, before)
    assert np.array_equal(after, np.roll(before, -1))


def test_cache_rebuilt_when_an_image_is_replaced(tin_dir: Path) -> None:
    root = tin_dir / "tiny-imagenet-200"
    first = tin.load_arrays(str(tin_dir))[0]["x_train"].copy()
    w = sorted((root / "wnids.txt").read_text().split())[0]
    victim = sorted((root / "train" / w / "images").iterdir())[0]
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(victim, quality=100)
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    second = tin.load_arrays(str(tin_dir))[0]["x_train"]
    assert not np.array_equal(first, second)


def test_no_progress_bar_while_decoding_when_bars_are_off(tin_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from hinterval.console import progress_shown

    with progress_shown(False):
        tin.load_arrays(str(tin_dir))
    err = capsys.readouterr().err
    assert "decoding TinyImageNet" in err and "decode train" not in err and "it/s" not in err


def test_fifo_image_is_refused_not_waited_for(tin_dir: Path) -> None:
    root = tin_dir / "tiny-imagenet-200"
    w = sorted((root / "wnids.txt").read_text().split())[0]
    os.mkfifo(root / "train" / w / "images" / "zz_pipe.JPEG")
    with pytest.raises(UserError, match="named pipe"):
        tin.load_arrays(str(tin_dir))


def test_read_only_data_dir_uses_user_cache(tin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(tin, "dir_writable", lambda d: False)
    monkeypatch.setenv("HINTERVAL_CACHE_DIR", str(tmp_path / "usercache"))
    load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=1, seed=0)
    assert not (tin_dir / "tiny-imagenet-200" / tin.CACHE_NAME).exists()
    assert len(list((tmp_path / "usercache").glob("tinyimagenet-*.npz"))) == 1
    assert "read-only" in capsys.readouterr().err


# --- malformed data -------------------------------------------------------------------------

def test_missing_wnids(tin_dir: Path) -> None:
    (tin_dir / "tiny-imagenet-200" / "wnids.txt").unlink()
    with pytest.raises(DataError, match=r"wnids\.txt.*tiny-imagenet-200\.zip"):
        load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)


def test_no_data_dir() -> None:
    with pytest.raises(DataError, match="tiny-imagenet-200.zip"):
        load_benchmark("tinyimagenet", data_dir=None, num_tasks=None, seed=0)


def test_missing_val_annotations(tin_dir: Path) -> None:
    (tin_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt"):
        load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)


def test_unknown_wnid_in_annotations(tin_dir: Path) -> None:
    ann = tin_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="n99999999"):
        load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)


def test_missing_class_folder(tin_dir: Path) -> None:
    import shutil

    root = tin_dir / "tiny-imagenet-200"
    w = (root / "wnids.txt").read_text().split()[0]
    shutil.rmtree(root / "train" / w)
    with pytest.raises(DataError, match=w):
        load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)


def test_corrupt_jpeg(tin_dir: Path) -> None:
    root = tin_dir / "tiny-imagenet-200"
    w = (root / "wnids.txt").read_text().split()[0]
    bad = root / "train" / w / "images" / f"{w}_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"{w}_0.JPEG"):
        load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=None, seed=0)
    assert not (root / tin.CACHE_NAME).exists()
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]


def test_too_many_tasks(tin_dir: Path) -> None:
    from hinterval.errors import UserError

    with pytest.raises(UserError, match="at most 2"):
        load_benchmark("tinyimagenet", data_dir=str(tin_dir), num_tasks=3, seed=0)
