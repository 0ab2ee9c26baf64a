"""Evaluation in the three CL scenarios plus worst-case (certified) accuracy.

A method's :meth:`predictor` precomputes the networks of all requested tasks once (one batched
hypernetwork pass); then every batch of samples goes through ALL tasks' networks at once
(``torch.func.vmap`` over tasks), so class-incremental inference has no Python loop over tasks
or samples.

Class-incremental (CIL) task inference
--------------------------------------
Without a task id, every task's network scores the sample and the task with the LOWEST score is
taken. The scores (``cil_score``, see docs/inference.md):

* ``mahalanobis`` (default): the squared Mahalanobis distance of the sample's first-layer response
  in task ``t``'s network to the nearest class mean of task ``t``'s own training samples (covariance
  shared by the classes; see :class:`FeatureStatistics`). Interval training leaves few live units
  after the first layer (measured on split-digits: 17 % of the first hidden layer, against 86 % in
  networks trained without intervals; ``benchmarks/cil_diagnostics.py``), so the outputs say little
  about which task an input came from, while the first layer, before its ReLU, sees the whole input.
* ``entropy``: entropy of the middle network's softmax (the rule of the method; also the rule of
  the independent-networks reference in ``benchmarks/cil.py``).
* ``calibrated-entropy``: the same entropy, calibrated per task (below).
* ``entropy-width``: ``entropy + alpha * w / w_t`` with ``w`` the mean width of the logit box and
  ``w_t`` its mean on task ``t``'s own validation split. Raw widths differ between tasks by orders
  of magnitude (measured: 29 to 2,571 on split-digits), so an unnormalised width term picks the task
  with the narrowest box, not the right one.
* ``worst-entropy``: entropy of the worst-case logits (lower bound of the predicted class, upper
  bounds of the others).
* ``worst-margin``: minus the certified margin (lower bound of the predicted class minus the
  largest upper bound of the others).
* ``relative-margin``: minus the certified margin divided by the mean logit-box width: how many
  box widths the decision is away from flipping.
* ``consensus``: the task to which the sample is typical by both ``relative-margin`` and
  ``worst-entropy`` (the smaller of the two calibrated p-values decides).
* ``auto``: the candidate with the highest task-inference accuracy on the validation split of
  the seen tasks (never the test split).

The interval scores and ``calibrated-entropy`` are *calibrated per task* (see
:class:`TaskCalibration`): each task's score becomes the fraction of the task's own validation
samples that score as badly or worse, so tasks whose networks have different logit scales
(interval training makes logits large, by a different factor per task) compete on how typical the
sample looks to them. The statistics of task ``t`` use only task ``t``'s
validation data and task ``t``'s network, which the regulariser holds fixed after the task: they
are the numbers one would store at the end of task ``t``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from hinterval import config, transfer
from hinterval.data.base import Benchmark
from hinterval.intervals import certified_mask

#: task-inference scores a config may name; ``auto`` chooses among :data:`CIL_CANDIDATES` on validation data
CIL_SCORES = config.CIL_SCORES
#: the candidates ``auto`` tries, in order of preference on ties
CIL_CANDIDATES = tuple(n for n in CIL_SCORES if n != "auto")
#: scores that need the interval (logit box) predictions
INTERVAL_SCORES = ("entropy-width", "worst-entropy", "worst-margin", "relative-margin", "consensus")
#: scores that need the first-layer responses and their per-task statistics (see :class:`FeatureStatistics`)
FEATURE_SCORES = ("mahalanobis",)
#: shrinkage of each task's response covariance towards its mean variance (guards a near-singular covariance)
FEATURE_SHRINKAGE = 0.01
#: training samples per task that the response statistics are computed from (evenly spaced over the split)
FEATURE_SAMPLES = 2000
#: scores calibrated per task against the task's own validation samples (see :class:`TaskCalibration`)
CALIBRATED_SCORES = ("calibrated-entropy", "worst-entropy", "worst-margin", "relative-margin", "consensus")


class Predictor:
    """Predictions of a fixed set of task networks. Subclasses fill the three methods.

    ``logits(x)`` -> ``(T, N, C)``; ``bounds(x)`` -> ``(lower, upper)`` or ``None``;
    ``universal(x)`` -> ``(N, C)`` or ``None``.
    """

    def logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def bounds(self, x: Tensor, *, rounding_safe: bool = False) -> Optional[Tuple[Tensor, Tensor]]:
        """Logit bounds ``(T, N, C)`` each; ``rounding_safe``: they also bound the floating-point
        rounding of their computation (the certified figures use these)."""
        return None

    def universal(self, x: Tensor) -> Optional[Tensor]:
        return None

    def features(self, x: Tensor, task: Optional[int] = None) -> Optional[Tensor]:
        """Every task network's first-layer response ``(T, N, H)`` (see ``mahalanobis``), only task
        position ``task``'s ``(N, H)`` when given, or ``None`` where the networks have none."""
        return None


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy of ``softmax(logits)`` over the last dimension."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _worst_for_predicted(mid: Tensor, lower: Tensor, upper: Tensor) -> Tuple[Tensor, Tensor]:
    """Worst-case logits w.r.t. the middle network's predicted class, and the certified margin."""
    pred = mid.argmax(-1, keepdim=True)
    low_pred = lower.gather(-1, pred)
    worst = upper.scatter(-1, pred, low_pred)
    others = upper.scatter(-1, pred, torch.finfo(upper.dtype).min).max(-1).values
    return worst, low_pred.squeeze(-1) - others


