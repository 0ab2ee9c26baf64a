"""Functional MLP target network with ReLU hidden layers."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor

from hinterval.intervals import interval_layer, interval_relu
from hinterval.targets.base import TargetNetwork, check_widths

MLP_INTERVAL_MODES = ("sound", "rump")


class MLPTarget(TargetNetwork):
    """``in -> hidden... -> num_classes`` with ReLU; inputs are flattened.

    Args:
        in_features: input size after flattening.
        hidden: hidden widths, e.g. ``(1000, 1000)`` for Permuted MNIST.
        num_classes: output logits ``C``.
        interval_mode: ``"sound"`` (exact box per layer) or ``"rump"`` (sound, Rump's product on
            every layer: two matrix products per layer instead of four, slightly wider boxes).
    """

    def __init__(self, *, in_features: int, hidden: Sequence[int], num_classes: int, interval_mode: str = "sound"):
        check_widths([in_features, *hidden, num_classes], "MLP")
        if interval_mode not in MLP_INTERVAL_MODES:
            raise ValueError(f"MLP interval_mode must be one of {MLP_INTERVAL_MODES} ('relaxed' is for CNN targets), "
                             f"got {interval_mode!r}")
        self.interval_mode = interval_mode
        self.widths = [int(in_features), *map(int, hidden), int(num_classes)]
        self.num_classes = int(num_classes)
        self.param_shapes = []
        for a, b in zip(self.widths[:-1], self.widths[1:]):
            self.param_shapes += [(b, a), (b,)]

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        params = self.unflatten(weights)
        h = x.reshape(x.shape[0], -1)
        n = len(params) // 2
        for i in range(n):
            h = F.linear(h, params[2 * i], params[2 * i + 1])
            if i < n - 1:
                h = F.relu(h)
        return h

    def forward_interval(self, x: Tensor, w_centre: Tensor, w_radius: Optional[Tensor], *,
                         w_middle: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        # no batch norm: w_middle is not needed
        pc = self.unflatten(w_centre)
        pr = self.unflatten(w_radius) if w_radius is not None else [None] * len(pc)
        h_c, h_r = x.reshape(x.shape[0], -1), None
        n = len(pc) // 2
        for i in range(n):
            # The first layer sees a point input (exact either way), later ones ReLU outputs >= 0:
            # exact non-negative rule in "sound" mode, Rump's product in "rump" mode.
            h_c, h_r = interval_layer(h_c, h_r, pc[2 * i], pr[2 * i], pc[2 * i + 1], pr[2 * i + 1], F.linear,
                                      nonneg_input=i > 0 and self.interval_mode == "sound")
            if i < n - 1:
                h_c, h_r = interval_relu(h_c, h_r)
        if h_r is None:
            h_r = h_c.new_zeros(h_c.shape)
        return h_c, h_r
