"""Security checks: safe deserialisation, configs as data, closed cluster ports, no secrets in outputs.

Source checks parse every Python file of the project with ``ast`` (so comments and strings do not
count). The CIFAR restricted unpickler and a malicious checkpoint pickle are tested in
``test_data_cifar.py`` and ``test_checkpoint.py``; not repeated here.
"""
from __future__ import annotations

import ast
import gzip
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SOURCE_DIRS = ("hinterval", "tune", "benchmarks", "scripts", "tests")
LIBRARY_DIRS = ("hinterval", "tune")
SECRET = "hunter2-test-7c1e"  # a fake secret value put into the environment of real runs
SECRET_ENV = {"AWS_SECRET_ACCESS_KEY": SECRET, "HINTERVAL_TEST_API_TOKEN": SECRET + "-token"}


def _py_files(dirs=SOURCE_DIRS) -> List[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts)


def _calls(path: Path) -> Iterator[Tuple[str, ast.Call]]:
    """``(dotted name, node)`` of every call in a file, e.g. ``("torch.load", node)``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
            yield ".".join(reversed(parts)), node


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else k.value
    return None


# --- deserialisation ------------------------------------------------------------------------------
def test_every_torch_load_uses_weights_only():
    seen, bad = 0, []
    for path in _py_files():
        for name, node in _calls(path):
            if name in ("torch.load", "torch.serialization.load"):
                seen += 1
                if _kw(node, "weights_only") is not True:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert seen >= 1, "expected at least hinterval/checkpoint.py's torch.load"
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_no_unsafe_deserialisers_in_the_library():
    """Library code never unpickles untrusted files directly (CIFAR goes through RestrictedUnpickler)."""
    banned = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "dill.load", "joblib.load",
              "torch.jit.load", "marshal.loads", "eval", "exec", "os.system"}
    bad = [f"{p.relative_to(REPO)}:{n.lineno} {name}" for p in _py_files(LIBRARY_DIRS) for name, n in _calls(p)
           if name in banned]
    bad += [f"{p.relative_to(REPO)}:{n.lineno} np.load(allow_pickle=...)" for p in _py_files(LIBRARY_DIRS)
            for name, n in _calls(p) if name in ("np.load", "numpy.load") and _kw(n, "allow_pickle") is not False]
    bad += [f"{p.relative_to(REPO)}:{n.lineno} shell=True" for p in _py_files(LIBRARY_DIRS) for name, n in _calls(p)
            if name.startswith("subprocess.") and _kw(n, "shell") is True]
    assert not bad, bad


def test_yaml_is_only_read_with_safe_load_and_written_with_safe_dump():
    """``yaml.load`` appears once, in hinterval/strict_load.py, with a ``SafeLoader`` subclass (it refuses a key
    given twice); config files are read through it."""
    import yaml

    from hinterval import strict_load

    strict = REPO / "hinterval" / "strict_load.py"
    bad = [f"{p.relative_to(REPO)}:{n.lineno} {name}" for p in _py_files() for name, n in _calls(p)
           if name in ("yaml.load", "yaml.load_all", "yaml.full_load", "yaml.unsafe_load", "yaml.unsafe_load_all",
                       "yaml.dump", "yaml.dump_all") and not (p == strict and name == "yaml.load")]
    assert not bad, f"use yaml.safe_load / yaml.safe_dump: {bad}"
    assert issubclass(strict_load._loader(), yaml.SafeLoader)  # noqa: SLF001 - the loader yaml.load is given
    assert "load_yaml" in {name for name, _ in _calls(REPO / "hinterval" / "config.py")}


def test_config_files_are_read_with_safe_load(tmp_path):
    """A YAML config with a Python tag is refused, not executed."""
    from hinterval.config import load_config_file
    from hinterval.errors import UserError

    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"gamma: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config_file(bad)
    assert not marker.exists()


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory) -> Path:
    """A real tiny ``hinterval train`` run made with fake secrets in the environment."""
    from hinterval.cli import main

    out = tmp_path_factory.mktemp("secret") / "run"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SECRET_ENV.items():
            mp.setenv(k, v)
        assert main(["train", "--out", str(out), "--iters-per-task", "10", "--val-every", "5", "--num-tasks", "2",
                     "--hnet-hidden", "8", "--target-hidden", "8", "--embedding-dim", "2", "--no-progress",
                     "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
def test_run_configs_are_stored_as_json_and_yaml(secret_run):
    """config.json/result.json are JSON; a checkpoint's config is plain JSON data; best_config.yaml safe-loads."""
    import json

    from hinterval.checkpoint import load_checkpoint

    run = secret_run
    cfg = json.loads((run / "config.json").read_text())
    run_id = cfg.pop("run_id")  # made when the directory was created; every checkpoint carries it
    assert json.loads((run / "result.json").read_text())["config"] == cfg
    state = load_checkpoint(run / "checkpoint.pt")
    assert json.loads(json.dumps(state["config"])) == cfg and state["run_id"] == run_id
    pytest.importorskip("pandas")
    from tune.report import best_config

    text = yaml.safe_dump(best_config({"config": cfg, "params": {}}))
    assert yaml.safe_load(text)["gamma"] == cfg["gamma"]