def raw_task_scores(mid: Tensor, bounds: Optional[Tuple[Tensor, Tensor]], names: Sequence[str],
                    feats: Optional[Tensor] = None, stats: Optional["FeatureStatistics"] = None) -> Dict[str, Tensor]:
    """Uncalibrated scores ``(T, N)`` (lower = more likely the sample's task), by name.

    Keys: ``entropy`` (for ``entropy``, ``calibrated-entropy`` and ``entropy-width``), ``width``
    (the mean logit-box width), ``mahalanobis`` (with first-layer responses ``feats`` and their
    statistics) and the interval scores asked for; names that need bounds are skipped when
    ``bounds`` is ``None``.
    """
    out: Dict[str, Tensor] = {}
    if "mahalanobis" in names and feats is not None and stats is not None:
        out["mahalanobis"] = stats.distance(feats)
    if any(n in names for n in ("entropy", "calibrated-entropy", "entropy-width")):
        out["entropy"] = entropy(mid)
    if bounds is None:
        return out
    lower, upper = bounds
    width = (upper - lower).mean(-1)
    out["width"] = width
    if any(n in names for n in ("worst-entropy", "worst-margin", "relative-margin", "consensus")):
        worst, margin = _worst_for_predicted(mid, lower, upper)
        if "worst-entropy" in names or "consensus" in names:
            out["worst-entropy"] = entropy(worst)
        if "worst-margin" in names:
            out["worst-margin"] = -margin
        if "relative-margin" in names or "consensus" in names:
            out["relative-margin"] = -margin / width.clamp_min(1e-12)
    return out


class FeatureStatistics:
    """Per task, where its own training samples lie in its network's first-layer response.

    Task ``t`` keeps the mean response of each of its classes and a whitening ``A_t`` of the
    responses' covariance around their class means (shared by the classes, shrunk towards its
    mean variance by :data:`FEATURE_SHRINKAGE`). The score of task ``t`` for a sample is its squared
    Mahalanobis distance to the nearest class mean: ``min_c |A_t (f_t(x) - mu_tc)|^2``. Every task
    network has the same number of first-layer units, so the distances compare across tasks as
    they are. The statistics use only task ``t``'s training data and network: they are the numbers
    one would store at the end of task ``t``.
    """

    def __init__(self, means: Tensor, present: Tensor, whiten: Tensor):
        self.means, self.present, self.whiten = means, present, whiten  # (T, C, H), (T, C), (T, H, H)

    @classmethod
    def fit(cls, feats: Sequence[Tensor], labels: Sequence[Tensor], num_classes: int) -> "FeatureStatistics":
        """From every task's own responses ``(n_t, H)`` (its network on its samples) and local labels ``(n_t,)``."""
        means, present, whiten = [], [], []
        for f, y in zip(feats, labels):
            f = f.double()
            counts = torch.bincount(y, minlength=num_classes)
            mu = torch.zeros(num_classes, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, y, f)
            mu = mu / counts.clamp_min(1)[:, None]
            centred = f - mu[y]
            cov = centred.T @ centred / max(1, len(f) - int((counts > 0).sum()))
            eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
            scale = cov.diagonal().mean().clamp_min(1e-12)
            cov = (1 - FEATURE_SHRINKAGE) * cov + FEATURE_SHRINKAGE * scale * eye
            chol = torch.linalg.cholesky(cov)
            whiten.append(torch.linalg.solve_triangular(chol, eye, upper=False))  # A cov A^T = I
            means.append(mu)
            present.append(counts > 0)
        return cls(torch.stack(means), torch.stack(present), torch.stack(whiten))

    def distance(self, feats: Tensor) -> Tensor:
        """Squared Mahalanobis distance to the nearest class mean, ``(T, N)``, of responses ``(T, N, H)``."""
        g = torch.einsum("tij,tnj->tni", self.whiten, feats.double())
        m = torch.einsum("tij,tcj->tci", self.whiten, self.means)
        d = torch.cdist(g, m).square().masked_fill(~self.present[:, None, :], float("inf"))
        return d.min(-1).values.to(feats.dtype)


