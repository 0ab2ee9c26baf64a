"""Bad input, table-driven: ``hinterval`` and ``tune/search.py`` answer with exit code 2 and one line.

Every case runs the real command line in-process (``hinterval.cli.main`` / ``tune.search.main``;
sweeps with ``--dry-run`` or failing before Ray starts) and checks: exit code 2 (or the documented
code of the case: 1 for a failed run, 130 for Ctrl-C, 143 for SIGTERM); on stderr ONE short line
naming the problem (argparse's own type/choice errors: its usage lines plus one ``error:`` line);
no traceback; and every file that existed before is unchanged (nothing overwritten or deleted, no
run or sweep directory left behind). Fixtures are the real on-disk formats from ``tests/data_fixtures.py``.

The cases cover classes of bad input: flags, config files (any bytes, encodings, aliases, types),
numbers out of range, output paths, data files that lie, run directories (foreign checkpoints),
sweep directories in use, and failures from inside (disk full, Ray, interrupts).
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import data_fixtures as F  # noqa: E402

from hinterval import cli  # noqa: E402

TINY = ["--iters-per-task", "2", "--num-tasks", "1", "--hnet-hidden", "8", "--target-hidden", "8", "--embedding-dim", "2",
        "--no-progress", "--no-tensorboard", "--device", "cpu"]


class Case(NamedTuple):
    id: str
    tool: str  # "cli" | "sweep"
    make: Callable[[Path], List[str]]  # builds fixtures under tmp and returns argv
    needles: tuple  # substrings the error line must contain
    argparse: bool = False  # argparse's own error: usage lines + one error line
    code: int = 2  # the documented exit code
    patch: Optional[Callable] = None  # patch(monkeypatch, tmp): simulate a failure from inside
    creates: bool = False  # the run got far enough to write new files (existing ones must still be unchanged)


# --- fixture builders -----------------------------------------------------------------------------
def _out(tmp: Path) -> List[str]:
    return ["--out", str(tmp / "run")]


def _mnist(tmp: Path, gz: bool = True) -> Path:
    F.write_mnist(tmp / "data" / "MNIST" / "raw", gz=gz, n_train_per_class=3, n_test_per_class=1)
    return tmp / "data"


def _truncated_idx(tmp: Path) -> List[str]:
    root = _mnist(tmp)
    p = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(data[:-300]))
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(root), *TINY, *_out(tmp)]


def _wrong_magic(tmp: Path) -> List[str]:
    root = _mnist(tmp, gz=False)
    p = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    p.write_bytes((2051).to_bytes(4, "big") + p.read_bytes()[4:])  # an images magic on a labels file
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(root), *TINY, *_out(tmp)]


def _cifar_wrong_keys(tmp: Path) -> List[str]:
    root = F.write_cifar10(tmp / "data", n_per_class_per_batch=1, n_test_per_class=1)
    batch = pickle.loads((root / "data_batch_3").read_bytes())
    batch[b"pixels"] = batch.pop(b"data")
    (root / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    return ["train", "--benchmark", "split-cifar10", "--data-dir", str(tmp / "data"), *TINY, *_out(tmp)]


def _tiny_no_wnids(tmp: Path) -> List[str]:
    root = F.write_tinyimagenet(tmp / "data", num_classes=5, n_train=1, n_val=1, grayscale=None)
    (root / "wnids.txt").unlink()
    return ["train", "--benchmark", "tinyimagenet", "--data-dir", str(tmp / "data"), *TINY, *_out(tmp)]


def _foreign_idx(tmp: Path) -> List[str]:
    raw = tmp / "d" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not the official file")
    return ["data", "download", "split-mnist", "--data-dir", str(tmp / "d"), "--no-progress"]


def _offline(mp, tmp: Path) -> None:
    """Every data source at a local port where nothing listens: a machine without internet."""
    import json

    from hinterval.data.sources import DATASET_KEYS, TEST_SOURCES_ENV, source

    mp.delenv(TEST_SOURCES_ENV, raising=False)
    entries = {f"{k}/{f.filename}": {"url": f"http://127.0.0.1:9/{f.filename}", "md5": f.md5, "size": f.size}
               for k in DATASET_KEYS for f in source(k).files}
    path = tmp.parent / f"{tmp.name}-sources.json"
    path.write_text(json.dumps(entries))
    mp.setenv(TEST_SOURCES_ENV, str(path))


def _config(tmp: Path, text: str, *extra: str) -> List[str]:
    (tmp / "c.yaml").write_text(text)
    return ["train", "--config", str(tmp / "c.yaml"), *TINY, *extra, *_out(tmp)]


def _non_empty_out(tmp: Path) -> List[str]:
    (tmp / "run").mkdir()
    (tmp / "run" / "precious.txt").write_text("keep me")
    return ["train", *TINY, *_out(tmp)]


def _overwrite_with_bad_data(tmp: Path) -> List[str]:
    _run_dir(tmp, "run")  # --overwrite may only delete the old run once the new one can start
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(tmp / "missing"), *TINY, *_out(tmp), "--overwrite"]


def _finished_run(tmp: Path) -> Path:
    """A run directory as ``hinterval train`` leaves it (checkpoint of an untrained model: fast)."""
    from hinterval.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from hinterval.files import write_json
    from hinterval.config import make_config
    from hinterval.trainer import ContinualTrainer

    cfg = make_config(iters_per_task=2, num_tasks=1, hnet_hidden="8", target_hidden="8", embedding_dim=2, device="cpu")
    run = tmp / "run"
    save_checkpoint(ContinualTrainer(cfg, progress=False).state(), run / CHECKPOINT_NAME)
    write_json(run / "config.json", cfg.to_dict())
    return run


def _resume_other_config(tmp: Path) -> List[str]:
    _finished_run(tmp)
    return ["train", "--resume", *_out(tmp), "--gamma", "0.5", "--no-progress"]


def _resume_bitflip(tmp: Path) -> List[str]:
    run = _finished_run(tmp)
    ck = bytearray((run / "checkpoint.pt").read_bytes())
    with zipfile.ZipFile(run / "checkpoint.pt") as z:
        big = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor
    name_len, extra_len = struct.unpack("<HH", ck[big.header_offset + 26: big.header_offset + 30])
    ck[big.header_offset + 30 + name_len + extra_len + big.file_size // 2] ^= 0xFF  # torch.load alone would not notice
    (run / "checkpoint.pt").write_bytes(bytes(ck))
    return ["train", "--resume", *_out(tmp), "--no-progress"]


def _sweep(tmp: Path, *argv: str) -> List[str]:
    return [*argv, "--results-dir", str(tmp / "results"), "--dry-run"]


def _space(tmp: Path, text: str) -> List[str]:
    (tmp / "space.yaml").write_text(text)
    return _sweep(tmp, "--space", str(tmp / "space.yaml"))


def _existing_sweep(tmp: Path, *flags: str) -> List[str]:
    d = tmp / "results" / "split-digits"
    d.mkdir(parents=True)
    (d / "trials.csv").write_text("precious\n")
    (d / "sweep.json").write_text("{not json")
    return ["--results-dir", str(tmp / "results"), "--name", "split-digits", *flags]  # without --name: a new sweep


# --- config files of any kind -----------------------------------------------------------------------
def _config_no_width_flags(tmp: Path, text: str) -> List[str]:
    """Like :func:`_config`, without the width flags of TINY (which would override the file)."""
    (tmp / "c.yaml").write_text(text)
    flags = [a for i, a in enumerate(TINY) if a not in ("--hnet-hidden", "--target-hidden")
             and TINY[i - 1] not in ("--hnet-hidden", "--target-hidden")]
    return ["train", "--config", str(tmp / "c.yaml"), *flags, *_out(tmp)]


def _config_bytes(tmp: Path, data: bytes) -> List[str]:
    (tmp / "c.yaml").write_bytes(data)
    return ["train", "--config", str(tmp / "c.yaml"), *TINY, *_out(tmp)]


ALIAS_BOMB = "".join([
    'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n',
    *(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)),
    "gamma: *i\n"])


# --- data that lies -------------------------------------------------------------------------------
def _mnist_labels(tmp: Path, ytr: np.ndarray, yte: np.ndarray) -> List[str]:
    """MNIST IDX files with exactly these train/test labels (e.g. a class missing from one split)."""
    folder = tmp / "data" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    xtr, xte = F.class_images(ytr, (28, 28), 10, 1), F.class_images(yte, (28, 28), 10, 2)
    for name, arr, magic in zip(F.IDX_FILES, (xtr, ytr, xte, yte), (2051, 2049, 2051, 2049)):
        F.write_idx(folder / name, arr.astype(np.uint8), magic, gz=True)
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(tmp / "data"), *TINY, "--num-tasks", "5", *_out(tmp)]


def _all_classes(n: int) -> np.ndarray:
    return np.repeat(np.arange(10), n).astype(np.uint8)


def _gzip_bomb(tmp: Path) -> List[str]:
    """A real images file followed by 1 GB of zeros in 1 MB of gzip members (read whole: MemoryError)."""
    root = _mnist(tmp)
    p = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    zeros = gzip.compress(b"\0" * (16 << 20), compresslevel=9)
    with open(p, "ab") as f:
        for _ in range(64):
            f.write(zeros)
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(root), *TINY, *_out(tmp)]


def _idx_huge_header(tmp: Path) -> List[str]:
    root = _mnist(tmp, gz=False)
    p = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(p.read_bytes())
    data[4:8] = (4_000_000).to_bytes(4, "big")  # 4M images of 28x28: 3.1 GB announced
    p.write_bytes(bytes(data))
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(root), *TINY, *_out(tmp)]


# --- run directories: one unit ----------------------------------------------------------------------
def _run_dir(tmp: Path, name: str, *, gamma: float = 1.0, run_id: Optional[str] = "a" * 32,
             ck_gamma: Optional[float] = None, ck_run_id: Optional[str] = "a" * 32, config_json: bool = True) -> Path:
    """A run directory whose checkpoint may come from elsewhere (another config or run id)."""
    from hinterval.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from hinterval.files import write_json
    from hinterval.config import make_config
    from hinterval.trainer import ContinualTrainer

    small = dict(iters_per_task=2, num_tasks=2, hnet_hidden="8", target_hidden="8", embedding_dim=2, device="cpu")
    cfg = make_config(gamma=gamma, **small)
    ck_cfg = make_config(gamma=gamma if ck_gamma is None else ck_gamma, **small)
    run = tmp / name
    state = ContinualTrainer(ck_cfg, progress=False).state()
    state["tasks_done"] = 1
    if ck_run_id:
        state["run_id"] = ck_run_id
    save_checkpoint(state, run / CHECKPOINT_NAME)
    if config_json:
        write_json(run / "config.json", {**cfg.to_dict(), **({"run_id": run_id} if run_id else {})})
    write_json(run / "result.json", {"complete": True, "precious": 1})
    return run


# --- run directories whose checkpoint is damaged or gone ----------------------------------------------
def _damaged_checkpoint(tmp: Path, how: str) -> List[str]:
    """A run directory (one of two tasks finished, result.json written) whose checkpoint.pt is cut in half,
    random bytes, a zip of something else, a link to itself, a directory, or deleted."""
    run = _run_dir(tmp, "run")
    ck = run / "checkpoint.pt"
    data = ck.read_bytes()
    if how != "half":
        ck.unlink()
    if how == "half":
        ck.write_bytes(data[: len(data) // 2])
    elif how == "random":
        ck.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif how == "zip":
        with zipfile.ZipFile(ck, "w") as z:
            z.writestr("archive/data.pkl", b"not a state")
    elif how == "loop":
        ck.symlink_to("checkpoint.pt")
    elif how == "dir":
        ck.mkdir()
    return ["train", "--resume", *_out(tmp), "--no-progress"]


def _loop(tmp: Path) -> Path:
    """Two symbolic links pointing at each other."""
    (tmp / "loop2").symlink_to(tmp / "loop1")
    (tmp / "loop1").symlink_to(tmp / "loop2")
    return tmp / "loop1"


# --- failures from inside -----------------------------------------------------------------------------
def _disk_full_on_checkpoints(mp, tmp: Path) -> None:
    """Every binary atomic write (checkpoints) hits ENOSPC after 4 KB: torch.save raises RuntimeError."""
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    mp.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real(fd, mode, *a, **k)) if mode == "wb"
               else real(fd, mode, *a, **k))


def _raise(exc: BaseException) -> Callable:
    def fn(*a, **k):
        raise exc
    return fn


def _no_ray_cluster(mp, tmp: Path, fail=None) -> None:
    """The sweep's Ray calls replaced (no cluster is started); ``fail`` is raised by make_tuner."""
    import ray

    from tune import cluster, driver

    mp.setattr(cluster, "connect", lambda address: False)
    mp.setattr(cluster, "alive_node_resources", lambda: [{"CPU": 4.0}])
    mp.setattr(ray, "nodes", lambda: [])
    if fail is not None:
        mp.setattr(driver, "make_tuner", _raise(fail))


