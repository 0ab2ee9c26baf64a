"""CLI: a tiny real run, eval reproduces it, resume, and bad inputs exit 2 with one clear line."""
from __future__ import annotations

import json

import pytest

from hinterval.cli import main

TINY = ["--iters-per-task", "20", "--val-every", "10", "--num-tasks", "2", "--hnet-hidden", "16",
        "--target-hidden", "16", "--embedding-dim", "4", "--no-progress", "--device", "cpu"]


def test_train_eval_resume_roundtrip(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--benchmark", "split-digits", "--out", str(out), *TINY]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["complete"] is True and result["tasks_done"] == 2
    assert {"avg_acc", "bwt", "acc_matrix", "til", "worst", "dil", "cil", "config", "versions", "wall_time_s"} <= set(result)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["matches_saved"] is True
    assert report["avg_acc"] == pytest.approx(result["avg_acc"])
    # resuming a finished run does nothing and keeps the files
    before = (out / "result.json").read_text()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "result.json").read_text() == before


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("benchmark: split-digits\ngamma: 0.25\nbeta: 0.05\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--beta", "0.2", "--out", str(out), *TINY]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["gamma"] == 0.25 and saved["beta"] == 0.2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--benchmark", "imagenet-99"], "unknown benchmark"),
        (["--gamma", "-1"], "gamma"),
        (["--embedding-dim", "0"], "embedding dim"),
        (["--device", "cuda"], "CUDA"),
        (["--method", "magic"], "unknown method"),
        (["--hnet-hidden", "x"], "comma-separated"),
        (["--lr", "0"], "learning rate"),
        (["--config", "/nonexistent.yaml"], "does not exist"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args, needle, capsys, tmp_path):
    import torch

    if needle == "CUDA" and torch.cuda.is_available():
        pytest.skip("GPU present")
    code = main(["train", *args, "--no-progress", "--out", str(tmp_path / "x")] if "--resume" not in args
                else ["train", *args, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


def test_non_empty_out_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["train", "--out", str(out), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


def test_corrupted_checkpoint_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated garbage")
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "perturbation epsilon" in text and "--resume" in text


@pytest.mark.parametrize("argv", [["--debug", "train"], ["train", "--debug"]])
def test_debug_before_or_after_the_command_shows_the_traceback(argv, tmp_path):
    from hinterval.errors import UserError

    with pytest.raises(UserError, match="kappa min"):
        main([*argv, "--kappa-min", "2", "--no-progress", "--out", str(tmp_path / "x")])


def test_iters_per_task_replaces_a_preset_epoch_budget(tmp_path, capsys):
    """tinyimagenet's preset trains by epochs; --iters-per-task on the command line must win (and say so in --help)."""
    from hinterval.cli import _overrides, build_parser
    from hinterval.config import make_config

    args = build_parser().parse_args(["train", "--benchmark", "tinyimagenet", "--iters-per-task", "7"])
    cfg = make_config(_overrides(args))
    assert cfg.epochs_per_task is None and cfg.iters_per_task == 7
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "replaces an epochs_per_task" in " ".join(capsys.readouterr().out.split())
