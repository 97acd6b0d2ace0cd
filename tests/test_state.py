"""state, cache and fingerprint units: corruption never crashes; stat before hash."""

import json
import os
import time

from s2build.engine import fingerprint
from s2build.project import graph
from s2build.store.local import Cache
from s2build.project.config import Project, Target
from s2build.engine.state import State


def test_truncated_state_at_every_length_loads_as_empty_with_a_warning(tmp_path):
    st = State(str(tmp_path / "state.json"))
    st.files = {"data/a.csv": [10, 123, 124, 4, "ab" * 32]}
    st.targets = {"t": {"key": "k" * 64, "sources": {"data/a.csv": "ab" * 32}}}
    st.save()
    full = (tmp_path / "state.json").read_bytes()
    for n in range(len(full)):
        (tmp_path / "state.json").write_bytes(full[:n])
        loaded = State.load(str(tmp_path))
        assert loaded.targets == {} and loaded.files == {}
        assert loaded.warning and "starting over" in loaded.warning
    (tmp_path / "state.json").write_bytes(full)
    assert State.load(str(tmp_path)).targets == st.targets


def test_state_of_another_version_is_ignored(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"version": 99, "files": {}, "targets": {}}))
    st = State.load(str(tmp_path))
    assert st.targets == {} and "unknown version 99" in st.warning


def test_cache_round_trip_and_damage(tmp_path):
    c = Cache(str(tmp_path))
    c.put("ab" * 32, b"model bytes", {"key": "ab" * 32}, {"dynamics.npz": b"npz"})
    data, rec = c.get("ab" * 32)
    assert data == b"model bytes" and rec["artifact_sha256"]
    assert sorted(os.listdir(c.entry_dir("ab" * 32))) == ["dynamics.npz", "model.onnx", "record.json"]
    with open(os.path.join(c.entry_dir("ab" * 32), "model.onnx"), "ab") as f:
        f.write(b"!")
    assert c.get("ab" * 32) is None and "does not match" in c.warnings[0]
    assert not os.path.exists(c.entry_dir("ab" * 32))
    (tmp_path / "cache" / "cd").mkdir(parents=True)
    half = tmp_path / "cache" / "cd" / ("cd" * 32)
    half.mkdir()
    (half / "model.onnx").write_bytes(b"x")                # no record.json: never complete
    assert not c.has("cd" * 32) and c.get("cd" * 32) is None


def _wait_for_next_tick(path):
    """Until the filesystem's clock (a probe file's mtime) is past `path`'s ctime."""
    ctime = os.stat(path).st_ctime_ns
    probe = os.path.join(os.path.dirname(path), ".probe")
    while True:
        with open(probe, "w"):
            pass
        if os.stat(probe).st_mtime_ns > ctime:
            os.unlink(probe)
            return
        time.sleep(0.01)


def _rewrite_keeping_mtime(path, text):
    """Same size, other bytes, the old mtime_ns put back (what cp -p / touch -r / rsync -t do)."""
    st = os.stat(path)
    assert len(text) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size


def test_stat_before_hash_and_racy_files(tmp_path, monkeypatch):
    a = tmp_path / "a.csv"
    a.write_text("x\n1\n")
    old = time.time() - 100
    os.utime(a, (old, old))
    _wait_for_next_tick(a)
    stat_cache = {}
    d1, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1
    d2, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 0 and d1 == d2                     # unchanged stat: not read
    # A same-size rewrite with the old mtime put back: only ctime tells. It is hashed within
    # the timestamp tick of its change: the filesystem's clock is pinned to the file's ctime
    # (on a loaded machine a real read may land a tick later, which is then rightly trusted).
    _rewrite_keeping_mtime(a, "x\n2\n")
    same_tick = lambda folder: os.stat(a).st_ctime_ns          # noqa: E731
    monkeypatch.setattr(fingerprint, "fs_clock_ns", same_tick)
    d3, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1 and d3 != d1
    # Hashed within the tick of its change (ctime): racily clean, not trusted next time, so a
    # second rewrite within the same timestamp tick is seen even if ctime did not move.
    assert stat_cache["a.csv"][1] == 0
    _rewrite_keeping_mtime(a, "x\n3\n")
    d4, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1 and d4 not in (d1, d3)
    # A fresh write (mtime now) hashed within its tick is racy too; once the tick has passed
    # (the real clock again) it is trusted.
    a.write_text("x\n4\n")
    _, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1 and stat_cache["a.csv"][1] == 0
    monkeypatch.undo()
    _wait_for_next_tick(a)
    _, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1 and stat_cache["a.csv"][1] == os.stat(a).st_mtime_ns
    _, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 0


def test_state_of_version_1_without_ctime_starts_over(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps(
        {"version": 1, "files": {"a.csv": [4, 123, 9, "ab" * 32]}, "targets": {}}))
    st = State.load(str(tmp_path))
    assert st.files == {} and "unknown version 1" in st.warning and "starting over" in st.warning


def test_build_key_ignores_description_and_output_but_not_epochs(tmp_path):
    def key(**changes):
        cfg = {"description": "", "output": "build/t.onnx", "train": {"epochs": 3}, "deps": [],
               "sources": ["a"], "loss": "mse", "metrics": [], "model": {"type": "mlp"},
               "holdout": {"sources": []}}
        cfg.update(changes)
        t = Target("t", cfg, {}, str(tmp_path))
        from s2build.project import config
        return fingerprint.Inputs({}, {}, config.key_config(t), {}, {}).key
    assert key() == key(description="x") == key(output="elsewhere.onnx")
    assert key() != key(train={"epochs": 4})


def test_graph_order_and_cycle_wording(tmp_path):
    p = Project(str(tmp_path / "s2build.yaml"), str(tmp_path))
    for name, deps in (("a", []), ("b", ["a"]), ("c", ["b", "a"])):
        p.targets[name] = Target(name, {"deps": deps, "output": f"{name}.onnx"},
                                 {("deps", i): f"s2build.yaml:{i}:1" for i in range(len(deps))},
                                 str(tmp_path))
    assert graph.order(p, ["c"]) == ["a", "b", "c"]
    assert graph.dependents(p, "a") == {"b", "c"}
    p.targets["a"].config["deps"] = ["c"]
    p.targets["a"].locs[("deps", 0)] = "s2build.yaml:9:12"
    try:
        graph.check(p)
    except Exception as e:
        assert str(e) == "s2build.yaml:9:12: dependency cycle: a -> c -> b -> a"
    else:
        raise AssertionError("cycle not found")
