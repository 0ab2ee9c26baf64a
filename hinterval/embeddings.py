"""Per-task interval embeddings and the universal embedding.

Each task ``t`` owns a learnable centre vector ``e_t`` and perturbation logits ``p_t`` (both in
``R^d``). Two modes:

* ``non-forced``: box ``[e_t - eps_t, e_t + eps_t]`` with ``eps_t = gamma * softmax(p_t)``, so the
  total radius budget is ``gamma``. Boxes of different tasks need not intersect.
* ``nested``: centre ``sigma * cos(e_t)`` with ``sigma = gamma / (2d)`` and a fixed radius
  ``gamma / d``; every box contains ``[-sigma, sigma]^d``, so the intersection of all task boxes is
  never empty and yields one *universal* embedding.

Per-task tensors are separate parameters so that the optimiser of task ``t`` only ever sees task
``t``'s embedding (earlier tasks stay frozen without relying on zero gradients and Adam state).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from hinterval import transfer
from hinterval.config import EMBEDDING_MODES, NESTED_CENTRES



class TaskEmbeddings(nn.Module):
    """Interval embeddings for ``num_tasks`` tasks in ``R^dim``.

    Args:
        num_tasks: number of tasks ``T``.
        dim: embedding dimension ``d``.
        gamma: perturbation budget (total radius); ``0`` gives point embeddings.
        mode: ``"nested"`` or ``"non-forced"``.
        init_std: standard deviation of the centre initialisation.
        centres: nested mode only: ``"learned"`` or fixed ``"corners"`` (see :data:`NESTED_CENTRES`).
    """

    def __init__(self, *, num_tasks: int, dim: int, gamma: float, mode: str = "nested", init_std: float = 1.0,
                 centres: str = "learned"):
        super().__init__()
        if mode not in EMBEDDING_MODES:
            raise ValueError(f"embedding mode must be one of {EMBEDDING_MODES}, got {mode!r}")
        if centres not in NESTED_CENTRES:
            raise ValueError(f"nested centres must be one of {NESTED_CENTRES}, got {centres!r}")
        self.num_tasks, self.dim, self.gamma, self.mode = num_tasks, dim, float(gamma), mode
        # Fixed corners: e_t in {0, pi}^d, so the centre sigma * cos(e_t) is a corner sigma * (+-1)^d of
        # the common cube. Learned nested centres start near one another (cos is flat at 0 and pi) and
        # measured, they drift together until every task gets the same network; corners stay as far
        # apart as the nested geometry allows (each is still inside every other task's box).
        self.fixed_centres = mode == "nested" and centres == "corners"
        draw = (lambda: torch.randint(0, 2, (dim,)).float() * torch.pi) if self.fixed_centres else (
            lambda: torch.randn(dim) * init_std)
        self.centres = nn.ParameterList([nn.Parameter(draw(), requires_grad=not self.fixed_centres)
                                         for _ in range(num_tasks)])
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(dim)) for _ in range(num_tasks)])

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        """The parameters trained while learning ``task_id`` (its centre unless fixed and, if used, logits)."""
        params = [] if self.fixed_centres else [self.centres[task_id]]
        if self.mode == "non-forced" and self.gamma > 0:
            params.append(self.logits[task_id])
        return params

    @torch.no_grad()
    def start_from_previous(self, task_id: int) -> None:
        """Start task ``task_id``'s embedding as a copy of task ``task_id - 1``'s (the paper's code
        does so in nested mode): the new task begins at the previous task's network. Fixed corners
        stay where they are."""
        if task_id > 0 and not self.fixed_centres:
            self.centres[task_id].copy_(self.centres[task_id - 1])
            self.logits[task_id].copy_(self.logits[task_id - 1])

    def box(self, task_ids: Sequence[int], radius_scale: float = 1.0) -> Tuple[Tensor, Tensor]:
        """Centres and radii of the given tasks' boxes.

        Args:
            task_ids: task indices (length ``B``).
            radius_scale: multiplies the radius (the trainer's gamma ramp); 1 = full gamma.

        Returns:
            ``(centre, radius)``, each ``(B, d)``.
        """
        e = torch.stack([self.centres[i] for i in task_ids])
        if self.mode == "nested":
            sigma = self.gamma / (2 * self.dim)
            centre = sigma * torch.cos(e)
            radius = torch.full_like(centre, self.gamma / self.dim)
        else:
            centre = e
            p = torch.stack([self.logits[i] for i in task_ids])
            radius = self.gamma * torch.softmax(p, dim=-1)
        return centre, radius * radius_scale

    def universal(self, num_seen: Optional[int] = None) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """Midpoint of the intersection of the first ``num_seen`` task boxes.

        Returns:
            ``(midpoint, lower, upper)`` of the intersection (each ``(d,)``), or ``None`` when the
            boxes do not intersect (possible only in ``non-forced`` mode).
        """
        mid, lower, upper = self.intersection(num_seen)
        if transfer.to_host({"empty": (lower > upper).any()})["empty"]:  # a host sync, once per evaluation
            return None
        return mid, lower, upper

    def intersection(self, num_seen: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """``(midpoint, lower, upper)`` of the first ``num_seen`` boxes' per-coordinate overlap, unchecked
        (``lower > upper`` somewhere when they do not intersect; nested boxes always do)."""
        n = self.num_tasks if num_seen is None else num_seen
        c, r = self.box(range(n))
        lower = (c - r).max(dim=0).values
        upper = (c + r).min(dim=0).values
        return (lower + upper) / 2, lower, upper


def pair_distance(points: Tensor, reduce: str) -> Optional[float]:
    """The ``"mean"`` or ``"min"`` Euclidean distance between distinct rows of ``points`` ``(n, k)``;
    ``None`` for fewer than two rows."""
    if points.shape[0] < 2:
        return None
    d = torch.pdist(points.detach().double())
    return float(d.mean() if reduce == "mean" else d.min())
