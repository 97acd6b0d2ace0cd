"""The toolchain in the build key (issue 10: 1, 2, 7): s2build's own code, the libraries that
change the bytes, the device. Each is changed for real (a copy of the package with one edited
line, a stub dist-info folder first on PYTHONPATH, S2BUILD_DEVICE) and the CLI must rebuild and
`explain` must name it."""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run
from toy import make_project

HERE = str(ROOT)


def small_toy(d):
    """The toy project with a small network and few epochs (train.device: auto)."""
    make_project(d, epochs=5)
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("hidden: [64, 64]", "hidden: [8]")
                 .replace("seed: 0}", "seed: 0, device: auto}"))
    return d


def env_path(*first):
    return {"PYTHONPATH": os.pathsep.join([*map(str, first), HERE])}


def shard_files(d):
    return sorted(p.name for p in (d / ".s2build" / "shards").rglob("*.s2s"))


# --- 1. s2build's own code ------------------------------------------------------------------

def test_an_edit_to_s2builds_own_code_changes_the_key_and_rebuilds(tmp_path):
    d = small_toy(tmp_path / "p")
    run(["build"], d, check=0, env={"S2BUILD_DEVICE": "cpu"})
    art = (d / "build" / "toy.onnx").read_bytes()
    pkg = tmp_path / "pkg"
    shutil.copytree(ROOT / "s2build", pkg / "s2build",
                    ignore=shutil.ignore_patterns("__pycache__"))
    exp = pkg / "s2build" / "compile" / "export.py"
    exp.write_text(exp.read_text() + "\nEXPORT_REVISION = 2\n")      # a behaviour line
    env = {"PYTHONPATH": str(pkg), "S2BUILD_DEVICE": "cpu"}
    p = run(["explain", "toy"], d, check=0, env=env)
    assert "toolchain changed: s2build_code (" in p.stdout, p.stdout
    run(["status"], d, check=1, env=env)
    p = run(["build"], d, check=0, env=env)
    assert "built in" in p.stdout and "restored" not in p.stdout, p.stdout
    assert (d / "build" / "toy.onnx").read_bytes() != art          # the key is in the artifact
    run(["status"], d, check=0, env=env)
    # the shipped code still has its own key: back to it, the first build is restored
    p = run(["build"], d, check=0, env={"S2BUILD_DEVICE": "cpu"})
    assert "restored" in p.stdout, p.stdout


def test_the_code_digest_is_cheap_and_cached_once_per_process():
    from s2build.engine import toolchain
    toolchain._CODE.clear()
    t0 = time.perf_counter()
    first = toolchain.code_digest()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert toolchain.code_digest() == first
    warm = time.perf_counter() - t0
    assert cold < 0.25 and warm < 0.001, (cold, warm)     # ~2 ms on an idle machine
    assert toolchain.code_digest("data") != first


# --- 2. libraries that change the bytes ------------------------------------------------------

