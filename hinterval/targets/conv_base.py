"""Shared machinery of the functional CNN targets (ResNet-18, AlexNet).

A CNN target writes its architecture ONCE, as :meth:`ConvTarget._run`, against a small
*executor* interface (``conv``, ``bn``, ``relu``, ``add``, pools, ``flatten``, ``linear``) that
refers to parameters by their index in ``param_shapes``. Three executors give the three modes:

* :class:`PointExecutor` -- the ordinary network (hot path: one ordinary forward). Batch norm
  uses the batch statistics (no running statistics are stored per task), or statistics it is
  given (``bn_stats``), and it can record the statistics it used.
* :class:`SoundExecutor` -- interval bound propagation that is sound (spec §2.1). The value
  carried between layers is an interval ``(c, r)`` plus the *middle branch* ``m``: the point
  activation of the middle weights (``w_middle``, default: the centre weights). Every batch
  norm normalises the interval with the middle branch's batch statistics, so the guarantee
  reads: for every weight vector in the box (and input in the input box), the network whose
  batch norms use those fixed middle-branch statistics has logits inside the returned box.
  ``ConvTarget.forward(x, w, bn_stats=ConvTarget.bn_statistics(x_c, w_middle))`` is exactly that
  network, which is how the property tests check soundness.
* :class:`RelaxedExecutor` -- the reference implementation's fast mode ("relaxed", NOT sound):
  three ordinary passes with the lower, middle and upper weights, batch norm with the middle
  pass's statistics, and after every affine layer (convolution, linear, batch norm) an
  elementwise sort of the three results; the output box is [smallest, largest] result.

Everything is plain tensor code (reductions for batch-norm statistics instead of
``F.batch_norm``), so all modes run under ``torch.func.vmap`` over per-task weights.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from hinterval.intervals import (
    BN_EPS,
    batch_norm_point,
    batch_norm_stats,
    from_bounds,
    interval_add,
    interval_avg_pool2d,
    interval_batch_norm,
    interval_conv2d_nonneg,
    interval_layer,
    interval_max_pool2d,
    interval_product_nonneg_cr,
    interval_relu,
)
from hinterval.targets.base import TargetNetwork

INTERVAL_MODES = ("sound", "rump", "relaxed")
BNStats = List[Tuple[Tensor, Tensor]]


# --- executors ------------------------------------------------------------------------------

class PointExecutor:
    """Ordinary forward on point weights.

    Args:
        params: the unflattened weights.
        bn_stats: per batch-norm layer ``(mean, var)`` to use instead of the batch statistics.
        record: keep the statistics used in :attr:`recorded`.
    """

    def __init__(self, params: Sequence[Tensor], bn_stats: Optional[BNStats] = None, record: bool = False):
        self.p, self.bn_stats, self.record = params, bn_stats, record
        self.recorded: BNStats = []
        self._bn_index = 0

    def _get(self, i: Optional[int]) -> Optional[Tensor]:
        return None if i is None else self.p[i]

    def input(self, x: Tensor, x_radius: Optional[Tensor] = None) -> Tensor:
        return x

    def conv(self, h: Tensor, w: int, b: Optional[int], stride: int, padding: int, nonneg: bool) -> Tensor:
        return F.conv2d(h, self.p[w], self._get(b), stride=stride, padding=padding)

    def linear(self, h: Tensor, w: int, b: Optional[int], nonneg: bool) -> Tensor:
        return F.linear(h, self.p[w], self._get(b))

    def bn(self, h: Tensor, g: int, b: int) -> Tensor:
        if self.bn_stats is not None:
            mean, var = self.bn_stats[self._bn_index]
        else:
            mean, var = batch_norm_stats(h)
        self._bn_index += 1
        if self.record:
            self.recorded.append((mean, var))
        return batch_norm_point(h, mean, var, self.p[g], self.p[b])

    def relu(self, h: Tensor) -> Tensor:
        return F.relu(h)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def max_pool(self, h: Tensor, k: int, s: Optional[int] = None, p: int = 0) -> Tensor:
        return F.max_pool2d(h, k, s if s is not None else k, p)

    def avg_pool(self, h: Tensor, k: int) -> Tensor:
        return F.avg_pool2d(h, k)

    def flatten(self, h: Tensor) -> Tensor:
        return h.flatten(1)

    def output(self, h: Tensor) -> Tensor:
        return h


class _IV:
    """Interval value between layers: centre, radius (``None`` = point) and the middle branch."""

    __slots__ = ("c", "r", "m")

    def __init__(self, c: Tensor, r: Optional[Tensor], m: Optional[Tensor]):
        self.c, self.r, self.m = c, r, m


class SoundExecutor:
    """Sound interval forward (see the module docstring).

    Args:
        centre, radius: unflattened weight box (``radius`` entries may be ``None``).
        middle: unflattened middle weights for the batch-norm statistics branch.
        track_middle: carry the middle branch (only needed when the network has batch norm).
    """

    def __init__(self, centre: Sequence[Tensor], radius: Sequence[Optional[Tensor]], middle: Sequence[Tensor],
                 track_middle: bool = True, exact_nonneg: bool = True):
        self.pc, self.pr, self.pm = centre, radius, middle
        self.track_middle = track_middle
        self.exact_nonneg = exact_nonneg  # False: Rump's product everywhere ("rump" mode)

    def _c(self, i: Optional[int]) -> Optional[Tensor]:
        return None if i is None else self.pc[i]

    def _r(self, i: Optional[int]) -> Optional[Tensor]:
        return None if i is None else self.pr[i]

    def _m(self, i: Optional[int]) -> Optional[Tensor]:
        return None if i is None else self.pm[i]

    def input(self, x: Tensor, x_radius: Optional[Tensor] = None) -> _IV:
        return _IV(x, x_radius, x if self.track_middle else None)

    def conv(self, h: _IV, w: int, b: Optional[int], stride: int, padding: int, nonneg: bool) -> _IV:
        wc, wr = self.pc[w], self.pr[w]
        if nonneg and self.exact_nonneg and h.r is not None and wr is not None:
            # Input after ReLU: the exact non-negative rule, fused into one convolution.
            c, r = interval_conv2d_nonneg(h.c, h.r, wc, wr, stride=stride, padding=padding)
            c, r = _add_bias(c, r, self._c(b), self._r(b))
        else:
            # Point input (exact), input of unknown sign or "rump" mode (Rump's midpoint-radius product).
            op = partial(F.conv2d, stride=stride, padding=padding)
            c, r = interval_layer(h.c, h.r, wc, wr, self._c(b), self._r(b), op)
        m = None
        if h.m is not None:
            m = F.conv2d(h.m, self.pm[w], self._m(b), stride=stride, padding=padding)
        return _IV(c, r, m)

    def linear(self, h: _IV, w: int, b: Optional[int], nonneg: bool) -> _IV:
        wc, wr = self.pc[w], self.pr[w]
        if nonneg and self.exact_nonneg and h.r is not None and wr is not None:
            c, r = interval_product_nonneg_cr(h.c, h.r, wc, wr, F.linear)
            c, r = _add_bias(c, r, self._c(b), self._r(b))
        else:
            c, r = interval_layer(h.c, h.r, wc, wr, self._c(b), self._r(b), F.linear)
        m = None if h.m is None else F.linear(h.m, self.pm[w], self._m(b))
        return _IV(c, r, m)

    def bn(self, h: _IV, g: int, b: int) -> _IV:
        if h.m is None:
            raise RuntimeError("batch norm in interval mode needs the middle branch (track_middle=True)")
        mean, var = batch_norm_stats(h.m)
        c, r = interval_batch_norm(h.c, h.r, mean, var, self.pc[g], self.pr[g], self.pc[b], self.pr[b])
        return _IV(c, r, batch_norm_point(h.m, mean, var, self.pm[g], self.pm[b]))

    def relu(self, h: _IV) -> _IV:
        c, r = interval_relu(h.c, h.r)
        return _IV(c, r, None if h.m is None else F.relu(h.m))

    def add(self, a: _IV, b: _IV) -> _IV:
        c, r = interval_add(a.c, a.r, b.c, b.r)
        return _IV(c, r, None if a.m is None else a.m + b.m)

    def max_pool(self, h: _IV, k: int, s: Optional[int] = None, p: int = 0) -> _IV:
        s = k if s is None else s
        c, r = interval_max_pool2d(h.c, h.r, k, s, p)
        return _IV(c, r, None if h.m is None else F.max_pool2d(h.m, k, s, p))

    def avg_pool(self, h: _IV, k: int) -> _IV:
        c, r = interval_avg_pool2d(h.c, h.r, k)
        return _IV(c, r, None if h.m is None else F.avg_pool2d(h.m, k))

    def flatten(self, h: _IV) -> _IV:
        return _IV(h.c.flatten(1), None if h.r is None else h.r.flatten(1), None if h.m is None else h.m.flatten(1))

    def output(self, h: _IV) -> Tuple[Tensor, Tensor]:
        return h.c, (torch.zeros_like(h.c) if h.r is None else h.r)


class RadiusProfile(SoundExecutor):
    """A sound executor that records, after every operation, how wide the interval is relative
    to its values: ``mean(radius) / mean(|centre|)`` of the activations (0 = a point). Used by
    :meth:`ConvTarget.radius_profile` to show where a box grows through a deep network."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rows: List[Tuple[str, float]] = []
        self._counts: dict = {}

    def _log(self, kind: str, h: _IV) -> _IV:
        n = self._counts[kind] = self._counts.get(kind, 0) + 1
        rel = 0.0 if h.r is None else float(h.r.mean() / h.c.abs().mean().clamp_min(1e-30))
        self.rows.append((f"{kind}{n}", rel))
        return h

    def conv(self, h, w, b, stride, padding, nonneg):  # type: ignore[override]
        return self._log("conv", super().conv(h, w, b, stride, padding, nonneg))

    def linear(self, h, w, b, nonneg):  # type: ignore[override]
        return self._log("linear", super().linear(h, w, b, nonneg))

    def bn(self, h, g, b):  # type: ignore[override]
        return self._log("bn", super().bn(h, g, b))

    def relu(self, h):  # type: ignore[override]
        return self._log("relu", super().relu(h))

    def add(self, a, b):  # type: ignore[override]
        return self._log("add", super().add(a, b))

    def max_pool(self, h, k, s=None, p=0):  # type: ignore[override]
        return self._log("maxpool", super().max_pool(h, k, s, p))

    def avg_pool(self, h, k):  # type: ignore[override]
        return self._log("avgpool", super().avg_pool(h, k))


