"""Shared machinery of the functional CNN targets (ResNet-18, AlexNet).

A CNN target is an :class:`~hinterval.targets.executors.ExecutorTarget`: it writes its
architecture once, as ``_run``, against the executor protocol, and runs in the point, sound,
rump and relaxed modes of :mod:`hinterval.targets.executors`. What the CNNs add is batch norm
(affine scale and shift per channel, batch statistics, nothing stored per task) and the relaxed
mode.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from hinterval.targets.executors import ExecutorTarget


class ConvTarget(ExecutorTarget):
    """Functional CNN target: subclasses build ``param_shapes`` with :meth:`_add` and
    :meth:`_add_bn` and write :meth:`_run` once against the executor protocol.
    ``forward(x, weights)`` maps ``(N, in_channels, S, S)`` images and ``(P,)`` weights to
    ``(N, C)`` logits; ``forward_interval`` returns the logit box (centre, radius).

    Args:
        interval_mode: ``"sound"`` (default; exact box of every layer given its input box),
            ``"rump"`` (sound too; Rump's midpoint-radius product on every layer: 2 convolutions
            per layer instead of 4, slightly wider boxes) or ``"relaxed"`` (fast, NOT sound).
    """

    def __init__(self, *, interval_mode: str = "sound"):
        super().__init__(interval_mode=interval_mode)
        self._bn_scale_ids: List[int] = []

    def _add_bn(self, channels: int) -> Tuple[int, int]:
        """Batch-norm affine scale and shift, ``(C,)`` each; returns their indices."""
        self.has_batch_norm = True
        g = self._add(channels)
        self._bn_scale_ids.append(g)
        return g, self._add(channels)

    def init_weights(self, generator: Optional[torch.Generator] = None) -> Tensor:
        """Kaiming-uniform conv/linear weights, zero biases and shifts, unit batch-norm scales."""
        flat = super().init_weights(generator)
        parts = list(self.unflatten(flat))
        for i in self._bn_scale_ids:
            parts[i].fill_(1.0)
        return flat


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or pooling."""
    return (size + 2 * padding - kernel) // stride + 1
