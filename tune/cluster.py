"""Ray itself: joining or starting it, shipping ``tune/`` to the workers, and what the nodes can hold."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from hinterval.errors import EXIT_USER, UserError, one_line
from tune.flags import parse_address

TUNE_DIR = Path(__file__).resolve().parent


def runtime_env() -> Dict[str, Any]:
    """Ship ``tune/`` to every worker (it is not part of the pip-installed package)."""
    return {"py_modules": [str(TUNE_DIR)], "excludes": ["__pycache__", "*.pyc"]}


#: seconds a cluster address may take to accept a connection, and Ray to join it, before the sweep gives up
REACH_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 25.0


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse an ``--address`` nothing listens on, before Ray tries (it would wait for minutes, silently)."""
    where = parse_address(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout_s) as conn:
            speaks = os.environ.get("RAY_USE_TLS", "0") in ("1", "true") or _speaks_grpc(conn)
    except OSError as exc:
        why = "no answer within {:g} s".format(timeout_s) if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise UserError(f"could not reach a Ray cluster at --address {address}: {why}; start it there with "
                        "`ray start --head`, or leave --address out to run on this machine") from None
    if not speaks:
        raise UserError(f"--address {address}: something else listens there, not a Ray cluster (its head answers "
                        "gRPC); check the head's address and port (`ray status` on the head)")


def _speaks_grpc(conn: socket.socket) -> bool:
    """Whether the server behind ``conn`` answers an HTTP/2 greeting as gRPC servers (Ray's GCS) do:
    with a SETTINGS frame. An HTTP/1 or SSH server, or a silent one, does not."""
    conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    head = b""
    with contextlib.suppress(OSError):
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    return len(head) == 9 and head[3] == 4  # frame type 4: SETTINGS


#: Ray's documented switch for single-machine Ray (its default on Windows and macOS): the node's address is
#: the loopback address, and then Ray's gRPC servers (GCS, raylet, workers) listen on 127.0.0.1 only
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_local_ray_on_loopback() -> bool:
    """Make the Ray this process starts listen on 127.0.0.1 only (no other machine can reach it): call
    before Ray is imported, for a sweep that starts its own Ray. Returns whether it was in time (Ray reads
    the switch once, when imported); a value the user set is kept."""
    if "ray" in sys.modules:
        return False
    os.environ.setdefault(LOOPBACK_ENV, "0")
    return True


def connect(address: Optional[str]) -> bool:
    """Join ``address`` or start Ray here; returns whether this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"runtime_env": runtime_env(), "log_to_driver": True, "configure_logging": True,
                              "logging_level": "warning"}
    try:
        if address:
            with _answer_within(JOIN_TIMEOUT_S, address):
                ray.init(address=address, **kwargs)
        else:  # "local": a new instance even if another Ray cluster runs on this machine
            ray.init(address="local", include_dashboard=False, **kwargs)
    except ConnectionError as exc:
        raise UserError(f"could not reach a Ray cluster at --address {address}: {one_line(exc)}") from None
    except SystemExit as exc:  # SIGTERM met the handler ray.init installs first (sys.exit(15)): a stop as any other
        if exc.code != signal.SIGTERM:
            raise
        from tune.signals import StopSignals

        StopSignals.received = signal.SIGTERM
        raise KeyboardInterrupt from None
    return True


@contextlib.contextmanager
def _answer_within(seconds: float, address: str) -> Iterator[None]:
    """End the process with exit 2 and one line if the block (joining ``address``) takes longer than
    ``seconds``: Ray keeps retrying an address where something else listens, for minutes and silently,
    inside C++ code that no signal interrupts. What the sweep created before is undone first."""
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        from tune.startup import STARTUP

        STARTUP.release(failed=True)
        with contextlib.suppress(Exception):
            sys.stderr.write(f"search.py: error: no Ray cluster answered at --address {address} within {seconds:g} s "
                             "(something else may listen there); check the head's address and port (`ray status` on "
                             "the head)\n")
            sys.stderr.flush()
        os._exit(EXIT_USER)

    threading.Thread(target=watch, name="join-timeout", daemon=True).start()
    try:
        yield
    finally:
        done.set()


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
