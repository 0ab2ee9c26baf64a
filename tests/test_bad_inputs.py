"""Bad input, table-driven: ``hinterval`` and ``tune/search.py`` answer with exit code 2 and one line.

Every case runs the real command line in-process (``hinterval.cli.main`` / ``tune.search.main``;
sweeps with ``--dry-run`` or failing before Ray starts) and checks: exit code 2; on stderr ONE line
naming the problem (argparse's own type/choice errors: its usage lines plus one ``error:`` line);
no traceback; and every file that existed before is unchanged (nothing overwritten or deleted, no
run directory left behind). Fixtures are the real on-disk formats from ``tests/data_fixtures.py``.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple

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


def _config(tmp: Path, text: str, *extra: str) -> List[str]:
    (tmp / "c.yaml").write_text(text)
    return ["train", "--config", str(tmp / "c.yaml"), *TINY, *extra, *_out(tmp)]


def _non_empty_out(tmp: Path) -> List[str]:
    (tmp / "run").mkdir()
    (tmp / "run" / "precious.txt").write_text("keep me")
    return ["train", *TINY, *_out(tmp)]


def _overwrite_with_bad_data(tmp: Path) -> List[str]:
    _non_empty_out(tmp)  # --overwrite may only delete the old run once the new one can start
    return ["train", "--benchmark", "split-mnist", "--data-dir", str(tmp / "missing"), *TINY, *_out(tmp), "--overwrite"]


def _finished_run(tmp: Path) -> Path:
    """A run directory as ``hinterval train`` leaves it (checkpoint of an untrained model: fast)."""
    from hinterval.checkpoint import CHECKPOINT_NAME, save_checkpoint, write_json
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


CASES = [
    # --- hinterval train/eval: flags of the wrong type (argparse) or out of range (config validation)
    Case("cli-float-type", "cli", lambda t: ["train", "--gamma", "abc", *TINY, *_out(t)],
         ("argument --gamma", "invalid float value: 'abc'"), argparse=True),
    Case("cli-int-type", "cli", lambda t: ["train", "--num-tasks", "1.5", *_out(t)],
         ("argument --num-tasks", "invalid int value: '1.5'"), argparse=True),
    Case("cli-bool-type", "cli", lambda t: ["train", "--reg-bounds", "maybe", *_out(t)],
         ("argument --reg-bounds", "expected true or false"), argparse=True),
    Case("cli-kappa-range", "cli", lambda t: ["train", "--kappa-min", "2", *TINY, *_out(t)], ("kappa min must be in [0, 1]",)),
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
    # --- run directories, resume
    Case("cli-non-empty-out", "cli", _non_empty_out, ("is not empty", "--resume", "--overwrite")),
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
]


def _snapshot(root: Path) -> Dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    import torch

    argv = case.make(tmp_path)
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
    assert code == 2, f"exit {code}; stderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out
    if case.argparse:
        assert lines[0].startswith("usage:") and all(ln.startswith(" ") for ln in lines[1:-1]), err
        problem = lines[-1]
        assert ": error: argument " in problem
    else:
        assert len(lines) == 1, f"expected one line, got:\n{err}"
        problem = lines[0]
        assert problem.startswith("hinterval: error: " if case.tool == "cli" else "search.py: error: ")
    for needle in case.needles:
        assert needle in problem, f"{needle!r} not in {problem!r}"
    assert _snapshot(tmp_path) == before, "a bad input changed files on disk"


def test_at_least_twenty_cases():
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)

