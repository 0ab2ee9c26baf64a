"""Functional target networks: they own no parameters and run on weights they are given."""
from hinterval.targets.base import TargetNetwork
from hinterval.targets.mlp import MLPTarget
from hinterval.targets.resnet import ResNet18Target
from hinterval.targets.alexnet import AlexNetTarget

__all__ = ["TargetNetwork", "MLPTarget", "ResNet18Target", "AlexNetTarget"]
