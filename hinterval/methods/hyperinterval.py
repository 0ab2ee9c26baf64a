"""HyperInterval and its gamma = 0 special case, plain hypernetwork CL (``hnet``)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hinterval.embeddings import TaskEmbeddings, pair_distance
from hinterval.evaluation import Predictor
from hinterval.fisher import consolidate, diagonal_fisher, fisher_penalty
from hinterval.held_box import clip_box
from hinterval.hypernet import HnetOutput, HyperNetwork
from hinterval.intervals import relative_radius, worst_case_logits
from hinterval.methods.base import ContinualMethod, StepLogs, WeightBoxPredictor
from hinterval.schedule import kappa_and_scale, worst_case_loss
from hinterval.regularizers import box_regularizer, output_regularizer, regularizer_weight


class HyperIntervalMethod(ContinualMethod):
    """Interval task embeddings -> hypernetwork (IBP) -> box of target weights.

    Loss per batch: ``kappa * CE(f(x; W^M)) + (1 - kappa) * CE(worst-case logits) + beta_eff * R``
    with ``kappa`` decaying from 1 to ``kappa_min`` and the radius ramping from 0 to ``gamma``
    over the first ``ramp_fraction`` of each task.
    """

    def __init__(self, cfg, benchmark, target):
        super().__init__(cfg, benchmark, target)
        point = cfg.method == "hnet"
        self.gamma = 0.0 if point else cfg.gamma
        self.mode = "non-forced" if point else cfg.embedding_mode
        self.has_intervals = self.gamma > 0
        self.embeddings = TaskEmbeddings(num_tasks=len(benchmark), dim=cfg.embedding_dim, gamma=self.gamma, mode=self.mode,
                                         centres=cfg.nested_centres)
        self.hnet = HyperNetwork(
            embedding_dim=cfg.embedding_dim,
            num_outputs=target.num_params,
            hidden=cfg.hnet_hidden,
            chunk_size=cfg.hnet_chunk_size,
            chunk_embedding_dim=cfg.chunk_embedding_dim,
        )
        # Nested mode with the intersection hold: the intersection of the finished tasks' weight
        # boxes (see hinterval/held_box.py); -inf/inf until the first task ends.
        self.holds = self.mode == "nested" and self.gamma > 0 and cfg.nested_hold == "intersection"
        if self.holds:
            self.register_buffer("held_lower", torch.full((target.num_params,), float("-inf")))
            self.register_buffer("held_upper", torch.full((target.num_params,), float("inf")))
        # Stored regulariser targets: [T_middle] or, with bounds, [T_middle, T_centre, T_radius]
        # (centre/radius form: see :func:`box_regularizer`).
        self._reg_stored: List[Tensor] = []
        # Nested mode with a universal loss: the universal network is held EWC-style, by the Fisher of
        # each finished task at the universal weights (see :meth:`_universal_loss`).
        self.trains_universal = self.mode == "nested" and self.gamma > 0 and cfg.universal_weight > 0
        if self.trains_universal:
            self.register_buffer("universal_fisher", torch.zeros(target.num_params))
            self.register_buffer("universal_anchor", torch.zeros(target.num_params))

    # --- training -------------------------------------------------------------------------
    @property
    def _reg_bounds(self) -> bool:
        """Also keep earlier tasks' lower/upper outputs fixed: always in nested mode,
        and in non-forced mode with ``reg_bounds`` (protects the worst-case certificate)."""
        return self.gamma > 0 and (self.mode == "nested" or self.cfg.reg_bounds)

    def begin_task(self, task_id: int) -> None:
        if self.cfg.embedding_init == "previous":
            self.embeddings.start_from_previous(task_id)
        self._reg_stored = []
        if task_id > 0 and self.cfg.beta > 0:
            with torch.no_grad():
                centre, radius = self.embeddings.box(range(task_id))
                outs = [out for _, out in self._hnet_passes(centre, radius if self._reg_bounds else None)]
                kept = [[o.middle for o in outs]]
                if self._reg_bounds:
                    kept += [[o.centre for o in outs], [o.radius for o in outs]]
                self._reg_stored = [torch.cat(parts) if len(parts) > 1 else parts[0].clone() for parts in kept]

    def _hnet_passes(self, centre: Tensor, radius: Optional[Tensor]) -> List[Tuple[slice, HnetOutput]]:
        """The hypernetwork over ``B`` embedding rows in as few passes as pay (all rows in one pass
        for an unchunked hypernetwork; see :attr:`HyperNetwork.rows_per_pass`), with each pass's rows."""
        n = centre.shape[0]
        passes = -(-n // self.hnet.rows_per_pass)
        step = -(-n // passes)  # equal groups: no small remainder pass re-reading the weights
        rows = [slice(s, min(s + step, n)) for s in range(0, n, step)]
        return [(s, self.hnet(centre[s], None if radius is None else radius[s])) for s in rows]

    def trainable_parameters(self, task_id: int) -> List[nn.Parameter]:
        return [*self.embeddings.task_parameters(task_id), *self.hnet.parameters()]

    def training_loss(self, task_id: int, x: Tensor, y: Tensor, ramp: float) -> Tuple[Tensor, StepLogs]:
        kappa, scale = kappa_and_scale(ramp, self.cfg.kappa_min)
        use_interval = self.gamma > 0 and kappa < 1.0
        # The current task (row 0) AND all previous tasks (rows 1..t) that the regulariser needs go
        # through the hypernetwork together: one pass when unchunked, so the big output layer is read
        # once per step; cache-sized groups of rows when chunked (see _hnet_passes).
        regularise = bool(self._reg_stored)
        ids = [task_id, *range(task_id)] if regularise else [task_id]
        centre, radius = self.embeddings.box(ids)
        if regularise and not self._reg_bounds:
            radius = torch.cat([radius[:1], torch.zeros_like(radius[1:])])
        radius = torch.cat([radius[:1] * scale, radius[1:]])
        need_radius = use_interval or (regularise and self._reg_bounds)
        passes = self._hnet_passes(centre, radius if need_radius else None)
        # Row 0 and the regulariser's rows by split, not [0] and [1:]: the backward of an index or a
        # slice writes a zero tensor of the pass's full (rows, P) size (measured: a large share of
        # the step for a 2M-weight target).
        first = passes[0][1]
        n0 = first.middle.shape[0]
        w_mid, w_c, w_r = (None if t is None else t.split([1, n0 - 1])[0].squeeze(0)
                           for t in (first.middle, first.centre, first.radius))
        if self.holds:
            w_mid, w_c, w_r = clip_box(self.held_lower, self.held_upper, w_mid, w_c if use_interval else None, w_r)
        if use_interval:  # one call: CNN targets share the middle network with the interval forward
            logits_mid, c, r = self.target.forward_with_interval(x, w_mid, w_c, w_r)
        else:
            logits_mid = self.target.forward(x, w_mid)
        ce_mid = F.cross_entropy(logits_mid, y)
        loss, logs = kappa * ce_mid, {"ce_middle": ce_mid.detach(), "kappa": kappa, "radius_scale": scale,
                                      "acc_centre": (logits_mid.detach().argmax(1) == y).float().mean()}
        if use_interval:
            worst = worst_case_logits(c - r, c + r, y)
            ce_worst, raw = worst_case_loss(worst, logits_mid, y, capped=self.cfg.ramp == "guarded")
            loss = loss + (1.0 - kappa) * ce_worst
            logs["ce_worst"] = raw.detach()
            logs.update(_margin_logs(worst.detach(), y))
            logs["worst_share"] = (1.0 - kappa) * ce_worst.detach() / loss.detach().clamp_min(1e-12)
        if regularise:
            reg = self._regulariser(passes, task_id)
            loss = loss + regularizer_weight(self.cfg.beta, task_id, self.cfg.reg_normalisation) * reg
            logs["reg"] = reg.detach()
        if self.trains_universal:
            uni_loss, uni_logs = self._universal_loss(task_id, x, y)
            loss = loss + uni_loss
            logs.update(uni_logs)
        logs["loss"] = loss.detach()
        return loss, logs

    def _universal_point(self, last_task: int) -> Tensor:
        """The universal embedding of tasks ``0..last_task`` as one hypernetwork input row ``(1, d)``
        (nested boxes always intersect: no emptiness check, so no host sync in the step)."""
        return self.embeddings.intersection(last_task + 1)[0].unsqueeze(0)

    def _universal_loss(self, task_id: int, x: Tensor, y: Tensor) -> Tuple[Tensor, StepLogs]:
        """``universal_weight * CE(f(x; H(u)))`` on the current task, plus the EWC penalty
        ``(universal_hold / 2) * sum(F * (H(u) - anchor)^2)`` of the finished tasks' Fisher at the
        universal weights (:mod:`hinterval.fisher`).

        Nothing else trains the universal network directly: the worst-case loss reaches it only through
        the box bounds. Its weights still lie in every task's box, so the certified bound keeps holding.
        """
        w_uni = self.hnet(self._universal_point(task_id), None).middle[0]
        ce = F.cross_entropy(self.target.forward(x, w_uni), y)
        loss, logs = self.cfg.universal_weight * ce, {"ce_universal": ce.detach()}
        if task_id > 0 and self.cfg.universal_hold > 0:
            hold = fisher_penalty(self.universal_fisher, self.universal_anchor, w_uni, self.cfg.universal_hold)
            loss = loss + hold
            logs["reg_universal"] = hold.detach()
        return loss, logs

    def _regulariser(self, passes: List[Tuple[slice, HnetOutput]], n_prev: int) -> Tensor:
        """Mean over the previous tasks (rows 1..n_prev of the passes) of the output drift."""
        total = None
        for rows, out in passes:
            skip = 1 if rows.start == 0 else 0  # row 0 is the current task
            n = rows.stop - rows.start - skip
            if n == 0:
                continue
            targets = [t[rows.start + skip - 1 : rows.stop - 1] for t in self._reg_stored]
            cur = [t.split([skip, n])[1] for t in ((out.middle, out.centre, out.radius) if self._reg_bounds else (out.middle,))]
            if self._reg_bounds:  # = output_regularizer of [middle, lower, upper], without forming the bounds
                part = box_regularizer(*cur, targets) * n
            else:
                part = output_regularizer(cur, targets) * n
            total = part if total is None else total + part
        return total / n_prev

    def end_task(self, task_id: int, *, box_scale: float = 1.0) -> None:
        """With a universal loss: the task's Fisher at the universal weights joins the universal
        network's hold. With the intersection hold: the task's box at the radius it was trained at,
        clipped into the earlier tasks' intersection, becomes the new intersection."""
        if self.trains_universal and self.cfg.universal_hold > 0:
            with torch.no_grad():
                w_uni = self.hnet(self._universal_point(task_id), None).middle[0]
            fisher = diagonal_fisher(lambda w, x: self.target.forward(x, w), w_uni, self.benchmark.tasks[task_id],
                                     seed=self.cfg.seed * 1_000_003 + task_id)
            consolidate(self.universal_fisher, self.universal_anchor, fisher, w_uni)
        if not self.holds:
            return
        with torch.no_grad():
            out = self._clipped(*self.embeddings.box([task_id], radius_scale=box_scale))
            self.held_lower.copy_(out.lower[0])
            self.held_upper.copy_(out.upper[0])

    def _clipped(self, centre: Tensor, radius: Optional[Tensor]) -> HnetOutput:
        """The hypernetwork's outputs for embedding boxes, clipped into the held intersection."""
        out = self.hnet(centre, radius)
        if self.holds:
            out = HnetOutput(*clip_box(self.held_lower, self.held_upper, out.middle, out.centre, out.radius))
        return out

    # --- prediction -------------------------------------------------------------------------
    def task_weights(self, task_ids: Sequence[int]) -> HnetOutput:
        """Outputs at full gamma for ``task_ids`` (one batched hypernetwork pass), clipped into
        the held intersection in nested mode with the intersection hold."""
        centre, radius = self.embeddings.box(task_ids)
        return self._clipped(centre, radius if self.gamma > 0 else None)

    @torch.no_grad()
    def weight_box(self, task_id: int) -> Optional[Tuple[Tensor, Tensor]]:
        if not self.has_intervals:
            return None
        out = self.task_weights([task_id])
        return out.centre[0], out.radius[0]

    def universal_weights(self, num_seen: int) -> Optional[Tensor]:
        """Weights ``(P,)`` from the universal embedding of tasks ``0..num_seen-1`` (nested mode).

        The universal embedding lies in every task's embedding box, so (sound IBP, and the same
        clipping) its network lies in every task's weight box: each task's certified accuracy
        bounds the universal network's accuracy on that task from below.
        """
        if self.mode != "nested" or self.gamma == 0:
            return None
        uni = self.embeddings.universal(num_seen)
        return None if uni is None else self._clipped(uni[0].unsqueeze(0), None).middle[0]

    @torch.no_grad()
    def universal_size(self, num_seen: int) -> Optional[Dict[str, object]]:
        """``hold`` (how earlier boxes are kept), ``embedding_share`` (the intersection's mean width
        over one box's width) and ``weight_rel_radius`` (:func:`relative_radius` of the
        intersection's weight box: 0 = the universal network is a point)."""
        uni = self.embeddings.universal(num_seen) if self.mode == "nested" and self.gamma > 0 else None
        if uni is None:
            return None
        mid, lower, upper = uni
        out = self._clipped(mid.unsqueeze(0), ((upper - lower) / 2).unsqueeze(0))
        width = 2 * self.gamma / self.embeddings.dim
        return {"hold": self.cfg.nested_hold, "embedding_share": float((upper - lower).mean() / width),
                "weight_rel_radius": relative_radius(self.target.boxed(out.centre[0]), self.target.boxed(out.radius[0])),
                **self.task_separation(num_seen)}

    @torch.no_grad()
    def task_separation(self, num_seen: int) -> Dict[str, Optional[float]]:
        """How far apart the first ``num_seen`` tasks are: the mean and smallest distance between
        their embedding centres (the hypernetwork's inputs), and the smallest distance between
        their networks relative to the networks' size. Nested boxes all contain one another's
        centres; tasks whose networks coincide are one network trained in sequence, not one per task."""
        centre, _ = self.embeddings.box(range(num_seen))
        nets = self.task_weights(range(num_seen)).middle
        return {"centre_spread": pair_distance(centre, "mean"), "centre_min_distance": pair_distance(centre, "min"),
                "network_min_distance": _relative(pair_distance(nets, "min"), float(nets.norm(dim=1).mean()))}

    @torch.inference_mode()
    def predictor(self, task_ids: Sequence[int]) -> Predictor:
        out = self.task_weights(task_ids)
        return WeightBoxPredictor(self.target, out.middle, out.centre, out.radius, self.universal_weights(max(task_ids) + 1))


def _margin_logs(worst: Tensor, y: Tensor) -> Dict[str, Tensor]:
    """Certified margin of a batch: lower bound of the true logit minus the largest upper bound of
    the others (positive = every weight in the box classifies the sample correctly)."""
    true = worst.gather(1, y[:, None]).squeeze(1)
    other = worst.scatter(1, y[:, None], float("-inf")).max(dim=1).values
    margin = true - other
    return {"worst_margin": margin.median(), "acc_worst": (margin > 0).float().mean()}


def _relative(distance: Optional[float], size: float) -> Optional[float]:
    return None if distance is None else distance / max(size, 1e-12)
