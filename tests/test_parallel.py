"""`build -j N` (engine/parallel.py, engine/worker.py): independent targets in worker processes,
one writer of state, tagged lines, failures that stop only their dependents, --fail-fast,
Ctrl-C. Real CLI subprocesses on tiny models (wine data, 3 epochs, legacy exporter)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import EXAMPLES, run, sha256

YAML = """\
version: 1
x-t: &t
  sources: [data/wine-*.csv]
  loader: {{format: csv, label: cultivar, task: classification, classes: 3}}
  model: {{type: mlp, hidden: [16]}}
  export: {{exporter: legacy}}
targets:
  a: {{<<: *t, train: {{epochs: {epochs}, seed: 1}}, output: build/a.onnx}}
  b: {{<<: *t, train: {{epochs: {epochs}, seed: 2}}, output: build/b.onnx}}
{extra}"""

BAD = """\
  bad: {<<: *t, loss: "boom.py:loss", train: {epochs: 3, seed: 3}, output: build/bad.onnx}
  after: {<<: *t, deps: [bad], train: {epochs: 3, seed: 4}, output: build/after.onnx}
"""


def project(d, epochs=3, extra=""):
    d.mkdir(parents=True)
    shutil.copytree(EXAMPLES / "wine" / "data", d / "data")
    (d / "s2build.yaml").write_text(YAML.format(epochs=epochs, extra=extra))
    (d / "boom.py").write_text("def loss(out, y):\n    raise ValueError('boom')\n")
    return d


def workers_of(d):
    """Worker processes whose cwd is the project `d` (Linux /proc)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"s2build.engine.worker" in cmd and cwd == str(d):
            found.append(int(pid))
    return found


def dead_pid():
    """A pid that no process has now."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_j2_builds_independent_targets_with_the_bytes_of_j1(tmp_path):
    one, two = project(tmp_path / "one"), project(tmp_path / "two")
    run(["build", "-j", "1"], one, check=0)
    killed = two / ".s2build" / f".s2tmp-{dead_pid()}-jobs-x1y2"   # a SIGKILLed -j run's
    killed.mkdir(parents=True)
    (killed / "1.result").write_bytes(b"half")
    p = run(["build", "-j", "2"], two, check=0)
    assert not killed.exists()                              # swept under the lock
    for name in ("a", "b"):
        assert sha256(one / "build" / f"{name}.onnx") == sha256(two / "build" / f"{name}.onnx")
        assert f"{name}: built in" in p.stdout
    state = json.loads((two / ".s2build" / "state.json").read_text())
    assert sorted(state["targets"]) == ["a", "b"]          # the parent recorded both
    assert not list((two / ".s2build").glob(".s2tmp-*jobs-*"))     # result files removed
    assert run(["build", "-j", "2"], two, check=0).stdout.split("\n")[:2] == \
        ["a: up to date", "b: up to date"]


FOUR = """\
  c: {<<: *t, train: {epochs: 3, seed: 3}, output: build/c.onnx}
  d: {<<: *t, train: {epochs: 3, seed: 4}, output: build/d.onnx}
"""

CRASH = """\
  crash: {<<: *t, loss: "die.py:loss", train: {epochs: 3, seed: 5}, output: build/crash.onnx}
