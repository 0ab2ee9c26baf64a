"""Whether a metric tells a sweep's trials apart: its spread over the trials against its noise.

The noise of an average accuracy is at least one test sample (the most one sample moves it) and,
where the winner was confirmed over more training seeds, the seed standard deviation. On easy
benchmarks every trial reaches 0.99-1.00 and the spread is a few samples: such a metric cannot
rank the trials, and its hyperparameter importances would only share out noise. No Ray.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

from hinterval import metrics as M

#: metrics whose spread over the finished trials is compared with their noise, and which get importances
#: when they vary (the leaderboard's metric columns)
NOISE_METRICS = (M.WORST_AVG_ACC, M.AVG_ACC, M.BWT, M.WORST_BWT, M.CIL_AVG_ACC, M.DIL_AVG_ACC)
#: a metric varies between trials when its spread exceeds this many times its noise: repeats of ONE config
#: with standard deviation s span about 2.8 s over 8 runs (the expected range of 8 normal draws)
NOISE_FACTOR = 3.0
#: result keys of the test samples a trial is evaluated on and of the most one of them moves an average
#: accuracy (tune.trainable.TEST_SAMPLES, SAMPLE_STEP)
TEST_SAMPLES, SAMPLE_STEP = "test_samples", "sample_step"


def sample_step(steps: Iterable[Any], counts: Iterable[Any]) -> Optional[float]:
    """The most one test sample moves an average accuracy: the largest reported ``sample_step``, else
    1 / the fewest test samples; ``None`` when neither was reported."""
    steps = [float(v) for v in steps if M.is_finite_number(v) and v > 0]
    if steps:
        return max(steps)
    counts = [int(v) for v in counts if M.is_finite_number(v) and v > 0]
    return 1.0 / min(counts) if counts else None


def one_sample(df) -> Optional[float]:
    """:func:`sample_step` of the finished trials of a trials frame."""
    done = df[df["complete"]] if len(df) else df
    if not len(done):
        return None
    return sample_step(done.get(SAMPLE_STEP, []), done.get(TEST_SAMPLES, []))


def metric_noise(df, confirmation: Optional[Mapping[str, Any]] = None,
                 metrics: Sequence[str] = NOISE_METRICS) -> Dict[str, Dict[str, Any]]:
    """Per metric: its spread over the finished trials and its noise, and whether it varies beyond it.

    The noise is the larger of one test sample (:func:`one_sample`) and the largest seed standard
    deviation the confirmation measured for that metric. A metric *varies* when its spread exceeds
    :data:`NOISE_FACTOR` times its noise; only such metrics get hyperparameter importances (the
    variance of a metric that does not vary is noise, and fANOVA would share that noise out).
    """
    done = df[df["complete"]] if len(df) else df
    sample = one_sample(df)
    out: Dict[str, Dict[str, Any]] = {}
    for m in metrics:
        if m not in done or not len(done):
            continue
        vals = [float(v) for v in done[m] if M.is_finite_number(v)]
        if len(vals) != len(done) or not vals:
            continue
        stds = [c["stats"][m]["std"] for c in (confirmation or {}).get("configs", [])
                if m in c.get("stats", {}) and c["stats"][m].get("std") is not None]
        seed_std = max(stds) if stds else None
        noise = max([v for v in (sample, seed_std) if v is not None], default=None)
        spread = max(vals) - min(vals)
        out[m] = {"lo": min(vals), "hi": max(vals), "spread": spread, "trials": len(vals), "sample": sample,
                  "seed_std": seed_std, "noise": noise,
                  "varies": spread > 0 and (noise is None or spread > NOISE_FACTOR * noise)}
    return out