def _lock_sweep(tmp: Path) -> List[str]:
    from hinterval.files import DirectoryLock

    d = tmp / "results" / "split-digits"
    d.mkdir(parents=True)
    _HELD.append(DirectoryLock(d, "sweep").acquire())  # another driver holds it (released by the test)
    return ["--results-dir", str(tmp / "results"), "--name", "split-digits"]  # without --name a new sweep starts


_HELD: list = []


# --- sweeps: what `train` refuses, cluster addresses, stop signals, resumes of foreign state -----------------
def _grpc_less_listener(tmp: Path) -> str:
    """A local TCP server that answers like a web server (not gRPC): an address where no Ray cluster is."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    _HELD.append(type("Closer", (), {"release": lambda self: srv.close()})())
    return f"127.0.0.1:{srv.getsockname()[1]}"


def _signal_during(mp, sig_name: str, where: str) -> None:
    """A real SIGTERM/SIGHUP sent to this process while the sweep resolves its command line."""
    import signal
    import time as _time

    from tune import driver

    real = getattr(driver, where)

    def stopped(*a, **k):
        os.kill(os.getpid(), getattr(signal, sig_name))
        _time.sleep(0.5)  # the handler runs at the next bytecode
        return real(*a, **k)

    mp.setattr(driver, where, stopped)


def _stopped_after_trials(mp, tmp: Path, sig_name: str) -> None:
    """The sweep's trials ran and a stop signal arrived: what the command line then says."""
    import signal

    from tune import driver, prepare
    from tune.signals import StopSignals

    def run(args, callbacks=()):
        spec = prepare.resolve(args)
        StopSignals.received = getattr(signal, sig_name)
        return {"interrupted": True, "spec": spec, "records": [], "complete": 0}

    mp.setattr(driver, "run_sweep", run)


def _every_trial_failed(mp, tmp: Path) -> None:
    from tune import driver, prepare

    def run(args, callbacks=()):
        spec = prepare.resolve(args)
        records = [{"status": "ERROR"}, {"status": "ERROR"}, {"status": "DIVERGED"}]
        return {"interrupted": False, "spec": spec, "records": records, "complete": 0}

    mp.setattr(driver, "run_sweep", run)


SWEEP_SMALL = ["--num-tasks", "2", "--iters-per-task", "2", "--set", "target_hidden=8", "--hnet-hidden", "8"]


def _config_home(mp, tmp: Path) -> Path:
    """This user's sweep key in a config directory of the test's own (next to tmp, not in its snapshot)."""
    home = tmp.parent / (tmp.name + "-config")
    mp.setenv("XDG_CONFIG_HOME", str(home))
    return home


def _handed_sweep(tmp: Path, how: str) -> List[str]:
    """A sweep directory as someone might hand it over: its sweep.json, Tune state whose tuner.pkl runs code
    when unpickled (it would create ``pwned``), and a signed copy that is missing, damaged, signed with
    another key, or of another sweep."""
    import base64
    import hmac
    import json

    from tune import prepare, search
    from tune.spec import new_experiment
    from tune.trust import SIGNED_STATE

    results = tmp / "results"
    args = search.parse_args(["--results-dir", str(results), "--name", "handed", *SWEEP_SMALL])
    spec = new_experiment(prepare.resolve(args))
    out = Path(spec["out_dir"])
    out.mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps(spec.to_dict()))
    exp = Path(spec["storage"]) / spec["experiment"]
    exp.mkdir(parents=True)

    class Planted:
        def __reduce__(self):
            return (open, (str(tmp / "pwned"), "w"))

    planted = pickle.dumps(Planted())
    (exp / "tuner.pkl").write_bytes(planted)
    files = {"tuner.pkl": base64.b64encode(planted).decode()}
    body = lambda experiment: json.dumps({"experiment": experiment, "files": files}, sort_keys=True).encode()  # noqa: E731
    if how == "damaged":
        (out / SIGNED_STATE).write_text("{not json")
    elif how == "other-key":
        mac = hmac.new(b"k" * 32, body(spec["experiment"]), "sha256").hexdigest()
        (out / SIGNED_STATE).write_text(json.dumps({"experiment": spec["experiment"], "files": files, "mac": mac}))
    elif how == "other-sweep":  # signed with this user's key, but for another sweep's experiment
        key = tmp.parent / (tmp.name + "-config") / "hinterval" / "sweep.key"  # where the patch points the command
        key.parent.mkdir(parents=True)
        key.write_bytes(b"s" * 32)
        key.chmod(0o600)
        mac = hmac.new(b"s" * 32, body("other-1234"), "sha256").hexdigest()
        (out / SIGNED_STATE).write_text(json.dumps({"experiment": "other-1234", "files": files, "mac": mac}))
    return ["--results-dir", str(results), "--name", "handed", "--resume"]


def _key_readable_by_others(mp, tmp: Path) -> None:
    home = _config_home(mp, tmp)
    key = home / "hinterval" / "sweep.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(b"x" * 32)
    key.chmod(0o644)


