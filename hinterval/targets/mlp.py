"""Functional MLP target network with ReLU hidden layers."""
from __future__ import annotations

from typing import Any, Sequence

from hinterval.targets.base import check_widths
from hinterval.targets.executors import Executor, ExecutorTarget, linear_relu_stack


class MLPTarget(ExecutorTarget):
    """``in -> hidden... -> num_classes`` with ReLU; inputs are flattened.

    Runs through the same executors as the CNNs' linear layers: the first layer sees a point
    input (exact either way), later ones ReLU outputs (exact non-negative rule in ``"sound"``
    mode, Rump's product in ``"rump"`` mode).

    Args:
        in_features: input size after flattening.
        hidden: hidden widths, e.g. ``(1000, 1000)`` for Permuted MNIST.
        num_classes: output logits ``C``.
        interval_mode: ``"sound"`` (exact box per layer) or ``"rump"`` (sound, Rump's product on
            every layer: two matrix products per layer instead of four, slightly wider boxes).
    """

    interval_modes = ("sound", "rump")

    def __init__(self, *, in_features: int, hidden: Sequence[int], num_classes: int, interval_mode: str = "sound"):
        check_widths([in_features, *hidden, num_classes], "MLP")
        super().__init__(interval_mode=interval_mode)
        self.widths = [int(in_features), *map(int, hidden), int(num_classes)]
        self.num_classes = int(num_classes)
        self._layers = [(self._add(b, a), self._add(b)) for a, b in zip(self.widths[:-1], self.widths[1:])]

    def _run(self, ex: Executor[Any], h: Any) -> Any:
        return linear_relu_stack(ex, ex.flatten(h), self._layers)
