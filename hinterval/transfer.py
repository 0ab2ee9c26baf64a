"""Numbers from the device to the host, in one transfer.

Each device-to-host copy makes the host wait until the GPU has finished all the work queued
before it (a host sync), so the trainer and the evaluation keep counts and logs on the device and
read them through :func:`to_host` only where they need them (the syncs that are left:
``docs/architecture.md``). It is also the one place a test on fake tensors, which hold no values,
stands in for (``tests/test_fake_cuda.py``).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping

import torch


def to_host(values: Mapping[str, Any]) -> Dict[str, Any]:
    """``values`` with every tensor replaced by its numbers: a 0-dim tensor by a ``float``, others by
    nested lists of ``float`` (as ``tolist``); other values are kept. All tensors travel in one copy
    (as float64: integer counts below 2^53 stay exact)."""
    out = {k: v for k, v in values.items() if not isinstance(v, torch.Tensor)}
    tensors = {k: v.detach() for k, v in values.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        return out
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors.values()]).tolist()
    start = 0
    for key, t in tensors.items():
        n = t.numel()
        part = flat[start : start + n]
        start += n
        out[key] = part[0] if t.dim() == 0 else _nest(part, list(t.shape))
    return out


def _nest(flat: list, shape: list) -> list:
    """A flat list shaped as ``shape`` (row-major), as ``Tensor.tolist`` would give it."""
    if len(shape) <= 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
