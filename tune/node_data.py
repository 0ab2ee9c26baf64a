"""The benchmark's data on every node of a joined cluster, checked before the first trial.

Trials read their data on the node they run on (``--data-dir``, or each node's own
``$HINTERVAL_DATA_DIR``). A sweep that joins a cluster (``--address``) therefore runs
``hinterval data check`` as one Ray task on every alive node that can hold a trial, pinned there
(``NodeAffinitySchedulingStrategy``), before any trial starts. Nodes without the data are named in
one error line (exit 2) instead of failing trials one by one; with ``--download`` they are named in
a note, and the first trial on each of them fetches the data (once per node: a file lock).
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from hinterval.errors import UserError, one_line

#: how long the driver waits for a node's check (a node that does not answer is named, not fatal)
CHECK_TIMEOUT_S = 300


def check_here(benchmark: str, num_tasks: Optional[int], data_dir: Optional[str]) -> Dict[str, Any]:
    """This node's view: its data directory and why its data cannot be read (``None``: it can)."""
    import socket

    from hinterval.data.common import default_data_dir
    from hinterval.data.registry import check_data

    try:
        check_data(benchmark, num_tasks=num_tasks, data_dir=data_dir)
        problem = None
    except UserError as exc:
        problem = one_line(exc, 240)
    return {"host": socket.gethostname(), "data_dir": default_data_dir(data_dir), "problem": problem}


def trial_nodes(cpus: float, gpus: float) -> List[Dict[str, Any]]:
    """Alive nodes that can hold one trial of this size (a head with ``CPU: 0`` runs none)."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= cpus
            and n["Resources"].get("GPU", 0) >= gpus]


def check_nodes(benchmark: str, num_tasks: Optional[int], data_dir: Optional[str], *, cpus: float,
                gpus: float) -> Dict[str, Dict[str, Any]]:
    """:func:`check_here` on every node of :func:`trial_nodes`, by node id (plus ``address``;
    ``problem`` says so when a node did not answer within :data:`CHECK_TIMEOUT_S`)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(check_here)
    nodes = trial_nodes(cpus, gpus)
    refs = {n["NodeID"]: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(benchmark, num_tasks, data_dir) for n in nodes}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=CHECK_TIMEOUT_S)
    out: Dict[str, Dict[str, Any]] = {}
    for n in nodes:
        ref = refs[n["NodeID"]]
        try:
            found = ray.get(ref) if ref in ready else {"problem": f"no answer within {CHECK_TIMEOUT_S} s", "silent": True}
        except Exception as exc:  # noqa: BLE001 - the check itself failed there (import error, node lost)
            found = {"problem": f"the check failed there: {one_line(exc, 200)}"}
        out[n["NodeID"]] = {"address": n.get("NodeManagerAddress", "?"), **found}
    return out


def _label(node_id: str, found: Dict[str, Any]) -> str:
    where = f", data dir {found['data_dir']}" if found.get("data_dir") else ""
    return f"{found['address']} (node {node_id[:8]}{where})"


def check_before_trials(spec: Any) -> None:
    """Check the data on every trial node of the joined cluster before the first trial.

    Raises:
        UserError: without ``--download``, some nodes cannot read the data (all of them are named).
    """
    from hinterval.config import make_config
    from hinterval.data.sources import dataset_of

    cfg = make_config(spec["base"])
    if dataset_of(cfg.benchmark) is None:  # embedded data: nothing to check
        return
    found = check_nodes(cfg.benchmark, cfg.num_tasks, cfg.data_dir, cpus=spec["cpus_per_trial"],
                        gpus=spec["gpus_per_trial"])
    silent = [k for k, f in found.items() if f.get("silent")]
    lacking = {k: f for k, f in found.items() if f["problem"] and not f.get("silent")}
    if silent:
        print(f"search.py: warning: {len(silent)} node(s) did not answer the data check: "
              f"{', '.join(_label(k, found[k]) for k in silent)}", file=sys.stderr)
    if not lacking:
        return
    names = "; ".join(f"{_label(k, f)}: {f['problem']}" for k, f in lacking.items())
    what = f"{cfg.benchmark} data is missing or unreadable on {len(lacking)} of {len(found)} node(s) that run trials"
    if spec["download"]:
        print(f"search.py: {what} ({', '.join(_label(k, f) for k, f in lacking.items())}); the first trial on each "
              "fetches it (--download)", file=sys.stderr)
        return
    raise UserError(f"{what}: {names}; put the data there (`hinterval data download {cfg.benchmark} --data-dir DIR` "
                    "on each node, or the setup step in cluster.yaml) or pass --download to let the trials fetch it")
