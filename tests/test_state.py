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
    st.files = {"data/a.csv": [10, 123, 4, "ab" * 32]}
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


def test_stat_before_hash_and_racy_files(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    old = time.time() - 100
    os.utime(tmp_path / "a.csv", (old, old))
    stat_cache = {}
    d1, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1
    d2, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 0 and d1 == d2                     # unchanged stat: not read
    (tmp_path / "a.csv").write_text("x\n2\n")          # fresh mtime: racily clean
    d3, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1 and d3 != d1
    assert stat_cache["a.csv"][1] == 0                 # not trusted next time
    _, hashed = fingerprint.digest_files(["a.csv"], str(tmp_path), stat_cache)
    assert hashed == 1


def test_build_key_ignores_description_and_output_but_not_epochs(tmp_path):
    def key(**changes):
        cfg = {"description": "", "output": "build/t.onnx", "train": {"epochs": 3}, "deps": [],
               "sources": ["a"], "loss": "mse", "metrics": [], "model": {"type": "mlp"},
               "holdout": {"sources": []}}
        cfg.update(changes)
        t = Target("t", cfg, {}, str(tmp_path))
        from s2build.project import config
        return fingerprint.Inputs({}, {}, config.key_config(t), {}, {}, {}).key
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