CASES = [
    # --- hinterval train/eval: flags of the wrong type or out of range (checked like config-file values)
    Case("cli-float-type", "cli", lambda t: ["train", "--gamma", "abc", *TINY, *_out(t)],
         ("config key gamma (--gamma) must be a number", "'abc'")),
    Case("cli-int-type", "cli", lambda t: ["train", "--num-tasks", "1.5", *_out(t)],
         ("config key num_tasks (--num-tasks) must be an integer", "'1.5'")),
    Case("cli-bool-type", "cli", lambda t: ["train", "--reg-bounds", "maybe", *_out(t)],
         ("config key reg_bounds (--reg-bounds) must be true or false", "'maybe'")),
    Case("cli-kappa-range", "cli", lambda t: ["train", "--kappa-min", "2", *TINY, *_out(t)], ("kappa min must be in [0, 1]",)),
    Case("cli-interval-scope-name", "cli", lambda t: ["train", "--interval-scope", "first:2", *TINY, *_out(t)],
         ("interval scope must be all | head",)),
    Case("cli-interval-scope-too-deep", "cli", lambda t: ["train", "--interval-scope", "last:9", *TINY, *_out(t)],
         ("--interval-scope last:9", "2 weighted layers")),
    Case("cli-batch-size-range", "cli", lambda t: ["train", "--batch-size", "0", *TINY, *_out(t)], ("batch size must be >= 1",)),
    Case("cli-gamma-infinite", "cli", lambda t: ["train", "--gamma", "inf", *TINY, *_out(t)], ("gamma", "finite number")),
    Case("cli-too-many-tasks", "cli", lambda t: ["train", *TINY, "--num-tasks", "9", *_out(t)], ("split-digits", "at most 5 tasks")),
    Case("cli-unknown-benchmark", "cli", lambda t: ["train", "--benchmark", "split_mnist", *TINY, *_out(t)],
         ("unknown benchmark 'split_mnist'", "split-mnist")),
    Case("cli-unknown-method", "cli", lambda t: ["train", "--method", "ewc2", *TINY, *_out(t)], ("unknown method 'ewc2'", "ewc")),
    Case("cli-unknown-target", "cli", lambda t: ["train", "--target", "vgg", *TINY, *_out(t)], ("unknown target 'vgg'",)),
    # --- config files
    Case("cli-config-malformed-yaml", "cli", lambda t: _config(t, "gamma: [1,\nbeta: 2\n"), ("not valid YAML at line",)),
    Case("cli-config-wrong-type", "cli", lambda t: _config(t, "gamma: high\n"), ("gamma", "must be a number", "'high'")),
    Case("cli-config-int-type", "cli", lambda t: _config(t, "seed: abc\n"), ("seed", "must be an integer")),
    Case("cli-config-unknown-key", "cli", lambda t: _config(t, "gama: 0.5\n"), ("unknown config key(s): gama", "valid keys")),
    Case("cli-config-not-mapping", "cli", lambda t: _config(t, "- gamma\n- beta\n"), ("must contain a mapping",)),
    # --- data directories
    Case("cli-data-dir-missing", "cli", lambda t: ["train", "--benchmark", "split-mnist", "--data-dir", str(t / "nope"),
                                                    *TINY, *_out(t)], ("does not exist", "--data-dir")),
    Case("cli-data-dir-wrong-layout", "cli", lambda t: (t / "empty").mkdir() or [
        "train", "--benchmark", "split-mnist", "--data-dir", str(t / "empty"), *TINY, *_out(t)],
         ("IDX files not found", "train-images-idx3-ubyte")),
    Case("cli-idx-truncated", "cli", _truncated_idx, ("truncated", "download again")),
    Case("cli-idx-wrong-magic", "cli", _wrong_magic, ("not an IDX labels file", "magic number 2051, expected 2049")),
    Case("cli-cifar-wrong-keys", "cli", _cifar_wrong_keys, ("data_batch_3", "expected keys b'data'")),
    Case("cli-tinyimagenet-no-wnids", "cli", _tiny_no_wnids, ("no wnids.txt", "tiny-imagenet-200.zip")),
    # --- hinterval data: names, data directories, files in the way, no network (exit 1)
    Case("cli-data-unknown-name", "cli", lambda t: ["data", "download", "split_mnist", "--data-dir", str(t / "d")],
         ("unknown benchmark or data set 'split_mnist'", "split-mnist")),
    Case("cli-data-no-data-dir", "cli", lambda t: ["data", "download", "split-mnist"], ("pass --data-dir DIR",),
         patch=lambda mp, t: mp.delenv("HINTERVAL_DATA_DIR", raising=False)),
    Case("cli-data-check-missing", "cli", lambda t: (t / "empty").mkdir() or [
        "data", "check", "split-cifar10", "--data-dir", str(t / "empty")], ("CIFAR-10 batches not found", "data download")),
    Case("cli-data-foreign-file-in-the-way", "cli", _foreign_idx, ("is there but is not the official file", "move it away")),
    Case("cli-data-offline", "cli", lambda t: ["data", "download", "split-cifar10", "--data-dir", str(t / "d"),
                                               "--no-progress"],
         ("cannot download cifar-10-python.tar.gz", "copy it to"), code=1, patch=_offline, creates=True),
    Case("sweep-download-offline", "sweep", lambda t: ["--benchmark", "split-mnist", "--download", "--data-dir", str(t / "d"),
                                                       "--results-dir", str(t / "results")],  # fails before Ray starts
         ("cannot download train-images-idx3-ubyte.gz", "copy it to"), code=1, patch=_offline, creates=True),
    # --- run directories, resume
    Case("cli-non-empty-out", "cli", _non_empty_out, ("is not empty and is not a run directory", "'precious.txt'",
                                                      "never deletes other files")),
    Case("cli-overwrite-keeps-old-run-on-bad-data", "cli", _overwrite_with_bad_data, ("does not exist",)),
    Case("cli-resume-and-overwrite", "cli", lambda t: ["train", "--resume", "--overwrite", *_out(t)], ("contradict",)),
    Case("cli-resume-different-config", "cli", _resume_other_config, ("different config", "'gamma': (1.0, 0.5)")),
    Case("cli-resume-bitflipped-checkpoint", "cli", _resume_bitflip, ("corrupted", "CRC-32")),
    Case("cli-resume-empty-checkpoint", "cli", lambda t: _finished_run(t) and (t / "run" / "checkpoint.pt").write_bytes(b"")
         or ["train", "--resume", *_out(t), "--no-progress"], ("corrupted", "file ends early")),
    Case("cli-eval-no-checkpoint", "cli", lambda t: ["eval", str(t)], ("no checkpoint",)),
    # --- python tune/search.py
    Case("sweep-int-type", "sweep", lambda t: _sweep(t, "--num-samples", "x"),
         ("argument --num-samples", "invalid int value: 'x'"), argparse=True),
    Case("sweep-unknown-scheduler", "sweep", lambda t: _sweep(t, "--scheduler", "hyperband"),
         ("argument --scheduler", "invalid choice: 'hyperband'"), argparse=True),
    Case("sweep-unknown-benchmark", "sweep", lambda t: _sweep(t, "--benchmark", "cifar"), ("unknown benchmark 'cifar'",)),
    Case("sweep-unknown-method", "sweep", lambda t: _sweep(t, "--method", "hyperinterval,magic"), ("unknown method 'magic'",)),
    Case("sweep-repeated-objective", "sweep", lambda t: _sweep(t, "--objective", "avg_acc,avg_acc"), ("--objective",)),
    Case("sweep-range-type", "sweep", lambda t: _sweep(t, "--gamma", "abc"), ("--gamma", "not a valid float")),
    Case("sweep-set-wrong-type", "sweep", lambda t: _sweep(t, "--set", "seed=abc"), ("seed", "must be an integer")),
    Case("sweep-set-out-of-range", "sweep", lambda t: _sweep(t, "--set", "lr=-1"), ("learning rate must be > 0",)),
    Case("sweep-space-malformed-yaml", "sweep", lambda t: _space(t, "gamma: {type: loguniform, low: 1\n"),
         ("not valid YAML at line",)),
    Case("sweep-space-low-above-high", "sweep", lambda t: _space(t, "gamma: {type: uniform, low: 2, high: 1}\n"),
         ("gamma", "low (2) must be smaller than high (1)")),
    Case("sweep-space-not-mapping", "sweep", lambda t: _space(t, "[1, 2]\n"), ("must contain a mapping",)),
    Case("sweep-data-dir-missing", "sweep", lambda t: _sweep(t, "--benchmark", "split-mnist", "--data-dir", str(t / "nope")),
         ("does not exist",)),
    Case("sweep-data-dir-wrong-layout", "sweep", lambda t: (t / "empty").mkdir() or _sweep(
        t, "--benchmark", "split-cifar100", "--data-dir", str(t / "empty")), ("CIFAR-100 batches not found",)),
    Case("sweep-too-many-tasks", "sweep", lambda t: _sweep(t, "--num-tasks", "9"), ("at most 5 tasks",)),
    Case("sweep-fractional-gpus-above-one", "sweep", lambda t: _sweep(t, "--gpus-per-trial", "1.5"), ("whole number",)),
    Case("sweep-no-cpus", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "0"), ("--cpus-per-trial must be > 0",)),
    Case("sweep-more-gpus-than-the-machine", "sweep",
         lambda t: ["--gpus-per-trial", "2", "--results-dir", str(t / "results")], ("only 1 CUDA GPU(s)", "--gpus-per-trial 1")),
    Case("sweep-existing-without-flag", "sweep", lambda t: _existing_sweep(t), ("already holds a sweep", "--resume", "--overwrite")),
    Case("sweep-resume-and-overwrite", "sweep", lambda t: _existing_sweep(t, "--resume", "--overwrite"), ("contradict",)),
    Case("sweep-resume-corrupted-state", "sweep", lambda t: _existing_sweep(t, "--resume"), ("sweep.json is corrupted",)),

    # --- config files: any bytes, any encoding, aliases, wrong types ---------------------------------
    Case("cli-config-binary", "cli", lambda t: _config_bytes(t, bytes(range(256)) * 4), ("binary file",)),
    Case("cli-config-utf16-without-bom", "cli", lambda t: _config_bytes(t, "gamma: 0.5\n".encode("utf-16-le")),
         ("binary file", "UTF-16 without a byte-order mark")),
    Case("cli-config-latin1", "cli", lambda t: _config_bytes(t, "# caf\u00e9\ngamma: 0.5\n".encode("latin-1")),
         ("not UTF-8 text", "byte 0xe9 at line 1")),
    Case("cli-config-control-character", "cli", lambda t: _config_bytes(t, b"gamma: 0.5\x07\n"), ("not valid YAML", "character")),
    Case("cli-config-alias-bomb", "cli", lambda t: _config(t, ALIAS_BOMB), ("expands to more than 10,000 values",)),
    Case("cli-config-self-reference", "cli", lambda t: _config_no_width_flags(t, "target_hidden: &a [8, *a]\n"), ("expands to more than",)),
    Case("cli-config-too-deep", "cli", lambda t: _config(t, "gamma: " + "[" * 20000 + "]" * 20000 + "\n"), ("nested too deeply",)),
    Case("cli-config-too-large", "cli", lambda t: _config(t, "# padding\n" * 120_000), ("larger than 1 MiB",)),
    Case("cli-config-is-a-directory", "cli", lambda t: ["train", "--config", str(t), *TINY, *_out(t)], ("is a directory",)),
    Case("cli-config-invalid-date", "cli", lambda t: _config(t, "seed: 2024-13-45\n"), ("not valid YAML", "month")),
    Case("cli-config-non-name-key", "cli", lambda t: _config(t, "1: 2\n"), ("config keys must be names",)),
    Case("cli-config-list-as-name", "cli", lambda t: _config(t, "benchmark: [split-digits]\n"), ("benchmark", "must be a string")),
    Case("cli-config-mapping-as-name", "cli", lambda t: _config(t, "method: {hnet: 1}\n"), ("method", "must be a string")),
    Case("cli-config-huge-string", "cli", lambda t: _config(t, "benchmark: " + "x" * 100_000 + "\n"),
         ("benchmark", "at most 4096 characters", "...")),
    Case("cli-config-widths-float-and-bool", "cli", lambda t: _config_no_width_flags(t, "hnet_hidden: [1.9, true]\n"),
         ("layer widths must be comma-separated whole numbers", "[1.9, True]")),
    Case("cli-config-widths-nested", "cli", lambda t: _config_no_width_flags(t, "target_hidden: [[8]]\n"), ("whole numbers",)),
    Case("cli-config-bool-as-number", "cli", lambda t: _config(t, "gamma: true\n"), ("gamma", "must be a number", "True")),
    Case("cli-config-number-as-bool", "cli", lambda t: _config(t, "reg_bounds: 2\n"), ("reg_bounds", "must be true or false")),
    Case("cli-config-control-char-in-string", "cli", lambda t: _config(t, 'data_dir: "a\\x00b"\n'),
         ("data_dir", "without control characters")),
    Case("sweep-space-alias-bomb", "sweep", lambda t: _space(t, ALIAS_BOMB), ("expands to more than",)),
    # --- numbers without an upper bound ----------------------------------------------------------------
    Case("cli-seed-2-64", "cli", lambda t: ["train", "--seed", str(2**64), *TINY, *_out(t)], ("seed", "between 0 and 2^64 - 1")),
    Case("cli-seed-negative", "cli", lambda t: ["train", "--seed", "-1", *TINY, *_out(t)], ("seed", "between 0 and 2^64 - 1")),
    Case("cli-config-data-seed-1e30", "cli", lambda t: _config(t, "data_seed: 1.0e+30\n"), ("data_seed", "between 0 and 2^64 - 1")),
    Case("cli-iters-above-int64", "cli", lambda t: ["train", *TINY, "--iters-per-task", str(2**63), *_out(t)],
         ("iters_per_task", "2^63 - 1")),
    Case("cli-num-threads-huge", "cli", lambda t: ["train", *TINY, "--num-threads", "100000000", *_out(t)],
         ("num_threads", "between 1 and 1024")),
    Case("cli-num-tasks-huge", "cli", lambda t: ["train", "--benchmark", "permuted-digits", *TINY, "--num-tasks", "1000000",
                                                  *_out(t)], ("num_tasks", "between 1 and 1000")),
    Case("cli-width-over-limit", "cli", lambda t: ["train", *TINY, "--target-hidden", "2000000", *_out(t)], ("above the limit",)),
    Case("cli-model-does-not-fit", "cli", lambda t: ["train", *TINY, "--hnet-hidden", "1000000,1000000", *_out(t)],
         ("does not fit", "GiB", "--hnet-chunk-size")),
    Case("sweep-seed-above-32-bits", "sweep", lambda t: _sweep(t, "--seed", str(2**32)), ("--seed", "2^32 - 1")),
    Case("sweep-set-seed-2-64", "sweep", lambda t: _sweep(t, "--set", f"seed={2**64}"), ("seed", "2^64 - 1")),
    # --- output paths --------------------------------------------------------------------------------
    Case("cli-out-under-a-file", "cli", lambda t: (t / "a_file").write_text("x") and
         ["train", *TINY, "--out", str(t / "a_file" / "run")], ("a_file is a file, not a directory",)),
    Case("cli-out-not-writable", "cli", lambda t: ["train", *TINY, "--out", "/sys/hinterval-run"], ("cannot be written",)),
    Case("cli-out-empty", "cli", lambda t: ["train", *TINY, "--out", ""], ("--out is empty",)),
    Case("cli-out-name-too-long", "cli", lambda t: ["train", *TINY, "--out", str(t / ("x" * 300))], ("too long",)),
    Case("sweep-results-dir-is-a-file", "sweep", lambda t: (t / "a_file").write_text("x") and
         ["--results-dir", str(t / "a_file")], ("--results-dir", "is a file, not a directory")),
    Case("sweep-results-dir-not-writable", "sweep", lambda t: ["--results-dir", "/sys/hinterval-results"], ("cannot be written",)),
    # --- data that lies ------------------------------------------------------------------------------
    Case("cli-idx-gzip-bomb", "cli", _gzip_bomb, ("holds more data than its header", "download again")),
    Case("cli-idx-header-too-large", "cli", _idx_huge_header, ("announces 3,136,000,000 bytes",)),
    Case("cli-train-split-missing-class", "cli", lambda t: _mnist_labels(
        t, _all_classes(3)[_all_classes(3) != 3], _all_classes(1)), ("task 2/", "no training samples of class 3")),
    Case("cli-test-split-missing-class", "cli", lambda t: _mnist_labels(
        t, _all_classes(3), _all_classes(1)[_all_classes(1) != 7]), ("task 4/", "no test samples of class 7")),
    Case("cli-one-training-sample", "cli", lambda t: _mnist_labels(
        t, np.concatenate([_all_classes(3)[_all_classes(3) != 5], [5]]).astype(np.uint8), _all_classes(1)),
         ("class 5", "at least 2 training samples")),
    # --- run directories are one unit ------------------------------------------------------------------
    Case("cli-resume-foreign-checkpoint-config", "cli", lambda t: _run_dir(t, "run", ck_gamma=0.5) and
         ["train", "--resume", *_out(t), "--no-progress"], ("does not belong", "gamma 0.5 vs 1.0")),
    Case("cli-resume-foreign-checkpoint-run-id", "cli", lambda t: _run_dir(t, "run", ck_run_id="b" * 32) and
         ["train", "--resume", *_out(t), "--no-progress"], ("does not belong", "run id")),
    Case("cli-resume-checkpoint-without-config-json", "cli", lambda t: _run_dir(t, "run", config_json=False) and
         ["train", "--resume", *_out(t), "--no-progress"], ("does not belong", "no config.json")),
    Case("cli-eval-foreign-checkpoint", "cli", lambda t: _run_dir(t, "run", ck_gamma=0.5) and ["eval", str(t / "run")],
         ("does not belong",)),
    Case("cli-resume-damaged-config-json", "cli", lambda t: _run_dir(t, "run") and (t / "run" / "config.json").write_text("{")
         and ["train", "--resume", *_out(t), "--no-progress"], ("config.json", "damaged")),
    Case("cli-resume-not-a-run", "cli", lambda t: (t / "run").mkdir() or (t / "run" / "notes.txt").write_text("x") and
         ["train", "--resume", *_out(t)], ("no run in", "another --out")),
    Case("cli-resume-missing-dir", "cli", lambda t: ["train", "--resume", *_out(t)], ("does not exist",)),
    # --- sweep directories: one driver at a time ---------------------------------------------------------
    Case("sweep-directory-in-use", "sweep", _lock_sweep, ("is in use by process", str(os.getpid()))),
    # --- messages ------------------------------------------------------------------------------------
    Case("sweep-set-empty-value", "sweep", lambda t: _sweep(t, "--set", "lr="), ("--set lr= needs a value",)),
    Case("sweep-set-null-value", "sweep", lambda t: _sweep(t, "--set", "lr=null"), ("--set lr= needs a value",)),
    Case("sweep-set-bad-yaml", "sweep", lambda t: _sweep(t, "--set", "lr=[1,"), ("--set lr", "not a valid value")),
    Case("sweep-cpus-above-one-fractional", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "1.5"),
         ("--cpus-per-trial 1.5", "Ray takes whole numbers")),
    Case("sweep-cpus-too-fine", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "0.00001"), ("steps of 0.0001",)),
    Case("sweep-cpus-not-a-number", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "nan"), ("--cpus-per-trial nan",)),
    # --- NaN, infinities and negative numbers for every numeric flag ----------------------------------
    # (a negative number in any notation is read as the flag's value: -inf, -1e-3, -1:1)
    Case("cli-gamma-nan", "cli", lambda t: ["train", "--gamma", "nan", *TINY, *_out(t)], ("gamma", "finite number")),
    Case("cli-gamma-minus-inf", "cli", lambda t: ["train", "--gamma", "-inf", *TINY, *_out(t)], ("gamma", "finite number, got '-inf'")),
    Case("cli-lr-inf", "cli", lambda t: ["train", "--lr", "inf", *TINY, *_out(t)], ("lr", "finite number")),
    Case("cli-lr-negative-exponent", "cli", lambda t: ["train", "--lr", "-1e-3", *TINY, *_out(t)],
         ("learning rate must be > 0, got -0.001",)),
    Case("cli-beta-nan", "cli", lambda t: ["train", "--beta", "nan", *TINY, *_out(t)], ("beta", "finite number")),
    Case("cli-batch-size-negative", "cli", lambda t: ["train", "--batch-size", "-1", *TINY, *_out(t)], ("batch size must be >= 1",)),
    Case("cli-epochs-nan", "cli", lambda t: ["train", *TINY, "--epochs-per-task", "nan", *_out(t)], ("epochs_per_task", "finite")),
    Case("cli-epochs-never-ending", "cli", lambda t: ["train", *TINY, "--epochs-per-task", "1e300", *_out(t)],
         ("epochs per task must be in (0, 1000000]", "1e+300")),
    Case("cli-epochs-negative", "cli", lambda t: ["train", *TINY, "--epochs-per-task", "-0.5", *_out(t)], ("epochs per task must be in (0, 1000000], got -0.5",)),
    Case("cli-kappa-min-nan", "cli", lambda t: ["train", "--kappa-min", "nan", *TINY, *_out(t)], ("kappa_min", "finite")),
    Case("cli-ramp-fraction-minus-inf", "cli", lambda t: ["train", "--ramp-fraction", "-inf", *TINY, *_out(t)],
         ("ramp_fraction", "finite")),
    Case("cli-ewc-lambda-inf", "cli", lambda t: ["train", "--method", "ewc", "--ewc-lambda", "inf", *TINY, *_out(t)],
         ("ewc_lambda", "finite")),
    Case("cli-intercontinet-radius-negative", "cli", lambda t: ["train", "--method", "intercontinet", "--intercontinet-radius",
                                                                 "-1e-2", *TINY, *_out(t)], ("InterContiNet radius must be >= 0",)),
    Case("cli-cil-alpha-nan", "cli", lambda t: ["train", "--cil-alpha", "nan", *TINY, *_out(t)], ("cil_alpha", "finite")),
    Case("cli-image-size-negative", "cli", lambda t: ["train", "--image-size", "-1", *TINY, *_out(t)], ("image_size", "between 8 and 512, got -1")),
    Case("cli-val-every-negative", "cli", lambda t: ["train", "--val-every", "-5", *TINY, *_out(t)], ("val every must be >= 1",)),
    Case("cli-eval-batch-size-negative", "cli", lambda t: ["train", "--eval-batch-size", "-1", *TINY, *_out(t)],
         ("eval batch size must be >= 1",)),
    Case("cli-num-threads-negative", "cli", lambda t: ["train", *TINY, "--num-threads", "-1", *_out(t)], ("num_threads", "between 1 and 1024")),
    Case("cli-data-seed-negative", "cli", lambda t: ["train", "--data-seed", "-1", *TINY, *_out(t)], ("data_seed", "between 0 and 2^64 - 1")),
    Case("cli-chunk-size-negative", "cli", lambda t: ["train", "--hnet-chunk-size", "-1", *TINY, *_out(t)], ("hnet chunk size must be >= 0",)),
    Case("cli-embedding-dim-negative", "cli", lambda t: ["train", *TINY, "--embedding-dim", "-2", *_out(t)], ("embedding dim must be >= 1",)),
    Case("cli-iters-in-exponent-notation", "cli", lambda t: ["train", *TINY, "--iters-per-task", "1e9", *_out(t)],
         ("iters_per_task", "must be an integer, got '1e9'")),
    Case("cli-int-flag-nan", "cli", lambda t: ["train", "--chunk-embedding-dim", "nan", *TINY, *_out(t)],
         ("chunk_embedding_dim", "must be an integer, got 'nan'")),
    Case("sweep-num-samples-nan", "sweep", lambda t: _sweep(t, "--num-samples", "nan"),
         ("argument --num-samples", "invalid int value: 'nan'"), argparse=True),
    Case("sweep-num-samples-negative", "sweep", lambda t: _sweep(t, "--num-samples", "-1"), ("--num-samples must be between 1 and 100,000",)),
    Case("sweep-set-and-flag-differ", "sweep", lambda t: _sweep(t, "--set", "gamma=2", "--gamma", "0.1:1"),
         ("--set gamma=... and --gamma both give gamma, differently",)),
    Case("sweep-set-and-method-flag-differ", "sweep", lambda t: _sweep(t, "--set", "method=ewc", "--method", "hnet"),
         ("both give method",)),
    Case("sweep-set-what-the-space-file-searches", "sweep",
         lambda t: [*_space(t, "gamma: {type: loguniform, low: 0.1, high: 1}\n"), "--set", "gamma=0.5"],
         ("--set gamma=... fixes gamma, which the --space file searches",)),
    Case("sweep-smoke-test-bad-cpus", "sweep", lambda t: _sweep(t, "--smoke-test", "--cpus-per-trial", "-1"),
         ("--cpus-per-trial must be > 0",)),
    Case("sweep-smoke-test-bad-max-concurrent", "sweep", lambda t: _sweep(t, "--smoke-test", "--max-concurrent", "-5"),
         ("--max-concurrent must be between 0",)),
    Case("sweep-confirm-top-above-trials", "sweep", lambda t: _sweep(t, "--num-samples", "3", "--confirm-top", "4"),
         ("--confirm-top 4 is more than the 3 trials",)),
    Case("sweep-resume-with-a-bad-value", "sweep", lambda t: _sweep(t, "--resume", "--num-samples", "0"),
         ("--num-samples must be between 1",)),
    Case("sweep-objective-no-trial-reports", "sweep", lambda t: _sweep(t, "--method", "ewc", "--objective", "worst_avg_acc"),
         ("worst_avg_acc is reported only by a trial that certifies",)),
    Case("cli-lock-file-is-a-directory", "cli",
         lambda t: (t / "lk" / ".hinterval.lock").mkdir(parents=True) or ["train", "--resume", "--out", str(t / "lk")],
         ("lock file .hinterval.lock cannot be used",)),
    Case("cli-config-json-is-a-directory", "cli",
         lambda t: (t / "cj" / "config.json").mkdir(parents=True) or ["eval", str(t / "cj")],
         ("config.json' is not a file",)),
    Case("sweep-num-samples-huge", "sweep", lambda t: _sweep(t, "--num-samples", str(10**23)), ("--num-samples must be between 1 and 100,000",)),
    Case("sweep-max-concurrent-huge", "sweep", lambda t: _sweep(t, "--max-concurrent", str(10**30)),
         ("--max-concurrent must be between 0 and 100,000",)),
    Case("sweep-cpus-inf", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "inf"), ("--cpus-per-trial inf",)),
    Case("sweep-cpus-minus-inf", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "-inf"), ("--cpus-per-trial must be > 0",)),
    Case("sweep-gpus-nan", "sweep", lambda t: _sweep(t, "--gpus-per-trial", "nan"), ("--gpus-per-trial nan",)),
    Case("sweep-gpus-negative", "sweep", lambda t: _sweep(t, "--gpus-per-trial", "-0.5"), ("--gpus-per-trial >= 0",)),
    Case("sweep-seed-negative", "sweep", lambda t: _sweep(t, "--seed", "-1"), ("--seed must be between 0 and 2^32 - 1",)),
    Case("sweep-iters-negative", "sweep", lambda t: _sweep(t, "--iters-per-task", "-1"), ("--iters-per-task must be >= 1",)),
    Case("sweep-num-tasks-negative", "sweep", lambda t: _sweep(t, "--num-tasks", "-1"), ("num_tasks", "between 1 and 1000")),
    Case("sweep-gamma-nan", "sweep", lambda t: _sweep(t, "--gamma", "nan"), ("gamma", "finite number")),
    Case("sweep-gamma-range-below-zero", "sweep", lambda t: _sweep(t, "--gamma", "-1:1"), ("gamma", "log-scale range needs low > 0")),
    Case("sweep-lr-negative-exponent", "sweep", lambda t: _sweep(t, "--lr", "-1e-3"), ("learning rate must be > 0",)),
    Case("sweep-set-gamma-inf", "sweep", lambda t: _sweep(t, "--set", "gamma=.inf"), ("gamma", "finite number")),
    # --- search spaces that cannot be sampled as written ----------------------------------------------
    Case("sweep-range-low-equals-high", "sweep", lambda t: _sweep(t, "--gamma", "1:1"),
         ("low (1) must be smaller than high (1)", "to fix gamma for every trial")),
    Case("sweep-choice-duplicates-flag", "sweep", lambda t: _sweep(t, "--embedding-dim", "16,16"), ("embedding_dim", "16 more than once")),
    Case("sweep-space-choice-duplicates", "sweep", lambda t: _space(t, "method: [hnet, hyperinterval, hnet]\n"), ("'hnet' more than once",)),
    Case("sweep-space-width-duplicates", "sweep", lambda t: _space(t, 'hnet_hidden: {type: choice, values: ["50,50", [50, 50]]}\n'),
         ("'50,50' more than once",)),
    Case("sweep-space-empty-choice", "sweep", lambda t: _space(t, "embedding_dim: {type: choice, values: []}\n"), ("non-empty list",)),
    Case("sweep-space-loguniform-negative", "sweep", lambda t: _space(t, "beta: {type: loguniform, low: -1, high: 1}\n"),
         ("beta", "log-scale range needs low > 0")),
    Case("sweep-space-log-as-text", "sweep", lambda t: _space(t, 'gamma: {type: uniform, low: 1, high: 2, log: "false"}\n'),
         ("log must be true or false",)),
    Case("sweep-space-unknown-key", "sweep", lambda t: _space(t, "gama: [1, 2]\n"), ("unknown config key 'gama'",)),
    Case("sweep-space-not-searchable", "sweep", lambda t: _space(t, "device: [cpu, cuda]\n"), ("'device' cannot be searched",)),
    Case("sweep-space-int-fraction-bounds", "sweep", lambda t: _space(t, "embedding_dim: {type: int, low: 1.5, high: 3}\n"),
         ("int bounds must be integers",)),
    # --- names and output paths -----------------------------------------------------------------------
    Case("sweep-name-path-separator", "sweep", lambda t: _sweep(t, "--name", "a/b"), ("--name 'a/b'", "letters, digits")),
    Case("sweep-name-dot-dot", "sweep", lambda t: _sweep(t, "--name", ".."), ("--name '..'",)),
    Case("sweep-name-empty", "sweep", lambda t: _sweep(t, "--name", ""), ("--name is empty",)),
    Case("sweep-name-too-long", "sweep", lambda t: _sweep(t, "--name", "x" * 300), ("at most 100 characters",)),
    Case("sweep-name-unicode", "sweep", lambda t: _sweep(t, "--name", "r\u00e9seau"), ("letters, digits",)),
    Case("sweep-results-dir-link-loop", "sweep", lambda t: ["--results-dir", str(_loop(t)), "--dry-run"],
         ("--results-dir", "symbolic link on the way loops")),
    Case("sweep-results-dir-empty", "sweep", lambda t: ["--results-dir", "", "--dry-run"], ("--results-dir is empty",)),
    Case("cli-out-link-loop", "cli", lambda t: ["train", *TINY, "--out", str(_loop(t))], ("link loop",)),
    Case("cli-out-under-a-dangling-link", "cli", lambda t: (t / "dangling").symlink_to(t / "nowhere") or
         ["train", *TINY, "--out", str(t / "dangling" / "run")], ("broken symbolic link",)),
    Case("cli-out-is-a-device", "cli", lambda t: ["train", *TINY, "--out", "/dev/null"], ("exists and is not a directory",)),
    Case("cli-data-dir-link-loop", "cli", lambda t: ["train", "--benchmark", "split-mnist", "--data-dir", str(_loop(t)), *TINY, *_out(t)],
         ("--data-dir", "symbolic link on the way loops")),
    # --- damaged, foreign or missing checkpoints; --resume with another config ---------------------------
    Case("cli-resume-checkpoint-cut-in-half", "cli", lambda t: _damaged_checkpoint(t, "half"), ("corrupted", "cut short")),
    Case("cli-resume-checkpoint-random-bytes", "cli", lambda t: _damaged_checkpoint(t, "random"), ("not a zip archive",)),
    Case("cli-resume-checkpoint-foreign-zip", "cli", lambda t: _damaged_checkpoint(t, "zip"), ("corrupted or not a hinterval checkpoint",)),
    Case("cli-resume-checkpoint-link-loop", "cli", lambda t: _damaged_checkpoint(t, "loop"), ("broken or looping link",)),
    Case("cli-resume-checkpoint-is-a-directory", "cli", lambda t: _damaged_checkpoint(t, "dir"), ("checkpoint.pt' is a directory",)),
    Case("cli-eval-checkpoint-is-a-directory", "cli", lambda t: _damaged_checkpoint(t, "dir") and ["eval", str(t / "run")],
         ("is a directory",)),
    Case("cli-resume-checkpoint-deleted", "cli", lambda t: _damaged_checkpoint(t, "gone"),
         ("holds a run's result.json but no checkpoint.pt", "--overwrite")),
    Case("cli-resume-other-benchmark", "cli", lambda t: _run_dir(t, "run") and
         ["train", "--resume", *_out(t), "--benchmark", "permuted-digits", "--no-progress"], ("different config", "'benchmark'")),
    Case("cli-resume-other-config-file", "cli", lambda t: _run_dir(t, "run") and (t / "c.yaml").write_text("gamma: 2\n") and
         ["train", "--resume", *_out(t), "--config", str(t / "c.yaml"), "--no-progress"], ("different config", "'gamma': (1.0, 2.0)")),
    Case("cli-resume-more-tasks", "cli", lambda t: _run_dir(t, "run") and
         ["train", "--resume", *_out(t), "--num-tasks", "3", "--no-progress"], ("different config", "'num_tasks': (2, 3)")),
    # --- flags that contradict each other (refused; a flag that is merely unused only warns: test_cli.py) --
    Case("cli-cnn-target-on-permuted", "cli", lambda t: ["train", "--benchmark", "permuted-digits", "--target", "resnet18",
                                                          "--hnet-chunk-size", "1000", *_out(t)], ("permutes pixels", "--target mlp")),
    Case("cli-nested-at-gamma-0", "cli", lambda t: ["train", "--embedding-mode", "nested", "--gamma", "0", *TINY, *_out(t)],
         ("nested embeddings need gamma > 0",)),
    Case("cli-resume-and-overwrite-with-flags", "cli", lambda t: _run_dir(t, "run") and
         ["train", "--resume", "--overwrite", "--gamma", "2", *_out(t)], ("contradict",)),
    # --- failures from inside: every one is one line and a documented exit code ------------------------
    Case("cli-disk-full-torch-runtimeerror", "cli", lambda t: ["train", *TINY, *_out(t)],
         ("No space left on device", "--resume"), code=1, patch=_disk_full_on_checkpoints, creates=True),
    Case("cli-unexpected-error", "cli", lambda t: ["train", *TINY, *_out(t)],
         ("RuntimeError: unexpected pos 704 vs 598", "--debug"), code=1, creates=True,
         patch=lambda mp, t: mp.setattr("hinterval.trainer.ContinualTrainer.fit", _raise(RuntimeError("unexpected pos 704 vs 598\nat ...")))),
    Case("cli-ctrl-c-during-start-up", "cli", lambda t: ["train", *TINY, *_out(t)], ("interrupted before training started",),
         code=130, patch=lambda mp, t: mp.setattr("hinterval.cli.configure_process", _raise(KeyboardInterrupt()))),
    Case("cli-sigterm-during-start-up", "cli", lambda t: _config(t, "gamma: 0.5\n"),
         ("stopped by SIGTERM before training started",), code=143,
         patch=lambda mp, t: mp.setattr("hinterval.cli.load_config_file", _raise(__import__("hinterval.errors").errors.Stopped(15)))),
    Case("sweep-ray-fails-to-start", "sweep", lambda t: ["--results-dir", str(t / "results")],
         ("RuntimeError: raylet failed to start", "--debug"), code=1,
         patch=lambda mp, t: mp.setattr("tune.cluster.connect", _raise(RuntimeError("raylet failed to start\n  details")))),
    Case("sweep-ray-error-after-sweep-json", "sweep", lambda t: ["--results-dir", str(t / "results")],
         ("ValueError: Resource quantities >1 must be whole numbers",), code=1,
         patch=lambda mp, t: _no_ray_cluster(mp, t, ValueError("Resource quantities >1 must be whole numbers"))),
    Case("sweep-filesystem-error", "sweep", lambda t: ["--results-dir", str(t / "results")], ("Errno 28", "No space left"),
         code=1, patch=lambda mp, t: _no_ray_cluster(mp, t, OSError(errno.ENOSPC, "No space left on device"))),
    Case("sweep-ctrl-c-during-start-up", "sweep", lambda t: _sweep(t), ("interrupted before any trial started",), code=130,
         patch=lambda mp, t: mp.setattr("tune.driver.resolve", _raise(KeyboardInterrupt()))),

    # --- a sweep refuses what `train` refuses, for every kind of trial, before Ray starts ------------------
    Case("sweep-set-interval-scope-too-deep", "sweep", lambda t: _sweep(t, "--set", "interval_scope=last:9"),
         ("every trial would fail", "last:9", "3 weighted layers")),
    Case("sweep-set-interval-scope-too-deep-narrow-target", "sweep",
         lambda t: _sweep(t, "--set", "target_hidden=8", "--set", "interval_scope=last:3"), ("last:3", "2 weighted layers")),
    Case("sweep-space-scope-too-deep-for-one-width", "sweep",
         lambda t: _space(t, 'interval_scope: [head, "last:3"]\ntarget_hidden: ["100", "100,100"]\n'),
         ("interval_scope=last:3, target_hidden=100", "2 weighted layers", "narrow the space")),
    Case("sweep-space-scope-choice-too-deep", "sweep", lambda t: _space(t, 'interval_scope: [all, "last:5"]\n'),
         ("interval_scope=last:5", "3 weighted layers")),
    Case("sweep-space-model-too-big", "sweep", lambda t: _space(t, 'hnet_hidden: ["10", "100000,100000"]\n'),
         ("hnet_hidden=100000,100000", "does not fit")),
    Case("sweep-set-model-too-big", "sweep", lambda t: _sweep(t, "--set", "hnet_hidden=100000,100000"),
         ("every trial would fail", "does not fit")),
    Case("sweep-flag-hnet-width-too-big", "sweep", lambda t: _sweep(t, "--hnet-hidden", "10;200000,200000"),
         ("200000", "does not fit")),
    Case("sweep-cnn-target-on-permuted", "sweep",
         lambda t: _sweep(t, "--benchmark", "permuted-digits", "--set", "target=resnet18"), ("permutes pixels",)),
    Case("sweep-space-cnn-target-on-permuted", "sweep",
         lambda t: _space(t, "target: [mlp, resnet18]\n") + ["--benchmark", "permuted-digits"], ("target=resnet18", "permutes pixels")),
    Case("sweep-relaxed-intervals-on-mlp", "sweep", lambda t: _sweep(t, "--set", "interval_mode=relaxed"),
         ("relaxed exists for the CNN targets only",)),
    Case("sweep-space-relaxed-choice-on-mlp", "sweep", lambda t: _space(t, "interval_mode: [sound, relaxed]\n"),
         ("interval_mode=relaxed", "CNN targets only")),
    Case("sweep-every-trial-failed", "sweep", lambda t: ["--results-dir", str(t / "results")],
         ("every trial failed", "2 error", "1 diverged"), code=1, patch=_every_trial_failed),
    # --- cluster addresses: checked before anything starts, answered at once -----------------------------
    Case("sweep-address-refused", "sweep", lambda t: ["--address", "127.0.0.1:1", "--results-dir", str(t / "results")],
         ("--address 127.0.0.1:1", "Connection refused")),
    Case("sweep-address-port-zero", "sweep", lambda t: ["--address", "127.0.0.1:0", "--results-dir", str(t / "results")],
         ("--address '127.0.0.1:0'", "outside 1-65535")),
    Case("sweep-address-port-too-big", "sweep", lambda t: ["--address", "10.0.0.5:70000", "--results-dir", str(t / "r")],
         ("port 70000 is outside 1-65535",)),
    Case("sweep-address-without-port", "sweep", lambda t: ["--address", "127.0.0.1", "--results-dir", str(t / "r")],
         ("expected auto, HOST:PORT",)),
    Case("sweep-address-port-not-a-number", "sweep", lambda t: ["--address", "head:http", "--results-dir", str(t / "r")],
         ("--address 'head:http'",)),
    Case("sweep-address-with-spaces", "sweep", lambda t: ["--address", "my head:6379", "--results-dir", str(t / "r")],
         ("--address 'my head:6379'",)),
    Case("sweep-address-empty", "sweep", lambda t: ["--address", "", "--results-dir", str(t / "r")],
         ("--address ''", "expected auto")),
    Case("sweep-address-bad-port-dry-run", "sweep", lambda t: _sweep(t, "--address", "h:99999"), ("port 99999",)),
    Case("sweep-address-not-ray", "sweep", lambda t: ["--address", _grpc_less_listener(t), "--results-dir", str(t / "r")],
         ("something else listens there, not a Ray cluster",)),
    # --- stop signals: exit 128 + N and one line, as Ctrl-C ---------------------------------------------
    Case("sweep-sigterm-during-start-up", "sweep", lambda t: ["--results-dir", str(t / "results"), *SWEEP_SMALL],
         ("stopped by SIGTERM before any trial started",), code=143,
         patch=lambda mp, t: _signal_during(mp, "SIGTERM", "resolve")),
    Case("sweep-sighup-during-start-up", "sweep", lambda t: ["--results-dir", str(t / "results"), *SWEEP_SMALL],
         ("stopped by SIGHUP before any trial started",), code=129,
         patch=lambda mp, t: _signal_during(mp, "SIGHUP", "resolve")),
    Case("sweep-sigterm-inside-ray-init", "sweep", lambda t: ["--results-dir", str(t / "results"), *SWEEP_SMALL],
         ("stopped by SIGTERM before any trial started",), code=143,
         patch=lambda mp, t: mp.setattr("ray.init", _raise(SystemExit(15)))),  # what Ray's own handler does
    Case("sweep-sigterm-after-trials", "sweep", lambda t: ["--results-dir", str(t / "my results"), "--name", "n", *SWEEP_SMALL],
         ("stopped by SIGTERM", "continue with: python tune/search.py --name n --resume --results-dir '"), code=143,
         patch=lambda mp, t: _stopped_after_trials(mp, t, "SIGTERM")),
    Case("sweep-sighup-after-trials", "sweep", lambda t: ["--results-dir", str(t / "results"), *SWEEP_SMALL],
         ("stopped by SIGHUP", "--resume"), code=129, patch=lambda mp, t: _stopped_after_trials(mp, t, "SIGHUP")),
    # --- --resume unpickles Tune's state: only a copy signed with this user's key --------------------------
    Case("sweep-resume-handed-state-unsigned", "sweep", lambda t: _handed_sweep(t, "unsigned"),
         ("--resume: refused", "has no signed copy"), patch=lambda mp, t: _config_home(mp, t)),
    Case("sweep-resume-handed-state-other-key", "sweep", lambda t: _handed_sweep(t, "other-key"),
         ("--resume: refused", "not signed with this user's key"), patch=lambda mp, t: _config_home(mp, t)),
    Case("sweep-resume-handed-state-damaged-copy", "sweep", lambda t: _handed_sweep(t, "damaged"),
         ("--resume: refused", "damaged signed copy"), patch=lambda mp, t: _config_home(mp, t)),
    Case("sweep-resume-state-of-another-sweep", "sweep", lambda t: _handed_sweep(t, "other-sweep"),
         ("--resume: refused", "not signed with this user's key"), patch=lambda mp, t: _config_home(mp, t)),
    Case("sweep-key-readable-by-others", "sweep", lambda t: ["--results-dir", str(t / "results"), *SWEEP_SMALL],
         ("sweep key", "only you can read and write", "chmod 600"), patch=_key_readable_by_others),
]