"""


def builders(stdout):
    """{target: (pid, nth target of that lane, 'worker' | 'parent')} from the -v detail lines."""
    import re
    out, name = {}, None
    for line in stdout.splitlines():
        m = re.match(r"(\w+): built in ", line)
        if m:
            name = m.group(1)
        m = re.search(r"built (?:by worker (\d+)|in the parent process) \((\d+)\w\w target\)$",
                      line)
        if m and name:
            out[name] = (int(m.group(1) or 0), int(m.group(2)),
                         "worker" if m.group(1) else "parent")
            name = None
    return out


def test_a_warm_worker_builds_several_targets(tmp_path):
    d = project(tmp_path / "p", extra=FOUR)
    p = run(["build", "-v", "-j", "2"], d, check=0)
    who = builders(p.stdout)
    assert sorted(who) == ["a", "b", "c", "d"], p.stdout
    pids = {pid for pid, _n, _kind in who.values()}
    assert len(pids) <= 2 and all(kind == "worker" for _p, _n, kind in who.values())
    assert os.getpid() not in pids and p.returncode == 0
    # each pid's targets are numbered 1, 2, ... in the order it built them: one process
    # imported once and built a second target
    for pid in pids:
        assert sorted(n for q, n, _k in who.values() if q == pid) == \
            list(range(1, 1 + sum(q == pid for q, _n, _k in who.values())))
    assert max(n for _p, n, _k in who.values()) >= 2
    assert workers_of(d) == []                              # all gone when the run ends


def test_a_worker_crash_fails_its_target_only(tmp_path):
    d = project(tmp_path / "p", extra=FOUR + CRASH)
    (d / "die.py").write_text("import os, signal\n\n\ndef loss(out, y):\n"
                              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    p = run(["build", "-v", "-j", "2", "crash", "a", "b", "c", "d"], d)
    assert p.returncode == 70, p.stderr                     # internal: no result at all
    assert "crash: failed: the worker building crash exited with status -9 and no result" \
        in p.stdout
    who = builders(p.stdout)
    assert sorted(who) == ["a", "b", "c", "d"], p.stdout    # the others built
    for name in "abcd":
        assert (d / "build" / f"{name}.onnx").exists()
    assert not (d / "build" / "crash.onnx").exists()
    state = json.loads((d / ".s2build" / "state.json").read_text())
    assert sorted(state["targets"]) == ["a", "b", "c", "d"]
    assert workers_of(d) == [] and not list((d / ".s2build").glob(".s2tmp-*jobs-*"))


def test_a_failure_skips_its_dependents_not_independent_targets(tmp_path):
    d = project(tmp_path / "p", extra=BAD)
    p = run(["build", "-j", "2"], d)
    assert p.returncode == 5, p.stderr                     # the failure's exit code
    assert "a: built in" in p.stdout and "b: built in" in p.stdout
    assert "bad: failed" in p.stdout
    assert "after: skipped (dependency bad failed)" in p.stdout
    assert "[bad] boom.py:2: loss boom.py:loss raised ValueError: boom" in p.stderr
    assert "1 target failed: bad (exit 5); skipped: after" in p.stderr
    assert "Traceback" not in p.stderr
    assert (d / "build" / "a.onnx").exists() and not (d / "build" / "after.onnx").exists()
    # without -j: one after the other, stopping at the first failure (as before)
    p = run(["build", "bad", "a"], d)
    assert p.returncode == 5 and "bad: failed" in p.stdout


LATE = """\
  late: {<<: *t, loss: "late.py:loss", train: {epochs: 100000, seed: 3}, output: build/late.onnx}
  after: {<<: *t, deps: [late], train: {epochs: 3, seed: 4}, output: build/after.onnx}
