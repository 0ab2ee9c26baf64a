"""Distributed hyperparameter sweeps over full continual runs (Ray Tune + Optuna).

``tune/`` is not part of the installed ``hinterval`` package: the library never imports Ray.
Run sweeps with ``python tune/search.py --help``; the driver ships this folder to Ray workers
(``runtime_env`` ``py_modules``) so trials on any node can import :mod:`tune.trainable`.

Modules:
    spec: the frozen SweepSpec, resolved from the command line by one pure function.
    space: search spaces as Optuna distributions, parsed from YAML / flags / preset defaults.
    trainable: the Tune function trainable (one full continual run) and its ``TuneReporter`` callback.
    searcher: seeded Optuna TPE behind a ConcurrencyLimiter, told only final metrics (ASHA-safe), its
        study kept in results/<name>/optuna.db; ASHA on the first objective.
    recorder: a driver-side Tune callback that keeps one JSON record and TensorBoard run per trial.
    report: trials.csv, leaderboard.md, best_config.yaml and plots from those records.
    search: the command line and :func:`run_sweep`.
    release: the driver's end: lets go of Ray and the study, then exits within a time limit.
"""
