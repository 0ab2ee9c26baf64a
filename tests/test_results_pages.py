"""The committed results pages name only config keys and metrics that exist.

A results page (``results/**/README.md``, a sweep's ``leaderboard.md``, ``best_config.yaml`` and the
header of ``trials.csv``) outlives the code it was made with; when a config key or a metric is
renamed or removed, the page would keep naming it. The names that exist are read from the code:
config fields from :mod:`hinterval.config`, metric names from :mod:`hinterval.metrics`,
:mod:`tune.spec` and :mod:`tune.confirm`, result keys from a real (tiny) training run, table
columns from :mod:`tune.report` itself.
"""
from __future__ import annotations

import csv
import functools
import re
import sys
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "results"
#: a snake_case identifier that is not part of a path or file name
IDENT = re.compile(r"(?<![\w/.\-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w/\-]|\.\w)")
#: identifiers that look like metrics: an accuracy or a backward transfer, or a scenario's figure
METRIC_LIKE = re.compile(r"^(?:\w+_(?:acc|bwt)|(?:worst|cil|dil|til)_\w+)$")
SET_KEY = re.compile(r"--set[ =]+([A-Za-z_][\w-]*)=")
BACKTICKED = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")


def config_keys() -> Set[str]:
    from hinterval.config import FIELDS

    return set(FIELDS)


def metric_names() -> Set[str]:
    """Metric names as the code spells them: the constants of hinterval.metrics, the sweep objectives,
    the report's metric columns and the confirmation's metrics."""
    from hinterval import metrics as M
    from tune.confirmation import CONFIRM_METRICS
    from tune.leaderboard import METRIC_COLUMNS
    from tune.noise import NOISE_METRICS
    from tune.spec import OBJECTIVES

    consts = {v for k, v in vars(M).items() if k.isupper() and isinstance(v, str)}
    return consts | set(OBJECTIVES) | set(METRIC_COLUMNS) | set(NOISE_METRICS) | set(CONFIRM_METRICS)


def _keys(obj) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                yield k
            yield from _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v)


@functools.lru_cache(maxsize=None)
def result_keys() -> frozenset:
    """Every key of a real result (``result.json``: headline figures, scenarios, per-task reports)."""
    from hinterval.config import make_config
    from hinterval.trainer import train_continual

    cfg = make_config(dict(benchmark="split-digits", num_tasks=2, iters_per_task=2, val_every=1, target_hidden=(8,),
                           hnet_hidden=(8,), embedding_dim=4, num_threads=1))
    return frozenset(_keys(train_continual(cfg, progress=False)))


@functools.lru_cache(maxsize=None)
def report_columns() -> Tuple[frozenset, frozenset]:
    """(trials.csv columns, leaderboard column titles) that tune.report writes, besides the swept
    hyperparameters, for every objective a sweep can have (with a confirmation)."""
    from tune.leaderboard import leaderboard_markdown, trials_frame
    from tune.spec import OBJECTIVES

    hist = {"tasks_done": 1, "avg_acc": 0.9, "bwt": 0.0, "worst_avg_acc": 0.8, "worst_bwt": 0.0, "cil_avg_acc": 0.5,
            "test_samples": 100}
    rec = {"trial_id": "t1", "status": "COMPLETE", "is_preset": False, "tasks_done": 1, "num_tasks": 1,
           "params": {}, "config": {}, "history": [hist]}
    stats = {m: {"mean": 0.5, "std": 0.1, "n": 3} for m in OBJECTIVES}
    confirmation = {"objective": "avg_acc", "configs": [{"trial_id": "t1", "params": {}, "seeds": [0, 1, 2], "runs": [],
                                                          "stats": stats, "finished": 3}],
                    "verdict": {"metric": "avg_acc", "margin": None}}
    csv_cols: Set[str] = set()
    board_cols: Set[str] = set()
    for objectives in [[o] for o in OBJECTIVES] + [list(OBJECTIVES[:2])]:
        df = trials_frame([rec], params=[], objectives=objectives, confirmation=confirmation)
        csv_cols |= set(df.columns)
        board = leaderboard_markdown(df, name="x", params=[], objectives=objectives, confirmation=confirmation)
        board_cols |= set(table_header(board))
    return frozenset(csv_cols), frozenset(board_cols)


def table_header(markdown: str) -> List[str]:
    """Column titles of the first table whose first column is ``rank`` (the leaderboard's table)."""
    for line in markdown.splitlines():
        if line.startswith("| rank |"):
            return [c.strip() for c in line.strip().strip("|").split("|")]
    return []


@functools.lru_cache(maxsize=None)
def trial_report_keys() -> frozenset:
    """The keys of a trial's per-task report (tune.trainable) besides the trainer's metrics."""
    from types import SimpleNamespace

    from tune.trainable import TuneReporter, trial_extra

    reporter = TuneReporter(objectives=["avg_acc"], extra=trial_extra(node_id="n", device="cpu", num_threads=1,
                                                                      started=0.0, imported=0.0))
    class Bench(list):  # a benchmark: its tasks, each with a test split
        tasks = property(lambda self: list(self))

    reporter.on_fit_start(SimpleNamespace(benchmark=Bench([SimpleNamespace(test=[0, 1])]), tasks_done=0))
    return frozenset(reporter.report_dict({"tasks_done": 1}))


