"""The build server (s2build/server/): real CLI subprocesses, real servers, the toy project.

Every test asks for the server with S2BUILD_SERVER=1 (pytest turns it off by default), gives
it a short idle timeout, and shuts it down at the end (the `served` fixture), so no server
outlives the tests.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run, sha256
import toy

SERVER_ENV = {"S2BUILD_SERVER": "1", "S2BUILD_SERVER_IDLE": "30"}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                         # a zombie (our own child) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _server_pid(project):
    return json.loads((project / ".s2build" / "server.json").read_text())["pid"]


def _wait_gone(pid, seconds=10):
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


@pytest.fixture
def served(tmp_path):
    """A factory of toy projects; every server they started is stopped afterwards."""
    made = []

    def make(name="p", epochs=2, env=None):
        d = toy.make_project(tmp_path / name, epochs=epochs)
        made.append((d, env))
        return d
    yield make
    for d, env in made:
        pid = None
        try:
            pid = _server_pid(d)
        except (OSError, ValueError):
            pass
        run(["shutdown"], d, env=dict(SERVER_ENV, **(env or {})), timeout=30)
        if pid is not None and not _wait_gone(pid, 5):
            os.kill(pid, signal.SIGKILL)


def _set_epochs(project, epochs):
    text = (project / "s2build.yaml").read_text()
    (project / "s2build.yaml").write_text(re.sub(r"epochs: \d+", f"epochs: {epochs}", text))


def _steady(text):
    """Output without timings and reasons (equal builds, different histories)."""
    return re.sub(r"\(never built\)|\(file changed: [^)]*\)", "(WHY)",
                  re.sub(r"\d+\.\d+s", "Ts", text))


def _popen(args, cwd, env):
    return subprocess.Popen([sys.executable, "-m", "s2build", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **env))


def _wait_for_line(stream, needle, seconds=60):
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} in {seen}")


def test_same_bytes_errors_and_socket(served, tmp_path):
    a = served("a")
    b = toy.make_project(tmp_path / "b", epochs=2)
    run(["build"], a, env=SERVER_ENV, check=0)
    log = a / ".s2build" / "server.log"
    deadline = time.monotonic() + 20                # a server that built and warmed up since
    while "warmed up" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    for d in (a, b):
        toy.relabel(d / "data" / "a.csv", 5)
    via = run(["build"], a, env=SERVER_ENV, check=0)
    alone = run(["build", "--no-server"], b, env=SERVER_ENV, check=0)
    assert sha256(a / "build/toy.onnx") == sha256(b / "build/toy.onnx")
    assert _steady(via.stdout) == _steady(alone.stdout)
    assert _steady(via.stderr) == _steady(alone.stderr)
    assert not (b / ".s2build" / "server.sock").exists()          # --no-server: none started
    sock = a / ".s2build" / "server.sock"
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    pid = _server_pid(a)
    assert _alive(pid)

    # a no-op build answers in-process, without torch: the server sees no job
    log = (a / ".s2build" / "server.log").read_text()
    assert log.count(" job: s2build build") == 2
    noop = subprocess.run([sys.executable, "-X", "importtime", "-m", "s2build", "build"], cwd=a,
                          env=dict(os.environ, **SERVER_ENV), capture_output=True, text=True)
    assert noop.returncode == 0 and noop.stdout == "toy: up to date\n"
    imported = {line.split("|")[-1].strip() for line in noop.stderr.splitlines()}
    assert "s2build.server.client" in imported
    assert not imported & {"torch", "numpy", "onnxruntime"}
    assert (a / ".s2build" / "server.log").read_text() == log
    assert "warmed up" in log

    # a config error: the same exit code and words through the server as in-process
    for d in (a, b):
        (d / "s2build.yaml").write_text((d / "s2build.yaml").read_text()
                                        .replace("batch_size", "batch_sise"))
    via = run(["test"], a, env=SERVER_ENV)
    alone = run(["test"], b, env=dict(SERVER_ENV, S2BUILD_NO_SERVER="1"))
    assert via.returncode == alone.returncode == 3
    assert via.stderr == alone.stderr and "batch_sise" in via.stderr
    assert _server_pid(a) == pid and _alive(pid)        # it was the same, warm server


def test_two_clients_train_once(served):
    d = served("p", epochs=200)
    procs = [_popen(["build"], d, SERVER_ENV) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = sorted(o[0].strip() for o in outs)
    assert lines[0].startswith("toy: built in") and lines[1] == "toy: up to date", outs
    entries = [p for p in (d / ".s2build" / "cache").rglob("model.onnx")]
    assert len(entries) == 1


def test_client_interrupted_or_killed_mid_build(served):
    d = served("p", epochs=2)
    run(["build"], d, env=SERVER_ENV, check=0)
    before = sha256(d / "build/toy.onnx")
    pid = _server_pid(d)
    _set_epochs(d, 100000)                          # a build that would take minutes
    p = _popen(["build"], d, SERVER_ENV)            # Ctrl-C: as in-process, and quickly
    _wait_for_line(p.stderr, "toy: building")
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert err.endswith("s2build: interrupted; nothing was recorded for the unfinished target\n")
    assert sha256(d / "build/toy.onnx") == before

    p = _popen(["build"], d, SERVER_ENV)
    _wait_for_line(p.stderr, "toy: building")
    time.sleep(0.3)
    p.kill()
    p.wait()
    _set_epochs(d, 2)                               # back to the recipe that was built
    again = run(["build"], d, env=SERVER_ENV, check=0)      # waits for the cancelled build
    assert again.stdout.strip() == "toy: up to date"
    assert sha256(d / "build/toy.onnx") == before
    assert sorted(os.listdir(d / "build")) == ["toy.onnx", "toy.onnx.json"]
    assert _server_pid(d) == pid and _alive(pid)    # the server lived through it
    _set_epochs(d, 3)                               # and still builds
    got = run(["build"], d, env=SERVER_ENV, check=0)
    assert got.stdout.startswith("toy: built in") and _server_pid(d) == pid


def test_server_killed_mid_build_falls_back(served):
    d = served("p", epochs=2)
    run(["build"], d, env=SERVER_ENV, check=0)      # starts the server
    before = sha256(d / "build/toy.onnx")
    _set_epochs(d, 250)                             # ~1 s of training in a warm server
    p = _popen(["build"], d, SERVER_ENV)
    _wait_for_line(p.stderr, "toy: building")
    pid = _server_pid(d)
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "warning: the build server stopped during the command" in err
    assert out.startswith("toy: built in")
    assert sha256(d / "build/toy.onnx") != before
    assert toy.artifact(d).classes                  # a complete, loadable artifact
    assert sorted(os.listdir(d / "build")) == ["toy.onnx", "toy.onnx.json"]
    assert run(["build"], d, env=SERVER_ENV, check=0).stdout.strip() == "toy: up to date"


def test_stale_server_is_replaced(served, tmp_path):
    code = tmp_path / "code"
    shutil.copytree(ROOT / "s2build", code / "s2build",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(SERVER_ENV, PYTHONPATH=str(code))
    d = served("p", epochs=2, env=env)
    run(["build"], d, env=env, check=0)
    old = _server_pid(d)
    with open(code / "s2build" / "compile" / "train.py", "a") as f:
        f.write("\n# an edit: a new code digest\n")
    got = run(["build"], d, env=env, check=0)       # the key changed too: real work
    assert "toolchain changed" in got.stdout or got.stdout.startswith("toy: built in")
    new = _server_pid(d)
    assert new != old and _alive(new)
    assert _wait_gone(old)


def test_long_project_path_uses_a_private_tmp_socket(tmp_path):
    from s2build.server import protocol
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = protocol.socket_path(str(deep))
    assert path.startswith(f"/tmp/s2build-{os.getuid()}/") and len(path) < 108
    assert path == protocol.socket_path(str(deep))          # keyed by the root: stable
    assert protocol.private_dir(path) is not None
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    short = protocol.socket_path(str(tmp_path))
    assert short == str(tmp_path / ".s2build" / "server.sock")
