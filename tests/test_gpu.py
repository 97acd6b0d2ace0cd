"""The GPU path's pure parts, testable without a GPU: the determinism switches a release build
on cuda sets, the toolchain facts recorded on cuda, and bench/gpu.py's "no GPU" exit."""

import subprocess
import sys

from conftest import ROOT
from s2build.engine import toolchain


def test_release_on_cuda_sets_every_determinism_switch():
    got = toolchain.determinism("cuda", True, {})
    assert got == {"env": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
                   "deterministic_algorithms": True, "cudnn_deterministic": True,
                   "cudnn_benchmark": False}
    # a workspace setting the user chose is kept
    assert toolchain.determinism("cuda", True, {"CUBLAS_WORKSPACE_CONFIG": ":16:8"})["env"] == {}


def test_cpu_and_dev_builds_set_nothing():
    assert toolchain.determinism("cpu", True, {}) is None
    assert toolchain.determinism("cuda", False, {}) is None


def test_toolchain_on_cuda_records_gpu_cuda_and_cudnn(monkeypatch):
    monkeypatch.setattr(toolchain, "gpu_model", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(toolchain, "torch_cuda_version", lambda: "12.8")
    monkeypatch.setattr(toolchain, "cudnn_version", lambda: "9.10.2.21")
    tc = toolchain.toolchain("cuda", 1)
    assert (tc["device"], tc["gpu"], tc["cuda"], tc["cudnn"]) == \
        ("cuda", "NVIDIA H100 80GB HBM3", "12.8", "9.10.2.21")
    assert "gpu" not in toolchain.toolchain("cpu", 1)


def test_auto_resolves_to_cuda_only_with_a_cuda_torch_a_device_and_visible_gpus():
    assert toolchain.decide_device("auto", "12.8", None, True) == "cuda"
    assert toolchain.decide_device("auto", None, None, True) == "cpu"
    assert toolchain.decide_device("auto", "12.8", "", True) == "cpu"
    assert toolchain.decide_device("auto", "12.8", "0", False) == "cpu"


def test_bench_gpu_says_no_gpu_and_exits_0_on_cpu():
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py")], capture_output=True,
                       text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                    "PYTHONPATH": str(ROOT),
                                                    "CUDA_VISIBLE_DEVICES": ""})
    assert p.returncode == 0, p.stderr
    assert "no GPU" in p.stdout
