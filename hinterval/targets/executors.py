"""How a target network runs in each mode: the executors, and the targets written against them.

A target writes its architecture ONCE, as ``_run(ex, h)``, against the :class:`Executor`
protocol (``conv``, ``linear``, ``bn``, ``relu``, ``add``, pools, ``flatten``), referring to
its parameters by their index in ``param_shapes``. The executor decides what flows between the
layers, and so the mode:

* ``point`` -- :class:`PointExecutor`: the ordinary network (hot path: one ordinary forward).
  Batch norm uses the batch statistics (no running statistics are stored per task), or
  statistics it is given (``bn_stats``), and it can record the statistics it used.
* ``sound`` and ``rump`` -- :class:`SoundExecutor`: interval bound propagation that is sound,
  every layer by the rules of :mod:`hinterval.intervals`. The value carried between layers is
  an interval ``(c, r)``, whether it is known to be non-negative (after ReLU: then ``sound``
  uses the exact product, ``rump`` Rump's cheaper one), and the *middle branch* ``m``: the
  point network of the middle weights (``w_middle``, default: the centre weights). Every batch
  norm normalises the interval with the middle branch's batch statistics, so the guarantee
  reads: for every weight vector in the box (and input in the input box), the network whose
  batch norms use those fixed middle-branch statistics has logits inside the returned box.
  ``target.forward(x, w, bn_stats=target.bn_statistics(x_c, w_middle))`` is exactly that
  network, which is how the property tests check soundness.
* ``relaxed`` -- :class:`RelaxedExecutor`: the reference implementation's fast mode (NOT
  sound): three ordinary passes with the lower, middle and upper weights, batch norm with the
  middle pass's statistics, and after every affine layer (convolution, linear, batch norm) an
  elementwise sort of the three results; the output box is [smallest, largest] result.

:class:`RadiusProfile` is a sound executor that records how wide the box is after every layer.
:class:`ExecutorTarget` holds what every target built this way shares (the MLP and the CNNs).

Everything is plain tensor code (reductions for batch-norm statistics instead of
``F.batch_norm``), so all modes run under ``torch.func.vmap`` over per-task weights.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, List, Optional, Protocol, Sequence, Tuple, TypeVar, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from hinterval.config import INTERVAL_MODES, scope_depth
from hinterval.intervals import (
    BilinearOp,
    channel_view,
    conv2d_op,
    from_bounds,
    interval_add,
    interval_avg_pool2d,
    interval_batch_norm,
    interval_layer,
    interval_max_pool2d,
    interval_relu,
    nonneg_box,
    unit_roundoff,
    widen_for_rounding,
)
from hinterval.targets.base import TargetNetwork

BN_EPS = 1e-5
BNStats = List[Tuple[Tensor, Tensor]]


# --- batch norm of a point activation ---------------------------------------------------------

def batch_norm_stats(x: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel batch mean and biased variance of ``x``.

    Args:
        x: activations ``(N, C, H, W)`` (or ``(N, C)``); statistics run over every dim but 1.

    Returns:
        ``(mean, var)``, each ``(C,)``. Plain reductions (no ``F.batch_norm``), so the function
        works under ``torch.func.vmap`` with batched inputs.
    """
    dims = [0] + list(range(2, x.dim()))
    mean = x.mean(dim=dims)
    var = (x - channel_view(mean, x)).square().mean(dim=dims)
    return mean, var


def batch_norm_point(
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float = BN_EPS,
) -> Tensor:
    """Batch norm of a point activation with *given* statistics: ``γ (x - μ) / sqrt(σ² + eps) + β``.

    Args:
        x: ``(N, C, ...)``.
        mean, var: ``(C,)`` statistics (from :func:`batch_norm_stats` of this or another batch).
        weight, bias: affine ``γ``, ``β`` of shape ``(C,)``, or ``None`` for none.

    Returns:
        Normalised ``x``, same shape.
    """
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    y = (x - channel_view(mean, x)) * channel_view(scale, x)
    if bias is not None:
        y = y + channel_view(bias, x)
    return y


# --- the protocol -----------------------------------------------------------------------------

V = TypeVar("V")


