"""Build the target network a config asks for, sized for a benchmark."""
from __future__ import annotations

import math

from hinterval.config import ExperimentConfig
from hinterval.data.base import Benchmark
from hinterval.errors import UserError
from hinterval.targets.base import TargetNetwork
from hinterval.targets.executors import ExecutorTarget
from hinterval.targets.mlp import MLPTarget


def _image_shape(benchmark: Benchmark, target: str) -> tuple:
    """``(C, H, W)`` of a benchmark's inputs, or a clear error for flat (MLP-style) inputs."""
    shape = tuple(benchmark.input_shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise UserError(f"target {target!r} needs square image inputs (C, H, W); benchmark "
                        f"{benchmark.name!r} gives input shape {shape} (use --target mlp)")
    return shape


def build_target(cfg: ExperimentConfig, benchmark: Benchmark) -> TargetNetwork:
    """MLP for flat inputs, CNN targets for image benchmarks; boxed in the config's interval scope."""
    target = _build_network(cfg, benchmark)
    try:
        target.set_interval_scope(cfg.interval_scope)
    except ValueError as exc:
        raise UserError(f"--interval-scope {cfg.interval_scope}: {exc}") from None
    return target


def _build_network(cfg: ExperimentConfig, benchmark: Benchmark) -> ExecutorTarget:
    if cfg.target == "mlp":
        if cfg.interval_mode == "relaxed":
            raise UserError("--interval-mode relaxed exists for the CNN targets only; the MLP target takes "
                            "sound (default) or rump")
        return MLPTarget(in_features=math.prod(benchmark.input_shape), hidden=cfg.target_hidden,
                         num_classes=benchmark.classes_per_task, interval_mode=cfg.interval_mode)
    if cfg.target in ("resnet18", "alexnet"):
        from hinterval.targets.alexnet import AlexNetTarget
        from hinterval.targets.resnet import ResNet18Target

        c, h, _ = _image_shape(benchmark, cfg.target)
        cls = ResNet18Target if cfg.target == "resnet18" else AlexNetTarget
        try:
            return cls(benchmark.classes_per_task, in_channels=c, image_size=h, interval_mode=cfg.interval_mode)
        except ValueError as exc:
            raise UserError(f"target {cfg.target!r} does not fit benchmark {benchmark.name!r}: {exc}") from None
    raise UserError(f"target {cfg.target!r} is not available for benchmark {benchmark.name!r}")