# === overwrite, numbers at the edges, keys given twice, inputs that block, messages that mislead ===========
# (one block: --overwrite deletes only what a run or sweep wrote; numbers are ASCII and fit float32; a key is
# given once; no read blocks; every suggested command parses)
def _user_dir(tmp: Path, name: str = "run", files: tuple = ("precious.txt",)) -> Path:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        (d / f).mkdir() if f.endswith("/") else (d / f).write_text("keep me")
    return d


def _user_results(tmp: Path, name: str = "mine") -> List[str]:
    _user_dir(tmp / "results", name, ("notes.txt", "data/"))
    return ["--results-dir", str(tmp / "results"), "--name", name, "--dry-run"]


def _fifo(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _socket(tmp: Path, name: str) -> Path:
    import socket

    path = tmp / name
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    return path


def _fifo_in_run_dir(tmp: Path, command: str) -> List[str]:
    run = _run_dir(tmp, "run")
    (run / "config.json").unlink()
    os.mkfifo(run / "config.json")
    return ["train", "--resume", *_out(tmp), "--no-progress"] if command == "train" else ["eval", str(run)]


def _fifo_idx(tmp: Path) -> List[str]:
    root = _mnist(tmp)
    p = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    p.unlink()
    os.mkfifo(p)
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(root), *TINY, *_out(tmp)]


