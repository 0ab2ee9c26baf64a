"""Continual-learning methods behind one interface (:class:`ContinualMethod`)."""
from __future__ import annotations

from hinterval.config import ExperimentConfig
from hinterval.data.base import Benchmark
from hinterval.errors import UserError
from hinterval.methods.base import ContinualMethod
from hinterval.targets.base import TargetNetwork


def build_method(cfg: ExperimentConfig, benchmark: Benchmark, target: TargetNetwork) -> ContinualMethod:
    """Instantiate ``cfg.method`` for ``benchmark`` with the functional ``target``."""
    if cfg.method in ("hyperinterval", "hnet"):
        from hinterval.methods.hyperinterval import HyperIntervalMethod

        return HyperIntervalMethod(cfg, benchmark, target)
    if cfg.method == "finetune":
        from hinterval.methods.finetune import FinetuneMethod

        return FinetuneMethod(cfg, benchmark, target)
    if cfg.method == "joint":
        from hinterval.methods.joint import JointMethod

        return JointMethod(cfg, benchmark, target)
    if cfg.method == "ewc":
        from hinterval.methods.ewc import EWCMethod

        return EWCMethod(cfg, benchmark, target)
    if cfg.method == "intercontinet":
        from hinterval.methods.intercontinet import InterContiNetMethod

        return InterContiNetMethod(cfg, benchmark, target)
    raise UserError(f"method {cfg.method!r} is not available in this build")


__all__ = ["ContinualMethod", "build_method"]
