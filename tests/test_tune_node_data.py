"""Data on every node of a cluster: the per-node check before the first trial, and ``--download`` fetching
each node's own copy exactly once.

One ``ray.cluster_utils.Cluster`` for the module: a head that runs no trials and two worker nodes
whose raylets (and so their trials) see different ``HINTERVAL_DATA_DIR`` values: two machines'
separate disks, on one machine. The data comes from a loopback server (``tests/data_server.py``).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")  # and optuna, which tune.search needs
pytest.importorskip("optuna")
REPO = Path(__file__).resolve().parent.parent  # `tune` is not installed: imported from the checkout
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from data_fixtures import write_mnist  # noqa: E402
from data_server import FixtureServer, fixture_archives  # noqa: E402

from hinterval.data.common import DATA_DIR_ENV  # noqa: E402
from hinterval.data.sources import TEST_SOURCES_ENV  # noqa: E402
from tune import node_data, search  # noqa: E402

MNIST = [f"mnist/{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                   "t10k-labels-idx1-ubyte")]
SWEEP = ["--benchmark", "split-mnist", "--num-samples", "4", "--num-tasks", "2", "--iters-per-task", "2",
         "--cpus-per-trial", "1", "--max-concurrent", "4", "--confirm-seeds", "0", "--no-tensorboard"]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """(cluster, server, {node_id: its data dir}): a head with no CPUs and two 2-CPU nodes with their own data dirs."""
    import ray
    from ray.cluster_utils import Cluster

    base = tmp_path_factory.mktemp("nodes")
    server = FixtureServer({k: v for k, v in fixture_archives().items() if k.startswith("mnist/")})
    sources = server.write_sources(base / "sources.json")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    dirs = {}
    for name in ("a", "b"):
        env = {DATA_DIR_ENV: str(base / name / "data"), TEST_SOURCES_ENV: str(sources)}
        dirs[cluster.add_node(num_cpus=2, env_vars=env).node_id] = base / name / "data"
    cluster.wait_for_nodes()
    try:
        yield cluster, server, dirs
    finally:
        ray.shutdown()
        cluster.shutdown()
        server.close()


@pytest.mark.slow
def test_nodes_without_data_are_named_before_any_trial_then_download_gives_each_node_one_copy(nodes, tmp_path, capfd):
    cluster, server, dirs = nodes
    argv = [*SWEEP, "--address", cluster.address, "--results-dir", str(tmp_path)]
    assert search.main([*argv, "--name", "nodata"]) == 2
    err = capfd.readouterr().err
    [line] = [ln for ln in err.splitlines() if ln.startswith("search.py: error")]
    assert "split-mnist data is missing or unreadable on 2 of 2 node(s) that run trials" in line
    assert all(f"data dir {d}" in line for d in dirs.values()) and "pass --download" in line
    assert not (tmp_path / "nodata").exists() and server.requests == []  # nothing started, nothing fetched

    assert search.main([*argv, "--name", "fetch", "--download"]) == 0
    err = capfd.readouterr().err
    assert "the first trial on each fetches it (--download)" in err
    for d in dirs.values():  # each node has its own complete copy, where its loader reads it
        assert sorted(p.name for p in (d / "MNIST" / "raw").iterdir()) == sorted(n.split("/")[1] for n in MNIST)
    assert [server.gets(n) for n in MNIST] == [2, 2, 2, 2]  # once per node, whatever ran where
    import pandas as pd

    df = pd.read_csv(tmp_path / "fetch" / "trials.csv")
    assert len(df) == 4 and set(df["status"]) == {"COMPLETE"}, df.to_string()
    assert set(df["node_id"]) == set(dirs)


@pytest.mark.slow
def test_the_per_node_check_finds_the_node_that_lost_its_data(nodes, tmp_path, capfd):
    import ray

    cluster, server, dirs = nodes
    for d in dirs.values():  # every node has the data (from the sweep above, or written here)
        if not (d / "MNIST").exists():
            write_mnist(d / "MNIST" / "raw")
    lost, kept = list(dirs)
    shutil.rmtree(dirs[lost] / "MNIST")
    ray.init(address=cluster.address)
    try:
        found = node_data.check_nodes("split-mnist", None, None, cpus=1, gpus=0)
    finally:
        ray.shutdown()
    assert set(found) == set(dirs)
    assert found[kept]["problem"] is None and found[kept]["data_dir"] == str(dirs[kept])
    assert "MNIST IDX files not found" in found[lost]["problem"] and found[lost]["data_dir"] == str(dirs[lost])
    gets = list(server.requests)
    code = search.main([*SWEEP, "--address", cluster.address, "--results-dir", str(tmp_path), "--name", "lost"])
    assert code == 2
    err = capfd.readouterr().err
    assert "on 1 of 2 node(s)" in err and f"data dir {dirs[lost]}" in err and f"data dir {dirs[kept]}" not in err
    assert server.requests == gets and not (tmp_path / "lost").exists()


@pytest.mark.slow
def test_a_local_sweep_with_download_fetches_the_data_here_before_ray_starts(tmp_path, monkeypatch, capsys):
    from hinterval.errors import UserError
    from tune import cluster

    server = FixtureServer({k: v for k, v in fixture_archives().items() if k.startswith("mnist/")})
    monkeypatch.setenv(TEST_SOURCES_ENV, str(server.write_sources(tmp_path / "sources.json")))
    started = []

    def connect(address):  # where Ray would start: the data must be complete by then
        started.append(sorted(p.name for p in (tmp_path / "data" / "MNIST" / "raw").iterdir()))
        raise UserError("stopped before Ray for this test")

    monkeypatch.setattr(cluster, "connect", connect)
    try:
        code = search.main([*SWEEP, "--download", "--data-dir", str(tmp_path / "data"), "--results-dir",
                            str(tmp_path / "results"), "--name", "local"])
    finally:
        server.close()
    assert code == 2 and "stopped before Ray for this test" in capsys.readouterr().err
    assert started == [sorted(n.split("/")[1] for n in MNIST)] and [server.gets(n) for n in MNIST] == [1, 1, 1, 1]
    assert not (tmp_path / "results" / "local").exists()  # the failed start left no sweep behind