def _fifo_jpeg(tmp: Path) -> List[str]:
    root = F.write_tinyimagenet(tmp / "data", num_classes=5, n_train=1, n_val=1, grayscale=None)
    w = sorted((root / "wnids.txt").read_text().split())[0]
    os.mkfifo(root / "train" / w / "images" / "pipe.JPEG")
    return ["train", "--benchmark", "tinyimagenet", "--data-dir", str(tmp / "data"), *TINY, *_out(tmp)]


def _sweep_dir(tmp: Path, sweep_json: str) -> List[str]:
    d = tmp / "results" / "old"
    d.mkdir(parents=True)
    (d / "sweep.json").write_text(sweep_json)
    return ["--results-dir", str(tmp / "results"), "--name", "old", "--resume"]


def _moved_data_run(tmp: Path, *extra: str) -> List[str]:
    """A finished split-mnist run whose data directory was moved away since."""
    from hinterval.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from hinterval.config import make_config
    from hinterval.files import write_json
    from hinterval.trainer import ContinualTrainer

    data = _mnist(tmp)
    cfg = make_config(benchmark="split-mnist", data_dir=str(data), iters_per_task=2, num_tasks=1, hnet_hidden="8",
                      target_hidden="8", embedding_dim=2, device="cpu")
    state = ContinualTrainer(cfg, progress=False).state()
    state["tasks_done"], state["run_id"] = 1, "c" * 32
    save_checkpoint(state, tmp / "run" / CHECKPOINT_NAME)
    write_json(tmp / "run" / "config.json", {**cfg.to_dict(), "run_id": "c" * 32})
    data.rename(tmp / "moved")
    return ["eval", str(tmp / "run"), *extra]


