"""Optuna behind Tune, told only the metrics of trials that finished every task, kept in a study on disk.

Why this module exists: Tune tells its searcher that a trial stopped early by ASHA is
*complete*, with its last (partial) result. Its average accuracy covers fewer, easier tasks and is
inflated, so TPE would chase configs that merely looked good early. The trainable therefore
reports the searcher metrics (``final_avg_acc``...) as ``None`` until the last task, and
:class:`FinalMetricOptunaSearch` tells Optuna such trials as PRUNED.

The study lives in ``results/<name>/optuna.db`` (SQLite through Optuna's ``RDBStorage``, written by
the driver only, which is where the searcher runs), so ``optuna-dashboard`` and
``optuna.importance`` can read a sweep, and ``--resume`` continues the same study: Tune pickles
the searcher with its storage, whose URL reconnects on unpickling.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from hinterval import metrics as M
from tune import space as S
from tune.records import same_point
from tune.trainable import final_metric

STUDY_FILE = "optuna.db"
#: final metrics kept as user attributes of each finished Optuna trial (dashboard columns, importance targets)
ATTR_METRICS = M.HEADLINE_METRICS


def study_url(out_dir: str | Path) -> str:
    """SQLAlchemy URL of a sweep's Optuna study (``optuna-dashboard`` takes it as it is)."""
    return f"sqlite:///{Path(out_dir).resolve() / STUDY_FILE}"


class FinalMetricOptunaSearch(OptunaSearch):
    """OptunaSearch that only learns from final metrics.

    Per-task results become the trial's intermediate values (single objective; Optuna's pruner
    stays off: Tune's scheduler decides early stopping). A trial that ends without finite
    ``final_*`` metrics -- stopped by ASHA, or a metric undefined for its method -- is told to
    Optuna as PRUNED (FAIL on error). Finished trials carry their final metrics, the Tune trial
    id and a ``preset`` flag as user attributes.

    The study is reached through its storage (Optuna's public storage API), which this class
    creates when none is given: ``OptunaSearch`` does not say which Optuna trial runs a Tune trial,
    so :meth:`suggest` notes the one its ``ask`` started.
    """

    progress_metric: Optional[str] = None
    preset_point: Optional[Dict[str, Any]] = None

    def __init__(self, *, storage: Any = None, study_name: Optional[str] = None, **kwargs: Any) -> None:
        import optuna

        self.study_storage = storage if storage is not None else optuna.storages.InMemoryStorage()
        self.study_name = study_name or "optuna"
        #: Tune trial id -> (Optuna trial number, its id in the storage)
        self.optuna_trials: Dict[str, Tuple[int, int]] = {}
        #: Tune trials already told to Optuna
        self.told: Set[str] = set()
        super().__init__(storage=self.study_storage, study_name=self.study_name, **kwargs)

    def study(self):
        """The Optuna study this searcher asks and tells."""
        import optuna

        return optuna.load_study(study_name=self.study_name, storage=self.study_storage)

    def running_numbers(self) -> Set[int]:
        """Numbers of the study's running trials."""
        import optuna

        study_id = self.study_storage.get_study_id_from_name(self.study_name)
        running = self.study_storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return {t.number for t in running}

    def suggest(self, trial_id: str) -> Optional[Dict]:
        before = self.running_numbers() if trial_id not in self.optuna_trials else None
        config = super().suggest(trial_id)
        if config is not None and before is not None:
            [number] = self.running_numbers() - before  # the trial Optuna's ask just started
            storage = self.study_storage
            study_id = storage.get_study_id_from_name(self.study_name)
            self.optuna_trials[trial_id] = (number, storage.get_trial_id_from_study_id_trial_number(study_id, number))
            self.set_user_attr(trial_id, "tune_trial_id", trial_id)
            self.set_user_attr(trial_id, "preset", self.preset_point is not None and same_point(config, self.preset_point)
                               and number == 0)
        return config

    def set_user_attr(self, trial_id: str, key: str, value: Any) -> None:
        self.study_storage.set_trial_user_attr(self.optuna_trials[trial_id][1], key, value)

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        value, step = result.get(self.progress_metric or ""), result.get(M.TASKS_DONE)
        if isinstance(self.metric, list) or trial_id in self.told or trial_id not in self.optuna_trials:
            return  # Optuna keeps no intermediate values for multi-objective studies
        if M.is_finite_number(value) and isinstance(step, int):
            storage_id = self.optuna_trials[trial_id][1]
            # a resumed trial re-sends its last task: the first value of a step is kept
            if step not in self.study_storage.get_trial(storage_id).intermediate_values:
                self.study_storage.set_trial_intermediate_value(storage_id, step, float(value))

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if result is not None and trial_id in self.optuna_trials and trial_id not in self.told:
            for k in ATTR_METRICS:
                if M.is_finite_number(result.get(k)):
                    self.set_user_attr(trial_id, k, float(result[k]))
            if isinstance(result.get(M.TASKS_DONE), int):
                self.set_user_attr(trial_id, M.TASKS_DONE, result[M.TASKS_DONE])
        if result is not None and any(not M.is_finite_number(result.get(m)) for m in metrics):
            result = None  # the base class then records PRUNED (or FAIL when error)
        super().on_trial_complete(trial_id, result=result, error=error)
        self.told.add(trial_id)