def _raw_key(name: str) -> str:
    return {"calibrated-entropy": "entropy", "consensus": "relative-margin"}.get(name, name)


class TaskCalibration:
    """How each task's own validation samples score under that task's network.

    A calibrated score of task ``t`` for sample ``x`` is the empirical p-value of ``x``'s raw score
    among task ``t``'s own validation scores (the fraction of them that score ``x``'s value or
    worse), negated so that lower is better; ties (several tasks find ``x`` less typical than all of
    their validation samples) are broken by the z-score against the same samples. Rank-based
    calibration copes with the heavy tails of entropies (most own samples near 0, a few large),
    where a z-score alone is dominated by the tail.
    """

    def __init__(self, sorted_scores: Dict[str, Tensor], counts: Tensor, mean: Dict[str, Tensor], std: Dict[str, Tensor],
                 features: Optional[FeatureStatistics] = None):
        self.sorted, self.counts, self.mean, self.std = sorted_scores, counts, mean, std
        #: the first-layer response statistics of ``mahalanobis`` (``None`` where no score needs them)
        self.features = features

    @classmethod
    def from_samples(cls, raw: Dict[str, Tensor], true_task: Tensor, num_tasks: int,
                     features: Optional[FeatureStatistics] = None) -> "TaskCalibration":
        """Statistics from raw scores ``(T, N)`` of samples whose task positions are ``true_task`` ``(N,)``."""
        counts = torch.bincount(true_task, minlength=num_tasks)
        width = max(1, int(counts.max()))
        sorted_scores, mean, std = {}, {}, {}
        for name, s in raw.items():
            table = s.new_full((num_tasks, width), float("inf"))
            mu, sd = s.new_zeros(num_tasks), s.new_ones(num_tasks)
            for t in range(num_tasks):
                own = s[t][true_task == t]
                table[t, : own.numel()] = own.sort().values
                if own.numel():
                    mu[t] = own.mean()
                if own.numel() > 1:
                    sd[t] = own.std()
            sorted_scores[name], mean[name], std[name] = table, mu, sd
        return cls(sorted_scores, counts, mean, std, features)

    def score(self, name: str, raw: Dict[str, Tensor], alpha: float) -> Tensor:
        """The final score ``(T, N)`` of ``name`` from raw scores (calibrated where the name says so)."""
        if name == "entropy-width":
            return raw["entropy"] + alpha * raw["width"] / self.mean["width"].clamp_min(1e-12)[:, None]
        if name not in CALIBRATED_SCORES:
            return raw[name]
        if name == "consensus":  # typical by both scores: the smaller of the two p-values
            return torch.maximum(self.score("relative-margin", raw, alpha), self.score("worst-entropy", raw, alpha))
        key = _raw_key(name)
        s = raw[key]
        below = torch.searchsorted(self.sorted[key], s.contiguous())  # own validation scores better than s
        n = self.counts.double()[:, None]
        p = torch.where(n > 0, 1.0 - below.double() / n.clamp_min(1.0), 0.0)
        z = ((s - self.mean[key][:, None]) / self.std[key].clamp_min(1e-12)[:, None]).double()
        return -p + 1e-9 * z / (1.0 + z.abs())  # the z term in (-1e-9, 1e-9): only breaks ties of p


def task_inference_scores(mid: Tensor, bounds: Optional[Tuple[Tensor, Tensor]], alpha: float, *,
                          name: str = "entropy-width", calibration: Optional[TaskCalibration] = None,
                          feats: Optional[Tensor] = None) -> Tensor:
    """Score per task and sample, lower = more likely the sample's task: ``(T, N)``.

    Without ``calibration`` the scores that need per-task statistics are left unnormalised:
    the default then is the method's original rule, ``entropy + alpha * raw box width``.
    ``mahalanobis`` needs ``feats`` (the first-layer responses) and a calibration with their statistics.
    """
    raw = raw_task_scores(mid, bounds, [name], feats, None if calibration is None else calibration.features)
    if _raw_key(name) not in raw and name != "entropy-width":
        need = "first-layer responses and their statistics" if name in FEATURE_SCORES else "interval bounds"
        raise ValueError(f"score {name!r} needs {need}")
    if calibration is None:
        if name == "entropy-width":
            return raw["entropy"] + (alpha * raw["width"] if "width" in raw else 0.0)
        return raw[_raw_key(name)]
    return calibration.score(name, raw, alpha)


