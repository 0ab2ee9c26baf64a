"""Slim functional ResNet-18 target with point, sound-interval and relaxed modes.

Architecture (the reference's "ResNet-18 for small images", re-derived from its parameter
counts, not copied): a 3x3 stride-1 stem convolution (no max pooling), four groups of
``blocks`` BasicBlocks (two 3x3 convolutions each; the first block of groups 2-4 has stride 2),
projection shortcuts (1x1 convolution + batch norm) wherever the shape changes, identity
shortcuts elsewhere, batch norm with batch statistics after every convolution (no running
statistics: nothing is stored per task), convolutions without bias, average pooling of the
last feature map down to 2x2 (a 2x2 pool at 32x32, 4x4 at 64x64), flattening, and one linear
head with bias.

Parameter counts with the paper widths ``(16, 16, 32, 64, 128)``:

=====================================  ===========  ========  ===========
use                                    input        classes   parameters
=====================================  ===========  ========  ===========
Split CIFAR-100 (10 x 10-way)          3 x 32 x 32  10        705,306
32 x 32, 20-way head                   3 x 32 x 32  20        710,436
TinyImageNet (40 x 5-way)              3 x 64 x 64  5         702,741
=====================================  ===========  ========  ===========

The convolutional trunk holds 700,176 weights; the head sees ``4 * 128 = 512`` features at any
input size. The reference implementation's two counts (705,306 and 710,436) are matched exactly
by a 32x32 input with a 10-way and a 20-way head (``700,176 + 513 * C``). At 64x64 the reference
pools 2x2 only, so its head sees 2048 features; here the pool grows with the input (as
torchvision's ResNet pools globally), because a sound box over a 2048-wide head at 64x64 was 22
times the logits and never opened (``results/cnn/``).
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from hinterval.targets.base import check_widths
from hinterval.targets.conv_base import ConvTarget
from hinterval.targets.executors import Executor

PAPER_WIDTHS = (16, 16, 32, 64, 128)


class ResNet18Target(ConvTarget):
    """Functional slim ResNet-18.

    Args:
        num_classes: output logits ``C``.
        in_channels: input channels.
        widths: stem width and the four group widths (5 numbers), paper: ``(16, 16, 32, 64, 128)``.
        blocks: BasicBlocks per group (4 numbers), ResNet-18: ``(2, 2, 2, 2)``.
        image_size: input side length ``S`` (square images); it must be at least 8.
        interval_mode: ``"sound"``, ``"rump"`` or ``"relaxed"`` (see :mod:`hinterval.targets.executors`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = PAPER_WIDTHS,
        image_size: int = 32,
        *,
        blocks: Sequence[int] = (2, 2, 2, 2),
        interval_mode: str = "sound",
    ):
        super().__init__(interval_mode=interval_mode)
        widths, blocks = [int(w) for w in widths], [int(b) for b in blocks]
        if len(widths) != 5 or len(blocks) != 4:
            raise ValueError(f"ResNet needs 5 widths and 4 block counts, got {widths} and {blocks}")
        check_widths([num_classes, in_channels, *widths, *blocks], "ResNet")
        if image_size < 8:
            raise ValueError(f"ResNet image size must be >= 8 (three stride-2 groups), got {image_size}")
        self.num_classes, self.in_channels, self.image_size = int(num_classes), int(in_channels), int(image_size)
        self.widths, self.blocks = tuple(widths), tuple(blocks)

        self._stem = (self._add(widths[0], in_channels, 3, 3), *self._add_bn(widths[0]))
        self._blocks: List[Tuple[Any, ...]] = []
        prev, size = widths[0], image_size
        for g in range(4):
            out = widths[g + 1]
            for j in range(blocks[g]):
                stride = 2 if (g > 0 and j == 0) else 1
                conv1 = (self._add(out, prev, 3, 3), *self._add_bn(out))
                conv2 = (self._add(out, out, 3, 3), *self._add_bn(out))
                proj = None
                if stride != 1 or prev != out:
                    proj = (self._add(out, prev, 1, 1), *self._add_bn(out))
                self._blocks.append((stride, conv1, conv2, proj))
                size = (size - 1) // stride + 1
                prev = out
        # pool the last feature map down to 2x2 whatever the input size, so the head always sees
        # 4 * width features (512 with the paper widths): a 64x64 input does not quadruple the head
        self._pool = max(1, size // 2)
        self.num_features = prev * (size // self._pool) ** 2
        self._head = (self._add(self.num_classes, self.num_features), self._add(self.num_classes))

    def _run(self, ex: Executor[Any], h: Any) -> Any:
        w, g, b = self._stem
        h = ex.relu(ex.bn(ex.conv(h, w, None, 1, 1), g, b))
        for stride, (w1, g1, b1), (w2, g2, b2), proj in self._blocks:
            shortcut = h
            if proj is not None:
                wp, gp, bp = proj
                shortcut = ex.bn(ex.conv(h, wp, None, stride, 0), gp, bp)
            out = ex.relu(ex.bn(ex.conv(h, w1, None, stride, 1), g1, b1))
            out = ex.bn(ex.conv(out, w2, None, 1, 1), g2, b2)
            h = ex.relu(ex.add(out, shortcut))
        if self._pool > 1:
            h = ex.avg_pool(h, self._pool)
        return ex.linear(ex.flatten(h), *self._head)
