"""`s2build watch`: a real subprocess, real edits on disk, real watchdog events (no mocks)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import run, sha256
from toy import YAML, artifact, make_project, predict, relabel, write_csv

class Watch:
    """`s2build watch` in a subprocess; stdout and stderr lines collected in order."""

    def __init__(self, project, *args, after=(), env=None):
        self.p = subprocess.Popen([sys.executable, "-m", "s2build", *args, "watch", *after],
                                  cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True,
                                  env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
        self.lines, self.cv = [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def wait_for(self, text, start=0, timeout=60):
        """Index of the first line at or after `start` that contains `text`."""
        deadline = time.time() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                left = deadline - time.time()
                assert left > 0 and self.p.poll() is None, \
                    f"no line with {text!r}; output:\n" + "\n".join(self.lines)
                self.cv.wait(min(left, 0.2))

    def idle(self, start=0, timeout=60):
        """Index of the next 'watching for changes' line: the watcher finished a cycle."""
        return self.wait_for("watching for changes", start, timeout)

    def count(self, text, start=0):
        with self.cv:
            return sum(text in line for line in self.lines[start:])

    def output(self):
        with self.cv:
            return "\n".join(self.lines)

    def stop(self):
        """Ctrl-C; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise


@pytest.fixture
def watching():
    started = []

    def start(project, *args, **kw):
        w = Watch(project, *args, **kw)
        started.append(w)
        return w
    yield start
    for w in started:
        if w.p.poll() is None:
            w.p.kill()
            w.p.wait()


def source_digests(project):
    return json.loads(artifact(project).meta["s2build.sources"])


def test_relabelling_one_row_gives_an_artifact_that_predicts_the_new_label(toy, watching):
    old = (toy / "data" / "a.csv").read_text().splitlines()[8]      # file line 9 = row 7
    y = toy / "s2build.yaml"                                          # specs: not in the key
    y.write_text(y.read_text() + "      - name: line 9 keeps its class\n"
                 f"        example: {{file: data/a.csv, line: 9, expect: {old[-1]}}}\n")
    w = watching(toy)
    i = w.idle()
    assert "toy: up to date" in w.output()
    assert "toy: specs 2 passed, 0 failed" in w.output()
    line = relabel(toy / "data" / "a.csv", 7)
    assert predict(toy, line) != line[-1]          # the old artifact disagrees with the edit
    j = w.wait_for("toy: built in", i + 1)
    assert "file changed: data/a.csv" in w.lines[j]
    assert "accuracy=" in w.lines[j]               # the compact line names metrics
    assert "incremental from" in w.lines[j]         # watch builds are dev builds
    k = w.idle(j)
    assert "toy: specs 1 passed, 1 failed; changed: 'line 9 keeps its class' PASSED -> FAILED" \
        in w.output().splitlines()[j:k], w.output()
    assert predict(toy, line) == line[-1]
    assert artifact(toy).meta["s2build.mode"] == "incremental"
    assert w.stop() == 130
    assert "Traceback" not in w.output()


def test_twenty_saves_within_a_second_build_at_most_twice(toy, watching):
    w = watching(toy)
    i = w.idle()
    path = toy / "data" / "b.csv"
    base = path.read_text().splitlines()
    for k in range(20):                            # 20 different contents, 50 ms apart
        extra = f"0.{k:03d},0.5,0.5,0.5,1"
        path.write_text("\n".join(base + [extra]) + "\n")
        time.sleep(0.05)
    j = w.wait_for("toy: built in", i + 1)
    w.idle(j)
    time.sleep(1.0)                                # nothing else is coming
    assert w.count("toy: built in", i + 1) <= 2, w.output()
    assert source_digests(toy)["data/b.csv"] == sha256(path)
    assert w.stop() == 130


def test_watch_report_rewrites_the_page_after_each_build(toy, watching):
    page = toy / "out" / "live.html"
    w = watching(toy, after=["--report", "out/live.html"])
    i = w.idle()
    assert "report: out/live.html" in w.lines[i - 1], w.output()
    first = page.read_text()
    assert '<section id="t-toy">' in first and "History of builds" in first
    inode = os.stat(page).st_ino
    relabel(toy / "data" / "b.csv", 3)
    j = w.wait_for("toy: built in", i + 1)
    k = w.idle(j)
    assert "report: out/live.html" in w.lines[k - 1], w.output()
    assert w.count("toy: built in", i + 1) == 1           # its own write builds nothing
    second = page.read_text()
    assert os.stat(page).st_ino != inode                  # replaced (tmp + os.replace)
    assert "incremental from" in second and second.count("file changed: data/b.csv") >= 1
    assert "holdout accuracy" in second and "PASSED" in second
    assert not [f for f in os.listdir(toy / "out") if f.startswith(".s2tmp-")]
    assert w.stop() == 130
    assert "Traceback" not in w.output()