def _batches(benchmark: Benchmark, task_ids: Sequence[int], split: str, batch_size: int):
    """``(position, inputs, labels)`` for every batch of every task's ``split``."""
    for pos, i in enumerate(task_ids):
        task = benchmark.tasks[i]
        data = task.split(split)
        for start in range(0, len(data), batch_size):
            yield pos, task.inputs(data.x[start : start + batch_size]), data.y[start : start + batch_size]


def feature_statistics(predictor: Predictor, benchmark: Benchmark, task_ids: Sequence[int], *,
                       batch_size: int = 2048) -> Optional[FeatureStatistics]:
    """:class:`FeatureStatistics` of every task from up to :data:`FEATURE_SAMPLES` of its own
    training samples (evenly spaced); ``None`` where the predictor has no first-layer responses."""
    feats, labels = [], []
    for pos, i in enumerate(task_ids):
        task = benchmark.tasks[i]
        n = len(task.train)
        idx = torch.linspace(0, n - 1, min(n, FEATURE_SAMPLES), device=task.train.y.device).round().long()
        parts = []
        for start in range(0, len(idx), batch_size):
            f = predictor.features(task.inputs(task.train.x[idx[start : start + batch_size]]), pos)
            if f is None:
                return None
            parts.append(f)
        feats.append(torch.cat(parts))
        labels.append(task.train.y[idx])
    return FeatureStatistics.fit(feats, labels, benchmark.classes_per_task)


@torch.inference_mode()
def choose_cil_score(predictor: Predictor, benchmark: Benchmark, task_ids: Sequence[int], *, score: str = "auto",
                     alpha: float = 0.1, batch_size: int = 2048) -> Tuple[str, Optional[TaskCalibration], Dict[str, float]]:
    """Per-task calibration from the validation split (``mahalanobis``: response statistics from the
    training split) and, for ``auto``, the best candidate on the validation split.

    Returns:
        ``(name, calibration, val_task_acc)``: the score to use, the statistics (``None`` where no
        score needs them) and the validation task-inference accuracy of every candidate tried.
    """
    has_bounds = None
    names = list(CIL_CANDIDATES) if score == "auto" else [score]
    if score == "entropy":
        return "entropy", None, {}
    stats = None
    if any(n in FEATURE_SCORES for n in names):
        stats = feature_statistics(predictor, benchmark, task_ids, batch_size=batch_size)
        if stats is None:  # a predictor without first-layer responses
            names = [n for n in names if n not in FEATURE_SCORES] or ["entropy"]
        elif names == ["mahalanobis"]:  # needs no validation data
            return "mahalanobis", TaskCalibration({}, torch.zeros(len(task_ids)), {}, {}, stats), {}
    raws: List[Dict[str, Tensor]] = []
    truth: List[Tensor] = []
    for pos, x, _ in _batches(benchmark, task_ids, "val", batch_size):
        bnds = predictor.bounds(x)
        has_bounds = bnds is not None
        feats = predictor.features(x) if stats is not None else None
        raws.append(raw_task_scores(predictor.logits(x), bnds, names, feats, stats))
        truth.append(torch.full((x.shape[0],), pos, dtype=torch.long, device=x.device))
    if not raws or not has_bounds:  # point networks: the interval scores do not exist
        names = [n for n in names if n not in INTERVAL_SCORES]
        if not raws or not names or names == ["entropy"]:
            return "entropy", None, {}
    raw = {k: torch.cat([r[k] for r in raws], dim=1) for k in raws[0]}
    true_task = torch.cat(truth)
    calib = TaskCalibration.from_samples(raw, true_task, len(task_ids), stats)
    accs = {n: float((calib.score(n, raw, alpha).argmin(0) == true_task).float().mean()) for n in names}
    best = max(names, key=lambda n: (accs[n], -names.index(n)))
    return best, calib, (accs if score == "auto" else {})


