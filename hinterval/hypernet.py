"""Hypernetwork: an MLP from interval embeddings to (boxes of) target-network weights.

The hypernetwork's own weights are points; its *input* is an interval (the task's embedding box),
propagated with interval bound propagation (IBP, :mod:`hinterval.intervals`). One call returns

* ``middle``: the image of the box centre, ``W^M = H(c)`` (an ordinary forward),
* ``centre``/``radius`` of a box ``[W^L, W^U]`` that contains ``H(e)`` for every ``e`` in the box.

A batch of embeddings (``B`` rows) is processed in one pass: the regulariser sends all previous
tasks at once. Both the middle and IBP-centre rows share each layer's matmul, and ``|W|`` is
formed once per layer per call.

Chunking: with ``chunk_size > 0`` the network emits the flat weight vector in chunks
of ``chunk_size``; a learnable point embedding per chunk is concatenated to the task embedding.
The first layer is split into a task part and a chunk part, so the task part is computed once
per task and broadcast over chunks. Chunk embeddings have radius 0, so IBP stays sound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hinterval.intervals import interval_add, interval_affine, interval_relu


#: outputs (values per middle/centre/radius tensor) up to which rows share one pass, see
#: :attr:`HyperNetwork.rows_per_pass` (16 MB in float32: cache-sized on a CPU)
ROW_BUDGET = 1 << 22


@dataclass
class HnetOutput:
    """Hypernetwork outputs for ``B`` embeddings, each ``(B, P)``; radius ``None`` for points."""

    middle: Tensor
    centre: Tensor
    radius: Optional[Tensor]

    @property
    def lower(self) -> Tensor:
        return self.centre if self.radius is None else self.centre - self.radius

    @property
    def upper(self) -> Tensor:
        return self.centre if self.radius is None else self.centre + self.radius


class HyperNetwork(nn.Module):
    """MLP hypernetwork with interval propagation.

    Args:
        embedding_dim: task embedding dimension ``d``.
        num_outputs: number of target weights ``P``.
        hidden: hidden layer widths, e.g. ``(100, 100)``.
        chunk_size: 0 for one output layer of width ``P``; otherwise emit chunks of this size.
        chunk_embedding_dim: dimension of the per-chunk embeddings (chunked mode only).
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_outputs: int,
        hidden: Sequence[int] = (100, 100),
        chunk_size: int = 0,
        chunk_embedding_dim: int = 16,
    ):
        super().__init__()
        self.embedding_dim, self.num_outputs = embedding_dim, num_outputs
        self.chunk_size = int(chunk_size)
        self.num_chunks = math.ceil(num_outputs / chunk_size) if chunk_size else 1
        out_width = chunk_size if chunk_size else num_outputs
        in_width = embedding_dim + (chunk_embedding_dim if chunk_size else 0)
        widths = [in_width, *hidden, out_width]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        if chunk_size:
            self.chunk_embeddings = nn.Parameter(torch.randn(self.num_chunks, chunk_embedding_dim))
        else:
            self.register_parameter("chunk_embeddings", None)
        self._init_output_layer()

    def _init_output_layer(self) -> None:
        # Keep generated target weights at a sensible scale (like Kaiming init of the target):
        # the output layer's default init scales with 1/sqrt(hidden), giving weights ~0.1.
        last = self.layers[-1]
        nn.init.uniform_(last.weight, -1 / math.sqrt(last.in_features), 1 / math.sqrt(last.in_features))
        nn.init.zeros_(last.bias)

    @property
    def rows_per_pass(self) -> int:
        """How many embedding rows one forward should take when there are many (the regulariser).

        A pass reads the output layer's weights once and writes about ``rows x P`` outputs (three
        times: middle, centre, radius) that the loss and the backward then stream through. Rows
        are batched until the outputs reach four times the output layer's size or
        :data:`ROW_BUDGET` values, whichever is larger: unchunked, the ``hidden x P`` weight read
        dominates and up to ``4 hidden`` rows share it; chunked for a large target, the weights are small and a big batch
        only streams more through memory (measured on CPU, P = 2.04M, chunk 16384: 10 rows at
        once cost 1.3x per row of 4 rows at once, and 100 rows ran at half the speed of one pass
        per row).
        """
        return max(1, max(4 * self.layers[-1].weight.numel(), ROW_BUDGET) // self.num_outputs)

    def forward(self, centre: Tensor, radius: Optional[Tensor] = None, *, with_middle: bool = True) -> HnetOutput:
        """Map a batch of embedding boxes to target-weight boxes.

        Args:
            centre: ``(B, d)`` embedding centres.
            radius: ``(B, d)`` non-negative radii, or ``None`` for point embeddings.
            with_middle: also compute ``H(centre)``; with ``radius is None`` it equals the centre.

        Returns:
            :class:`HnetOutput` with ``(B, P)`` tensors.
        """
        B = centre.shape[0]
        first = self.layers[0]
        if self.chunk_size:
            d = self.embedding_dim
            # the chunk part of the first layer: point embeddings, computed once for all tasks
            w_task, chunk_part = first.weight[:, :d], F.linear(self.chunk_embeddings, first.weight[:, d:], first.bias)
            h_c, h_r = interval_affine(centre, radius, w_task)
            h_c, h_r = interval_add(h_c.unsqueeze(1), None if h_r is None else h_r.unsqueeze(1), chunk_part, None)
            h_r = None if h_r is None else h_r.expand_as(h_c)  # (B, K, h)
        else:
            h_c, h_r = interval_affine(centre, radius, first.weight, first.bias)
        # Rows: [middle; ibp-centre] share the centre computation (identical at layer 1).
        h_mid = h_c if (with_middle and h_r is not None) else None
        for layer in self.layers[1:]:
            h_c, h_r = interval_relu(h_c, h_r)
            # [middle; ibp-centre] rows in one matmul, split after, not two slices: the backward of a
            # slice writes a zero tensor of the full (2B, ..., P) size (measured: a fifth of the
            # hnet's backward). Point weights: the centre rows may outnumber the radius rows.
            rows = h_c if h_mid is None else torch.cat([F.relu(h_mid), h_c], dim=0)
            rows, h_r = interval_affine(rows, h_r, layer.weight, layer.bias)
            if h_mid is None:
                h_c = rows
            else:
                h_mid, h_c = rows.split(B)
        centre_out = self._flatten(h_c, B)
        middle = self._flatten(h_mid, B) if h_mid is not None else centre_out
        return HnetOutput(middle=middle, centre=centre_out, radius=self._flatten(h_r, B))

    def _flatten(self, t: Optional[Tensor], batch: int) -> Optional[Tensor]:
        # (B, K, chunk) -> (B, K*chunk) -> first P entries (the last chunk is padded); split, not a
        # slice, for the cheaper backward (see above)
        if t is None:
            return None
        t = t.reshape(batch, -1)
        pad = t.shape[1] - self.num_outputs
        return t.split([self.num_outputs, pad], dim=1)[0] if pad else t