def _interrupted(mp, tmp: Path) -> None:
    """Ctrl-C once the run directory holds its config (the run has started)."""
    mp.setattr("hinterval.trainer.ContinualTrainer.fit", _raise(KeyboardInterrupt()))


ODD_OUT = "my run $(touch pwned) `id`"

CASES.extend([
    # --- --overwrite deletes only a directory this tool made ------------------------------------------
    Case("cli-overwrite-user-files", "cli", lambda t: _non_empty_out(t) + ["--overwrite"],
         ("is not a run directory of hinterval", "'precious.txt'", "never deletes other files")),
    Case("cli-overwrite-run-dir-holding-a-user-file", "cli", lambda t: _run_dir(t, "run") and
         (t / "run" / "notes.txt").write_text("mine") and ["train", *TINY, *_out(t), "--overwrite"],
         ("is not a run directory", "'notes.txt'")),
    Case("cli-overwrite-user-result-json-only", "cli", lambda t: _user_dir(t, "run", ("result.json",)) and
         ["train", *TINY, *_out(t), "--overwrite"], ("is not a run directory", "'result.json'")),
    Case("cli-overwrite-user-folders", "cli", lambda t: _user_dir(t, "run", ("Documents/", "a.txt", "b.txt", "c.txt")) and
         ["train", *TINY, *_out(t), "--overwrite"], ("'Documents'", "and 1 more")),
    Case("cli-overwrite-cwd-like-dir-with-config", "cli", lambda t: _user_dir(t, "run", ("config.json", "src/")) and
         ["train", *TINY, *_out(t), "--overwrite"], ("is not a run directory", "'src'")),
    Case("sweep-overwrite-user-files", "sweep", lambda t: _user_results(t) + ["--overwrite"],
         ("holds no sweep (no sweep.json", "'data', 'notes.txt'", "never deletes other files")),
    Case("sweep-user-dir-is-not-called-a-sweep", "sweep", lambda t: _user_results(t), ("holds no sweep",)),
    Case("sweep-resume-user-dir", "sweep", lambda t: _user_results(t) + ["--resume"],
         ("no sweep to resume", "holds other files", "another --name")),
    # --- numbers at the edges: ASCII digits only; float settings fit 32-bit floats -----------------------
    Case("cli-interval-scope-superscript", "cli", lambda t: ["train", "--interval-scope", "last:\u00b2", *TINY, *_out(t)],
         ("interval scope must be all | head", "'last:\u00b2'")),
    Case("cli-interval-scope-arabic-indic-digit", "cli", lambda t: ["train", "--interval-scope", "last:\u0661", *TINY, *_out(t)],
         ("interval scope must be",)),
    Case("cli-interval-scope-fullwidth-digit", "cli", lambda t: _config(t, "interval_scope: 'last:\uff12'\n"),
         ("interval scope must be",)),
    Case("cli-num-tasks-arabic-indic-digit", "cli", lambda t: ["train", *TINY, "--num-tasks", "\u0661", *_out(t)],
         ("num_tasks", "must be an integer")),
    Case("cli-seed-with-underscore", "cli", lambda t: ["train", "--seed", "1_000", *TINY, *_out(t)], ("seed", "must be an integer")),
    Case("cli-gamma-fullwidth-digit", "cli", lambda t: ["train", "--gamma", "\uff15", *TINY, *_out(t)], ("gamma", "must be a number")),
    Case("cli-gamma-underflows-nested", "cli", lambda t: ["train", "--embedding-mode", "nested", "--gamma", "1e-300", *TINY, *_out(t)],
         ("gamma 1e-300 is too small", "between 1e-30 and 1e+30")),
    Case("cli-lr-below-float32", "cli", lambda t: ["train", "--lr", "1e-40", *TINY, *_out(t)], ("learning rate 1e-40 is too small",)),
    Case("cli-beta-overflows-float32", "cli", lambda t: ["train", "--beta", "1e35", *TINY, *_out(t)], ("beta 1e+35 is too large",)),
    Case("cli-config-gamma-subnormal", "cli", lambda t: _config(t, "gamma: 1.0e-320\n"), ("gamma", "too small")),
    Case("cli-ewc-lambda-overflows", "cli", lambda t: ["train", "--method", "ewc", "--ewc-lambda", "1e38", *TINY, *_out(t)],
         ("EWC lambda 1e+38 is too large",)),
    Case("sweep-num-samples-arabic-indic-digits", "sweep", lambda t: _sweep(t, "--num-samples", "\u0661\u0662"),
         ("argument --num-samples", "invalid int value"), argparse=True),
    Case("sweep-cpus-with-underscore", "sweep", lambda t: _sweep(t, "--cpus-per-trial", "1_0"),
         ("argument --cpus-per-trial", "invalid float value"), argparse=True),
    Case("sweep-set-gamma-underflows", "sweep", lambda t: _sweep(t, "--set", "gamma=1e-300"), ("gamma 1e-300 is too small",)),
    Case("sweep-embedding-dim-superscript", "sweep", lambda t: _sweep(t, "--embedding-dim", "16,\u00b2"),
         ("--embedding-dim", "is not a valid int")),
    Case("sweep-set-interval-scope-superscript", "sweep", lambda t: _sweep(t, "--set", "interval_scope=last:\u00b2"),
         ("interval scope must be",)),
    Case("sweep-space-bound-in-other-digits", "sweep", lambda t: _space(t, 'beta: {type: uniform, low: "\u0661", high: 2}\n'),
         ("beta: low must be a number",)),
    # --- a key given twice is refused (files, --set, flags and --set) ---------------------------------
    Case("cli-config-key-twice", "cli", lambda t: _config(t, "gamma: 0.5\nbeta: 0.1\ngamma: 2\n"),
         ("key 'gamma' is given twice (lines 1 and 3)",)),
    Case("cli-config-key-twice-same-value", "cli", lambda t: _config(t, "gamma: 0.5\ngamma: 0.5\n"), ("given twice",)),
    Case("cli-config-key-twice-quoted", "cli", lambda t: _config(t, 'gamma: 0.5\n"gamma": 2\n'), ("key 'gamma' is given twice",)),
    Case("cli-config-key-twice-on-one-line", "cli", lambda t: _config(t, "{gamma: 0.5, gamma: 2}\n"),
         ("key 'gamma' is given twice (line 1)",)),
    Case("cli-config-json-key-twice", "cli", lambda t: (t / "c.json").write_text('{"lr": 0.01, "lr": 0.1}') and
         ["train", "--config", str(t / "c.json"), *TINY, *_out(t)], ("key 'lr' is given twice",)),
    Case("cli-resume-run-config-key-twice", "cli", lambda t: _run_dir(t, "run") and
         (t / "run" / "config.json").write_text((t / "run" / "config.json").read_text().replace('{', '{"gamma": 7, ', 1))
         and ["train", "--resume", *_out(t), "--no-progress"], ("config.json", "damaged", "given twice")),
    Case("sweep-space-key-twice", "sweep", lambda t: _space(t, "gamma: {type: loguniform, low: 0.1, high: 1}\ngamma: [1, 2]\n"),
         ("key 'gamma' is given twice (lines 1 and 2)",)),
    Case("sweep-set-twice", "sweep", lambda t: _sweep(t, "--set", "gamma=0.5", "--set", "gamma=2"),
         ("--set gamma is given twice, differently (0.5 and 2)",)),
    Case("sweep-num-tasks-flag-and-set", "sweep", lambda t: _sweep(t, "--num-tasks", "2", "--set", "num_tasks=3"),
         ("--num-tasks and --set give num_tasks twice",)),
    Case("sweep-iters-flag-and-set", "sweep", lambda t: _sweep(t, "--iters-per-task", "5", "--set", "iters_per_task=6"),
         ("--iters-per-task and --set give iters_per_task twice",)),
    Case("sweep-space-fixes-what-set-fixes", "sweep", lambda t: [*_space(t, "gamma: 0.5\n"), "--set", "gamma=0.7"],
         ("the --space file and --set give gamma twice",)),
    Case("sweep-resume-sweep-json-key-twice", "sweep", lambda t: _sweep_dir(t, '{"name": "old", "name": "new"}'),
         ("sweep.json is corrupted", "given twice")),
    # --- inputs that block: FIFOs, devices and sockets are refused before they are read ----------------
    Case("cli-config-fifo", "cli", lambda t: ["train", "--config", str(_fifo(t, "c.yaml")), *TINY, *_out(t)],
         ("is a named pipe (FIFO), not a regular file",)),
    Case("cli-config-character-device", "cli", lambda t: ["train", "--config", "/dev/zero", *TINY, *_out(t)],
         ("'/dev/zero' is a character device",)),
    Case("cli-config-socket", "cli", lambda t: ["train", "--config", str(_socket(t, "c.sock")), *TINY, *_out(t)],
         ("is a socket",)),
    Case("sweep-space-fifo", "sweep", lambda t: _sweep(t, "--space", str(_fifo(t, "space.yaml"))), ("named pipe",)),
    Case("cli-resume-config-json-fifo", "cli", lambda t: _fifo_in_run_dir(t, "train"), ("config.json' is not a file",)),
    Case("cli-eval-config-json-fifo", "cli", lambda t: _fifo_in_run_dir(t, "eval"), ("config.json' is not a file",)),
    Case("cli-idx-file-is-a-fifo", "cli", _fifo_idx, ("IDX files not found", "train-labels-idx1-ubyte")),
    Case("cli-tinyimagenet-image-is-a-fifo", "cli", _fifo_jpeg, ("pipe.JPEG", "named pipe")),
    Case("sweep-resume-sweep-json-fifo", "sweep", lambda t: _fifo(t, "results/old/sweep.json") and
         ["--results-dir", str(t / "results"), "--name", "old", "--resume"], ("no sweep to resume",)),
    # --- messages that mislead: hints are shell-quoted, and name flags the command has ------------------
    Case("cli-interrupted-hint-is-shell-quoted", "cli", lambda t: ["train", *TINY, "--out", str(t / ODD_OUT)],
         ("`hinterval train --out '", "$(touch pwned) `id`' --resume`"), code=130, patch=_interrupted, creates=True),
    Case("cli-eval-moved-data-names-its-flag", "cli", _moved_data_run, ("does not exist", "--data-dir DIR")),
    Case("cli-eval-data-dir-missing", "cli", lambda t: _moved_data_run(t, "--data-dir", str(t / "nowhere")),
         ("does not exist",)),
])


