"""``ray up cluster.yaml``, rehearsed on one machine with Ray's own autoscaler.

Ray ships a fake multi-node node provider (``fake_multinode``, what
``ray.cluster_utils.AutoscalingCluster`` configures): the real autoscaler (the monitor process a
head node runs with ``--autoscaling-config``) reads the node types, and "launching a node" starts a
raylet on this machine with that type's resources, logical GPUs included. The node types here are
read from ``cluster.yaml`` (resources, min/max workers, the cluster-wide limits); only what cannot
exist on one machine is left out (AWS ``node_config``) or added (a small object store per fake node).

``AutoscalingCluster`` itself is not used: in this Ray its constructor reads
``fake_multi_node/example.yaml``, which the wheel does not ship, and its ``start``/``shutdown``
run ``ray stop --force``, which kills every Ray process on the machine (other users' clusters too).
The head is started with ``ray.cluster_utils.Cluster`` instead, with the same autoscaling config
and environment (``RAY_FAKE_CLUSTER=1``) that ``AutoscalingCluster.start`` uses; at the end only
the processes this test started are stopped, by process id.

The sweep is the command users run on the head: ``python tune/search.py --address auto`` (``auto``
resolves through ``RAY_ADDRESS``, set to this cluster so another Ray on the machine cannot be picked).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER_YAML = REPO / "cluster.yaml"
PY = sys.executable

ray = pytest.importorskip("ray")
pytest.importorskip("optuna")

#: keys of Ray's fake_multi_node/example.yaml besides the node types (the config AutoscalingCluster builds)
FAKE_PROVIDER = {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True}
FAKE_HEAD_TYPE = "ray.head.default"
#: per fake node: without it every fake node would size its object store from this machine's RAM
FAKE_OBJECT_STORE = 100 * 1024 * 1024
#: iterations per task of the split-digits trials: a trial must outlast a node launch (~3 s on a loaded
#: 2-core CPU, where a 2 x 1500-iteration trial took 37 s; ~5 ms an iteration on a quiet core)
TRIAL_ITERS = 1000
#: a hang guard only: on a quiet 2-core CPU the sweep takes well under a minute, but Ray runs trials at
#: nice +15, so next to busy processes of normal priority a trial can wait many minutes for a core
SWEEP_TIMEOUT_S = 1800


def fake_autoscaling_config(cluster: Dict[str, Any], gcs_address: str) -> Dict[str, Any]:
    """The fake multi-node autoscaler config for ``cluster`` (a parsed ``cluster.yaml``).

    Worker node types keep their resources and min/max workers; the head type becomes Ray's fake
    head type with the head's resources. The provider talks to the GCS at ``gcs_address``.
    """
    types = cluster["available_node_types"]
    workers = {name: {"resources": {**t["resources"], "object_store_memory": FAKE_OBJECT_STORE},
                      "min_workers": t.get("min_workers", 0), "max_workers": t["max_workers"], "node_config": {}}
               for name, t in types.items() if name != cluster["head_node_type"]}
    head = {"resources": dict(types[cluster["head_node_type"]]["resources"]), "node_config": {}, "max_workers": 0}
    return {
        "cluster_name": cluster["cluster_name"], "max_workers": cluster["max_workers"],
        "upscaling_speed": cluster.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": cluster.get("idle_timeout_minutes", 5),
        "provider": {**FAKE_PROVIDER, "gcs_address": gcs_address}, "auth": {}, "docker": {},
        "head_node_type": FAKE_HEAD_TYPE, "available_node_types": {**workers, FAKE_HEAD_TYPE: head},
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def test_fake_node_types_are_cluster_yamls():
    cluster = yaml.safe_load(CLUSTER_YAML.read_text())
    cfg = fake_autoscaling_config(cluster, "127.0.0.1:1")
    types = cluster["available_node_types"]
    workers = [n for n in types if n != cluster["head_node_type"]]
    assert sorted(workers) == sorted(set(cfg["available_node_types"]) - {FAKE_HEAD_TYPE})
    for name in workers:
        fake = cfg["available_node_types"][name]
        assert {k: v for k, v in fake["resources"].items() if k != "object_store_memory"} == types[name]["resources"]
        assert (fake["min_workers"], fake["max_workers"]) == (types[name].get("min_workers", 0), types[name]["max_workers"])
    assert cfg["available_node_types"][FAKE_HEAD_TYPE]["resources"] == types[cluster["head_node_type"]]["resources"]
    assert cfg["max_workers"] == cluster["max_workers"]
    from ray.autoscaler._private.util import validate_config

    validate_config(cfg)  # what the autoscaler checks when it loads the config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _descendants(proc) -> list:
    """Every process ``proc`` (a ``psutil.Process``) started, if it is still the same process."""
    import psutil  # vendored by Ray (importable once ray is imported)

    try:
        return proc.children(recursive=True) if proc.is_running() else []  # is_running: not a reused pid
    except psutil.NoSuchProcess:
        return []


def _stop(procs) -> None:
    """SIGTERM, then SIGKILL after 3 s, for these processes (by id) only."""
    import psutil

    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=3)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


class NodeTypeWatcher(threading.Thread):
    """Polls the autoscaler's status (GCS key ``__autoscaling_status``) and keeps every node id it
    reported with its node type: the fake provider uses node ids as node IPs."""

    def __init__(self, gcs_address: str):
        super().__init__(daemon=True)
        from ray._raylet import GcsClient

        self.client, self.types, self.stop_event = GcsClient(address=gcs_address), {}, threading.Event()
        self.pending_seen: Dict[str, int] = {}

    def poll(self) -> None:
        raw = self.client.internal_kv_get(b"__autoscaling_status", None)
        report = (json.loads(raw) if raw else {}).get("autoscaler_report") or {}
        self.types.update(report.get("node_type_mapping") or {})
        for node_type, n in (report.get("pending_launches") or {}).items():
            self.pending_seen[node_type] = max(self.pending_seen.get(node_type, 0), n)
        for _, node_type, _ in report.get("pending_nodes") or []:
            self.pending_seen[node_type] = max(self.pending_seen.get(node_type, 0), 1)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception:  # the GCS going away at the end
                pass
            self.stop_event.wait(0.5)


@pytest.fixture
def autoscaling_cluster(tmp_path, monkeypatch):
    """A head node (``cluster.yaml``'s head resources) whose monitor runs Ray's autoscaler on the fake provider."""
    from ray.cluster_utils import Cluster

    cluster_yaml = yaml.safe_load(CLUSTER_YAML.read_text())
    port = _free_port()
    gcs = f"{ray._private.services.get_node_ip_address()}:{port}"
    config = tmp_path / "autoscaling.yaml"
    config.write_text(json.dumps(fake_autoscaling_config(cluster_yaml, gcs)))
    # the monitor process inherits these (as from AutoscalingCluster.start)
    monkeypatch.setenv("RAY_FAKE_CLUSTER", "1")
    monkeypatch.setenv("AUTOSCALER_UPDATE_INTERVAL_S", "1")
    head = cluster_yaml["available_node_types"][cluster_yaml["head_node_type"]]["resources"]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head.get("CPU", 0), "num_gpus": head.get("GPU", 0), "gcs_server_port": port,
        "autoscaling_config": str(config)})
    import psutil

    monitor = psutil.Process(cluster.head_node.all_processes["monitor"][0].process.pid)
    try:
        yield cluster, cluster_yaml
    finally:
        fake_nodes = _descendants(monitor)  # the worker nodes the autoscaler started
        ray.shutdown()
        cluster.shutdown()
        _stop(fake_nodes)


def _alive_nodes(cluster) -> list:
    return [n for n in cluster.global_state.node_table() if n["Alive"]]


@pytest.mark.slow
def test_autoscaler_launches_gpu_workers_for_pending_trials(autoscaling_cluster, tmp_path):
    cluster, cluster_yaml = autoscaling_cluster
    types = cluster_yaml["available_node_types"]
    gpu_types = {n for n, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types == {"gpu_worker"}
    gpu = types["gpu_worker"]
    watcher = NodeTypeWatcher(cluster.address)
    watcher.start()
    # `ray up` returns once the head is up; the GPU workers of min_workers follow. The sweep refuses
    # GPU trials on a cluster without GPUs, so (as a user would, with `ray status`) wait for them.
    deadline = time.time() + 120
    while sum(1 for n in _alive_nodes(cluster) if n["Resources"].get("GPU")) < gpu["min_workers"]:
        assert time.time() < deadline, "the autoscaler did not start gpu_worker's min_workers"
        time.sleep(0.5)
    start_nodes = {n["NodeID"] for n in _alive_nodes(cluster)}

    # One GPU per trial and one GPU per gpu_worker: with min_workers nodes up, the other trials wait
    # for GPUs the cluster does not have yet, until the autoscaler launches gpu_worker nodes.
    n_trials = gpu["min_workers"] + 1
    assert n_trials <= gpu["max_workers"]
    env = {**os.environ, "PYTHONPATH": "", "RAY_ADDRESS": cluster.address}
    cmd = [PY, str(REPO / "tune" / "search.py"), "--address", "auto", "--results-dir", str(tmp_path), "--name", "scale",
           "--num-samples", str(n_trials), "--max-concurrent", str(n_trials), "--num-tasks", "2",
           "--iters-per-task", str(TRIAL_ITERS), "--gpus-per-trial", "1", "--cpus-per-trial", "1", "--no-tensorboard",
           "--confirm-seeds", "0"]  # the search's trials alone drive the autoscaler here (confirmation: test_tune_search)
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S)
    finally:
        watcher.stop_event.set()
        watcher.join(5)
    watcher.poll()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    import pandas as pd

    df = pd.read_csv(tmp_path / "scale" / "trials.csv")
    assert len(df) == n_trials and set(df["status"]) == {"COMPLETE"}, df.to_string()
    by_type = watcher.types
    gpu_nodes = {node for node, t in by_type.items() if t == "gpu_worker"}
    launched = gpu_nodes - start_nodes
    assert len(gpu_nodes) >= n_trials and launched, (by_type, start_nodes)
    assert "cpu_worker" not in by_type.values(), "GPU trials must not scale the CPU workers"
    used = set(df["node_id"])
    assert used <= gpu_nodes, (used, by_type)  # every trial ran on a gpu_worker the autoscaler started
    assert used & launched, "a trial should run on a gpu_worker launched for it"
    assert len(used) == n_trials  # one GPU each: all at once, on different nodes
    print(f"autoscaler: gpu_worker nodes {sorted(n[-5:] for n in gpu_nodes)}, launched during the sweep "
          f"{sorted(n[-5:] for n in launched)}; trials on {sorted(n[-5:] for n in used)}")