def known_names() -> Set[str]:
    return config_keys() | metric_names() | set(result_keys()) | set(report_columns()[0]) | set(trial_report_keys())


def pages(pattern: str) -> List[Path]:
    return sorted(RESULTS.rglob(pattern))


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO))


# --- the checks, usable on any text -------------------------------------------------------------------
def unknown_in_prose(text: str) -> Set[str]:
    """Names a results page uses that the code no longer knows: ``--set KEY=`` keys, backticked
    identifiers, and metric-like identifiers anywhere."""
    keys, known = config_keys(), known_names()
    bad = {f"--set {k}" for k in SET_KEY.findall(text) if k.replace("-", "_") not in keys}
    bad |= {w for w in BACKTICKED.findall(text) if w not in known}
    bad |= {w for w in IDENT.findall(text) if METRIC_LIKE.match(w) and w not in known}
    return bad


def unknown_in_leaderboard(text: str) -> Set[str]:
    keys, metrics = config_keys(), metric_names()
    fixed = report_columns()[1]
    bad = {c for c in table_header(text) if c not in fixed and c not in keys and c not in metrics}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif section and line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if section == "Hyperparameter importance":
                if cells[0] == "hyperparameter":
                    bad |= {c for c in cells[1:] if c not in metrics}
                elif cells[0] not in keys:
                    bad.add(cells[0])
            elif section == "Spread and noise" and cells[0] != "metric" and cells[0] not in metrics:
                bad.add(cells[0])
    return bad | unknown_in_prose(text)


def unknown_in_best_config(path: Path) -> Set[str]:
    import yaml

    text = path.read_text()
    data = yaml.safe_load(text) or {}
    comments = "\n".join(ln for ln in text.splitlines() if ln.startswith("#"))
    return {k for k in data if k not in config_keys()} | unknown_in_prose(comments)


def unknown_in_csv_header(path: Path) -> Set[str]:
    with path.open(newline="") as f:
        header = next(csv.reader(f))
    return {c for c in header if c not in report_columns()[0] and c not in config_keys()}


# --- the committed pages ---------------------------------------------------------------------------------
def test_results_pages_exist():
    assert pages("README.md") and pages("leaderboard.md") and pages("best_config.yaml") and pages("trials.csv")


@pytest.mark.parametrize("page", pages("README.md"), ids=_rel)
def test_readme_names_only_existing_keys_and_metrics(page):
    assert not unknown_in_prose(page.read_text()), f"{_rel(page)} names what the code no longer has"


@pytest.mark.parametrize("page", pages("leaderboard.md"), ids=_rel)
def test_leaderboard_names_only_existing_keys_and_metrics(page):
    assert not unknown_in_leaderboard(page.read_text()), f"{_rel(page)} names what the code no longer has"


@pytest.mark.parametrize("page", pages("best_config.yaml"), ids=_rel)
def test_best_config_has_only_existing_keys_and_trains(page):
    from hinterval.config import load_config_file, make_config

    assert not unknown_in_best_config(page), f"{_rel(page)} names what the code no longer has"
    make_config(load_config_file(str(page)))  # what `hinterval train --config` does with it


@pytest.mark.parametrize("page", pages("trials.csv"), ids=_rel)
def test_trials_csv_header_has_only_existing_columns(page):
    assert not unknown_in_csv_header(page), f"{_rel(page)} has columns the report no longer writes"


# --- the checks catch what they are for -------------------------------------------------------------------
def test_a_renamed_metric_or_key_is_caught(tmp_path):
    assert unknown_in_prose("best `worst_avg_acc` 0.97, `embedding_dim` 24, `ramp_reached` 1") == set()
    assert unknown_in_prose("ranked by `certified_acc`") == {"certified_acc"}
    assert unknown_in_prose("the worst_case_acc was 0.9 with --set hidden_width=50") == {
        "worst_case_acc", "--set hidden_width"}
    assert unknown_in_prose("see results/core/best_config.yaml and perf_counter()") == set()  # paths, functions
    board = ("# Sweep `x`\n\n| rank | trial | worst_avg_acc | certified_acc | gamma | tasks | status |\n|---|\n\n"
             "## Hyperparameter importance\n\n| hyperparameter | worst_avg_acc | final_acc |\n|---|---|---|\n"
             "| gamma | 0.5 | 0.2 |\n| width | 0.5 | 0.8 |\n")
    assert unknown_in_leaderboard(board) == {"certified_acc", "final_acc", "width"}
    cfg = tmp_path / "best_config.yaml"
    cfg.write_text("# Best config: trial a, certified_acc 0.97\ngamma: 1.0\nhidden: [50]\n")
    assert unknown_in_best_config(cfg) == {"certified_acc", "hidden"}
    table = tmp_path / "trials.csv"
    table.write_text("trial_id,status,gamma,avg_acc,certified_acc\n")
    assert unknown_in_csv_header(table) == {"certified_acc"}