def test_atomic_save_builds_but_touch_and_own_writes_do_not(toy, watching):
    w = watching(toy, "-v")
    i = w.idle()
    # touch: new mtime, same bytes -> hashed, dropped, never built
    os.utime(toy / "data" / "a.csv")
    j = w.wait_for("ignored data/a.csv (content unchanged)", i)
    # s2build's own writes: a build in another process writes nothing new (up to date), and a
    # forced rewrite of the output and the state must not wake the watcher either
    run(["build"], toy, check=0)
    (toy / "build" / "toy.onnx").write_bytes((toy / "build" / "toy.onnx").read_bytes())
    (toy / ".s2build" / "state.json").write_text((toy / ".s2build" / "state.json").read_text())
    time.sleep(1.5)
    assert w.count("changed:", i) == 0 and w.count("building", i) == 0, w.output()
    # atomic save: write a temporary next to the file, rename it over the file
    path = toy / "data" / "a.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + "," + str(1 - int(lines[3][-1]))
    tmp = toy / "data" / ".a.csv.swp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    k = w.wait_for("toy: built in", j)
    assert "file changed: data/a.csv" in w.lines[k]
    w.idle(k)
    assert source_digests(toy)["data/a.csv"] == sha256(path)
    assert w.stop() == 130


def test_a_broken_row_prints_file_line_and_fixing_it_rebuilds(toy, watching):
    w = watching(toy)
    i = w.idle()
    path = toy / "data" / "a.csv"
    good = path.read_text()
    before = sha256(toy / "build" / "toy.onnx")
    lines = good.splitlines()
    lines[4] = "abc," + lines[4].split(",", 1)[1]   # file line 5
    path.write_text("\n".join(lines) + "\n")
    j = w.wait_for("data/a.csv:5:", i)
    assert "'abc' is not a number" in w.lines[j]
    k = w.idle(j)
    assert w.p.poll() is None                        # still watching
    assert sha256(toy / "build" / "toy.onnx") == before  # the last good artifact stays
    # a broken yaml: diagnostic at its location, watching goes on
    y = toy / "s2build.yaml"
    good_yaml = y.read_text()
    y.write_text(good_yaml.replace("epochs:", "epoch:"))
    m = w.wait_for("unknown key 'epoch'", k)
    assert "s2build.yaml:" in w.lines[m]
    y.write_text(good_yaml)
    path.write_text(good.replace(lines[5], lines[5].rsplit(",", 1)[0] + ","
                                 + str(1 - int(lines[5][-1]))))
    n = w.wait_for("toy: built in", m)
    w.idle(n)
    assert source_digests(toy)["data/a.csv"] == sha256(path)
    assert w.stop() == 130
    assert "Traceback" not in w.output()


def test_an_edit_during_a_long_build_cancels_it_and_the_restart_includes_it(tmp_path, watching):
    d = make_project(tmp_path / "toy", epochs=100000)
    w = watching(d, "-v")
    w.wait_for("toy: epoch 3/100000")
    # the edit: one relabelled row and a training length that can finish
    line = relabel(d / "data" / "a.csv", 2)
    (d / "s2build.yaml").write_text(YAML.format(epochs=150))
    i = w.wait_for("toy: cancelled (a newer edit arrived)")
    j = w.wait_for("toy: built in", i)
    # nothing was recorded for the cancelled build: the restart is still a first build
    assert "(full build; never built)" in w.lines[j], w.lines[j]
    assert w.count("toy: built in") == 1
    w.idle(j)
    meta = artifact(d).meta
    assert json.loads(meta["s2build.sources"])["data/a.csv"] == sha256(d / "data" / "a.csv")
    assert json.loads(meta["s2build.config"])["train"]["epochs"] == 150
    assert predict(d, line) == line[-1]
    assert w.stop() == 130
    assert "Traceback" not in w.output()


def test_sigterm_stops_watch_with_exit_143(toy, watching):
    w = watching(toy)
    w.idle()
    w.p.send_signal(signal.SIGTERM)
    assert w.p.wait(timeout=30) == 143
    time.sleep(0.2)                                # the reader thread takes the last lines
    assert "s2build: watch stopped" in w.output() and "Traceback" not in w.output()
    assert "nothing was recorded" not in w.output()   # nothing was being built