def _snapshot(root: Path) -> Dict[str, str]:
    """Every file and directory under ``root`` with its content hash; lock files (a directory's, a data
    set's in a data directory) are not content (they may stay after a refused command that looked there)."""
    from hinterval.files import LOCK_NAME

    def lock(p: Path) -> bool:
        return p.name == LOCK_NAME or (p.name.startswith(".hinterval-") and p.name.endswith(".lock"))

    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*")) if not lock(p)}


@pytest.fixture
def _release_held():
    yield
    while _HELD:
        _HELD.pop().release()


#: cases that take more than a few seconds (they train, or walk a deep structure): the full tier runs them
SLOW_CASES = {"cli-data-foreign-file-in-the-way", "cli-config-too-deep", "cli-interval-scope-too-deep",
              "sweep-download-offline"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in SLOW_CASES else [])
                                  for c in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(case, tmp_path, capsys, monkeypatch, _release_held):
    import torch

    argv = case.make(tmp_path)
    if case.patch is not None:
        case.patch(monkeypatch, tmp_path)
    if case.id == "sweep-more-gpus-than-the-machine":
        ray = pytest.importorskip("ray")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # any machine: pretend to have one GPU
        monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the check that runs before a local Ray starts
    before = _snapshot(tmp_path)
    capsys.readouterr()
    if case.tool == "cli":
        run = cli.main
    else:
        from tune import search

        run = search.main
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.creates:  # a run that started prints progress first: its error is the one line in the tool's name
        lines = [ln for ln in lines if ln.startswith(("hinterval: ", "search.py: ")) and ": warning: " not in ln]
    assert code == case.code, f"exit {code}; stderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out
    if case.argparse:
        assert lines[0].startswith("usage:") and all(ln.startswith(" ") for ln in lines[1:-1]), err
        problem = lines[-1]
        assert ": error: argument " in problem
    else:
        assert len(lines) == 1, f"expected one line, got:\n{err}"
        problem = lines[0]
        assert problem.startswith(("hinterval: " if case.tool == "cli" else "search.py: ")
                                  + ("error: " if case.code == 2 else ""))
    for needle in case.needles:
        assert needle in problem, f"{needle!r} not in {problem!r}"
    assert len(problem) < 1000, f"an unbounded message ({len(problem)} characters)"
    after = _snapshot(tmp_path)
    while _HELD:
        _HELD.pop().release()
    if case.creates:  # a run that started: what existed before is untouched
        after = {k: v for k, v in after.items() if k in before}
    assert after == before, "a bad input changed files on disk"


