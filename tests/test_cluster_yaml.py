"""cluster.yaml (AWS) and cluster-local.yaml (your own machines) are valid Ray cluster configs
(the schema shipped with Ray, then the preparation and checks `ray up` runs before it touches a
machine) and follow our rules; every placeholder they contain is explained in docs/cluster.md."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster.yaml"
LOCAL = REPO / "cluster-local.yaml"
FILES = [CLUSTER, LOCAL]


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load(CLUSTER.read_text())


@pytest.fixture(scope="module")
def local():
    return yaml.safe_load(LOCAL.read_text())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_validates_against_rays_schema_and_ray_up_checks(path):
    config = yaml.safe_load(path.read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))  # defaults filled in, node types checked


def test_aws_cpu_head_and_gpu_workers(cluster):
    assert cluster["provider"]["type"] == "aws" and cluster["provider"]["region"]
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["min_workers"] <= t["max_workers"] for t in gpu)
    for t in types.values():
        assert all(isinstance(v, int) for v in t["resources"].values())
    assert sum(t.get("max_workers", 0) for t in types.values()) >= cluster["max_workers"] >= 1


def test_on_premise_lists_machines_by_placeholder_and_lets_ray_detect_gpus(local):
    provider = local["provider"]
    assert provider["type"] == "local"
    ips = [provider["head_ip"], *provider["worker_ips"]]
    assert len(ips) >= 2 and all(re.fullmatch(r"<[A-Z0-9_]+>", ip) for ip in ips), ips
    assert "available_node_types" not in local  # the local provider has one node type; `ray start` detects GPUs
    assert re.fullmatch(r"<[A-Z0-9_]+>", local["auth"]["ssh_user"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_node_installs_the_same_pinned_ray_and_the_project(path):
    config = yaml.safe_load(path.read_text())
    cmds = "\n".join(config["setup_commands"])
    pins = re.findall(r"ray\[[^\]]*\]==([0-9.]+)", cmds)
    assert pins == [ray.__version__], f"setup_commands must pin ray=={ray.__version__}, found {pins}"
    assert re.search(r"pip install .*-e .*hinterval\[tune\]", cmds)
    assert any(remote.rstrip("/").endswith("hinterval") for remote in config["file_mounts"])
    assert "HINTERVAL_SWEEP_STORAGE" in cmds  # shared checkpoint storage on every node


def test_cluster_and_on_premise_install_the_same_software(cluster, local):
    pip = lambda c: [cmd for cmd in c["setup_commands"] if "pip install" in cmd]  # noqa: E731
    assert pip(cluster) == pip(local)
    assert cluster["file_mounts"] == local["file_mounts"] and cluster["rsync_exclude"] == local["rsync_exclude"]


def test_results_go_to_shared_storage_placeholders():
    assert "s3://<BUCKET>" in CLUSTER.read_text()
    assert "HINTERVAL_SWEEP_STORAGE=<SHARED_DIR>/" in LOCAL.read_text()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_credentials(path):
    text = path.read_text().lower()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "akia", "password", "token", "begin openssh"):
        assert secret not in text, secret


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_and_client_ports_are_not_opened(path):
    config = yaml.safe_load(path.read_text())
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        ports = range(rule.get("FromPort", 0), rule.get("ToPort", 0) + 1)
        assert not ({8265, 10001, 6379} & set(ports)), rule
    head_cmds = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmds and "0.0.0.0" not in head_cmds


def test_docs_explain_every_placeholder():
    docs = (REPO / "docs" / "cluster.md").read_text()
    for path in FILES:
        for placeholder in sorted(set(re.findall(r"<[A-Z][A-Z0-9_]*>", path.read_text()))):
            assert placeholder in docs, f"{path.name}: {placeholder} is not explained in docs/cluster.md"
