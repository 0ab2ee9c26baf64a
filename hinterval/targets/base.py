"""Interface of functional target networks (hypnettorch's ``no_weights`` pattern).

A target network publishes ``param_shapes``; the hypernetwork emits one flat vector of
``num_params`` numbers per task, which :meth:`TargetNetwork.unflatten` splits into tensors.
``forward`` is the point network; ``forward_interval`` takes interval weights in centre/radius
form and returns a box that contains the logits of every weight vector inside the weight box.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor


class TargetNetwork:
    """Base class: subclasses set ``param_shapes`` and implement the two forwards."""

    param_shapes: List[Tuple[int, ...]]
    num_classes: int
    #: which layers carry the weight box (see :meth:`ExecutorTarget.set_interval_scope`)
    interval_scope: str = "all"

    def boxed(self, flat: Tensor) -> Tensor:
        """The entries of a flat weight vector inside the interval scope (here: all of them)."""
        return flat

    #: whether the interval scope covers every layer
    boxes_every_layer: bool = True

    def scope_text(self) -> str:
        """What a certified figure covers, in words."""
        return "every weight of every layer"

    @property
    def num_params(self) -> int:
        """Total number of weights ``P``."""
        return sum(math.prod(s) for s in self.param_shapes)

    def unflatten(self, flat: Tensor) -> List[Tensor]:
        """Split a flat ``(P,)`` vector into tensors of ``param_shapes`` (views, no copy)."""
        sizes = [math.prod(s) for s in self.param_shapes]
        return [p.view(s) for p, s in zip(torch.split(flat, sizes), self.param_shapes)]

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """Logits ``(N, C)`` of inputs ``x`` with point weights ``(P,)``."""
        raise NotImplementedError

    def forward_interval(self, x: Tensor, w_centre: Tensor, w_radius: Optional[Tensor], *,
                         w_middle: Optional[Tensor] = None, rounding_safe: bool = False) -> Tuple[Tensor, Tensor]:
        """Logit box ``(centre, radius)``, each ``(N, C)``, for weights in ``w_centre ± w_radius``.

        ``w_middle`` (the hypernetwork's image of the embedding centre) supplies the batch-norm
        statistics of networks that have batch norm; others ignore it. ``rounding_safe``: the box
        also bounds the floating-point rounding of its own computation (what a certificate needs).
        """
        raise NotImplementedError

    def forward_with_interval(self, x: Tensor, w_middle: Tensor, w_centre: Tensor,
                              w_radius: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Middle logits ``forward(x, w_middle)`` and the box of
        ``forward_interval(x, w_centre, w_radius, w_middle=w_middle)`` in one call (the training
        step needs both). Targets whose interval forward already runs the middle network (the
        batch-norm statistics branch) return that instead of computing it twice.

        Returns:
            ``(middle_logits, centre, radius)``, each ``(N, C)``.
        """
        c, r = self.forward_interval(x, w_centre, w_radius, w_middle=w_middle)
        return self.forward(x, w_middle), c, r

    def init_weights(self, generator: Optional[torch.Generator] = None) -> Tensor:
        """A flat weight vector for methods that train the target directly: LeCun-uniform weights
        (``U(-b, b)``, ``b = sqrt(3 / fan_in)``: variance ``1 / fan_in``, i.e. ``torch.nn.init``'s
        Kaiming-uniform with the gain of a linear layer) and zero biases."""
        parts = []
        for shape in self.param_shapes:
            t = torch.zeros(shape)
            if len(shape) > 1:
                torch.nn.init.kaiming_uniform_(t, nonlinearity="linear", generator=generator)
            parts.append(t)
        return torch.cat([p.reshape(-1) for p in parts])


def check_widths(widths: Sequence[int], what: str) -> None:
    """Reject empty or non-positive layer widths with a clear message."""
    if any(int(w) <= 0 for w in widths):
        raise ValueError(f"{what} widths must be positive integers, got {list(widths)}")
