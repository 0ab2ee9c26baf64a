"""The allocator setting that keeps the CPU step free of page faults (hinterval/runtime.py)."""
import os
import resource
import sys
import time

import pytest
import torch

from hinterval import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_stops_page_faults_of_repeated_large_tensors():
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True  # idempotent

    def faults_per_round():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            a = torch.ones(2_000_000)  # 8 MB: above glibc's default mmap threshold
            b = a * 2
            del a, b
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

    faults_per_round()  # warm the heap
    # 2 x 8 MB fresh pages would be ~4,000 faults per round; kept memory needs (almost) none
    assert faults_per_round() < 200


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setattr(runtime, "_configured", False)
    monkeypatch.setenv("HINTERVAL_KEEP_FREED_MEMORY", "0")
    assert runtime.keep_freed_memory() is False


def _policy_with(monkeypatch, load: float, threads, env=None):
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(runtime, "busy_cores", lambda: load)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    return runtime.choose_omp_wait_policy(threads), runtime.os.environ.get("OMP_WAIT_POLICY")


def test_wait_policy_spins_on_a_quiet_cpu_and_sleeps_on_a_busy_one(monkeypatch):
    assert _policy_with(monkeypatch, 0.2, 2) == ("default", None)
    assert _policy_with(monkeypatch, 0.9, 1) == ("default", None)
    assert _policy_with(monkeypatch, 1.5, 2) == ("PASSIVE", "PASSIVE")
    assert _policy_with(monkeypatch, 0.2, None) == ("default", None)  # threads default: all cores
    assert _policy_with(monkeypatch, 1.0, None) == ("PASSIVE", "PASSIVE")


def test_wait_policy_set_by_the_user_is_kept(monkeypatch):
    assert _policy_with(monkeypatch, 9.0, 2, {"OMP_WAIT_POLICY": "ACTIVE"}) == ("ACTIVE", "ACTIVE")
    assert _policy_with(monkeypatch, 9.0, 2, {"GOMP_SPINCOUNT": "1000"}) == ("default", None)


def test_busy_cores_sees_a_busy_loop():
    import threading

    if runtime.busy_cores(0.05) is None:
        pytest.skip("no /proc/stat")
    stop = time.monotonic() + 0.6

    def spin():
        while time.monotonic() < stop:
            pass

    th = threading.Thread(target=spin)
    th.start()
    busy = runtime.busy_cores(0.3)
    th.join()
    assert 0.5 <= busy <= (os.cpu_count() or 1) + 0.01


def test_configure_process_sets_threads_and_keeps_a_loaded_openmp_policy(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setattr(runtime, "busy_cores", lambda: pytest.fail("torch is loaded: the policy can no longer change"))
    before = torch.get_num_threads()
    try:
        settings = runtime.configure_process(SimpleNamespace(device="cpu", num_threads=2))
        assert settings.torch_threads == torch.get_num_threads() == 2
        assert settings.omp_wait_policy == "ACTIVE"
        assert settings.keep_freed_memory is sys.platform.startswith("linux")
        assert runtime.configure_process(SimpleNamespace(device="cpu", num_threads=None)).torch_threads == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_configure_process_chooses_the_policy_before_torch_loads():
    """In a fresh interpreter on a (faked) busy CPU: PASSIVE is set before torch loads, and reported.
    The command line and config validation load no torch, so `hinterval train` gets there in time."""
    import subprocess

    code = ("import sys; from hinterval import runtime\n"
            "from hinterval.cli import build_parser; from hinterval.config import make_config\n"
            "cfg = make_config(dict(benchmark='split-mnist', device='cpu', num_threads=1))\n"
            "runtime.busy_cores = lambda: 9.0\n"
            "assert 'torch' not in sys.modules\n"
            "s = runtime.configure_process(cfg)\n"
            "import os; print(s.omp_wait_policy, os.environ.get('OMP_WAIT_POLICY'), s.torch_threads)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PASSIVE", "PASSIVE", "1"]


@pytest.mark.slow
def test_a_ctrl_c_inside_torchs_first_import_waits_for_the_import():
    """A real SIGINT sent while torch is being imported by configure_process (from an import hook, when
    numpy, which torch loads, starts): KeyboardInterrupt comes after the import has finished, never
    inside it (where it was lost or aborted the process)."""
    import subprocess

    code = ("import os, signal, sys\n"
            "from hinterval import runtime\n"
            "from hinterval.config import make_config\n"
            "class Hook:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy' and 'torch' in sys.modules:\n"
            "            sys.meta_path.remove(self); os.kill(os.getpid(), signal.SIGINT)\n"
            "        return None\n"
            "sys.meta_path.insert(0, Hook())\n"
            "try:\n"
            "    runtime.configure_process(make_config(dict(device='cpu', num_threads=1)))\n"
            "except KeyboardInterrupt:\n"
            "    import numpy, torch\n"
            "    print('interrupted after the import', hasattr(numpy, 'matrix'), torch.ones(2).sum().item())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["interrupted", "after", "the", "import", "True", "2.0"]
