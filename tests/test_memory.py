"""The memory estimate made before a model is allocated."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hinterval.config import make_config
from hinterval.errors import UserError
from hinterval.memory import available_bytes, check_memory, training_bytes


def test_estimate_counts_weights_gradients_and_adam_state(synthetic_benchmark):
    from hinterval.methods.registry import build_method
    from hinterval.targets.factory import build_target

    cfg = make_config(hnet_hidden="16", target_hidden="8", embedding_dim=4, device="cpu")
    method = build_method(cfg, synthetic_benchmark, build_target(cfg, synthetic_benchmark))
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in method.parameters() if not p.requires_grad) + sum(b.numel() for b in method.buffers())
    assert training_bytes(cfg, synthetic_benchmark) == 4 * (4 * trainable + frozen)


def test_a_model_that_cannot_fit_is_refused_before_allocation(synthetic_benchmark):
    cfg = make_config(hnet_hidden="1000000,1000000", target_hidden="8", device="cpu")
    with pytest.raises(UserError, match="does not fit"):
        check_memory(cfg, synthetic_benchmark, torch.device("cpu"))


def test_the_check_can_be_skipped(synthetic_benchmark, monkeypatch):
    monkeypatch.setenv("HINTERVAL_SKIP_MEMORY_CHECK", "1")
    check_memory(make_config(hnet_hidden="1000000,1000000", device="cpu"), synthetic_benchmark, torch.device("cpu"))


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="reads /proc/meminfo (Linux)")
def test_available_memory_is_read_from_meminfo_on_linux():
    """On Linux the figure is known, positive and at most what ``/proc/meminfo`` says is available."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    reported = int(meminfo["MemAvailable"].split()[0]) * 1024
    have = available_bytes(torch.device("cpu"))
    assert isinstance(have, int) and 0 < have <= reported * 1.5  # memory moves a little between the two reads
    assert available_bytes(torch.device("meta")) is None