def test_dist_info_names_are_normalised(tmp_path, monkeypatch):
    from s2build.engine import toolchain
    for name in ("onnx_ir-0.1.12.dist-info", "Pillow-11.0.0.dist-info",
                 "numpy-99.0.dist-info", "nvidia_cudnn_cu12-9.1.0.70.dist-info"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    monkeypatch.setattr(toolchain, "_DISTS", None)
    got = toolchain._installed_versions(("onnx-ir", "pillow", "numpy", "pyarrow-missing"))
    assert got == {"onnx-ir": "0.1.12", "pillow": "11.0.0", "numpy": "99.0"}
    assert toolchain.cudnn_version() == "9.1.0.70"
    monkeypatch.setattr(toolchain, "_DISTS", None)


def test_the_toolchain_names_the_libraries_that_change_the_bytes():
    from s2build.engine import toolchain
    tc = toolchain.toolchain("cpu")
    for lib in ("torch", "onnx", "onnxscript", "onnx-ir", "numpy", "pillow", "pyarrow"):
        assert lib in tc
    import numpy
    import PIL
    assert tc["numpy"] == numpy.__version__ and tc["pillow"] == PIL.__version__
    assert tc["onnx-ir"] != "missing"


@pytest.mark.parametrize("lib,stub", [("numpy", "numpy-99.0.dist-info"),
                                      ("pillow", "Pillow-99.1.dist-info")])
def test_a_library_version_change_rebuilds_and_reparses_shards(tmp_path, lib, stub):
    d = small_toy(tmp_path / "p")
    run(["build"], d, check=0, env={"S2BUILD_DEVICE": "cpu"})
    before = shard_files(d)
    stubs = tmp_path / "stubs"
    (stubs / stub).mkdir(parents=True)
    env = dict(env_path(stubs), S2BUILD_DEVICE="cpu")
    p = run(["explain", "toy"], d, check=0, env=env)
    version = stub.split("-")[1][: -len(".dist")]
    assert f"toolchain changed: {lib} (" in p.stdout and f"-> {version})" in p.stdout, p.stdout
    p = run(["build"], d, check=0, env=env)
    assert "built in" in p.stdout, p.stdout
    after = shard_files(d)
    assert len(after) == 2 * len(before) and set(before) < set(after)   # shards parsed again
    run(["status"], d, check=0, env=env)


def test_shard_salt_covers_data_code_and_libraries(tmp_path, monkeypatch):
    from s2build.engine import toolchain
    salt = toolchain.shard_salt()
    assert toolchain.code_digest("data")[:16] in salt and "numpy=" in salt and "pillow=" in salt
    (tmp_path / "numpy-99.0.dist-info").mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    monkeypatch.setattr(toolchain, "_DISTS", None)
    monkeypatch.setattr(toolchain, "_SALT", None)
    assert "numpy=99.0" in toolchain.shard_salt()
    monkeypatch.setattr(toolchain, "_DISTS", None)
    monkeypatch.setattr(toolchain, "_SALT", None)


# --- 7. the device ---------------------------------------------------------------------------

@pytest.mark.parametrize("torch_cuda,visible,node,override,want", [
    ("12.4", None, True, None, "cuda"),
    ("12.4", "0", True, None, "cuda"),
    (None, None, True, None, "cpu"),            # CPU wheel on a GPU host
    ("12.4", "", True, None, "cpu"),            # CUDA_VISIBLE_DEVICES=""
    ("12.4", "-1", True, None, "cpu"),
    ("12.4", None, False, None, "cpu"),         # no device node
    (None, None, False, "cuda", "cuda"),        # S2BUILD_DEVICE forces auto
    ("12.4", None, True, "cpu", "cpu"),
])
def test_device_resolution_from_injected_facts(torch_cuda, visible, node, override, want):
    from s2build.engine import toolchain
    assert toolchain.decide_device("auto", torch_cuda, visible, node, override) == want
    for explicit in ("cpu", "cuda"):
        assert toolchain.decide_device(explicit, torch_cuda, visible, node, override) == explicit


def test_a_bad_device_override_is_a_config_error():
    from s2build.engine import toolchain
    from s2build.errors import ConfigError
    with pytest.raises(ConfigError, match="S2BUILD_DEVICE='gpu' is not a device"):
        toolchain.decide_device("auto", None, None, False, "gpu")


@pytest.mark.parametrize("line,want", [("cuda = None", None), ("cuda = '12.4'", "12.4"),
                                       ("cuda: Optional[str] = '12.8'", "12.8")])
def test_torch_cuda_version_is_read_as_text(tmp_path, monkeypatch, line, want):
    from s2build.engine import toolchain
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "version.py").write_text(
        f"from typing import Optional\n__version__ = '2.5.1'\ndebug = False\n{line}\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    assert toolchain.torch_cuda_version() == want


def test_the_installed_torch_is_read_without_importing_it():
    from s2build.engine import toolchain
    import torch
    assert toolchain.torch_cuda_version() == torch.version.cuda


def test_training_uses_the_same_resolution(monkeypatch):
    from s2build.compile import train
    from s2build.engine import toolchain
    from s2build.errors import BuildError
    import torch
    monkeypatch.setenv("S2BUILD_DEVICE", "cpu")
    assert train.pick_device("auto") == "cpu"
    monkeypatch.delenv("S2BUILD_DEVICE")
    assert train.pick_device("auto") == toolchain.resolve_device("auto")
    if not torch.cuda.is_available():
        monkeypatch.setenv("S2BUILD_DEVICE", "cuda")
        with pytest.raises(BuildError, match="S2BUILD_DEVICE=cuda"):
            train.pick_device("auto")


def test_a_device_override_makes_the_target_stale_and_explain_says_so(tmp_path):
    d = small_toy(tmp_path / "p")
    run(["build"], d, check=0, env={"S2BUILD_DEVICE": "cpu"})
    run(["status"], d, check=0, env={"S2BUILD_DEVICE": "cpu"})
    p = run(["explain", "toy"], d, check=0, env={"S2BUILD_DEVICE": "cuda"})
    assert "toolchain changed: device (cpu -> cuda)" in p.stdout, p.stdout
    assert "toolchain changed: gpu (none -> " in p.stdout, p.stdout
    p = run(["status"], d, check=1, env={"S2BUILD_DEVICE": "cuda"})
    assert "stale" in p.stdout
    import torch
    if not torch.cuda.is_available():       # training resolves the same way: cuda, not there
        p = run(["build"], d, check=5, env={"S2BUILD_DEVICE": "cuda"})
        assert "no CUDA device is available (S2BUILD_DEVICE=cuda)" in p.stdout + p.stderr
