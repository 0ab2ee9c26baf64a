"""The methods hinterval trains, each declared once: its name, what it is, how it is built, the
sweep space searched around a preset and whether it certifies.

Light on purpose: it imports no torch, so validating a config (which checks the method's name)
loads nothing heavy; :func:`build_method` imports the method's module when a run builds it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict

if TYPE_CHECKING:  # types only: building a method imports its module by name
    from hinterval.config import ExperimentConfig
    from hinterval.data.base import Benchmark
    from hinterval.methods.base import ContinualMethod
    from hinterval.targets.base import TargetNetwork

#: a sweep space in the YAML notation of ``tune/space.py``: key -> {type, low, high} or {type: choice, values}
Space = Dict[str, Dict[str, Any]]

@dataclass(frozen=True)
class MethodInfo:
    """One method.

    Attributes:
        name: the ``method`` config value.
        summary: one line for ``--help`` and the docs.
        builder: ``module:Class`` of its :class:`~hinterval.methods.base.ContinualMethod`.
        space: the default sweep space around a resolved preset config.
        certifies: whether its trained weight boxes give a certified (worst-case) accuracy.
    """

    name: str
    summary: str
    builder: str
    space: Callable[["ExperimentConfig"], Space]
    certifies: bool = False


def _log(low: float, high: float) -> Dict[str, Any]:
    return {"type": "loguniform", "low": low, "high": high}


def _lr(cfg: "ExperimentConfig") -> Space:
    return {"lr": _log(cfg.lr / 3, cfg.lr * 3)}


def _embeddings(cfg: "ExperimentConfig") -> Space:
    d = cfg.embedding_dim
    return {"beta": _log(cfg.beta / 10, cfg.beta * 100),
            "embedding_dim": {"type": "choice", "values": sorted({max(2, (2 * d) // 3), d, 2 * d})}}


def _hyperinterval_space(cfg: "ExperimentConfig") -> Space:
    """gamma around the preset over the range where boxes open and certify, plus the hnet keys.

    Sound CNN targets open their scoped box over a narrow range only (ResNet-18 with its last 3
    layers boxed certifies 0.96 at gamma 0.05: results/cnn/). Nested mode searches near its preset
    (results/universal/): a beta 5x the preset's kept new tasks from being learned, one 10x below let
    them forget, and the universal loss's weight trades the universal network against the tasks' own."""
    if cfg.target != "mlp" and cfg.interval_mode != "relaxed":
        low, high = cfg.gamma / 4, cfg.gamma * 4
    elif cfg.embedding_mode == "nested":
        return {"gamma": _log(cfg.gamma / 4, cfg.gamma * 2), **_embeddings(cfg), "beta": _log(cfg.beta / 3, cfg.beta * 3),
                "universal_weight": {"type": "uniform", "low": 0.1, "high": 1.0}, **_lr(cfg)}
    else:
        low, high = cfg.gamma / 20, cfg.gamma * 5
    return {"gamma": _log(low, high), **_embeddings(cfg), **_lr(cfg)}


METHODS: Dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("hyperinterval", "interval task embeddings, worst-case loss over the weight box (the paper's method)",
               "hinterval.methods.hyperinterval:HyperIntervalMethod", _hyperinterval_space,
               certifies=True),
    MethodInfo("hnet", "task embeddings without intervals (hypernetwork continual learning, gamma 0)",
               "hinterval.methods.hyperinterval:HyperIntervalMethod", lambda c: {**_embeddings(c), **_lr(c)}),
    MethodInfo("finetune", "one network trained task after task, nothing kept (the forgetting floor)",
               "hinterval.methods.finetune:FinetuneMethod", _lr),
    MethodInfo("joint", "one network trained on all tasks at once (the ceiling; not continual)",
               "hinterval.methods.joint:JointMethod", _lr),
    MethodInfo("intercontinet", "weight intervals trained directly, without a hypernetwork (InterContiNet)",
               "hinterval.methods.intercontinet:InterContiNetMethod",
               lambda c: {"intercontinet_radius": _log(c.intercontinet_radius / 10, c.intercontinet_radius * 10), **_lr(c)},
               certifies=True),
    MethodInfo("ewc", "elastic weight consolidation (a quadratic penalty on important weights)",
               "hinterval.methods.ewc:EWCMethod",
               lambda c: {"ewc_lambda": _log(c.ewc_lambda / 10, c.ewc_lambda * 10), **_lr(c)}),
)}
METHOD_NAMES = tuple(METHODS)


def build_method(cfg: "ExperimentConfig", benchmark: "Benchmark", target: "TargetNetwork") -> "ContinualMethod":
    """Instantiate ``cfg.method`` for ``benchmark`` with the functional ``target``."""
    module, _, cls = METHODS[cfg.method].builder.partition(":")
    return getattr(importlib.import_module(module), cls)(cfg, benchmark, target)
