"""Will the model fit? A memory estimate made before any weight is allocated.

Why: a config is only numbers, and ``--hnet-hidden 100000,100000`` asks for ten billion
hypernetwork weights (40 GB, 160 GB with gradients and Adam's two moments). Allocating that
either raises an allocator traceback or, with Linux's overcommit, gets the process killed while
the weights are initialised. Instead the method is built on PyTorch's ``meta`` device (shapes
only, no storage, milliseconds), its parameters are counted, and a run that cannot fit is refused
with one line saying how much it needs and how much the machine has.

The estimate is a lower bound (weights + gradients + Adam state, no activations), so a refused run
would certainly not have fitted; a run that passes can still run out of memory on activations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from hinterval.config import ExperimentConfig
from hinterval.data.base import Benchmark
from hinterval.errors import UserError
from hinterval.methods.registry import build_method
from hinterval.targets.factory import build_target

#: gradient + Adam's first and second moment per trainable weight
OPTIMIZER_COPIES = 3


def training_bytes(cfg: ExperimentConfig, benchmark: Benchmark) -> Optional[int]:
    """Bytes the method's weights, buffers, gradients and Adam state need (``None``: cannot tell).

    Builds the method on the ``meta`` device, which records shapes without allocating storage.

    Raises:
        UserError: the model's shapes overflow what PyTorch can index (it can never be built).
    """
    try:
        with torch.device("meta"):
            method = build_method(cfg, benchmark, build_target(cfg, benchmark))
    except (RuntimeError, OverflowError) as exc:
        text = str(exc).lower()
        if "overflow" in text or "too large" in text or isinstance(exc, OverflowError):
            raise UserError("the model is too large to build (its weight count overflows 64 bits); "
                            "use smaller --hnet-hidden/--target-hidden/--embedding-dim or --hnet-chunk-size") from None
        return None  # an operation without a meta implementation: no estimate, no refusal
    except (NotImplementedError, TypeError, ValueError):
        return None
    total = 0
    for p in method.parameters():
        total += p.numel() * p.element_size() * (1 + (OPTIMIZER_COPIES if p.requires_grad else 0))
    for b in method.buffers():
        total += b.numel() * b.element_size()
    return total


def available_bytes(device: torch.device) -> Optional[int]:
    """Memory this process can still use on ``device`` (``None`` where unknown).

    CPU: ``MemAvailable`` from ``/proc/meminfo``, lowered by a cgroup (container) limit if one is
    set. CUDA: the free memory the driver reports for the device.
    """
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    known = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                known.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = Path(limit_f).read_text().strip(), Path(usage_f).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:  # "max" or a huge v1 value: no limit
            known.append(max(0, int(limit) - int(usage)))
        break
    return min(known) if known else None


def check_memory(cfg: ExperimentConfig, benchmark: Benchmark, device: torch.device, *, fit: bool = True) -> None:
    """Refuse (:class:`UserError`) a run that cannot be built for ``benchmark`` (an interval scope deeper
    than the target, a target that does not fit the inputs) or whose weights and optimiser state cannot
    fit on ``device``. The one check ``hinterval train`` and a sweep's pre-flight (every kind of trial)
    both make, on the ``meta`` device: milliseconds, nothing allocated.

    ``HINTERVAL_SKIP_MEMORY_CHECK=1`` or ``fit=False`` (the memory is another machine's) skips the
    memory figure (e.g. where swap makes a slow run acceptable), not the structure.
    """
    need = training_bytes(cfg, benchmark)
    if need is None or not fit or os.environ.get("HINTERVAL_SKIP_MEMORY_CHECK") == "1":
        return
    have = available_bytes(device)
    if have is not None and need > have:
        gib = lambda n: f"{n / 2**30:,.1f} GiB"  # noqa: E731
        raise UserError(f"the model does not fit: its weights, gradients and Adam state need at least {gib(need)} but "
                        f"{device.type.upper()} memory has {gib(have)} free; use smaller --hnet-hidden/--target-hidden "
                        "or --hnet-chunk-size (chunked hypernetworks are much smaller)")