@runtime_checkable
class Executor(Protocol[V]):
    """What an architecture's ``_run`` may call. ``V`` is the value between layers (a tensor for
    the point and relaxed executors, an interval for the sound one); parameters are indices into
    the target's ``param_shapes`` (``None``: the layer has no bias)."""

    def input(self, x: Tensor, x_radius: Optional[Tensor] = None) -> V:
        """The network input ``x`` (images or rows), with an optional input radius."""

    def conv(self, h: V, w: int, b: Optional[int], stride: int, padding: int) -> V:
        """2-D convolution with weight ``w`` and bias ``b``."""

    def linear(self, h: V, w: int, b: Optional[int]) -> V:
        """Fully connected layer on ``(N, features)``."""

    def bn(self, h: V, g: int, b: int) -> V:
        """Batch norm with affine scale ``g`` and shift ``b``."""

    def relu(self, h: V) -> V:
        """ReLU."""

    def add(self, a: V, b: V) -> V:
        """Sum (residual connection)."""

    def max_pool(self, h: V, k: int, s: Optional[int] = None, p: int = 0) -> V:
        """Max pooling, kernel ``k``, stride ``s`` (default ``k``), padding ``p``."""

    def avg_pool(self, h: V, k: int) -> V:
        """Average pooling, kernel and stride ``k``."""

    def flatten(self, h: V) -> V:
        """Flatten all but the batch dimension."""

    def output(self, h: V) -> Any:
        """The result: logits (point) or their ``(centre, radius)``."""


def linear_relu_stack(ex: Executor[V], h: V, layers: Sequence[Tuple[int, Optional[int]]]) -> V:
    """Fully connected layers ``(weight, bias)`` with a ReLU between two (none after the last):
    the MLP target, and the head of a CNN."""
    for i, (w, b) in enumerate(layers):
        h = ex.linear(h, w, b)
        if i < len(layers) - 1:
            h = ex.relu(h)
    return h


def _at(params: Sequence[Optional[Tensor]], i: Optional[int]) -> Optional[Tensor]:
    """Parameter ``i``, or ``None`` for a missing index or a point radius."""
    return None if i is None else params[i]


# --- point --------------------------------------------------------------------------------------

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

    def input(self, x: Tensor, x_radius: Optional[Tensor] = None) -> Tensor:
        return x

    def conv(self, h: Tensor, w: int, b: Optional[int], stride: int, padding: int) -> Tensor:
        return F.conv2d(h, self.p[w], _at(self.p, b), stride=stride, padding=padding)

    def linear(self, h: Tensor, w: int, b: Optional[int]) -> Tensor:
        return F.linear(h, self.p[w], _at(self.p, b))

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


class _FirstLayerDone(Exception):
    """Raised by :class:`FirstLayerExecutor` with the first weighted layer's output, to stop the run."""

    def __init__(self, value: Tensor):
        super().__init__()
        self.value = value


class FirstLayerExecutor(PointExecutor):
    """Point forward that stops after the first weighted layer and raises its output, ``(N, units)``
    (a convolution's output averaged over space): see :meth:`ExecutorTarget.first_layer_response`."""

    def conv(self, h: Tensor, w: int, b: Optional[int], stride: int, padding: int) -> Tensor:
        raise _FirstLayerDone(super().conv(h, w, b, stride, padding).mean((2, 3)))

    def linear(self, h: Tensor, w: int, b: Optional[int]) -> Tensor:
        raise _FirstLayerDone(super().linear(h, w, b))


# --- sound and rump -----------------------------------------------------------------------------

class IntervalValue:
    """Value between layers of the sound executor: centre ``c``, radius ``r`` (``None`` = point),
    ``nonneg`` (the box is known to lie in ``x >= 0``: a ReLU output, pooled or flattened, or
    a sum of such) and the middle branch ``m`` (``None`` when not tracked)."""

    __slots__ = ("c", "r", "nonneg", "m")

    def __init__(self, c: Tensor, r: Optional[Tensor], nonneg: bool, m: Optional[Tensor]):
        self.c, self.r, self.nonneg, self.m = c, r, nonneg, m


