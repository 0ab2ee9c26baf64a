"""Ray itself: joining or starting it, shipping ``tune/`` to the workers, and what the nodes can hold."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from hinterval.errors import UserError

TUNE_DIR = Path(__file__).resolve().parent


def runtime_env() -> Dict[str, Any]:
    """Ship ``tune/`` to every worker (it is not part of the pip-installed package)."""
    return {"py_modules": [str(TUNE_DIR)], "excludes": ["__pycache__", "*.pyc"]}


def connect(address: Optional[str]) -> bool:
    """Join ``address`` or start Ray here; returns whether this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"runtime_env": runtime_env(), "log_to_driver": True, "configure_logging": True,
                              "logging_level": "warning"}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # "local": a new instance even if another Ray cluster runs on this machine
            ray.init(address="local", include_dashboard=False, **kwargs)
    except ConnectionError as exc:
        raise UserError(f"could not reach a Ray cluster at --address {address}: {exc}") from None
    return True


def check_resources(nodes: List[Dict[str, float]], *, cpus: float, gpus: float) -> Optional[str]:
    """Why trials of this size could never start on these nodes (``None`` if they can).

    A trial's CPUs and GPUs come from one node, so some alive node must hold both.
    """
    total_gpus = sum(n.get("GPU", 0) for n in nodes)
    if gpus > 0 and total_gpus == 0:
        return (f"--gpus-per-trial {gpus:g} but the Ray cluster has no GPUs (so trials would wait forever); "
                "rerun with --gpus-per-trial 0 to train on CPUs, or start GPU workers first")
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        biggest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        return (f"no node can hold one trial ({cpus:g} CPU, {gpus:g} GPU); the largest node has "
                f"{biggest.get('CPU', 0):g} CPU, {biggest.get('GPU', 0):g} GPU: lower --cpus-per-trial/--gpus-per-trial")
    return None


def cluster_slots(nodes: List[Dict[str, float]], *, cpus: float, gpus: float) -> int:
    """How many trials the nodes can run at once."""
    slots = 0
    for n in nodes:
        k = int(n.get("CPU", 0) // cpus)
        if gpus > 0:
            k = min(k, int(round(n.get("GPU", 0) / gpus, 6) // 1))
        slots += k
    return max(1, slots)


def alive_node_resources() -> List[Dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
