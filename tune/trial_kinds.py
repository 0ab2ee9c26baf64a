"""What the trials of a search space will be, checked before any trial runs.

Each kind of trial a space can run is one combination of its :data:`DECIDING` settings at their
choices and range ends. From those: every range end and choice must build a valid config
(:func:`validate_space`), the preset's point in the space (:func:`preset_point`), the settings no
trial reads (:func:`unused_warning`: named, not refused) and the metric the sweep ranks by when
none is given (:func:`default_objectives`). No Ray.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hinterval import metrics as M
from hinterval.config import SETTING_USERS, ExperimentConfig, make_config, unused_message
from hinterval.errors import UserError
from hinterval.methods.registry import METHODS
from tune.space import SearchSpace, contains, describe, normalise_value, parse_space

#: the settings whose value decides what kind of trial runs: which other settings it reads
#: (``hinterval.config.SETTING_USERS``) and whether it certifies its boxes
DECIDING = ("method", "embedding_mode", "gamma", "hnet_chunk_size", "target", "interval_mode")
#: the settings that decide whether a trial's network can be built and how large it is (with DECIDING)
SHAPING = ("interval_scope", "target_hidden", "hnet_hidden", "embedding_dim", "chunk_embedding_dim", "image_size",
           "image_channels", "num_tasks")
#: at most this many combinations of the shaping settings are built in full; beyond, each shaping
#: setting is tried at its probes with every kind of trial (a sweep's check stays a few seconds)
MAX_COMBINATIONS = 256


def validate_space(space: SearchSpace, base: Mapping[str, Any]) -> None:
    """Build a config at every range end and every choice so bad values fail now, not in trial 7."""
    if not space.params:
        raise UserError("search space is empty: give at least one key a range or a list of choices")
    base = {**base, **dict(space.fixed)}
    make_config(base)
    for k, d in space.params:
        probes = list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high]
        for v in probes:
            try:
                make_config(base, **{k: v})
            except UserError as exc:
                raise UserError(f"search space: {k} = {v!r} is not a valid setting: {exc}") from None


def _probes(dist: Any) -> List[Any]:
    """The values that stand for a searched setting: its choices, or both ends of its range."""
    return list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]


def shaping_configs(space: SearchSpace, base: Mapping[str, Any]) -> Iterator[Tuple[Dict[str, Any], ExperimentConfig]]:
    """``(searched values, config)`` for every combination of the searched DECIDING and SHAPING settings at
    their probes (choices, range ends), or, when there are more than :data:`MAX_COMBINATIONS`, every kind
    of trial with one shaping setting at a time. Combinations that are no valid config are left out
    (:func:`validate_space` refuses each bad value alone)."""
    searched = [(k, _probes(d)) for k, d in space.params if k in (*DECIDING, *SHAPING)]
    try:
        yield {}, make_config(base)  # the fixed settings alone: what every trial starts from
    except UserError:
        pass
    count = 1
    for _, values in searched:
        count *= len(values)
    if count <= MAX_COMBINATIONS:
        combos: Any = (dict(zip([k for k, _ in searched], c)) for c in itertools.product(*(v for _, v in searched)))
    else:
        kinds = [(k, v) for k, v in searched if k in DECIDING]
        kind_combos = [dict(zip([k for k, _ in kinds], c)) for c in itertools.product(*(v for _, v in kinds))]
        combos = ({**kind, k: v} for kind in kind_combos for k, values in searched if k not in DECIDING for v in values)
    for point in combos:
        try:
            yield point, make_config(base, **point)
        except UserError:
            continue


def check_trials_build(space: SearchSpace, base: Mapping[str, Any],
                       check: Callable[[ExperimentConfig], None]) -> None:
    """Run ``check`` (``hinterval train``'s own: the network can be built and fits, see
    :func:`hinterval.memory.check_memory`) on every :func:`shaping_configs` config, so a space with a
    trial that ``train`` would refuse is refused before any trial starts."""
    for point, cfg in shaping_configs(space, base):
        try:
            check(cfg)
        except UserError as exc:
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            if not point:
                raise UserError(f"every trial would fail as `hinterval train` does: {exc}") from None
            raise UserError(f"search space: the trials with {where} could not run: {exc}; narrow the space") from None


def preset_point(space: SearchSpace, cfg: ExperimentConfig) -> Tuple[Optional[Dict[str, Any]], List[str]]:
    """The preset's values of the searched keys, or ``None`` and the keys that fall outside the space."""
    values = cfg.to_dict()
    point = {k: normalise_value(k, values[k]) for k in space.names}
    outside = [f"{k}={point[k]!r} not in {describe(d)}" for k, d in space.params if not contains(k, d, point[k])]
    if outside:
        return None, outside
    for k, d in space.params:
        if isinstance(d, IntDistribution):
            point[k] = int(point[k])
        elif isinstance(d, FloatDistribution):
            point[k] = float(point[k])
    return point, []