def test_deleting_a_source_rebuilds_without_it(toy, watching):
    w = watching(toy)
    i = w.idle()
    assert "data/b.csv" in source_digests(toy)
    os.unlink(toy / "data" / "b.csv")
    j = w.wait_for("toy: built in", i)
    # 20 of the 60 training rows are gone: too large a change to fine-tune (not a fine-tune
    # that "converges" at step 0 with the deleted rows still in its weights)
    assert "(full build: 20 of 60 training rows removed; file removed: data/b.csv)" \
        in w.lines[j], w.lines[j]
    w.idle(j)
    assert sorted(source_digests(toy)) == ["data/a.csv"]
    assert artifact(toy).meta["s2build.mode"] == "release"
    assert w.stop() == 130


def test_ctrl_c_during_a_build_stops_cleanly_and_keeps_the_last_artifact(toy, watching):
    y = toy / "s2build.yaml"
    y.write_text(y.read_text().replace("epochs: 150", "epochs: 100000"))
    before = sha256(toy / "build" / "toy.onnx")
    w = watching(toy, "-v", after=["--release"])
    w.wait_for("toy: epoch 3/100000")
    assert w.stop() == 130
    assert "s2build: watch stopped" in w.output() and "Traceback" not in w.output()
    assert sha256(toy / "build" / "toy.onnx") == before


def test_a_yaml_edit_reloads_the_globs_and_a_new_file_builds(toy, watching):
    w = watching(toy)
    i = w.idle()
    (toy / "extra").mkdir()
    write_csv(toy / "extra" / "c.csv", ["0.1,0.2,0.3,0.4,1"])
    time.sleep(1.0)                                  # not a source yet: nothing happens
    assert w.count("changed:", i) == 0
    y = toy / "s2build.yaml"
    y.write_text(y.read_text().replace("sources: [data/*.csv]", "sources: [data/*.csv, extra/*.csv]"))
    j = w.wait_for("toy: built in", i)
    w.idle(j)
    assert "extra/c.csv" in source_digests(toy)
    write_csv(toy / "extra" / "d.csv", ["0.5,0.2,0.3,0.4,1"])      # a new file in a new folder
    k = w.wait_for("toy: built in", j + 1)
    assert "file added: extra/d.csv" in w.lines[k]
    w.idle(k)
    assert w.stop() == 130


def test_replacing_the_data_folder_rebuilds_and_keeps_watching_it(toy, watching):
    """A checkout or a sync tool replaces the folder (rm -rf data && cp -r ... data): the
    watcher re-arms on the new folder, builds it, and sees the next edit inside it."""
    import shutil
    w = watching(toy)
    i = w.idle()
    spare = toy.parent / "spare"
    shutil.copytree(toy / "data", spare)
    relabel(spare / "a.csv", 3)                          # the new folder's data differs
    shutil.rmtree(toy / "data")
    shutil.copytree(spare, toy / "data")
    j = w.wait_for("toy: built in", i)
    k = w.idle(j)
    assert source_digests(toy)["data/a.csv"] == sha256(toy / "data" / "a.csv")
    relabel(toy / "data" / "b.csv", 2)                   # an edit inside the new folder
    m = w.wait_for("toy: built in", k)
    w.idle(m)
    assert source_digests(toy)["data/b.csv"] == sha256(toy / "data" / "b.csv")
    run(["--no-server", "status"], toy, check=0)
    assert w.stop() == 130
    assert "Traceback" not in w.output()


# A bug in s2build, injected: while the project holds a file `inject-fault`, a build raises
# RuntimeError (a real `watch` process; the shim wraps runner.build at interpreter start).
FAULT_SHIM = """\
import os

from s2build.engine import runner

_build = runner.build


def build(project, *args, **kwargs):
    if os.path.exists(os.path.join(project.root, "inject-fault")):
        raise RuntimeError("injected fault")
    return _build(project, *args, **kwargs)


runner.build = build
"""


def test_an_internal_error_in_one_cycle_is_reported_and_the_next_good_edit_builds(
        toy, watching, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(FAULT_SHIM)
    w = watching(toy, env={"PYTHONPATH": str(shim)})
    i = w.idle()
    before = sha256(toy / "build" / "toy.onnx")
    (toy / "inject-fault").write_text("")
    relabel(toy / "data" / "a.csv", 3)
    j = w.wait_for("internal error: RuntimeError: injected fault", i)
    k = w.idle(j)
    assert w.p.poll() is None                               # still watching
    assert sha256(toy / "build" / "toy.onnx") == before     # the last good artifact stays
    (toy / "inject-fault").unlink()
    relabel(toy / "data" / "a.csv", 5)                      # the next edit builds both
    m = w.wait_for("toy: built in", k)
    w.idle(m)
    assert source_digests(toy)["data/a.csv"] == sha256(toy / "data" / "a.csv")
    assert w.stop() == 130
    assert "Traceback" not in w.output()