# --- cluster ---------------------------------------------------------------------------------------
CLUSTER = REPO / "cluster.yaml"


def test_cluster_yaml_opens_nothing_to_the_internet_but_ssh():
    text = CLUSTER.read_text()
    cluster = yaml.safe_load(text)
    for rule in cluster["provider"].get("security_group", {}).get("IpPermissions", []):
        public = [r for r in rule.get("IpRanges", []) if r.get("CidrIp") == "0.0.0.0/0"] + [
            r for r in rule.get("Ipv6Ranges", []) if r.get("CidrIpv6") == "::/0"]
        if public:
            assert rule.get("FromPort") == rule.get("ToPort") == 22, f"only SSH may be public: {rule}"
    assert "0.0.0.0/0" not in text and "::/0" not in text
    head = " ".join(cluster["head_start_ray_commands"])
    hosts = re.findall(r"--dashboard-host[= ](\S+)", head)
    assert hosts and all(h in ("127.0.0.1", "localhost") for h in hosts), hosts
    for cmd in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]:
        assert "0.0.0.0" not in cmd, cmd
        assert "--ray-client-server-port" not in cmd, "the Ray client port should stay at its (closed) default"


def test_cluster_yaml_has_no_credentials():
    text = CLUSTER.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "AWS access key id"
    assert "PRIVATE KEY" not in text, "inline private key"
    assert not re.search(r"(?i)(secret|password|passwd|token|api[_-]?key)\s*[:=]\s*\S", text)
    auth = yaml.safe_load(text).get("auth", {})
    assert set(auth) <= {"ssh_user", "ssh_private_key"}, auth
    for placeholder in re.findall(r"<([A-Z_]+)>", text):  # only placeholders, no real account ids or buckets
        assert placeholder in {"REGION", "AMI_ID", "ACCOUNT_ID", "S3_ACCESS_PROFILE", "BUCKET", "PLACEHOLDER"}, placeholder
    assert not re.search(r"arn:aws:iam::\d{12}:", text), "a real AWS account id"


def test_a_local_sweep_starts_ray_without_a_dashboard(monkeypatch):
    ray = pytest.importorskip("ray")
    from tune import cluster

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    cluster.connect(None)
    assert seen.get("include_dashboard") is False and "dashboard_host" not in seen


# --- secrets never reach result, checkpoint or TensorBoard files -------------------------------------------
def _file_texts(root: Path) -> Iterator[Tuple[str, bytes]]:
    """Every file under ``root`` as bytes, plus the members of zip files (checkpoints) and gzip files."""
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        yield str(p.relative_to(root)), data
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    yield f"{p.relative_to(root)}:{name}", z.read(name)
        elif data[:2] == b"\x1f\x8b":
            yield f"{p.relative_to(root)}:gunzip", gzip.decompress(data)


def _leaks(root: Path) -> List[str]:
    needles = [v.encode() for v in SECRET_ENV.values()] + [k.encode() for k in SECRET_ENV]
    return [f"{name} contains {n.decode()!r}" for name, data in _file_texts(root) for n in needles if n in data]


@pytest.mark.slow
def test_train_outputs_hold_no_environment_secrets(secret_run):
    names = {p.name for p in secret_run.rglob("*") if p.is_file()}
    assert {"checkpoint.pt", "config.json", "result.json"} <= names and any(n.startswith("events.out.tfevents") for n in names)
    assert _leaks(secret_run) == []


@pytest.mark.slow
def test_sweep_results_hold_no_environment_secrets(tmp_path):
    """A real (tiny) sweep with secrets in the driver's environment: nothing under results/<name>/ has them,
    including Tune's own state, trial dirs and TensorBoard runs."""
    pytest.importorskip("ray")
    cmd = [sys.executable, str(REPO / "tune" / "search.py"), "--results-dir", str(tmp_path), "--name", "s",
           "--num-samples", "1", "--num-tasks", "2", "--iters-per-task", "5", "--set", "target_hidden=8",
           "--hnet-hidden", "8", "--max-concurrent", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **SECRET_ENV}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = tmp_path / "s"
    assert (out / "trials.csv").is_file() and list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert list((out / "_ray").rglob("*.pt")) or list((out / "_ray").rglob("checkpoint*"))
    assert _leaks(out) == []