def trial_configs(space: SearchSpace, base: Mapping[str, Any]) -> List[ExperimentConfig]:
    """Configs that stand for every kind of trial the sweep can run: each combination of the searched
    settings in :data:`DECIDING` (choices, and both ends of a range). Combinations that are no valid
    config (nested mode at gamma 0) are left out."""
    deciding = [(k, list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high])
                for k, d in space.params if k in DECIDING]
    out: List[ExperimentConfig] = []
    for combo in itertools.product(*(values for _, values in deciding)):
        try:
            out.append(make_config(base, **{k: v for (k, _), v in zip(deciding, combo)}))
        except UserError:
            pass
    return out


def unused_in_every_trial(keys: Sequence[str], configs: List[ExperimentConfig]) -> List[str]:
    """Of ``keys``, those no trial config reads (a setting of a method the sweep never runs)."""
    return [k for k in keys if k in SETTING_USERS and configs and not any(SETTING_USERS[k][0](c) for c in configs)]


def unused_warning(spec: Mapping[str, Any]) -> Optional[str]:
    """One line naming the sweep's fixed or searched settings that no trial reads (``None`` if each is
    read by some trial), e.g. ``--set ewc_lambda=5`` in a sweep of hyperinterval only."""
    space = parse_space(spec["space"])
    unused = unused_in_every_trial([*space.names, *spec["base"]], trial_configs(space, spec["base"]))
    return f"warning: {unused_message(unused, 'in any trial of this sweep')}" if unused else None


def certifies(cfg: ExperimentConfig) -> bool:
    """Whether a run of ``cfg`` certifies its boxes: a method with weight boxes (HyperInterval at
    gamma > 0, InterContiNet) propagated soundly (not ``relaxed``)."""
    boxes = METHODS[cfg.method].certifies and (cfg.method != "hyperinterval" or cfg.gamma > 0)
    return boxes and cfg.interval_mode != "relaxed"


def default_objectives(configs: Sequence[ExperimentConfig]) -> Tuple[str, ...]:
    """The metric a sweep ranks by when ``--objective`` is not given, from its :func:`trial_configs`.

    ``worst_avg_acc`` (certified accuracy: every network in a task's weight box classifies the test
    sample correctly) where every kind of trial :func:`certifies`: it is what HyperInterval trains
    for, and on the easy benchmarks it separates trials that the task-incremental ``avg_acc``
    cannot (split-digits: every trial 0.99-1.00, a few of the 450 test images apart). ``avg_acc``
    where some trial certifies nothing (a method without boxes, relaxed intervals, gamma 0), so
    every trial is ranked. A CNN target's certifying sweep adds ``box_size``: there gamma barely
    moves the certified accuracy while it opens a box it certifies, so the sweep's answer is the
    Pareto front of certified accuracy against certified box size.
    """
    if not configs or not all(certifies(c) for c in configs):
        return (M.AVG_ACC,)
    return (M.WORST_AVG_ACC, M.BOX_SIZE) if any(c.target != "mlp" for c in configs) else (M.WORST_AVG_ACC,)


def objective_problem(objectives: Sequence[str], configs: Sequence[ExperimentConfig]) -> Optional[str]:
    """Why no trial could be ranked by ``objectives`` (``None`` if some trial reports each): the
    certified metrics need a trial that :func:`certifies`, the universal network's a nested one."""
    for o in objectives:
        if o in _REPORTED_BY:
            reports, which = _REPORTED_BY[o]
            if configs and not any(reports(c) for c in configs):
                return f"{o} is reported only by a trial that {which}, and no trial of this sweep does"
    return None


def _nested(cfg: ExperimentConfig) -> bool:
    return cfg.method == "hyperinterval" and cfg.embedding_mode == "nested"


_CERTIFYING = (certifies, "certifies its boxes (a sound interval method with gamma > 0)")
_UNIVERSAL = (_nested, "has a universal network (--method hyperinterval --embedding-mode nested)")
#: metrics only some trials report -> (whether a trial config reports it, which trials do)
_REPORTED_BY = {M.WORST_AVG_ACC: _CERTIFYING, M.WORST_BWT: _CERTIFYING, M.BOX_SIZE: _CERTIFYING,
                M.DIL_AVG_ACC: _UNIVERSAL, M.DIL_BWT: _UNIVERSAL}