class FiniteMetricASHA(ASHAScheduler):
    """ASHA that lets a trial continue when its rung metric is undefined (``None``: e.g. BWT of a method
    without one, DIL outside nested mode) instead of failing on ``None`` arithmetic."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: Dict) -> str:
        if not M.is_finite_number(result.get(self.metric)):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: Dict) -> None:
        if not M.is_finite_number(result.get(self.metric)):
            with contextlib.suppress(KeyError):  # already forgotten
                self.on_trial_remove(tune_controller, trial)  # leaves no rung entry, like a removed trial
            return
        super().on_trial_complete(tune_controller, trial, result)


#: the study storages this process opened, closed by :func:`close_storages` when the driver ends
_OPENED: List[Any] = []


def open_storage(url: str):
    """Optuna's ``RDBStorage`` for ``url``, remembered so that :func:`close_storages` can close it."""
    import optuna

    storage = optuna.storages.RDBStorage(url)
    _OPENED.append(storage)
    return storage


def close_storages() -> None:
    """Close the database sessions and connection pools of every storage :func:`open_storage` opened
    (the driver calls this at its end: nothing of the study stays open while the process exits)."""
    while _OPENED:
        storage = _OPENED.pop()
        storage.remove_session()
        storage.engine.dispose()


def create_study(url: str, name: str, objectives: Sequence[str], attrs: Dict[str, Any]):
    """Create (or load) the sweep's study with its metric names and the sweep's settings as attributes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize"] * len(objectives),
                                load_if_exists=True)
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what optuna-dashboard labels axes with
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    return storage


def make_searcher(*, space: Dict[str, Any], objectives: List[str], seed: int, preset_point: Optional[Dict[str, Any]],
                  max_concurrent: int, storage: Any = None, study_name: Optional[str] = None) -> ConcurrencyLimiter:
    """Seeded TPE (multi-objective when several objectives) behind a ConcurrencyLimiter.

    The preset point, if any, is the first trial (``points_to_evaluate``). ``storage`` (an Optuna
    ``BaseStorage``, see :func:`create_study`) keeps the study on disk under ``study_name``;
    ``None`` keeps it in memory.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    multi = len(objectives) > 1
    metric = [final_metric(o) for o in objectives] if multi else final_metric(objectives[0])
    mode = ["max"] * len(objectives) if multi else "max"
    searcher = FinalMetricOptunaSearch(
        space=S.parse_space(space).distributions, metric=metric, mode=mode,
        sampler=optuna.samplers.TPESampler(seed=seed), points_to_evaluate=[preset_point] if preset_point else None,
        storage=storage, study_name=study_name)
    searcher.progress_metric, searcher.preset_point = objectives[0], preset_point
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


def close_orphans(url: str, name: str) -> int:
    """Mark FAIL the study's trials still RUNNING after a sweep ended (asked just before a driver died,
    unknown to the resumed searcher); returns how many. Call only when no trial runs any more."""
    import optuna

    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(name)
    n = 0
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                       optuna.trial.TrialState.FAIL)
        n += 1
    return n
