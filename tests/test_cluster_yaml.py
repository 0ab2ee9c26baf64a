"""cluster.yaml is a valid Ray autoscaler config (schema shipped with Ray) and follows our rules."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
jsonschema = pytest.importorskip("jsonschema")

CLUSTER = Path(__file__).resolve().parent.parent / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load(CLUSTER.read_text())


def test_validates_against_rays_schema(cluster):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


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


def test_every_node_installs_the_same_pinned_ray_and_the_project(cluster):
    cmds = "\n".join(cluster["setup_commands"])
    pins = re.findall(r"ray\[[^\]]*\]==([0-9.]+)", cmds)
    assert pins == [ray.__version__], f"setup_commands must pin ray=={ray.__version__}, found {pins}"
    assert re.search(r"pip install .*-e .*hinterval\[tune\]", cmds)
    assert any(remote.rstrip("/").endswith("hinterval") for remote in cluster["file_mounts"])


def test_results_go_to_an_s3_placeholder_and_no_credentials(cluster):
    text = CLUSTER.read_text()
    assert "s3://" in text
    for secret in ("aws_access_key_id", "aws_secret_access_key", "AKIA", "password", "token"):
        assert secret.lower() not in text.lower(), secret


def test_dashboard_and_client_ports_are_not_opened(cluster):
    rules = cluster["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        ports = range(rule.get("FromPort", 0), rule.get("ToPort", 0) + 1)
        assert not ({8265, 10001, 6379} & set(ports)), rule
    head_cmds = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=0.0.0.0" not in head_cmds
