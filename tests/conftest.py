"""Shared test helpers: run the real CLI in a subprocess, copy the shipped wine example."""

import atexit
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# The graph cache (compile/relink.py) is shared by the projects of one test run, as by the
# projects of one user, in a folder of its own (never the user's ~/.cache): an architecture is
# exported once per run and relinked after. xdist's workers inherit the controller's folder.
if "S2BUILD_GRAPH_CACHE" not in os.environ:
    os.environ["S2BUILD_GRAPH_CACHE"] = tempfile.mkdtemp(prefix="s2build-test-graphs-")
    atexit.register(shutil.rmtree, os.environ["S2BUILD_GRAPH_CACHE"], True)


def run(args, cwd, timeout=300, check=None, env=None):
    """Run `python -m s2build ARGS` in `cwd`; returns CompletedProcess (text).
    `check` = expected exit code (asserted, with output shown on mismatch)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    p = subprocess.run([sys.executable, "-m", "s2build", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def copy_example(name, dest):
    """Copy examples/NAME (sources and yaml only, no build outputs) to `dest`."""
    shutil.copytree(EXAMPLES / name, dest,
                    ignore=shutil.ignore_patterns("build", ".s2build", "__pycache__"))
    return Path(dest)


def cache_listing(project):
    """Sorted relative paths of everything under .s2build/cache."""
    root = Path(project) / ".s2build" / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def private_copy(src, tmp_path, name):
    """A copy of a built project (artifact, cache and state included) a test may change."""
    d = tmp_path / name
    shutil.copytree(src, d)
    return d


@pytest.fixture(scope="session")
def built_wine(tmp_path_factory):
    """The wine example, built once per session; tests change only a `wine` copy."""
    d = copy_example("wine", tmp_path_factory.mktemp("built") / "wine")
    run(["build"], d, check=0)
    return d


@pytest.fixture
def wine(tmp_path, built_wine):
    return private_copy(built_wine, tmp_path, "wine")


@pytest.fixture(scope="session")
def built_toy(tmp_path_factory):
    """The toy project of tests/toy.py, built once per session; tests change only a `toy` copy."""
    from toy import make_project
    d = make_project(tmp_path_factory.mktemp("built") / "toy")
    run(["build"], d, check=0)
    return d


@pytest.fixture
def toy(tmp_path, built_toy):
    return private_copy(built_toy, tmp_path, "toy")
