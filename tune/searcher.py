"""Optuna behind Tune, told only the metrics of trials that finished every task.

PITFALL this module exists for: Tune tells its searcher that a trial stopped early by ASHA is
*complete*, with its last (partial) result. Its average accuracy covers fewer, easier tasks and is
inflated, so TPE would chase configs that merely looked good early. The trainable therefore
reports the searcher metrics (``final_avg_acc``...) as ``None`` until the last task, and
:class:`FinalMetricOptunaSearch` tells Optuna such trials as PRUNED.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from hinterval import metrics as M
from tune import space as S
from tune.trainable import final_metric


class FinalMetricOptunaSearch(OptunaSearch):
    """OptunaSearch that only hears final metrics.

    Intermediate reports are ignored (Tune's scheduler decides early stopping, not an Optuna
    pruner), and a trial that ends without finite ``final_*`` metrics -- stopped by ASHA, or a
    metric undefined for its method -- is told to Optuna as PRUNED (FAIL on error).
    """

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        return None

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if result is not None and any(not M.is_finite_number(result.get(m)) for m in metrics):
            result = None  # the base class then records PRUNED (or FAIL when error)
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(*, space: Dict[str, Any], objectives: List[str], seed: int, preset_point: Optional[Dict[str, Any]],
                  max_concurrent: int) -> ConcurrencyLimiter:
    """Seeded TPE (multi-objective when several objectives) behind a ConcurrencyLimiter.

    The preset point, if any, is the first trial (``points_to_evaluate``).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    multi = len(objectives) > 1
    metric = [final_metric(o) for o in objectives] if multi else final_metric(objectives[0])
    mode = ["max"] * len(objectives) if multi else "max"
    searcher = FinalMetricOptunaSearch(
        space=functools.partial(S.suggest_config, space=S.parse_space(space)), metric=metric, mode=mode,
        sampler=optuna.samplers.TPESampler(seed=seed), points_to_evaluate=[preset_point] if preset_point else None)
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
