"""Ray itself: joining or starting it, shipping ``tune/`` to the workers, and what the nodes can hold."""
from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hinterval.errors import UserError, short

TUNE_DIR = Path(__file__).resolve().parent


def runtime_env() -> Dict[str, Any]:
    """Ship ``tune/`` to every worker (it is not part of the pip-installed package)."""
    return {"py_modules": [str(TUNE_DIR)], "excludes": ["__pycache__", "*.pyc"]}


#: seconds a cluster address may take to accept a connection before the sweep gives up on it
REACH_TIMEOUT_S = 10.0


def parse_address(address: str) -> Optional[Tuple[str, int]]:
    """``(host, port)`` of ``--address`` (``HOST:PORT``, ``[IPv6]:PORT`` or ``ray://HOST:PORT``); ``None``
    for ``auto`` (Ray finds the cluster this machine belongs to). Raises :class:`UserError` for anything else."""
    text = address.strip()
    if text == "auto":
        return None
    m = re.fullmatch(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", text)
    port = int(m.group(2)) if m else 0
    if not m or not 1 <= port <= 65535:
        why = f"port {port} is outside 1-65535" if m else "expected auto, HOST:PORT or ray://HOST:PORT"
        raise UserError(f"--address {short(address)}: {why} (e.g. --address 10.0.0.5:6379, the head's `ray start --head` port)")
    return m.group(1).strip("[]"), port


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse an ``--address`` nothing listens on, before Ray tries (it would wait for minutes, silently)."""
    where = parse_address(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout_s):
            pass
    except OSError as exc:
        why = "no answer within {:g} s".format(timeout_s) if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise UserError(f"could not reach a Ray cluster at --address {address}: {why}; start it there with "
                        "`ray start --head`, or leave --address out to run on this machine") from None


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