"""


def test_fail_fast_stops_the_other_builds(tmp_path):
    # `late` fails 4 s into its training, when a (100000 epochs) is surely training beside it
    # on the other worker: a is stopped, b never starts
    d = project(tmp_path / "p", epochs=100000, extra=LATE)
    (d / "late.py").write_text(
        "import time\nimport torch.nn.functional as F\nSTART = []\n\n\n"
        "def loss(out, y):\n    START[:] = START or [time.monotonic()]\n"
        "    if time.monotonic() - START[0] > 4:\n        raise ValueError('boom')\n"
        "    return F.cross_entropy(out, y)\n")
    p = run(["build", "-j", "2", "--fail-fast", "late", "a", "b", "after"], d)
    assert p.returncode == 5, p.stderr
    assert "late: failed: late.py:9: loss late.py:loss raised ValueError: boom" in p.stdout
    assert "built in" not in p.stdout                      # a was stopped, b never started
    assert "a: cancelled (stopped (--fail-fast))" in p.stdout
    assert "b: skipped" in p.stdout and "after: skipped" in p.stdout
    assert not (d / "build" / "a.onnx").exists()
    assert workers_of(d) == []


def test_output_lines_are_whole_and_tagged_by_target(tmp_path):
    d = project(tmp_path / "p")
    p = run(["build", "-v", "-j", "2"], d, check=0)
    epochs = [line for line in p.stderr.splitlines() if "epoch" in line]
    assert epochs and all(line.startswith(("[a] a: epoch ", "[b] b: epoch ")) for line in epochs)
    assert {f"[{n}] {n}: epoch {e}/3" for n in "ab" for e in (1, 2, 3)} <= \
        {line.rsplit(" loss", 1)[0] for line in epochs}


def interrupt_while_both_train(d, env=None):
    """Start `build -v -j 2`, wait until a and b both train, SIGINT the client; its stderr."""
    p = subprocess.Popen([sys.executable, "-m", "s2build", "-v", "build", "-j", "2"], cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
    seen, deadline = set(), time.time() + 120
    for line in p.stderr:                       # both lanes are training
        if " epoch 2/100000" in line:
            seen.add(line[:3])
        if seen == {"[a]", "[b]"}:
            break
        assert time.time() < deadline, "training never started"
    lanes = len(workers_of(d))
    p.send_signal(signal.SIGINT)                # the parent only (as the build server's cancel)
    assert p.wait(timeout=60) == 130
    return lanes, p.stderr.read()


def test_ctrl_c_stops_every_worker_and_records_nothing(tmp_path):
    d = project(tmp_path / "p", epochs=100000)
    lanes, err = interrupt_while_both_train(d)
    assert lanes == 2                           # a fresh CLI process: two workers
    assert "nothing was recorded" in err
    assert workers_of(d) == []
    assert not (d / "build").exists() or not os.listdir(d / "build")
    assert not (d / ".s2build" / "state.json").exists() or \
        json.loads((d / ".s2build" / "state.json").read_text())["targets"] == {}
    tmp = d / ".s2build" / "tmp"
    assert not tmp.exists() or os.listdir(tmp) == []
    assert not list((d / ".s2build").glob(".s2tmp-*jobs-*"))
    assert not (d / ".s2build" / "cache").exists() or \
        not list((d / ".s2build" / "cache").rglob("record.json"))


def test_workers_stop_when_their_parent_is_killed(tmp_path):
    d = project(tmp_path / "p", epochs=100000)
    p = subprocess.Popen([sys.executable, "-m", "s2build", "-v", "build", "-j", "2"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    for line in p.stderr:                       # a worker is training
        if " epoch 2/100000" in line:
            break
    assert len(workers_of(d)) == 2
    p.kill()                                    # no signal handler, no cleanup in the parent
    p.wait()
    deadline = time.time() + 30
    while workers_of(d) and time.time() < deadline:
        time.sleep(0.2)
    assert workers_of(d) == []                  # each saw its stdin close, and stopped
    assert not (d / ".s2build" / "cache").exists() or \
        not list((d / ".s2build" / "cache").rglob("record.json"))


def test_ctrl_c_through_the_server_stops_its_own_lane_and_its_worker(tmp_path):
    d = project(tmp_path / "p", epochs=100000, extra=FOUR.replace("epochs: 3", "epochs: 100000"))
    env = {"S2BUILD_SERVER": "1", "S2BUILD_SERVER_IDLE": "30"}
    try:
        lanes, err = interrupt_while_both_train(d, env)
        assert lanes == 1                       # the server builds a itself, a worker b
        assert "nothing was recorded" in err
        deadline = time.time() + 15             # the worker is told to stop; it exits soon
        while workers_of(d) and time.time() < deadline:
            time.sleep(0.2)
        assert workers_of(d) == []
        state = d / ".s2build" / "state.json"
        assert not state.exists() or json.loads(state.read_text())["targets"] == {}
        assert not list((d / ".s2build").glob("cache/*/*/record.json"))
        assert not list((d / ".s2build").glob(".s2tmp-*jobs-*"))
    finally:
        run(["shutdown"], d, env=env, timeout=30)


def test_j2_through_the_build_server(tmp_path):
    """The warm server builds as a lane itself (it has torch imported), beside its workers,
    with the bytes of a -j 1 build in a fresh process."""
    d, one = project(tmp_path / "p"), project(tmp_path / "one")
    run(["build", "-j", "1"], one, check=0)
    env = {"S2BUILD_SERVER": "1", "S2BUILD_SERVER_IDLE": "30"}
    try:
        p = run(["build", "-v", "-j", "2"], d, env=env, check=0)
        assert "a: built in" in p.stdout and "b: built in" in p.stdout
        assert "unavailable" not in p.stderr
        assert "job: s2build build -v -j 2" in (d / ".s2build" / "server.log").read_text()
        who = builders(p.stdout)
        assert sorted(who) == ["a", "b"] and "parent" in {k for _p, _n, k in who.values()}
        assert all(pid != os.getpid() for pid, _n, _k in who.values())
        epochs = [line for line in p.stderr.splitlines() if "epoch" in line]
        assert epochs and all(line.startswith(("[a] a: epoch ", "[b] b: epoch "))
                              for line in epochs)
    finally:
        run(["shutdown"], d, env=env, timeout=30)
    assert workers_of(d) == []
    for name in ("a", "b"):
        assert sha256(one / "build" / f"{name}.onnx") == sha256(d / "build" / f"{name}.onnx")
