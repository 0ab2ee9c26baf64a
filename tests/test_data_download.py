"""``hinterval data`` and ``--download`` against a loopback server (``tests/data_server.py``): nothing
leaves 127.0.0.1. The fixture archives are the real formats (IDX ``.gz``, CIFAR ``.tar.gz``,
TinyImageNet ``.zip``); the official URLs and checksums are replaced through the test-only
``HINTERVAL_TEST_DATA_SOURCES`` file."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

from data_server import FixtureServer, fixture_archives  # noqa: E402

from hinterval import cli  # noqa: E402
from hinterval.data.sources import TEST_SOURCES_ENV  # noqa: E402

MNIST = [f"mnist/{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                   "t10k-labels-idx1-ubyte")]
TRAIN = ["--iters-per-task", "2", "--num-tasks", "2", "--hnet-hidden", "8", "--target-hidden", "8", "--embedding-dim", "2",
         "--no-progress", "--no-tensorboard", "--device", "cpu"]


@pytest.fixture(scope="module")
def archives():
    return fixture_archives()


@pytest.fixture
def server(archives, tmp_path, monkeypatch):
    srv = FixtureServer(archives)
    monkeypatch.setenv(TEST_SOURCES_ENV, str(srv.write_sources(tmp_path / "sources.json")))
    monkeypatch.delenv("HINTERVAL_DATA_DIR", raising=False)
    yield srv
    srv.close()


def run(capsys, *argv: str):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_under(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


@pytest.mark.slow
def test_right_checksum_lands_where_the_loader_reads_then_train_runs(server, tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = run(capsys, "data", "download", "split-mnist", "--data-dir", str(data), "--no-progress")
    assert code == 0, err
    assert files_under(data) == sorted(f"MNIST/raw/{n.split('/')[1]}" for n in MNIST)
    assert f"split-mnist: {data / 'MNIST' / 'raw'}" in out
    assert [server.gets(n) for n in MNIST] == [1, 1, 1, 1]
    assert run(capsys, "data", "check", "split-mnist", "--data-dir", str(data))[0] == 0
    code, out, err = run(capsys, "data", "download", "mnist", "--data-dir", str(data), "--no-progress")
    assert code == 0 and [server.gets(n) for n in MNIST] == [1, 1, 1, 1]  # there already: nothing fetched
    code, out, err = run(capsys, "train", "--benchmark", "split-mnist", "--data-dir", str(data), *TRAIN,
                         "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert (tmp_path / "run" / "result.json").is_file()


def test_train_with_download_fetches_what_is_missing(server, tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = run(capsys, "train", "--benchmark", "split-mnist", "--data-dir", str(data), "--download", *TRAIN,
                         "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "downloading MNIST (4 files" in err and (tmp_path / "run" / "result.json").is_file()
    assert [server.gets(n) for n in MNIST] == [1, 1, 1, 1]


def test_a_wrong_checksum_is_one_line_exit_1_and_leaves_nothing(server, archives, tmp_path, capsys):
    server.write_sources(Path(os.environ[TEST_SOURCES_ENV]), md5={MNIST[0]: "0" * 32})
    data = tmp_path / "data"
    code, out, err = run(capsys, "data", "download", "split-mnist", "--data-dir", str(data), "--no-progress")
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("hinterval: error")]
    assert len(lines) == 1 and "checksum mismatch for train-images-idx3-ubyte.gz" in lines[0]
    assert f"expected {'0' * 32}" in lines[0] and "run the same command again" in lines[0]
    assert not list(data.rglob("train-images*"))  # neither the file nor a .part
    assert run(capsys, "data", "check", "split-mnist", "--data-dir", str(data))[0] == 2


def test_a_cut_off_download_is_kept_and_resumed(server, archives, tmp_path, capsys):
    name = MNIST[0]
    server.cut_after[name] = 1000
    data = tmp_path / "data"
    code, out, err = run(capsys, "data", "download", "split-mnist", "--data-dir", str(data), "--no-progress")
    assert code == 1
    assert f"was cut off after 1,000 of {len(archives[name]):,} bytes; run the same command again to resume" in err
    part = data / "MNIST" / "raw" / "train-images-idx3-ubyte.gz.part"
    assert part.stat().st_size == 1000 and not part.with_suffix("").exists()  # nothing at the loader's path
    code, out, err = run(capsys, "data", "download", "split-mnist", "--data-dir", str(data), "--no-progress")
    assert code == 0, err
    assert (name, "bytes=1000-") in server.requests and "resuming train-images-idx3-ubyte.gz at 1,000 bytes" in err
    assert (data / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").read_bytes() == archives[name]
    assert not part.exists()


def test_without_internet_one_line_says_what_to_do_and_a_copied_file_is_used(server, archives, tmp_path, capsys):
    import json

    src = Path(os.environ[TEST_SOURCES_ENV])
    entries = json.loads(src.read_text())
    for e in entries.values():
        e["url"] = e["url"].replace(server.url, "http://127.0.0.1:9/")  # nothing listens there
    src.write_text(json.dumps(entries))
    data = tmp_path / "data"
    code, out, err = run(capsys, "data", "download", "split-cifar10", "--data-dir", str(data), "--no-progress")
    assert code == 1
    [line] = [ln for ln in err.splitlines() if ln.startswith("hinterval: error")]
    target = data / "cifar-10-python.tar.gz"
    assert "cannot download cifar-10-python.tar.gz (127.0.0.1:9:" in line and f"copy it to {target}" in line
    target.write_bytes(archives["cifar10/cifar-10-python.tar.gz"])  # fetched elsewhere, copied in
    code, out, err = run(capsys, "data", "download", "split-cifar10", "--data-dir", str(data), "--no-progress")
    assert code == 0, err
    assert (data / "cifar-10-batches-py" / "data_batch_5").is_file() and target.is_file()  # the copy is kept


def test_an_interrupted_unpack_leaves_no_half_tree_and_the_next_run_finishes(server, tmp_path, capsys, monkeypatch):
    import torchvision.datasets.utils as tvu

    real = tvu.extract_archive

    def extract_then_interrupt(src, dst, *a, **k):
        real(src, dst, *a, **k)  # everything unpacked into the temporary folder ...
        raise KeyboardInterrupt  # ... and then Ctrl-C before the rename

    data = tmp_path / "data"
    monkeypatch.setattr(tvu, "extract_archive", extract_then_interrupt)
    code, out, err = run(capsys, "data", "download", "split-cifar10", "--data-dir", str(data), "--no-progress")
    assert code == 130 and "the same command resumes it" in err
    assert not (data / "cifar-10-batches-py").exists() and not list(data.glob(".cifar-10-batches-py.unpacking-*"))
    assert (data / "cifar-10-python.tar.gz").is_file()  # verified archive kept
    monkeypatch.setattr(tvu, "extract_archive", real)
    stale = data / ".cifar-10-batches-py.unpacking-killed"  # what a SIGKILL in the middle leaves
    (stale / "cifar-10-batches-py").mkdir(parents=True)
    code, out, err = run(capsys, "data", "download", "split-cifar10", "--data-dir", str(data), "--no-progress")
    assert code == 0, err
    assert server.gets("cifar10/cifar-10-python.tar.gz") == 1  # not fetched again
    assert not stale.exists()
    assert run(capsys, "data", "check", "split-cifar10", "--data-dir", str(data))[0] == 0


def test_every_data_set_lands_where_its_loader_reads(server, tmp_path, capsys):
    data = tmp_path / "data"
    names = ["fashion-mnist", "split-cifar100", "tinyimagenet"]
    code, out, err = run(capsys, "data", "download", *names, "--data-dir", str(data), "--no-progress")
    assert code == 0, err
    assert not list(data.glob("*.tar.gz")) and not list(data.glob("*.zip"))  # downloaded archives go once unpacked
    code, out, err = run(capsys, "data", "check", *names, "--data-dir", str(data))
    assert code == 0, err
    assert out.splitlines() == [f"fashion-mnist: ok ({data / 'FashionMNIST' / 'raw'})",
                                f"split-cifar100: ok ({data / 'cifar-100-python'})",
                                f"tinyimagenet: ok ({data / 'tiny-imagenet-200'})"]
    code, out, err = run(capsys, "data", "list", "--data-dir", str(data))
    assert code == 0 and f"found in {data / 'tiny-imagenet-200'}" in out and f"not found in {data}" in out  # mnist
    assert "md5 " + hashlib.md5(server.files["cifar100/cifar-100-python.tar.gz"]).hexdigest() in out


def test_a_foreign_file_in_the_way_is_never_replaced(server, tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"mine")
    code, out, err = run(capsys, "data", "download", "split-mnist", "--data-dir", str(tmp_path / "data"), "--no-progress")
    assert code == 2 and "is there but is not the official file" in err and "move it away or delete it" in err
    assert (raw / "train-images-idx3-ubyte.gz").read_bytes() == b"mine"


def test_an_archive_reaching_outside_its_folder_is_not_unpacked(server, tmp_path, capsys):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    server.files["cifar10/cifar-10-python.tar.gz"] = buf.getvalue()
    server.write_sources(Path(os.environ[TEST_SOURCES_ENV]))
    data = tmp_path / "data"
    code, out, err = run(capsys, "data", "download", "split-cifar10", "--data-dir", str(data), "--no-progress")
    assert code == 1 and "holds '../escaped.txt', which would land outside" in err
    assert not (tmp_path / "escaped.txt").exists() and not (data / "cifar-10-batches-py").exists()


def test_no_data_dir_or_unknown_name_is_bad_input(server, tmp_path, capsys):
    code, out, err = run(capsys, "data", "download", "split-mnist", "--no-progress")
    assert code == 2 and "pass --data-dir DIR (or set $HINTERVAL_DATA_DIR)" in err
    code, out, err = run(capsys, "data", "download", "mnist", "nosuch", "--data-dir", str(tmp_path / "d"))
    assert code == 2 and "unknown benchmark or data set 'nosuch'" in err and not (tmp_path / "d").exists()
    code, out, err = run(capsys, "data", "download", "split-digits", "--data-dir", str(tmp_path / "d"))
    assert code == 0 and "split-digits: embedded, nothing to download" in out


@pytest.mark.slow
def test_two_processes_downloading_into_one_directory_fetch_each_file_once(server, tmp_path):
    import threading

    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server.hold[MNIST[0]] = threading.Event()
    cmd = [sys.executable, "-m", "hinterval", "data", "download", "split-mnist", "--data-dir", str(data), "--no-progress"]
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=logs[0].open("w"))
    deadline = time.time() + 300
    while not server.gets(MNIST[0]) and time.time() < deadline:  # the first process is inside the download
        time.sleep(0.1)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=logs[1].open("w"))
    while "waiting for another process" not in logs[1].read_text() and time.time() < deadline:
        time.sleep(0.1)
    server.hold[MNIST[0]].set()
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0, [p.read_text() for p in logs]
    waited = logs[1].read_text()
    assert f"waiting for another process to finish downloading MNIST into {data}" in waited
    assert f"MNIST is ready in {data / 'MNIST' / 'raw'}" in waited and "downloading MNIST (" not in waited
    assert [server.gets(n) for n in MNIST] == [1, 1, 1, 1]
    assert run_check(data) == 0


def run_check(data: Path) -> int:
    return subprocess.run([sys.executable, "-m", "hinterval", "data", "check", "split-mnist", "--data-dir", str(data)],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True).returncode