def test_ray_start_up_noise_is_dropped_before_an_early_error(tmp_path, capfd, monkeypatch):
    """What Ray prints while it starts (its token-authentication warning) does not precede a one-line error."""
    pytest.importorskip("ray")
    from tune import search

    def noisy_connect(address):
        os.write(2, b"2025-01-01 WARNING authentication_token_setup.py:73 -- Token authentication is enabled\n")
        return False

    from tune import cluster

    monkeypatch.setattr(cluster, "connect", noisy_connect)
    monkeypatch.setattr(cluster, "alive_node_resources", lambda: [{"CPU": 1.0}])
    assert search.main(["--results-dir", str(tmp_path), "--cpus-per-trial", "64"]) == 2
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("search.py: error: no node can hold one trial"), err
    assert list(tmp_path.iterdir()) == []  # no sweep directory left behind



# --- the benchmark scripts: a bad flag or --set is one line and exit 2, before any run starts ------------
SCRIPT_CASES = [
    ("cil-set-seed", "cil", ["--benchmarks", "split-digits", "--set", "seed=3"], ("--set seed", "--seed")),
    ("cil-set-device", "cil", ["--benchmarks", "split-digits", "--set", "device=cuda"], ("--set device", "CPU")),
    ("cil-set-too-many-tasks", "cil", ["--benchmarks", "split-digits", "--set", "num_tasks=7"], ("at most 5 tasks",)),
    ("cil-set-unknown-key", "cil", ["--benchmarks", "split-digits", "--set", "gama=1"], ("unknown config key 'gama'",)),
    ("cil-seed-not-a-number", "cil", ["--seed", "0,x"], ("--seed: 'x' is not a valid int",)),
    ("cil-unknown-score", "cil", ["--benchmarks", "split-digits", "--set", "cil_score=nope"], ("unknown CIL score 'nope'",)),
    ("cil-diagnostics-no-kept-run", "cil_diagnostics", ["--runs", "nowhere", "--benchmarks", "split-digits", "--seed", "0"],
     ("no kept run in 'nowhere/split-digits-seed0'",)),
    ("universal-set-embedding-mode", "universal", ["--benchmarks", "split-digits", "--set", "embedding_mode=non-forced"],
     ("--set embedding_mode", "nested mode by definition")),
    ("universal-set-seed", "universal", ["--benchmarks", "split-digits", "--set", "seed=1"], ("--set seed",)),
    ("universal-set-no-key", "universal", ["--set", "=1"], ("--set needs KEY=VALUE",)),
    ("universal-set-no-value", "universal", ["--set", "gamma="], ("--set gamma= needs a value",)),
    ("universal-set-nan", "universal", ["--benchmarks", "split-digits", "--set", "gamma=nan"], ("gamma", "finite number")),
    ("core-unknown-benchmark", "core", ["--benchmarks", "nope"], ("unknown benchmark 'nope'",)),
    ("core-threads-negative", "core", ["--threads", "-1"], ("num_threads", "between 1 and 1024")),
    ("fashion-seed-negative", "fashion", ["--seed", "-1"], ("seed", "2^64 - 1")),
    ("cnn-gamma-nan", "cnn", ["--gamma", "nan", "--cases", "resnet18-default"], ("gamma", "finite number")),
    ("compare-seed-not-a-number", "compare", ["--seeds", "0,x"], ("--seeds: 'x' is not a valid int",)),
    ("compare-unknown-benchmark", "compare", ["--benchmarks", "nope", "--methods", "hnet"], ("unknown benchmark 'nope'",)),
    ("compare-no-workers", "compare", ["--jobs", "0"], ("--jobs must be >= 1",)),
    ("robust-gamma-nan", "robust", ["--gammas", "nan", "--benchmarks", "split-digits"], ("gamma", "finite number")),
    ("robust-unknown-ramp", "robust", ["--ramps", "guarded,nope"], ("unknown ramp 'nope'; choose one of",)),
    ("robust-seed-not-a-number", "robust", ["--seeds", "1,x"], ("--seeds: 'x' is not a valid int",)),
]


@pytest.mark.parametrize("case", SCRIPT_CASES, ids=[c[0] for c in SCRIPT_CASES])
def test_benchmark_script_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    import importlib

    _, script, argv, needles = case
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.chdir(tmp_path)
    harness = importlib.import_module("harness")
    mod = importlib.import_module(script)

    class Settings:  # the process set-up is the CLI's (tested there); here it must not change this process
        omp_wait_policy = "PASSIVE"

        def __init__(self, *args, **kwargs):
            pass

    for holder in (mod, harness):
        for name in ("configure_process", "configure_threads"):
            if hasattr(holder, name):
                monkeypatch.setattr(holder, name, Settings if name == "configure_process" else (lambda *a, **k: "PASSIVE"))
    if script in ("core", "fashion"):
        main = lambda: mod.run_suite(script, mod.TARGETS, mod.__doc__, argv)  # noqa: E731
    else:
        main = lambda: mod.main(argv)  # noqa: E731
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        harness.run_script(main, f"{script}.py")
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exc.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{script}.py: error: "), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert list(tmp_path.iterdir()) == []  # nothing written


# --- messages that mislead: every command a message suggests parses with the real parser --------------------
def _literal_flags(folder: Path) -> Dict[str, str]:
    """Every ``--flag`` in the string literals (docstrings aside) of the modules under ``folder``: flag -> where."""
    import ast
    import re

    found: Dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    found.setdefault(flag, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def _options(parser) -> set:
    import argparse

    opts = set()
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of a parser's options
        opts.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                opts |= _options(sub)
    return opts


def test_every_flag_a_message_names_exists():
    """A message that tells the user to pass ``--x`` names a flag that ``hinterval`` or ``search.py`` has."""
    from tune.search import build_parser as sweep_parser

    known = _options(cli.build_parser()) | _options(sweep_parser())
    # tensorboard's flag and Ray's (`ray start --head`) in suggested commands; a placeholder in the docs; the
    # shortest abbreviation of --address that search.py looks for before Ray is imported
    others = {"--logdir", "--head", "--key-with-dashes", "--ad"}
    unknown = {f: where for f, where in {**_literal_flags(REPO / "hinterval"), **_literal_flags(REPO / "tune")}.items()
               if f not in known | others}
    assert not unknown, f"messages name flags no parser has: {unknown}"


def test_resume_hint_parses_back_to_the_same_run_directory(tmp_path, capsys, monkeypatch):
    import shlex

    out = tmp_path / ODD_OUT
    _interrupted(monkeypatch, tmp_path)
    assert cli.main(["train", *TINY, "--out", str(out)]) == 130
    line = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hinterval: ")][-1]
    argv = shlex.split(line[line.index("`") + 1: line.rindex("`")])  # the command in backticks, as a shell reads it
    assert argv[:2] == ["hinterval", "train"]
    args = cli.build_parser().parse_args(argv[1:])
    assert args.out == str(out) and args.resume
    assert not (tmp_path / "pwned").exists()


def test_eval_takes_the_data_dir_its_error_names(tmp_path, capsys):
    import json

    assert cli.main(_moved_data_run(tmp_path)) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path / "run"), "--data-dir", str(tmp_path / "moved")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks_done"] == 1