class SoundExecutor:
    """Sound interval forward (see the module docstring).

    Args:
        centre, radius: unflattened weight box (``radius`` entries may be ``None``).
        middle: unflattened middle weights for the batch-norm statistics branch.
        track_middle: carry the middle branch (only needed when the network has batch norm).
        exact_nonneg: the exact product on non-negative inputs (``sound`` mode); ``False``:
            Rump's product on every layer (``rump`` mode: fewer products, slightly wider).
    """

    def __init__(self, centre: Sequence[Tensor], radius: Sequence[Optional[Tensor]], middle: Sequence[Tensor],
                 track_middle: bool = True, exact_nonneg: bool = True):
        self.pc, self.pr = centre, radius
        self.mid = PointExecutor(middle)  # the middle branch runs exactly the point network's operations
        self.track_middle = track_middle
        self.exact_nonneg = exact_nonneg

    def input(self, x: Tensor, x_radius: Optional[Tensor] = None) -> IntervalValue:
        return IntervalValue(x, x_radius, False, x if self.track_middle else None)

    def _point(self, h: IntervalValue, *params: Optional[int]) -> bool:
        """Whether this layer is a plain point layer that the middle branch runs identically: a
        point input that IS the middle branch, and point weights that ARE the middle weights (the
        layers outside the interval scope). Then one computation serves both."""
        return h.r is None and h.m is h.c and all(
            i is None or (self.pr[i] is None and self.pc[i] is self.mid.p[i]) for i in params)

    @staticmethod
    def _shared(v: Tensor, nonneg: bool) -> IntervalValue:
        return IntervalValue(v, None, nonneg, v)

    def _layer(self, h: IntervalValue, w: int, b: Optional[int], op: BilinearOp) -> Tuple[Tensor, Optional[Tensor]]:
        return interval_layer(h.c, h.r, self.pc[w], self.pr[w], _at(self.pc, b), _at(self.pr, b), op,
                              nonneg_input=self.exact_nonneg and h.nonneg)

    def conv(self, h: IntervalValue, w: int, b: Optional[int], stride: int, padding: int) -> IntervalValue:
        if self._point(h, w, b):
            return self._shared(self.mid.conv(h.c, w, b, stride, padding), False)
        c, r = self._layer(h, w, b, conv2d_op(stride, padding))
        return IntervalValue(c, r, False, None if h.m is None else self.mid.conv(h.m, w, b, stride, padding))

    def linear(self, h: IntervalValue, w: int, b: Optional[int]) -> IntervalValue:
        if self._point(h, w, b):
            return self._shared(self.mid.linear(h.c, w, b), False)
        c, r = self._layer(h, w, b, F.linear)
        return IntervalValue(c, r, False, None if h.m is None else self.mid.linear(h.m, w, b))

    def bn(self, h: IntervalValue, g: int, b: int) -> IntervalValue:
        if h.m is None:
            raise RuntimeError("batch norm in interval mode needs the middle branch (track_middle=True)")
        if self._point(h, g, b):
            return self._shared(self.mid.bn(h.c, g, b), False)
        mean, var = batch_norm_stats(h.m)
        c, r = interval_batch_norm(h.c, h.r, mean, var, self.pc[g], self.pr[g], self.pc[b], self.pr[b], eps=BN_EPS)
        return IntervalValue(c, r, False, batch_norm_point(h.m, mean, var, self.mid.p[g], self.mid.p[b]))

    def relu(self, h: IntervalValue) -> IntervalValue:
        if self._point(h):
            return self._shared(self.mid.relu(h.c), True)
        c, r = interval_relu(h.c, h.r)
        return IntervalValue(c, r, True, None if h.m is None else self.mid.relu(h.m))

    def add(self, a: IntervalValue, b: IntervalValue) -> IntervalValue:
        if self._point(a) and self._point(b):
            return self._shared(self.mid.add(a.c, b.c), a.nonneg and b.nonneg)
        c, r = interval_add(a.c, a.r, b.c, b.r)
        return IntervalValue(c, r, a.nonneg and b.nonneg, None if a.m is None else self.mid.add(a.m, b.m))

    def max_pool(self, h: IntervalValue, k: int, s: Optional[int] = None, p: int = 0) -> IntervalValue:
        if self._point(h):
            return self._shared(self.mid.max_pool(h.c, k, s, p), h.nonneg)
        c, r = interval_max_pool2d(h.c, h.r, k, k if s is None else s, p)
        return IntervalValue(c, r, h.nonneg, None if h.m is None else self.mid.max_pool(h.m, k, s, p))

    def avg_pool(self, h: IntervalValue, k: int) -> IntervalValue:
        if self._point(h):
            return self._shared(self.mid.avg_pool(h.c, k), h.nonneg)
        c, r = interval_avg_pool2d(h.c, h.r, k)
        return IntervalValue(c, r, h.nonneg, None if h.m is None else self.mid.avg_pool(h.m, k))

    def flatten(self, h: IntervalValue) -> IntervalValue:
        if self._point(h):
            return self._shared(self.mid.flatten(h.c), h.nonneg)
        return IntervalValue(h.c.flatten(1), None if h.r is None else h.r.flatten(1), h.nonneg,
                             None if h.m is None else self.mid.flatten(h.m))

    def output(self, h: IntervalValue) -> Tuple[Tensor, Tensor]:
        return h.c, (torch.zeros_like(h.c) if h.r is None else h.r)


