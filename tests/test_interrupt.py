"""Crashes, Ctrl-C and concurrent builds: nothing half-written, no lock left, no double work."""

import os
import signal
import subprocess
import sys
import time

from conftest import cache_listing, copy_example, run, sha256


def start_long_build(project, extra=()):
    """Start `build -v` with a very long training; return the process once it is training."""
    y = project / "s2build.yaml"
    y.write_text(y.read_text().replace("epochs: 40", "epochs: 100000"))
    p = subprocess.Popen([sys.executable, "-m", "s2build", "-v", "build", *extra], cwd=project,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    for line in p.stderr:                       # -v prints one line per epoch when not a tty
        if "epoch 3/100000" in line:
            return p
        assert time.time() < deadline, "training never started"
    raise AssertionError(f"build ended early: {p.wait()} {p.stdout.read()}")


def restore_epochs(project):
    y = project / "s2build.yaml"
    y.write_text(y.read_text().replace("epochs: 100000", "epochs: 40"))


def leftovers(project):
    tmp = project / ".s2build" / "tmp"
    found = sorted(os.listdir(tmp)) if tmp.exists() else []
    found += [n for n in os.listdir(project / "build") if n.startswith(".s2tmp")] \
        if (project / "build").exists() else []
    return found


def test_sigkill_during_training_leaves_nothing_and_next_build_succeeds(tmp_path):
    d = copy_example("wine", tmp_path / "wine")
    p = start_long_build(d)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert not (d / "build" / "wine.onnx").exists()
    assert cache_listing(d) == []
    assert leftovers(d) == []
    restore_epochs(d)
    r = run(["build", "--no-wait"], d, check=0)           # the lock died with its holder
    assert r.stdout.startswith("wine: built in")


def test_sigkill_keeps_the_previous_artifact(wine):
    before = (sha256(wine / "build" / "wine.onnx"), cache_listing(wine))
    p = start_long_build(wine)
    p.kill()
    p.wait(timeout=30)
    assert (sha256(wine / "build" / "wine.onnx"), cache_listing(wine)) == before
    restore_epochs(wine)
    assert run(["build"], wine, check=0).stdout.strip() == "wine: up to date"


def test_ctrl_c_exits_130_cleanly(wine):
    before = (sha256(wine / "build" / "wine.onnx"), cache_listing(wine))
    p = start_long_build(wine)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    err = p.stderr.read()
    assert rc == 130
    assert "s2build: interrupted; nothing was recorded for the unfinished target" in err
    assert "Traceback" not in err
    assert (sha256(wine / "build" / "wine.onnx"), cache_listing(wine)) == before
    assert leftovers(wine) == []


def test_sigterm_exits_143_cleanly(wine):
    p = start_long_build(wine)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 143
    assert "s2build: terminated" in p.stderr.read()


def test_second_build_waits_for_the_lock_and_trains_nothing(tmp_path):
    d = copy_example("wine", tmp_path / "wine")
    first = subprocess.Popen([sys.executable, "-m", "s2build", "build"], cwd=d,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (d / ".s2build" / "lock.owner").exists():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    second = run(["build"], d, check=0)
    out1, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and out1.startswith("wine: built in")
    assert "waiting for .s2build/lock, held by pid %d (s2build build" % first.pid in second.stderr
    assert second.stdout.strip() == "wine: up to date"      # it did not train a second time


def test_no_wait_says_who_holds_the_lock(wine):
    p = start_long_build(wine)
    try:
        r = run(["build", "--no-wait"], wine, check=10)
        assert f".s2build/lock is held by pid {p.pid} (s2build build, since " in r.stderr
    finally:
        p.kill()
        p.wait()
