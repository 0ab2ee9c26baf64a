"""Distributed hyperparameter sweeps over full continual runs (Ray Tune + Optuna).

``tune/`` is not part of the installed ``hinterval`` package: the library never imports Ray.
Run sweeps with ``python tune/search.py --help``; the driver ships this folder to Ray workers
(``runtime_env`` ``py_modules``) so trials on any node can import :mod:`tune.trainable`.

Modules:
    space: search-space specs (YAML / flags / preset defaults) and the Optuna define-by-run function.
    trainable: the Tune function trainable (one full continual run) and its ``TuneReporter`` callback.
    searcher: seeded Optuna TPE behind a ConcurrencyLimiter, told only final metrics (ASHA-safe).
    recorder: a driver-side Tune callback that keeps one JSON record and TensorBoard run per trial.
    report: trials.csv, leaderboard.md, best_config.yaml and plots from those records.
    search: the command line and :func:`run_sweep`.
"""
