"""Functional target networks: they own no parameters and run on weights they are given."""
from hinterval.targets.base import TargetNetwork
from hinterval.targets.mlp import MLPTarget

__all__ = ["TargetNetwork", "MLPTarget"]