def _add_bias(c: Tensor, r: Optional[Tensor], b_c: Optional[Tensor], b_r: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """Add an interval bias ``(C,)`` along dimension 1 of an interval ``(N, C, ...)``."""
    if b_c is None:
        return c, r
    shape = [1, -1] + [1] * (c.dim() - 2)
    c = c + b_c.view(shape)
    if b_r is not None:
        r = b_r.view(shape).expand_as(c) if r is None else r + b_r.view(shape)
    return c, r


def _sort3_values(t: Tensor) -> Tensor:
    """``[min, median, max]`` of the three branches (dimension 1) by a 3-element sorting network:
    pure selections (no arithmetic), so the values equal ``torch.sort``'s exactly."""
    a, b, c = t.unbind(1)
    lo_ab, hi_ab = torch.minimum(a, b), torch.maximum(a, b)
    return torch.stack([torch.minimum(lo_ab, c), torch.maximum(lo_ab, torch.minimum(hi_ab, c)), torch.maximum(hi_ab, c)], 1)


class _Sort3(torch.autograd.Function):
    """Sort of three branches whose backward routes each output's gradient to the input it came
    from (a permutation, like ``torch.sort``'s backward; ties broken by branch order, as a stable
    sort). Forward and backward are a few elementwise passes: ``torch.sort`` over a dimension of
    size 3 (and its scatter backward) cost more than the convolutions on CPU (measured)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(t: Tensor) -> Tuple[Tensor, Tensor]:
        a, b, c = t.unbind(1)
        u8 = torch.uint8
        ranks = torch.stack([(a > b).to(u8) + (a > c).to(u8), (b >= a).to(u8) + (b > c).to(u8),
                             (c >= a).to(u8) + (c >= b).to(u8)], 1)  # position of each branch
        return _sort3_values(t), ranks

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Tensor], output: Tuple[Tensor, Tensor]) -> None:
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _unused: Optional[Tensor]) -> Tensor:
        (ranks,) = ctx.saved_tensors
        return torch.gather(grad, 1, ranks.long())


def _sort3(t: Tensor) -> Tensor:
    """Elementwise sort of the three branches (dimension 1) into ``[min, median, max]``."""
    if torch.is_grad_enabled() and t.requires_grad:
        return _Sort3.apply(t)[0]
    return _sort3_values(t)


class RelaxedExecutor:
    """The reference's fast, NOT sound interval mode: three point passes (lower, middle, upper
    weights) carried as one ``(N, 3, ...)`` tensor, sorted elementwise after every affine layer;
    batch norm uses the middle pass's statistics for all three.

    The three passes share each layer's call: convolutions run as one grouped convolution
    (``groups=3``) over the branch-major channels, linear layers as one batched product.

    Args:
        lower, middle, upper: unflattened weights of the three passes.
    """

    def __init__(self, lower: Sequence[Tensor], middle: Sequence[Tensor], upper: Sequence[Tensor]):
        self.ps = (lower, middle, upper)

    def _stack(self, i: Optional[int], dim: int = 0) -> Optional[Tensor]:
        return None if i is None else torch.stack([p[i] for p in self.ps], dim=dim)

    def input(self, x: Tensor, x_radius: Optional[Tensor] = None) -> Tensor:
        if x_radius is None:
            return torch.stack([x, x, x], dim=1)
        return torch.stack([x - x_radius, x, x + x_radius], dim=1)

    def conv(self, h: Tensor, w: int, b: Optional[int], stride: int, padding: int, nonneg: bool) -> Tensor:
        weight = self._stack(w).flatten(0, 1)  # (3*out, in, k, k)
        bias = None if b is None else self._stack(b).flatten()
        y = F.conv2d(h.flatten(1, 2), weight, bias, stride=stride, padding=padding, groups=3)
        return _sort3(y.unflatten(1, (3, -1)))

    def linear(self, h: Tensor, w: int, b: Optional[int], nonneg: bool) -> Tensor:
        y = torch.einsum("nbf,bof->nbo", h, self._stack(w))
        if b is not None:
            y = y + self._stack(b)
        return _sort3(y)

    def bn(self, h: Tensor, g: int, b: int) -> Tensor:
        mean, var = batch_norm_stats(h[:, 1])
        extra = [1] * (h.dim() - 3)
        scale = (torch.rsqrt(var + BN_EPS) * self._stack(g)).view(1, 3, -1, *extra)
        y = (h - mean.view(1, 1, -1, *extra)) * scale + self._stack(b).view(1, 3, -1, *extra)
        return _sort3(y)

    def relu(self, h: Tensor) -> Tensor:
        return F.relu(h)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def max_pool(self, h: Tensor, k: int, s: Optional[int] = None, p: int = 0) -> Tensor:
        return F.max_pool2d(h.flatten(1, 2), k, s if s is not None else k, p).unflatten(1, (3, -1))

    def avg_pool(self, h: Tensor, k: int) -> Tensor:
        return F.avg_pool2d(h.flatten(1, 2), k).unflatten(1, (3, -1))

    def flatten(self, h: Tensor) -> Tensor:
        return h.flatten(2)

    def output(self, h: Tensor) -> Tuple[Tensor, Tensor]:
        return from_bounds(h[:, 0], h[:, 2])


# --- base class -----------------------------------------------------------------------------

class ConvTarget(TargetNetwork):
    """Functional CNN target: subclasses build ``param_shapes`` with :meth:`_add` and write
    :meth:`_run` once against the executor interface.

    Args:
        interval_mode: ``"sound"`` (default; exact box of every layer given its input box),
            ``"rump"`` (sound too; Rump's midpoint-radius product on every layer: 2 convolutions
            per layer instead of 4, slightly wider boxes) or ``"relaxed"`` (fast, NOT sound).
    """

    has_batch_norm: bool = False

    def __init__(self, *, interval_mode: str = "sound"):
        if interval_mode not in INTERVAL_MODES:
            raise ValueError(f"interval_mode must be one of {INTERVAL_MODES}, got {interval_mode!r}")
        self.interval_mode = interval_mode
        self.param_shapes: List[Tuple[int, ...]] = []
        self._bn_scale_ids: List[int] = []

    def _add(self, *shape: int) -> int:
        """Append a parameter shape; returns its index into the unflattened weight list."""
        self.param_shapes.append(tuple(int(s) for s in shape))
        return len(self.param_shapes) - 1

    def _add_bn(self, channels: int) -> Tuple[int, int]:
        """Batch-norm affine scale and shift, ``(C,)`` each; returns their indices."""
        self.has_batch_norm = True
        g = self._add(channels)
        self._bn_scale_ids.append(g)
        return g, self._add(channels)

    def _run(self, ex: Any, h: Any) -> Any:
        """The architecture, written against the executor interface."""
        raise NotImplementedError

    # --- the three forwards ----------------------------------------------------------------
    def forward(self, x: Tensor, weights: Tensor, *, bn_stats: Optional[BNStats] = None) -> Tensor:
        """Logits of point weights.

        Args:
            x: images ``(N, C, H, W)``.
            weights: flat weights ``(P,)``.
            bn_stats: optional per batch-norm layer ``(mean, var)`` (each ``(C_l,)``) to use
                instead of the batch statistics; see :meth:`bn_statistics`.

        Returns:
            Logits ``(N, num_classes)``.
        """
        ex = PointExecutor(self.unflatten(weights), bn_stats)
        return ex.output(self._run(ex, ex.input(x)))

    def bn_statistics(self, x: Tensor, weights: Tensor) -> BNStats:
        """Batch statistics ``[(mean, var), ...]`` of every batch norm, in execution order, for
        inputs ``x`` ``(N, C, H, W)`` and point weights ``(P,)``. With the middle weights (default
        of :meth:`forward_interval`: the centre) these are the statistics the interval forward
        normalises with."""
        ex = PointExecutor(self.unflatten(weights), record=True)
        self._run(ex, ex.input(x))
        return ex.recorded

    def _sound_executor(self, pc: Sequence[Tensor], pr: Sequence[Optional[Tensor]], pm: Sequence[Tensor], *,
                        track_middle: bool) -> "SoundExecutor":
        """The sound executor of this target's mode: exact non-negative rule ("sound") or Rump ("rump")."""
        return SoundExecutor(pc, pr, pm, track_middle=track_middle, exact_nonneg=self.interval_mode == "sound")

    def forward_interval(
        self,
        x: Tensor,
        w_centre: Tensor,
        w_radius: Optional[Tensor],
        *,
        w_middle: Optional[Tensor] = None,
        x_radius: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Logit box for all weights in ``w_centre ± w_radius`` (and inputs in ``x ± x_radius``).

        Args:
            x: images ``(N, C, H, W)`` (the input box centre).
            w_centre, w_radius: weight box ``(P,)`` each; ``w_radius`` ``None`` for a point.
            w_middle: weights ``(P,)`` of the middle branch whose batch statistics every batch
                norm uses (default ``w_centre``).
            x_radius: optional input radius, same shape as ``x``.

        Returns:
            ``(centre, radius)`` of the logits, each ``(N, num_classes)``. Sound in ``"sound"``
            and ``"rump"`` modes (given the middle-branch statistics); a heuristic in ``"relaxed"``.
        """
        pc = self.unflatten(w_centre)
        pr = self.unflatten(w_radius) if w_radius is not None else [None] * len(pc)
        pm = pc if w_middle is None else self.unflatten(w_middle)
        if self.interval_mode == "relaxed":
            if w_radius is None:
                lower = upper = pc
            else:
                lower, upper = self.unflatten(w_centre - w_radius), self.unflatten(w_centre + w_radius)
            ex: Any = RelaxedExecutor(lower, pm, upper)
        else:
            ex = self._sound_executor(pc, pr, pm, track_middle=self.has_batch_norm)
        return ex.output(self._run(ex, ex.input(x, x_radius)))

    @torch.no_grad()
    def radius_profile(self, x: Tensor, w_centre: Tensor, w_radius: Tensor, *,
                       w_middle: Optional[Tensor] = None) -> List[Tuple[str, float]]:
        """``[(operation, relative radius), ...]`` of the sound interval forward, in execution
        order (``conv3``, ``bn3``, ``add2``, ...): where the box of a weight box grows."""
        pc, pr = self.unflatten(w_centre), self.unflatten(w_radius)
        pm = pc if w_middle is None else self.unflatten(w_middle)
        ex = RadiusProfile(pc, pr, pm, track_middle=self.has_batch_norm, exact_nonneg=self.interval_mode != "rump")
        self._run(ex, ex.input(x))
        return ex.rows

    def forward_with_interval(self, x: Tensor, w_middle: Tensor, w_centre: Tensor,
                              w_radius: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """See :meth:`TargetNetwork.forward_with_interval`. In sound mode with batch norm the
        interval forward's middle branch (sound and rump modes) IS the point network of ``w_middle`` (same operations,
        batch statistics of its own activations), so its logits are returned instead of running
        the point forward again (one network pass less per training step)."""
        if self.interval_mode == "relaxed" or not self.has_batch_norm:
            return super().forward_with_interval(x, w_middle, w_centre, w_radius)
        pc = self.unflatten(w_centre)
        pr = self.unflatten(w_radius) if w_radius is not None else [None] * len(pc)
        ex = self._sound_executor(pc, pr, self.unflatten(w_middle), track_middle=True)
        h = self._run(ex, ex.input(x))
        c, r = ex.output(h)
        return h.m, c, r

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


def num_params_of(shapes: Sequence[Tuple[int, ...]]) -> int:
    """Total weight count of a list of shapes."""
    return sum(math.prod(s) for s in shapes)
