"""AlexNet-like functional target for Split CIFAR-10.

Architecture (the common "AlexNet for CIFAR-10" layout, matching the reference implementation's
parameter count, 23,239,490):

====  ==========================================  =====================
#     layer                                       32x32 input -> output
====  ==========================================  =====================
1     conv 3x3, stride 2, pad 1, 64 ch; ReLU;     64 x 8 x 8
      max-pool 2
2     conv 3x3, pad 1, 192 ch; ReLU; max-pool 2  192 x 4 x 4
3     conv 3x3, pad 1, 384 ch; ReLU              384 x 4 x 4
4     conv 3x3, pad 1, 256 ch; ReLU              256 x 4 x 4
5     conv 3x3, pad 1, 256 ch; ReLU; max-pool 2  256 x 2 x 2
6-8   FC 1024 -> 4096 -> 4096 -> C (ReLU between)
====  ==========================================  =====================

All layers have biases; with ``C = 2`` (Split CIFAR-10, 5 x 2-way) that is exactly
**23,239,490** parameters (2,251,584 convolutional, 20,979,712 in the two hidden FC layers,
8,194 in the head). Dropout is left out (a functional target has no train/eval state).
``batch_norm=True`` adds batch norm (batch statistics, affine) after each convolution and drops
the then-redundant convolution biases: 2 x 1,152 BN parameters - 1,152 biases = +1,152.
"""
from __future__ import annotations

from typing import Any, Sequence

from hinterval.targets.base import check_widths
from hinterval.targets.conv_base import ConvTarget, conv_out
from hinterval.targets.executors import Executor, linear_relu_stack

PAPER_CHANNELS = (64, 192, 384, 256, 256)
PAPER_HIDDEN = (4096, 4096)


class AlexNetTarget(ConvTarget):
    """Functional AlexNet-like CNN.

    Args:
        num_classes: output logits ``C`` (2 for Split CIFAR-10).
        in_channels: input channels.
        image_size: input side length ``S`` (square), at least 16.
        channels: widths of the five convolutions.
        hidden: widths of the hidden fully-connected layers.
        batch_norm: batch norm after every convolution (off by default: the paper's parameter count has none).
        interval_mode: ``"sound"``, ``"rump"`` or ``"relaxed"`` (see :mod:`hinterval.targets.executors`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        *,
        channels: Sequence[int] = PAPER_CHANNELS,
        hidden: Sequence[int] = PAPER_HIDDEN,
        batch_norm: bool = False,
        interval_mode: str = "sound",
    ):
        super().__init__(interval_mode=interval_mode)
        channels, hidden = [int(c) for c in channels], [int(h) for h in hidden]
        if len(channels) != 5:
            raise ValueError(f"AlexNet needs 5 conv widths, got {channels}")
        check_widths([num_classes, in_channels, *channels, *hidden], "AlexNet")
        size = conv_out(image_size, 3, 2, 1) // 2 // 2 // 2
        if size < 1:
            raise ValueError(f"AlexNet image size must be >= 16 (stride 2 and three 2x2 pools), got {image_size}")
        self.num_classes, self.in_channels, self.image_size = int(num_classes), int(in_channels), int(image_size)
        self.channels, self.hidden, self.batch_norm = tuple(channels), tuple(hidden), bool(batch_norm)

        self._convs = []
        prev = in_channels
        for out in channels:
            w = self._add(out, prev, 3, 3)
            b = None if batch_norm else self._add(out)
            bn = self._add_bn(out) if batch_norm else None
            self._convs.append((w, b, bn))
            prev = out
        self.num_features = prev * size * size
        self._fcs = []
        prev = self.num_features
        for out in [*hidden, self.num_classes]:
            self._fcs.append((self._add(out, prev), self._add(out)))
            prev = out

    def _run(self, ex: Executor[Any], h: Any) -> Any:
        for i, (w, b, bn) in enumerate(self._convs):
            stride = 2 if i == 0 else 1
            h = ex.conv(h, w, b, stride, 1)
            if bn is not None:
                h = ex.bn(h, *bn)
            h = ex.relu(h)
            if i in (0, 1, 4):
                h = ex.max_pool(h, 2)
        return linear_relu_stack(ex, ex.flatten(h), self._fcs)
