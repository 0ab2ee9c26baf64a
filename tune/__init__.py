"""Distributed hyperparameter sweeps over full continual runs (Ray Tune + Optuna).

``tune/`` is not part of the installed ``hinterval`` package: the library never imports Ray.
Run sweeps with ``python tune/search.py --help``; the driver ships this folder to Ray workers
(``runtime_env`` ``py_modules``) so trials on any node can import :mod:`tune.trainable`.

Modules:
    spec: the frozen SweepSpec, resolved from the command line by one pure function.
    flags: the sweep's command-line values checked (search flags, --set, run-flag bounds).
    space: search spaces as Optuna distributions, parsed from YAML / flags / preset defaults.
    trial_kinds: what the trials of a space will be: checked configs, the preset's point, settings no
        trial reads, the default ranking metric.
    trainable: the Tune function trainable (one full continual run) and its ``TuneReporter`` callback.
    searcher: seeded Optuna TPE behind a ConcurrencyLimiter, told only final metrics (ASHA-safe), its
        study kept in results/<name>/optuna.db; ASHA on the first objective.
    recorder: a driver-side Tune callback that keeps one JSON record and TensorBoard run per trial.
    records: the trial records (``trials/*.json``) and the one ranking.
    noise: whether a metric's spread over the trials exceeds its noise.
    confirmation / confirm: the winner trained again with more seeds (summary / the run on Ray).
    leaderboard, plots: trials.csv's frame, leaderboard.md and the PNG plots.
    report: writes trials.csv, leaderboard.md, best_config.yaml and plots from the records.
    prepare, cluster, startup, driver, summary: the sweep's steps (see docs/architecture.md).
    search: the command line.
    release: the driver's end: lets go of Ray and the study, then exits within a time limit.
"""