class RadiusProfile(SoundExecutor):
    """A sound executor that records, after every operation, how wide the interval is relative
    to its values: ``mean(radius) / mean(|centre|)`` of the activations (0 = a point), in
    :attr:`rows` as ``(name, value)``. Used by :meth:`ExecutorTarget.radius_profile` to show
    where a box grows through a deep network."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rows: List[Tuple[str, float]] = []
        self._counts: dict = {}

    def _log(self, kind: str, h: IntervalValue) -> IntervalValue:
        n = self._counts[kind] = self._counts.get(kind, 0) + 1
        rel = 0.0 if h.r is None else float(h.r.mean() / h.c.abs().mean().clamp_min(1e-30))
        self.rows.append((f"{kind}{n}", rel))
        return h

    def conv(self, h: IntervalValue, w: int, b: Optional[int], stride: int, padding: int) -> IntervalValue:
        return self._log("conv", super().conv(h, w, b, stride, padding))

    def linear(self, h: IntervalValue, w: int, b: Optional[int]) -> IntervalValue:
        return self._log("linear", super().linear(h, w, b))

    def bn(self, h: IntervalValue, g: int, b: int) -> IntervalValue:
        return self._log("bn", super().bn(h, g, b))

    def relu(self, h: IntervalValue) -> IntervalValue:
        return self._log("relu", super().relu(h))

    def add(self, a: IntervalValue, b: IntervalValue) -> IntervalValue:
        return self._log("add", super().add(a, b))

    def max_pool(self, h: IntervalValue, k: int, s: Optional[int] = None, p: int = 0) -> IntervalValue:
        return self._log("maxpool", super().max_pool(h, k, s, p))

    def avg_pool(self, h: IntervalValue, k: int) -> IntervalValue:
        return self._log("avgpool", super().avg_pool(h, k))


class RoundingSafeExecutor(SoundExecutor):
    """The sound executor made safe against floating-point rounding: after every operation the
    radius grows by a bound on the rounding error of that operation (:func:`widen_for_rounding`), so
    the box contains the *exact-arithmetic* values of every network in the weight box, not only
    what round-to-nearest happened to give. The error of an earlier layer is part of the radius
    the later layers propagate, so it is carried soundly to the logits.

    What is bounded is the interval computation: from the first value that carries a radius on.
    The layers before it (with a partial interval scope: the centre network's first layers) are
    a point computation whose computed values are the certified part's input, exactly as the
    deployed float network computes them. Propagating their rounding as a box would not be
    informative: an interval over a deep point network grows several times per convolution
    (measured: a rounding error of 1e-7 becomes larger than the logits after about 15 layers).
    It costs the sound executor's work plus one product per layer: it is for certifying
    (evaluation), not for training. The bounds assume each output of a
    convolution or linear layer is the sum of its products in some order (true of direct and
    GEMM convolutions; not of FFT or Winograd algorithms, which cuDNN may pick on a GPU).
    """

    def _rounded(self, out: IntervalValue, magnitude: Tensor, n: int, u: float) -> IntervalValue:
        if out.r is None:  # a layer of the centre network before the box: its computed value is the input
            return out
        r = widen_for_rounding(out.r, magnitude, n, u)
        c = out.c
        if out.nonneg:
            c, r = nonneg_box(c, r)
        return IntervalValue(c, r, out.nonneg, out.m)

    def _bilinear(self, h: IntervalValue, out: IntervalValue, w: int, b: Optional[int], op: BilinearOp,
                  kind: str) -> IntervalValue:
        """A convolution or linear layer: every product of the centre and the radius computations
        is at most ``(|x_c| + x_r)(|W_c| + W_r)``, and each of the two is a sum of at most
        ``2 * fan_in`` of them plus the bias."""
        wc, wr = self.pc[w], self.pr[w]
        x_mag = h.c.abs() if h.r is None else h.c.abs() + h.r
        magnitude = op(x_mag, wc.abs() if wr is None else wc.abs() + wr)
        if b is not None:
            bc, br = self.pc[b], self.pr[b]
            magnitude = magnitude + channel_view(bc.abs() if br is None else bc.abs() + br, magnitude)
        fan_in = math.prod(wc.shape[1:])
        return self._rounded(out, 2 * magnitude, 2 * fan_in + 3, unit_roundoff(h.c, kind))

    def conv(self, h: IntervalValue, w: int, b: Optional[int], stride: int, padding: int) -> IntervalValue:
        return self._bilinear(h, super().conv(h, w, b, stride, padding), w, b, conv2d_op(stride, padding), "conv")

    def linear(self, h: IntervalValue, w: int, b: Optional[int]) -> IntervalValue:
        return self._bilinear(h, super().linear(h, w, b), w, b, F.linear, "matmul")

    def bn(self, h: IntervalValue, g: int, b: int) -> IntervalValue:
        """``((x - μ) s) γ + β`` with ``s = 1/sqrt(var + eps)``: a few roundings per term, and ``s``
        itself a few roundings from the exact value the statistics define (16 in all, generously)."""
        out = super().bn(h, g, b)
        mean, var = batch_norm_stats(h.m)
        x_mag = h.c.abs() + channel_view(mean.abs(), h.c)
        if h.r is not None:
            x_mag = x_mag + h.r
        gc, gr, bc, br = self.pc[g], self.pr[g], self.pc[b], self.pr[b]
        g_mag = gc.abs() if gr is None else gc.abs() + gr
        b_mag = bc.abs() if br is None else bc.abs() + br
        magnitude = x_mag * channel_view(torch.rsqrt(var + BN_EPS) * g_mag, h.c) + channel_view(b_mag, h.c)
        return self._rounded(out, 2 * magnitude, 16, unit_roundoff(h.c))

    def _monotone_error(self, h: IntervalValue, out: IntervalValue, pool: Any = None) -> IntervalValue:
        """ReLU or max pooling on the bounds ``c -/+ r`` and back to centre/radius: four roundings,
        each at most ``u (|c| + r)`` of the input the output selects."""
        magnitude = h.c.abs() if h.r is None else h.c.abs() + h.r
        if pool is not None:
            magnitude = pool(magnitude)
        return self._rounded(out, 2 * magnitude, 4, unit_roundoff(h.c))

    def relu(self, h: IntervalValue) -> IntervalValue:
        return self._monotone_error(h, super().relu(h))

    def max_pool(self, h: IntervalValue, k: int, s: Optional[int] = None, p: int = 0) -> IntervalValue:
        return self._monotone_error(h, super().max_pool(h, k, s, p),
                                    partial(F.max_pool2d, kernel_size=k, stride=k if s is None else s, padding=p))

    def add(self, a: IntervalValue, b: IntervalValue) -> IntervalValue:
        magnitude = a.c.abs() + b.c.abs()
        for r in (a.r, b.r):
            if r is not None:
                magnitude = magnitude + r
        return self._rounded(super().add(a, b), 2 * magnitude, 4, unit_roundoff(a.c))

    def avg_pool(self, h: IntervalValue, k: int) -> IntervalValue:
        magnitude = F.avg_pool2d(h.c.abs() if h.r is None else h.c.abs() + h.r, k)
        return self._rounded(super().avg_pool(h, k), 2 * magnitude, k * k + 3, unit_roundoff(h.c))

    def output(self, h: IntervalValue) -> Tuple[Tensor, Tensor]:
        """The logit box, grown once more so that ``c - r`` and ``c + r`` computed in floating
        point are still below and above the exact bounds (then comparing them is exact)."""
        c, r = super().output(h)
        return c, (r if h.r is None else widen_for_rounding(r, c.abs() + r, 4, unit_roundoff(c)))


# --- relaxed ------------------------------------------------------------------------------------

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
    def forward(t: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
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
    def backward(ctx: Any, grad: Tensor, _unused: Optional[Tensor]) -> Tensor:  # type: ignore[override]
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

    def conv(self, h: Tensor, w: int, b: Optional[int], stride: int, padding: int) -> Tensor:
        weight = self._stack(w).flatten(0, 1)  # (3*out, in, k, k)
        bias = None if b is None else self._stack(b).flatten()
        y = F.conv2d(h.flatten(1, 2), weight, bias, stride=stride, padding=padding, groups=3)
        return _sort3(y.unflatten(1, (3, -1)))

    def linear(self, h: Tensor, w: int, b: Optional[int]) -> Tensor:
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


# --- targets written against the protocol -------------------------------------------------------

class ExecutorTarget(TargetNetwork):
    """A functional target whose architecture is written once, as :meth:`_run`, against the
    :class:`Executor` protocol; every forward is that architecture run by one executor.

    Subclasses build ``param_shapes`` with :meth:`_add`, set :attr:`interval_modes`, and set
    :attr:`has_batch_norm` when the network normalises (then the sound executor carries the
    middle branch).

    Args:
        interval_mode: ``"sound"`` (exact box of every layer given its input box), ``"rump"``
            (sound too; Rump's product on every layer: 2 products per layer instead of 4,
            slightly wider boxes) or, where :attr:`interval_modes` allows it, ``"relaxed"``
            (fast, NOT sound).
    """

    interval_modes: Tuple[str, ...] = INTERVAL_MODES
    has_batch_norm: bool = False

    def __init__(self, *, interval_mode: str = "sound"):
        if interval_mode not in self.interval_modes:
            hint = " ('relaxed' runs on the CNN targets only)" if interval_mode in INTERVAL_MODES else ""
            raise ValueError(f"{type(self).__name__} interval_mode must be one of {self.interval_modes}{hint}, "
                             f"got {interval_mode!r}")
        self.interval_mode = interval_mode
        self.param_shapes: List[Tuple[int, ...]] = []
        self.interval_scope = "all"
        self._boxed: Optional[frozenset] = None  # parameter indices inside the scope; None = every one
        self._mask: Optional[Tensor] = None  # the same as a flat (P,) mask

    # --- interval scope -----------------------------------------------------------------------
    def layer_units(self) -> List[List[int]]:
        """The weighted layers in execution-definition order, each as the indices of its
        parameters: a weight matrix or kernel with the 1-D parameters registered after it (its
        bias, its batch norm's scale and shift)."""
        units: List[List[int]] = []
        for i, shape in enumerate(self.param_shapes):
            if len(shape) >= 2 or not units:
                units.append([i])
            else:
                units[-1].append(i)
        return units

    def set_interval_scope(self, scope: str) -> None:
        """Box only the layers ``scope`` names (``all``, ``head`` = ``last:1``, ``last:K``); the
        others run as points at the middle weights. Raises ``ValueError`` for a scope deeper than
        the network."""
        depth = scope_depth(scope)
        units = self.layer_units()
        if depth is not None and depth > len(units):
            raise ValueError(f"interval scope {scope!r} asks for {depth} layers but {type(self).__name__} has "
                             f"{len(units)} weighted layers")
        self.interval_scope = scope
        self._boxed = None if depth is None or depth == len(units) else frozenset(i for u in units[-depth:] for i in u)
        self._mask = None if self._boxed is None else torch.cat(
            [torch.full((math.prod(s),), i in self._boxed, dtype=torch.bool) for i, s in enumerate(self.param_shapes)])

    @property
    def boxes_every_layer(self) -> bool:
        """Whether the scope covers every layer (``all``, or ``last:K`` with K the network's depth)."""
        return self._boxed is None

    def scope_text(self) -> str:
        """What a certified figure of this scope covers, in words (for the CLI and ``result.json``)."""
        units = self.layer_units()
        n = len(units)
        if self._boxed is None:
            return f"every weight of all {n} layers"
        k = sum(1 for u in units if u[0] in self._boxed)
        rest = "the other layer" if n - k == 1 else f"the other {n - k} layers"
        return f"every weight of the last {k} of {n} layers in the box, {rest} at the task's centre network"

    def boxed_mask(self) -> Optional[Tensor]:
        """Flat ``(P,)`` boolean mask of the weights inside the interval scope; ``None``: all of them."""
        return self._mask

    def boxed(self, flat: Tensor) -> Tensor:
        """The entries of a flat weight vector (or its radius) that lie inside the interval scope."""
        if self._boxed is None:
            return flat
        # the scope's layers are the last ones: a slice, where a boolean mask would make the GPU count it first
        return flat[len(flat) - sum(math.prod(s) for i, s in enumerate(self.param_shapes) if i in self._boxed):]

    def _scoped(self, centre: List[Tensor], radius: List[Optional[Tensor]], middle: List[Tensor]
                ) -> Tuple[List[Tensor], List[Optional[Tensor]]]:
        """The weight box the interval forward runs: boxed layers keep their box, the others are the
        middle weights as points (the very tensors, so the sound executor shares their work)."""
        if self._boxed is None:
            return centre, radius
        inside = self._boxed
        return ([c if i in inside else m for i, (c, m) in enumerate(zip(centre, middle))],
                [r if i in inside else None for i, r in enumerate(radius)])

    def _add(self, *shape: int) -> int:
        """Append a parameter shape; returns its index into the unflattened weight list."""
        self.param_shapes.append(tuple(int(s) for s in shape))
        return len(self.param_shapes) - 1

    def _run(self, ex: Executor[Any], h: Any) -> Any:
        """The architecture, written against the executor protocol."""
        raise NotImplementedError

    def forward(self, x: Tensor, weights: Tensor, *, bn_stats: Optional[BNStats] = None) -> Tensor:
        """Logits of point weights.

        Args:
            x: inputs ``(N, ...)``.
            weights: flat weights ``(P,)``.
            bn_stats: optional per batch-norm layer ``(mean, var)`` (each ``(C_l,)``) to use
                instead of the batch statistics; see :meth:`bn_statistics`.

        Returns:
            Logits ``(N, num_classes)``.
        """
        ex = PointExecutor(self.unflatten(weights), bn_stats)
        return ex.output(self._run(ex, ex.input(x)))

    def first_layer_response(self, x: Tensor, weights: Tensor) -> Tensor:
        """The first weighted layer's output for point weights ``(P,)``, before any activation:
        ``(N, units)``, a convolution's channels averaged over space. Class-incremental task
        inference compares it with the task's own training samples (:mod:`hinterval.evaluation`)."""
        ex = FirstLayerExecutor(self.unflatten(weights))
        try:
            self._run(ex, ex.input(x))
        except _FirstLayerDone as done:
            return done.value
        raise ValueError(f"{type(self).__name__} has no weighted layer")

    def bn_statistics(self, x: Tensor, weights: Tensor) -> BNStats:
        """Batch statistics ``[(mean, var), ...]`` of every batch norm, in execution order, for
        inputs ``x`` and point weights ``(P,)``. With the middle weights (default of
        :meth:`forward_interval`: the centre) these are the statistics the interval forward
        normalises with."""
        ex = PointExecutor(self.unflatten(weights), record=True)
        self._run(ex, ex.input(x))
        return ex.recorded

    def _sound_executor(self, w_centre: Tensor, w_radius: Optional[Tensor], w_middle: Optional[Tensor], *,
                        cls: type = SoundExecutor) -> SoundExecutor:
        """A sound executor (``cls``) over the weight box; the exact product unless in rump mode."""
        pc = self.unflatten(w_centre)
        pr: List[Optional[Tensor]] = list(self.unflatten(w_radius)) if w_radius is not None else [None] * len(pc)
        pm = pc if w_middle is None else self.unflatten(w_middle)
        pc, pr = self._scoped(pc, pr, pm)
        return cls(pc, pr, pm, track_middle=self.has_batch_norm, exact_nonneg=self.interval_mode != "rump")

    def interval_executor(self, w_centre: Tensor, w_radius: Optional[Tensor],
                          w_middle: Optional[Tensor] = None, *, rounding_safe: bool = False) -> Executor[Any]:
        """The executor of this target's interval mode over the weight box ``w_centre ± w_radius``
        (flat ``(P,)`` each; ``w_radius`` ``None`` for a point), batch norms with the statistics
        of ``w_middle`` (default: the centre); ``rounding_safe``: the sound modes' box also bounds
        the floating-point rounding (:class:`RoundingSafeExecutor`; the relaxed mode bounds nothing)."""
        if self.interval_mode != "relaxed":
            cls = RoundingSafeExecutor if rounding_safe else SoundExecutor
            return self._sound_executor(w_centre, w_radius, w_middle, cls=cls)
        pc = self.unflatten(w_centre)
        pm = pc if w_middle is None else self.unflatten(w_middle)
        if w_radius is None:
            return RelaxedExecutor(pc, pm, pc)
        lower, _ = self._scoped(self.unflatten(w_centre - w_radius), [None] * len(pc), pm)
        upper, _ = self._scoped(self.unflatten(w_centre + w_radius), [None] * len(pc), pm)
        return RelaxedExecutor(lower, pm, upper)

    def forward_interval(
        self,
        x: Tensor,
        w_centre: Tensor,
        w_radius: Optional[Tensor],
        *,
        w_middle: Optional[Tensor] = None,
        x_radius: Optional[Tensor] = None,
        rounding_safe: bool = False,
    ) -> Tuple[Tensor, Tensor]:
        """Logit box for all weights in ``w_centre ± w_radius`` (and inputs in ``x ± x_radius``).

        Args:
            x: inputs ``(N, ...)`` (the input box centre).
            w_centre, w_radius: weight box ``(P,)`` each; ``w_radius`` ``None`` for a point.
            w_middle: weights ``(P,)`` of the middle branch whose batch statistics every batch
                norm uses (default ``w_centre``; unused without batch norm).
            x_radius: optional input radius, same shape as ``x``.
            rounding_safe: also bound the floating-point rounding of the computation (certifying).

        Returns:
            ``(centre, radius)`` of the logits, each ``(N, num_classes)``. Sound in ``"sound"``
            and ``"rump"`` modes (given the middle-branch statistics) in exact arithmetic, and for
            the computed floating-point values too with ``rounding_safe``; a heuristic in ``"relaxed"``.
        """
        ex = self.interval_executor(w_centre, w_radius, w_middle, rounding_safe=rounding_safe)
        return ex.output(self._run(ex, ex.input(x, x_radius)))

    def forward_with_interval(self, x: Tensor, w_middle: Tensor, w_centre: Tensor,
                              w_radius: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """See :meth:`TargetNetwork.forward_with_interval`. With batch norm, the sound and rump
        interval forward's middle branch IS the point network of ``w_middle`` (same operations,
        batch statistics of its own activations), so its logits are returned instead of running
        the point forward again (one network pass less per training step)."""
        if self.interval_mode == "relaxed" or not self.has_batch_norm:
            return super().forward_with_interval(x, w_middle, w_centre, w_radius)
        ex = self._sound_executor(w_centre, w_radius, w_middle)
        h = self._run(ex, ex.input(x))
        c, r = ex.output(h)
        return h.m, c, r

    @torch.no_grad()
    def radius_profile(self, x: Tensor, w_centre: Tensor, w_radius: Tensor, *,
                       w_middle: Optional[Tensor] = None) -> List[Tuple[str, float]]:
        """``[(operation, relative radius), ...]`` of the sound interval forward (rump mode:
        Rump's), in execution order (``conv3``, ``bn3``, ``add2``, ...): where the box of a
        weight box grows."""
        ex = self._sound_executor(w_centre, w_radius, w_middle, cls=RadiusProfile)
        self._run(ex, ex.input(x))
        return ex.rows  # type: ignore[attr-defined]

