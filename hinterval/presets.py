"""Per-benchmark default hyperparameters (``defaults < preset < config file < flags``).

Digits/Fashion rows are ours, measured on a 2-core CPU (see README and ``benchmarks/``); MNIST,
CIFAR and TinyImageNet rows are the paper's hyperparameters (spec §6).
"""
from typing import Any, Dict

PRESETS: Dict[str, Dict[str, Any]] = {
    "split-digits": dict(target_hidden=(100, 100), hnet_hidden=(100, 100), embedding_dim=24, gamma=1.0,
                         beta=0.01, batch_size=64, iters_per_task=600, val_every=100),
    "permuted-digits": dict(target_hidden=(100, 100), hnet_hidden=(100, 100), embedding_dim=24, gamma=0.5,
                            beta=0.01, batch_size=64, iters_per_task=800, val_every=100),
}
