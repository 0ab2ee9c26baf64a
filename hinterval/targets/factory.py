"""Build the target network a config asks for, sized for a benchmark."""
from __future__ import annotations

import math

from hinterval.config import ExperimentConfig
from hinterval.data.base import Benchmark
from hinterval.errors import UserError
from hinterval.targets.base import TargetNetwork
from hinterval.targets.mlp import MLPTarget


def build_target(cfg: ExperimentConfig, benchmark: Benchmark) -> TargetNetwork:
    """MLP for flat inputs; CNN targets for image benchmarks."""
    if cfg.target == "mlp":
        return MLPTarget(in_features=math.prod(benchmark.input_shape), hidden=cfg.target_hidden,
                         num_classes=benchmark.classes_per_task)
    raise UserError(f"target {cfg.target!r} is not available for benchmark {benchmark.name!r}")
