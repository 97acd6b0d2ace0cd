"""Damage under `.s2build/`: every file s2build keeps there (state.json, shards, manifests, the cache
entry's record.json, model.onnx, dynamics.npz, rows.npz, weights.pt, optimizer.pt, lock.owner),
truncated at every length (big files: a spread of lengths) or garbled, costs at most a warning
and a re-parse or a rebuild: never exit 70, never a wrong artifact.

The per-length sweeps call the library in-process (ShardStore, its manifests, State.load,
Cache.get, finetune.load_parent): each damaged read must be a miss or the intact value. A few
representative damages per file go through the real CLI, which must exit 0, warn where it
discarded something, and write the artifact a clean build writes (release builds are
byte-reproducible)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run, sha256
from toy import make_project, relabel

ARTIFACT = "build/toy.onnx"


def lengths(n):
    """Every length below n for small files, else ~20 of them (0, 1, half and n - 1 among them)."""
    if n <= 1500:
        return list(range(n))
    return sorted({0, 1, 2, n // 2, n - 2, n - 1} | {n * k // 16 for k in range(16)})


def truncated(data, n):
    return data[:n]


def garbled(data, at=None, width=8):
    """`width` bytes XOR 0xFF at `at` (default: the middle)."""
    at = len(data) // 2 if at is None else at
    b = bytearray(data)
    for i in range(at, min(at + width, len(b))):
        b[i] ^= 0xFF
    return bytes(b)


def garble_positions(n):
    return sorted({n * k // 12 for k in range(1, 12)})


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """clean: the toy, built (release), with a shard pack; edited: clean with one row relabelled,
    and the SHA-256 a release build of it gives; inc: a dev (incremental) build on top of
    `edited`, whose entry holds rows.npz, and the SHA-256 of a release build after a second edit."""
    base = tmp_path_factory.mktemp("damage")
    clean = make_project(base / "clean")
    run(["build"], clean, check=0)
    out = {"clean": clean, "clean_sha": sha256(clean / ARTIFACT)}

    ref = shutil.copytree(clean, base / "edited_ref")
    relabel(ref / "data" / "a.csv", 3)
    run(["build"], ref, check=0)
    out["edited_sha"] = sha256(ref / ARTIFACT)

    inc = shutil.copytree(clean, base / "inc")
    relabel(inc / "data" / "a.csv", 3)
    p = run(["build", "--dev"], inc, check=0)
    assert "incremental" in p.stdout + p.stderr, p.stdout + p.stderr
    out["inc"] = inc
    relabel(ref / "data" / "a.csv", 5)
    run(["build"], ref, check=0)
    out["inc_sha"] = sha256(ref / ARTIFACT)
    return out


def _key(d):
    import json
    return json.loads((d / ".s2build" / "state.json").read_text())["targets"]["toy"]["key"]


def _entry(d, key=None):
    key = key or _key(d)
    return d / ".s2build" / "cache" / key[:2] / key


def _shard(d):
    return sorted(p for p in (d / ".s2build" / "shards").glob("??/*.s2s"))[0]


def _manifest(d):
    return sorted((d / ".s2build" / "shards" / "files").glob("??/*.json"))[0]


# --- In-process sweeps: a damaged read is a miss, or the intact value ---------------------------

def _damages(data):
    for n in lengths(len(data)):
        yield f"truncated to {n}", truncated(data, n)
    for at in garble_positions(len(data)):
        yield f"garbled at {at}", garbled(data, at)


def _same_shard(a, b):
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("x", "codes", "labels", "lines", "row_hash", "input_hash")) and \
        a.features == b.features and a.vocab == b.vocab and a.label_vocab == b.label_vocab


def test_damaged_shard_files_read_as_misses(projects, tmp_path):
    from s2build.data.shards import ShardStore
    src = _shard(projects["clean"])
    state = tmp_path / "s"
    path = state / "shards" / src.parent.name / src.name
    path.parent.mkdir(parents=True)
    good = src.read_bytes()
    path.write_bytes(good)
    intact = ShardStore(str(state))._get(str(path), 0)
    assert intact is not None
    for what, data in _damages(good):
        path.write_bytes(data)
        store = ShardStore(str(state))
        got = store._get(str(path), 0)
        assert got is None or _same_shard(got, intact), what
        assert (got is None) == bool(store.warnings), what


def test_damaged_manifests_are_cut_again(projects, tmp_path):
    """A table file's manifest (its blocks and line numbers) that does not match its checksum
    is cut again from the file, with a warning: never a wrong line or block."""
    import json as _json
    from s2build.data.shards import ShardStore
    src = _manifest(projects["clean"])
    good = src.read_bytes()
    body = _json.loads(good)["manifest"]
    state = tmp_path / "s"
    path = state / "shards" / "files" / src.parent.name / src.name
    path.parent.mkdir(parents=True)
    from s2build.project import config
    t = config.load(str(projects["clean"] / "s2build.yaml")).targets["toy"]
    from s2build.engine import fingerprint
    inputs = fingerprint.target_inputs(t, {}, {})[0]
    from s2build.data import shards
    probe = ShardStore(str(state))
    files = dict(inputs.sources, **inputs.holdout)
    rel = next(r for r in files if probe._path(shards.shard_key(
        files[r], probe._json(t.config["loader"])), "files").endswith(src.name))
    for what, data in _damages(good):
        path.write_bytes(data)
        store = ShardStore(str(state))
        got = store.manifest(t.root, rel, files[rel], t.config["loader"])
        assert got == body, what
        assert bool(store.warnings) == (data != good), what

def test_a_damaged_state_file_starts_over(projects, tmp_path):
    from s2build.engine.state import State
    good = (projects["clean"] / ".s2build" / "state.json").read_bytes()
    intact = State.load(str(projects["clean"] / ".s2build"))
    (tmp_path / "state.json").write_bytes(good)
    for what, data in _damages(good):
        (tmp_path / "state.json").write_bytes(data)
        st = State.load(str(tmp_path))
        if st.warning:
            assert st.files == {} and st.targets == {}, what
        else:
            assert (st.files, st.targets) == (intact.files, intact.targets), what


def _fresh_entry(src, cache_root, key, damaged_name, data):
    d = Path(cache_root) / "cache" / key[:2] / key
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    (d / damaged_name).write_bytes(data)
    return d


@pytest.mark.parametrize("name", ["record.json", "model.onnx"])
def test_damaged_cache_entries_are_misses(projects, tmp_path, name):
    from s2build.store.local import Cache
    clean = projects["clean"]
    key = _key(clean)
    src = _entry(clean)
    intact = Cache(str(clean / ".s2build")).get(key)
    assert intact is not None
    for what, data in _damages((src / name).read_bytes()):
        _fresh_entry(src, tmp_path, key, name, data)
        cache = Cache(str(tmp_path))
        got = cache.get(key)
        assert got is None or got == intact, what
        assert (got is None) == bool(cache.warnings), what


@pytest.mark.parametrize("name", ["weights.pt", "optimizer.pt", "dynamics.npz", "rows.npz"])
def test_damaged_warm_start_files_are_no_parent(projects, tmp_path, name):
    import torch

    from s2build.compile import finetune
    from s2build.store.local import Cache
    d = projects["inc"] if name == "rows.npz" else projects["clean"]
    key = _key(d)
    src = _entry(d)
    assert (src / name).is_file()
    intact = finetune.load_parent(Cache(str(d / ".s2build")), key)
    assert intact is not None

    def same(a, b):
        return a["row_hash"] == b["row_hash"] and a["classes"] == b["classes"] and \
            a["metrics"] == b["metrics"] and a["state_dict"].keys() == b["state_dict"].keys() and \
            all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]) and \
            repr(a["optimizer_state"]) == repr(b["optimizer_state"])

    for what, data in _damages((src / name).read_bytes()):
        _fresh_entry(src, tmp_path, key, name, data)
        cache = Cache(str(tmp_path))
        got = finetune.load_parent(cache, key)
        assert got is None or same(got, intact), what
        assert (got is None) == bool(cache.warnings), what


def test_a_garbled_lock_owner_is_still_named(tmp_path):
    """lock.owner is read while another process holds the lock: damage must not crash it."""
    import fcntl

    from s2build.engine.locking import BuildLock
    from s2build.errors import LockedError
    (tmp_path / "lock.owner").write_bytes(garbled(b"pid 123 (s2build build, since 10:00:00)"))
    with open(tmp_path / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LockedError, match="is held by pid 123"):
            BuildLock(str(tmp_path), "s2build build", wait=False).__enter__()


# --- The CLI: exit 0, a warning where something was discarded, the clean build's artifact -------

def _cli_case(projects, tmp_path, what):
    """(project copy, damaged file path, expected SHA-256, build args) for damage case `what`."""
    clean = projects["clean"]
    if what == "rows.npz":
        d = shutil.copytree(projects["inc"], tmp_path / "p")
    else:
        d = shutil.copytree(clean, tmp_path / "p")
    s2 = d / ".s2build"
    if what == "state.json":
        return d, s2 / "state.json", projects["clean_sha"], ["build"]
    if what in ("shard", "manifest"):
        shutil.rmtree(s2 / "cache")                 # a rebuild reads the shards
        (d / ARTIFACT).unlink()
        return d, _shard(d) if what == "shard" else _manifest(d), projects["clean_sha"], ["build"]
    if what in ("record.json", "model.onnx"):
        (d / ARTIFACT).unlink()                     # the build restores from the cache
        return d, _entry(d) / what, projects["clean_sha"], ["build"]
    if what == "lock.owner":
        (d / ARTIFACT).unlink()
        return d, s2 / "lock.owner", projects["clean_sha"], ["build"]
    # warm-start files: a dev build after an edit reads them, and must fall back to a full build
    relabel(d / "data" / "a.csv", 5 if what == "rows.npz" else 3)
    return d, _entry(d) / what, projects["inc_sha" if what == "rows.npz" else "edited_sha"], \
        ["build", "--dev"]


# One CLI case per code path that reads a damaged file (the in-process sweeps above damage
# every file at every length): optimizer.pt, dynamics.npz and rows.npz are read through the same
# checked Cache.read_file as weights.pt, so the CLI repeats only weights.pt (a build each costs
# ~10 s of the suite's time budget).
CLI_CASES = [("state.json", "garbled"), ("shard", "half"), ("manifest", "garbled"),
             ("record.json", "half"), ("model.onnx", "garbled"), ("weights.pt", "garbled"),
             ("lock.owner", "garbled")]


@pytest.mark.parametrize("what,damage", CLI_CASES)
def test_the_cli_survives_damage(projects, tmp_path, what, damage):
    d, path, want, args = _cli_case(projects, tmp_path, what)
    good = path.read_bytes() if path.exists() else b"pid 1 (s2build build, since 10:00:00)"
    path.write_bytes(garbled(good) if damage == "garbled" else
                     truncated(good, len(good) // 2 if damage == "half" else int(damage)))
    p = run(args, d)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    if what != "lock.owner":                         # overwritten, nothing discarded
        assert "s2build: warning:" in p.stderr, p.stderr
    assert sha256(d / ARTIFACT) == want, p.stdout + p.stderr
