"""CLI: a tiny real run, eval reproduces it, resume, and bad inputs exit 2 with one clear line."""
from __future__ import annotations

import json

import pytest

from hinterval.cli import main

TINY = ["--iters-per-task", "20", "--val-every", "10", "--num-tasks", "2", "--hnet-hidden", "16",
        "--target-hidden", "16", "--embedding-dim", "4", "--no-progress", "--device", "cpu"]


@pytest.mark.slow
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


# --- flags the run never reads: one warning line, the run goes on --------------------------------------
SMALL = ["--iters-per-task", "2", "--num-tasks", "1", "--hnet-hidden", "8", "--embedding-dim", "2", "--no-progress",
         "--no-tensorboard", "--device", "cpu"]


@pytest.mark.parametrize("args,flags,needs", [
    (["--method", "hyperinterval", "--ewc-lambda", "5"], ["--ewc-lambda"], "--method ewc"),
    (["--embedding-mode", "non-forced", "--nested-hold", "intersection"], ["--nested-hold"], "--embedding-mode nested"),
    (["--method", "hnet", "--intercontinet-radius", "0.5", "--gamma", "2"], ["--gamma", "--intercontinet-radius"],
     "--method hyperinterval"),
    (["--method", "ewc", "--ramp", "fixed", "--interval-scope", "head"], ["--ramp", "--interval-scope"], "interval methods"),
    (["--method", "finetune", "--beta", "0.5"], ["--beta"], "--method hyperinterval or hnet"),
    (["--chunk-embedding-dim", "4"], ["--chunk-embedding-dim"], "--hnet-chunk-size > 0"),
    (["--epochs-per-task", "0.01"], ["--iters-per-task"], "epochs_per_task wins"),  # SMALL gives --iters-per-task
])
def test_a_flag_the_run_never_reads_is_named_in_one_warning(args, flags, needs, tmp_path, capsys):
    """The rule: contradicting flags are refused (exit 2, tests/test_bad_inputs.py); a flag that the
    chosen method, embedding mode or target never reads is named in one warning line and the run goes on."""
    assert main(["train", *args, *SMALL, "--target-hidden", "8", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "no effect" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("hinterval: warning: --"), err
    assert needs in warnings[0] and all(f in warnings[0] for f in flags), warnings[0]


def test_flags_every_run_reads_and_config_files_give_no_warning(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("ewc_lambda: 5\nnested_hold: intersection\n")  # a saved config lists every key
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--gamma", "0.5", "--lr", "0.01", *SMALL,
                 "--target-hidden", "8", "--out", str(tmp_path / "run")]) == 0
    assert "no effect" not in capsys.readouterr().err


def test_an_unread_flag_with_a_bad_input_gives_only_the_error(tmp_path, capsys):
    """The warning is printed once the run starts, so a refused command still prints one line."""
    assert main(["train", "--method", "ewc", "--gamma", "2", "--batch-size", "0", *SMALL, "--out", str(tmp_path / "r")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "batch size must be >= 1" in err[0], err


# --- interrupted and concurrent runs (real processes) -----------------------------------------------------
RUN = ["--num-tasks", "3", "--iters-per-task", "150", "--target-hidden", "16,16", "--hnet-hidden", "32", "--no-progress",
       "--no-tensorboard", "--device", "cpu", "--num-threads", "1", "--seed", "0"]
COMPARED = ("avg_acc", "bwt", "worst_avg_acc", "worst_bwt", "acc_matrix", "til", "worst", "dil", "cil")


def _hinterval(*argv: str):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "hinterval", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_ctrl_c_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    import signal
    from run_signals import signal_after_first_task

    ref, run = tmp_path / "ref", tmp_path / "run"
    p = _hinterval("train", *RUN, "--out", str(ref))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    code, err, lines = signal_after_first_task(_hinterval("train", *RUN, "--out", str(run)), run, signal.SIGINT,
                                               wait_s=300, timeout_s=120)
    assert code == 130 and len(lines) == 1 and "interrupted during task" in lines[0], err
    assert "--resume" in lines[0] and "Traceback" not in err
    p = _hinterval("train", "--out", str(run), "--resume", "--no-progress")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    a, b = (json.loads((d / "result.json").read_text()) for d in (ref, run))
    assert b["complete"] is True
    assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}


@pytest.mark.slow
def test_two_runs_into_one_out_at_once_one_runs_the_other_is_refused(tmp_path):
    out = tmp_path / "run"
    procs = [_hinterval("train", *RUN, "--seed", str(seed), "--out", str(out)) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    lines = [ln for ln in refused.splitlines() if ln.strip()]
    assert len(lines) == 1 and ("is in use by" in lines[0] or "is not empty" in lines[0]), refused
    winner = next(i for i, (code, _) in enumerate(results) if code == 0)
    saved = json.loads((out / "config.json").read_text())
    assert saved["seed"] == (1, 2)[winner]  # the directory holds the winner's run only
    assert json.loads((out / "result.json").read_text())["config"]["seed"] == saved["seed"]


@pytest.mark.parametrize("word", ["-1", "-.5", "-1e-3", "-inf", "-NaN", "-1:1"])
def test_parser_reads_negative_numbers_as_typed_values(word, capsys):
    from hinterval.cli import Parser

    p = Parser(prog="p")
    p.add_argument("--x")
    p.add_argument("--n", type=int)
    p.add_argument("names", nargs="*")
    ns = p.parse_args(["--x", word, "a", word])
    assert ns.x == word and ns.names == ["a", word]
    with pytest.raises(SystemExit):
        p.parse_args(["--n", word + "x"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"p: error: argument --n: invalid int value: '{word}x'"


def test_python_dash_m_hinterval_runs_the_command_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hinterval", "train", "--gamma"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith("expected one argument")
