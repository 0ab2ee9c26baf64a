"""What ``train`` and ``eval`` print (hinterval/console.py)."""
from hinterval.console import TaskPrinter, headline, universal_line

METRICS = {"avg_acc": 0.5, "bwt": 0.0, "worst_avg_acc": None, "task_time_s": 0.1, "task_collapsed": True,
           "task_val_acc": 0.5}


def test_collapse_advice_names_only_flags_the_method_reads(tmp_path, capsys):
    metrics = dict(METRICS)
    TaskPrinter(intervals=False).on_task_end(0, metrics, {})
    assert "--gamma" not in capsys.readouterr().err
    TaskPrinter(intervals=True).on_task_end(0, metrics, {})
    assert "--gamma" in capsys.readouterr().err


def test_a_task_line_names_the_scope_of_a_partial_certificate(capsys):
    TaskPrinter(scope="last:3").on_task_end(1, {**METRICS, "worst_avg_acc": 0.9, "task_collapsed": False}, {})
    line = capsys.readouterr().err.strip()
    assert line.startswith("task 2: avg_acc 0.5000") and "worst_avg_acc 0.9000 (scope last:3)" in line


def test_the_universal_line_says_whether_a_bound_holds():
    uni = {"avg_acc": 0.87, "bwt": -0.01, "hold": "penalty", "bound_avg": 0.8, "violations": 0}
    assert "certified lower bound 0.8000 (0 test samples below it)" in universal_line(uni)
    assert "no certified bound (scoped)" in universal_line({**uni, "bound_avg": None, "bound_note": "scoped"})


def test_the_headline_keeps_the_scenarios_averages():
    result = {"benchmark": "split-digits", "avg_acc": 1.0, "dil": {"avg_acc": 0.9, "bwt": 0.0}, "cil": {"avg_acc": 0.5}}
    out = headline(result)
    assert out["dil_avg_acc"] == 0.9 and out["cil_avg_acc"] == 0.5 and out["dil_bwt"] == 0.0 and out["method"] is None


def test_tasks_that_share_one_network_are_said_in_one_line():
    from hinterval.console import shared_network_line

    line = shared_network_line({"network_min_distance": 1e-4, "centre_min_distance": 2e-3})
    assert line is not None and "\n" not in line and "share one network" in line
    assert shared_network_line({"network_min_distance": 0.3, "centre_min_distance": 1.0}) is None
    assert shared_network_line({"network_min_distance": None}) is None
