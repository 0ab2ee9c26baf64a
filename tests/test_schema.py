"""Each config field is declared once; flags, checks, sweep flags and docs all follow the declaration."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hinterval.cli import build_parser
from hinterval.config import FIELD_SPECS, PRESET_KEYS, make_config
from hinterval.errors import UserError
from hinterval.schema import markdown_table

REPO = Path(__file__).resolve().parent.parent
NUMBERS = [f for f in FIELD_SPECS.values() if f.kind in ("int", "float")]
INTS = [f for f in FIELD_SPECS.values() if f.kind == "int"]
BOOLS = [f for f in FIELD_SPECS.values() if f.kind == "bool"]


@pytest.mark.parametrize("field", NUMBERS, ids=[f.name for f in NUMBERS])
@pytest.mark.parametrize("value", [True, False, "true"])
def test_no_bool_where_a_number_is_expected(field, value):
    with pytest.raises(UserError, match=f"config key {field.name} \\(--{field.name.replace('_', '-')}\\) must be"):
        make_config({field.name: value})


@pytest.mark.parametrize("field", INTS, ids=[f.name for f in INTS])
@pytest.mark.parametrize("value", [1.5, "2.5", 1e-3])
def test_no_fractional_float_where_an_integer_is_expected(field, value):
    with pytest.raises(UserError, match=f"config key {field.name} .* must be an integer"):
        make_config({field.name: value})


@pytest.mark.parametrize("field", BOOLS, ids=[f.name for f in BOOLS])
@pytest.mark.parametrize("value", [2, 0.5, 1.0, "maybe"])
def test_no_number_where_a_bool_is_expected(field, value):
    with pytest.raises(UserError, match=f"config key {field.name} .* must be true or false"):
        make_config({field.name: value})


@pytest.mark.parametrize("field", NUMBERS, ids=[f.name for f in NUMBERS])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan")])
def test_no_nan_or_infinity_for_any_number(field, value):
    with pytest.raises(UserError, match=field.name if field.kind == "float" else "integer"):
        make_config({field.name: value})


def test_bounds_and_choices_come_from_the_declaration():
    for f in FIELD_SPECS.values():
        s = f.setting
        if s.minimum is not None and f.kind in ("int", "float"):
            below = s.minimum if s.exclusive_minimum else (s.minimum - 1 if f.kind == "int" else s.minimum - 0.5)
            with pytest.raises(UserError, match=f"--{f.name.replace('_', '-')}"):
                make_config({f.name: below})
        if s.choices and f.kind == "str":
            with pytest.raises(UserError, match=f"unknown {f.label}"):
                make_config({f.name: "no-such-value"})


def test_every_default_is_valid_and_the_flag_gives_the_same_error_as_a_config_file(tmp_path, capsys):
    from hinterval.cli import main

    make_config()  # every declared default passes its own checks
    code = main(["train", "--gamma", "abc", "--out", str(tmp_path / "run")])
    assert code == 2 and "config key gamma (--gamma) must be a number, got 'abc'" in capsys.readouterr().err


def test_train_help_shows_real_defaults_and_every_key():
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    text = sub.format_help()
    assert "(default: None)" not in text
    for f in FIELD_SPECS.values():
        assert f.flag in text
    assert "(default: the benchmark preset's value, else 1)" in " ".join(text.split())  # gamma
    assert set(PRESET_KEYS) >= {"gamma", "beta", "target_hidden"}


def test_sweep_help_shows_no_empty_default():
    done = subprocess.run([sys.executable, "tune/search.py", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "(default: None)" not in done.stdout and "--gamma SPEC" in done.stdout


def test_docs_config_md_is_current():
    """docs/config.md is generated: `python -m hinterval.config > docs/config.md` after changing a declaration."""
    current = (REPO / "docs" / "config.md").read_text()
    assert current == markdown_table(FIELD_SPECS, PRESET_KEYS), "run: python -m hinterval.config > docs/config.md"