@torch.inference_mode()
def evaluate_tasks(
    predictor: Predictor,
    benchmark: Benchmark,
    task_ids: Sequence[int],
    *,
    split: str = "test",
    batch_size: int = 2048,
    cil_alpha: float = 0.1,
    cil_score: str = "auto",
    scenarios: Sequence[str] = ("til", "worst", "dil", "cil"),
    rounding_safe: bool = True,
) -> Dict[str, Any]:
    """Accuracy per task in ``task_ids`` (the predictor's tasks, in the same order).

    ``worst`` counts a sample as certified when the lower bound of its class's logit is strictly
    above the upper bound of every other logit. With ``rounding_safe`` (default) the bounds also
    cover the floating-point rounding of their computation, so the margin must exceed that error;
    ``False`` takes the round-to-nearest bounds as they come (a figure to compare, not a certificate).

    Returns:
        ``{"til": [...], "worst": [...], "dil": [...], "cil": [...]}``; a scenario the method
        cannot do gets ``None`` entries. With ``"dil"`` and ``"worst"`` also ``"dil_violations"``:
        samples certified for their task's box that the universal network gets wrong (the
        universal network lies in every task's box, so with sound bounds this is 0). With ``"cil"`` also ``"cil_details"``: the score used
        (``score``), the validation accuracies that chose it (``val_task_acc``), the inferred-task
        confusion matrix (``confusion[i][j]``: samples of task position ``i`` given to ``j``) and
        the task-inference accuracy per task (``task_acc``).
    """
    if cil_score not in CIL_SCORES:
        raise ValueError(f"cil_score must be one of {CIL_SCORES}, got {cil_score!r}")
    tasks = [benchmark.tasks[i] for i in task_ids]
    device = tasks[0].train.y.device
    class_table = torch.tensor([t.classes for t in tasks]).to(device)  # (T, C)
    T = len(tasks)
    results: Dict[str, Any] = {s: [] for s in scenarios}
    score_name, calib, val_accs = "entropy", None, {}
    confusion = torch.zeros(T, T, dtype=torch.long, device=device)
    # counts stay on the device (correct answers per task and scenario, in this order): one transfer at the end
    correct = torch.zeros(T, len(scenarios), dtype=torch.long, device=device)
    col = {s: i for i, s in enumerate(scenarios)}
    defined = {s: True for s in scenarios}
    violations = torch.zeros((), dtype=torch.long, device=device)
    if "cil" in scenarios:
        score_name, calib, val_accs = choose_cil_score(predictor, benchmark, task_ids, score=cil_score,
                                                       alpha=cil_alpha, batch_size=batch_size)
    need_bounds = ("worst" in scenarios and not rounding_safe) or ("cil" in scenarios and score_name in INTERVAL_SCORES)
    need_feats = "cil" in scenarios and score_name in FEATURE_SCORES
    for pos, task in enumerate(tasks):
        for _, x, y in _batches(benchmark, [task_ids[pos]], split, batch_size):
            mid = predictor.logits(x)  # (T, N, C)
            bnds = predictor.bounds(x) if need_bounds else None
            safe = predictor.bounds(x, rounding_safe=True) if "worst" in scenarios and rounding_safe else bnds
            certified = None
            if "til" in scenarios:
                correct[pos, col["til"]] += (mid[pos].argmax(-1) == y).sum()
            if "worst" in scenarios:
                if safe is None:
                    defined["worst"] = False
                else:
                    certified = certified_mask(safe[0][pos], safe[1][pos], y)
                    correct[pos, col["worst"]] += certified.sum()
            if "dil" in scenarios:
                uni = predictor.universal(x)
                if uni is None:
                    defined["dil"] = False
                else:
                    right = uni.argmax(-1) == y
                    correct[pos, col["dil"]] += right.sum()
                    if certified is not None:  # the universal network lies in every task's box
                        violations += (certified & ~right).sum()
            if "cil" in scenarios:
                feats = predictor.features(x) if need_feats else None
                scores = task_inference_scores(mid, bnds, cil_alpha, name=score_name, calibration=calib, feats=feats)
                pred_task = scores.argmin(0)  # (N,)
                idx = torch.arange(len(y), device=device)
                pred_local = mid[pred_task, idx].argmax(-1)
                pred_global = class_table[pred_task, pred_local]
                correct[pos, col["cil"]] += (pred_global == class_table[pos, y]).sum()
                confusion[pos].index_add_(0, pred_task, torch.ones_like(pred_task))  # bincount: shape from the data
    host = transfer.to_host({"correct": correct, "violations": violations, "confusion": confusion})
    for pos, task in enumerate(tasks):
        for s in scenarios:
            results[s].append(host["correct"][pos][col[s]] / len(task.split(split)) if defined[s] else None)
    if "dil" in scenarios and "worst" in scenarios:
        results["dil_violations"] = int(host["violations"])
    if "cil" in scenarios:
        rows = [[int(v) for v in r] for r in host["confusion"]]
        results["cil_details"] = {
            "score": score_name,
            "val_task_acc": val_accs,
            "confusion": rows,
            "task_acc": [r[i] / max(1, sum(r)) for i, r in enumerate(rows)],
        }
    return results
