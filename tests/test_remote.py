"""The remote cache (store/remote.py) on real builds of the toy project, against a shared folder
(`file://`) and a real S3 API server (moto's, on 127.0.0.1 in this process): a fresh copy
restores what another copy pushed, without training and byte for byte; a remote file with one
flipped byte is a warning and a build, never an artifact; two concurrent pushers of one key leave
one whole entry; read-only never writes; the no-op path imports neither fsspec nor torch."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, run, sha256
from toy import make_project

fsspec = pytest.importorskip("fsspec", reason="the remote cache needs fsspec (pip install "
                             "'s2build[remote]')")


class Backend:
    """A remote for the tests: `url`, the yaml's `cache:` block, the CLI's environment, and an
    fsspec filesystem on it for the test's own reads and damage."""

    def __init__(self, url, options=None, env=None):
        self.url, self.options, self.env = url, options or {}, env or {}
        self.fs, self.root = fsspec.core.url_to_fs(url, **self.options)

    def yaml(self, extra=""):
        opts = f", options: {json.dumps(self.options)}" if self.options else ""
        return f"cache: {{remote: {json.dumps(self.url)}{opts}{extra}}}\n"

    def listing(self):
        """{path: sha256} of every object under the remote."""
        self.fs.invalidate_cache()
        return {p: hashlib.sha256(self.fs.cat_file(p)).hexdigest()
                for p in self.fs.find(self.root)}

    def record(self, key):
        return json.loads(self.fs.cat_file(f"{self.root}/ac/{key[:2]}/{key}.json"))

    def blob(self, sha):
        return f"{self.root}/cas/{sha[:2]}/{sha}"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1 (random free port) for this module; its endpoint URL."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed "
                                     "(pip install 'moto[server]' s3fs); S3 variant skipped")
    pytest.importorskip("s3fs", reason="s3fs is not installed; S3 variant skipped")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path, monkeypatch):
    """A fresh, empty remote: a shared folder, or a bucket on the moto server (its endpoint
    passed as `cache.options.endpoint_url`, credentials through the standard AWS variables)."""
    if request.param == "file":
        return Backend("file://" + str(tmp_path / "shared"))
    endpoint = request.getfixturevalue("s3_server")
    for k, v in _CREDS.items():
        monkeypatch.setenv(k, v)
    bucket = f"s2b-{uuid.uuid4().hex[:16]}"
    backend = Backend(f"s3://{bucket}/team", {"endpoint_url": endpoint}, dict(_CREDS))
    backend.fs.mkdir(bucket)
    return backend


def _project(d, backend, epochs=3, extra=""):
    make_project(d, epochs=epochs)
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("version: 1\n", "version: 1\n" + backend.yaml(extra), 1))
    return d


def _key(d):
    return json.loads((d / ".s2build" / "state.json").read_text())["targets"]["toy"]["key"]


def _fresh(src, d):
    """A copy of project `src` without its .s2build/ and outputs: an empty local cache."""
    shutil.copytree(src, d, ignore=shutil.ignore_patterns(".s2build", "build"))
    return d


def test_two_pushers_then_restore_then_a_flipped_byte_is_rebuilt(tmp_path, remote):
    """Copies A (remote in the yaml) and A2 (the URL from S2BUILD_REMOTE_CACHE; the same key,
    since the remote is not in it) build the same recipe at once and both push: one whole
    entry. A fresh copy B restores it without training, byte for byte. A flipped byte in the
    remote model.onnx: a read-only build warns, builds and writes nothing; a read-write build
    warns, builds and repairs the entry."""
    a = _project(tmp_path / "a", remote)
    a2 = make_project(tmp_path / "a2", epochs=3)
    env2 = dict(os.environ, **remote.env, S2BUILD_REMOTE_CACHE=remote.url, PYTHONPATH=str(ROOT))
    if remote.options:                          # the S3 endpoint the AWS way this time
        env2["AWS_ENDPOINT_URL"] = remote.options["endpoint_url"]
    procs = [subprocess.Popen([sys.executable, "-m", "s2build", "build"], cwd=c, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(env2, S2BUILD_REMOTE_CACHE="") if c is a else env2)
             for c in (a, a2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(o.startswith("toy: built in") for o, _ in outs), outs
    key = _key(a)
    assert _key(a2) == key
    names = remote.fs.find(remote.root)
    assert [n for n in names if n.startswith(f"{remote.root}/ac/")] == [f"{remote.root}/ac/{key[:2]}/{key}.json"]
    assert not [n for n in names if n.startswith(f"{remote.root}/tmp/")]   # none in flight
    record = remote.record(key)
    assert set(record["files"]) >= {"weights.pt"}
    for sha in [record["artifact_sha256"], *record["files"].values()]:
        assert hashlib.sha256(remote.fs.cat_file(remote.blob(sha))).hexdigest() == sha

    b = _fresh(a, tmp_path / "b")
    p = run(["status"], b, env=remote.env, check=1)
    assert p.stdout.splitlines()[0] == "toy: stale, restorable from remote cache (never built)"
    assert json.loads(run(["explain", "toy", "--json"], b, env=remote.env, check=0).stdout
                      )[0]["from"] == "remote"
    assert run(["explain", "toy"], b, env=remote.env, check=0).stdout.splitlines()[0] == \
        "toy will be restored from remote cache because:"
    p = run(["build"], b, env=remote.env, check=0)
    assert p.stdout.strip() == "toy: restored from remote cache (never built) -> build/toy.onnx"
    assert "building" not in p.stderr                           # no training
    assert sha256(b / "build" / "toy.onnx") == sha256(a / "build" / "toy.onnx")
    assert json.loads((b / "build" / "toy.onnx.json").read_text())["restored_from_cache"]
    local = b / ".s2build" / "cache" / key[:2] / key           # written into the local cache
    assert (local / "record.json").read_bytes() == \
        remote.fs.cat_file(f"{remote.root}/ac/{key[:2]}/{key}.json")
    if remote.url.startswith("file:"):          # backend-independent checks, once
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "s2build", "build"],
                           cwd=b, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert p.returncode == 0 and p.stdout.strip() == "toy: up to date"
        imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines()}
        assert not imported & {"fsspec", "torch", "numpy"}     # the no-op path stays light
        listing = remote.listing()              # verify rebuilds: it neither pulls nor pushes
        p = run(["verify", "--keep"], b, env=remote.env, check=0)
        scratch = Path(p.stderr.split("scratch project kept in ")[1].split()[0])
        sidecar, = scratch.glob("**/build/toy.onnx.json")
        assert json.loads(sidecar.read_text())["restored_from_cache"] is False
        shutil.rmtree(scratch)
        assert remote.listing() == listing

    blob = remote.blob(record["artifact_sha256"])               # one flipped byte in model.onnx
    data = bytearray(remote.fs.cat_file(blob))
    data[len(data) // 2] ^= 0x01
    remote.fs.pipe_file(blob, bytes(data))
    before = remote.listing()
    c = _fresh(a, tmp_path / "c")
    p = run(["build"], c, env=dict(remote.env, S2BUILD_REMOTE_READONLY="1"), check=0)
    assert f"remote cache entry {key[:12]} has a model.onnx that does not match its recorded " \
        "SHA-256; building instead" in p.stderr
    assert "toy: built in" in p.stdout                          # rebuilt, not restored
    assert remote.listing() == before                           # read-only: nothing written
    import onnx
    onnx.checker.check_model(onnx.load(str(c / "build" / "toy.onnx")))
    if not remote.url.startswith("file:"):      # the repair is the same code on every backend
        return
    d = _fresh(a, tmp_path / "d")                               # read-write: the push repairs
    p = run(["build"], d, env=remote.env, check=0)
    assert "does not match its recorded SHA-256" in p.stderr and "toy: built in" in p.stdout
    e = _fresh(a, tmp_path / "e")
    assert "restored from remote cache" in run(["build"], e, env=remote.env, check=0).stdout
    assert sha256(e / "build" / "toy.onnx") == sha256(d / "build" / "toy.onnx")
    remote.fs.rm(f"{remote.root}/ac/{key[:2]}/{key}.json")    # the remote forgot the entry:
    (c / "build" / "toy.onnx").unlink()                         # C's local restore shares it
    assert "toy: restored from cache" in run(["build"], c, env=remote.env, check=0).stdout
    assert remote.record(key) == json.loads((c / ".s2build" / "cache" / key[:2] / key /
                                             "record.json").read_text())


def test_remote_settings_are_checked(tmp_path):
    """Unknown keys and values under `cache:` get a location and a did-you-mean."""
    d = make_project(tmp_path / "t", epochs=1)
    y = d / "s2build.yaml"
    text = y.read_text()
    y.write_text(text.replace("version: 1\n", "version: 1\ncache: {remot: x}\n"))
    p = run(["status"], d, check=3)
    assert "s2build.yaml:2:9: unknown key 'remot' (did you mean 'remote'?)" in p.stderr
    y.write_text(text.replace("version: 1\n", "version: 1\ncache: {remote: x, mode: readonly}\n"))
    p = run(["status"], d, check=3)
    assert "cache.mode: unknown value 'readonly' (did you mean 'read-only'?)" in p.stderr


def _entry(state_dir, key="ab" * 32):
    """A real local cache entry (store/local.py) with small stand-in bytes; its Cache."""
    from s2build.store.local import Cache
    cache = Cache(str(state_dir))
    cache.put(key, b"onnx bytes", {"facts": {"build_key": key}},
              {"weights.pt": b"weights", "rows.npz": b"rows"})
    return cache, key


def test_partial_damaged_or_hostile_remote_entries_are_misses(tmp_path):
    """In process, on the store alone (milliseconds): a missing file, a record truncated at
    every length, and a record naming a path instead of a file name are each a miss with a
    warning; nothing reaches the local cache and nothing raises."""
    from s2build.store.local import Cache, _record_digest
    from s2build.store.remote import Remote
    cache, key = _entry(tmp_path / "a")
    url = "file://" + str(tmp_path / "shared")
    assert Remote(url).push(key, cache) and not cache.warnings
    fs, root = fsspec.core.url_to_fs(url)
    rec_path = f"{root}/ac/{key[:2]}/{key}.json"
    good = fs.cat_file(rec_path)

    def pull():
        fresh = Cache(str(tmp_path / f"b{len(os.listdir(tmp_path))}"))
        ok = Remote(url).pull(key, fresh)
        assert ok == fresh.has(key)
        return ok, fresh.warnings

    assert pull() == (True, [])
    weights = json.loads(good)["files"]["weights.pt"]
    blob = f"{root}/cas/{weights[:2]}/{weights}"
    fs.mv(blob, blob + ".away")
    assert pull() == (False, [f"remote cache entry {key[:12]} lacks weights.pt; building instead"])
    fs.mv(blob + ".away", blob)
    for n in range(0, len(good), 7):                     # a record cut short anywhere
        fs.pipe_file(rec_path, good[:n])
        assert pull() == (False, [f"remote cache entry {key[:12]} has a damaged record; "
                                  "building instead"])
    hostile = json.loads(good)
    hostile["files"]["../../escape"] = hostile["files"].pop("rows.npz")
    hostile["record_sha256"] = _record_digest(hostile)
    fs.pipe_file(rec_path, json.dumps(hostile).encode())
    assert pull()[0] is False and not (tmp_path / "escape").exists()


def test_a_failing_or_unknown_remote(tmp_path):
    """A remote that cannot be written is a warning, not a failed build; an unknown protocol
    is a ConfigError naming where the URL came from."""
    from s2build.errors import ConfigError
    from s2build.store.remote import Remote
    cache, key = _entry(tmp_path / "a")
    (tmp_path / "a-file").write_text("not a folder")   # unwritable, even for root
    r = Remote("file://" + str(tmp_path / "a-file" / "cache"))
    assert r.push(key, cache) is False
    assert len(cache.warnings) == 1 and "failed (write: NotADirectoryError" in cache.warnings[0]
    assert r.push(key, cache) is False and len(cache.warnings) == 1   # not asked again
    assert r.has(key, cache) is False
    with pytest.raises(ConfigError) as e:
        Remote("nosuchproto://x/y", where="s2build.yaml:2:17").has(key, cache)
    assert str(e.value).startswith("s2build.yaml:2:17: cannot use remote cache nosuchproto://x/y")


def test_where_the_remote_comes_from(tmp_path, monkeypatch):
    """The yaml's `cache:`, overridden by S2BUILD_REMOTE_CACHE (`off`: none) and
    S2BUILD_REMOTE_READONLY; a relative folder is the yaml's; no remote, no Remote."""
    from s2build.project import config
    from s2build.store.remote import configured
    d = make_project(tmp_path / "t", epochs=1)
    y = d / "s2build.yaml"
    text = y.read_text()
    monkeypatch.chdir(d)
    monkeypatch.delenv("S2BUILD_REMOTE_CACHE", raising=False)
    monkeypatch.delenv("S2BUILD_REMOTE_READONLY", raising=False)
    assert configured(config.load(str(y))) is None
    y.write_text(text.replace("version: 1\n", "version: 1\ncache: {remote: ../shared}\n"))
    r = configured(config.load(str(y)))
    assert (r.url, r.read_only, r.where) == (str(d / "../shared"), False, "s2build.yaml:2:17")
    monkeypatch.setenv("S2BUILD_REMOTE_READONLY", "1")
    assert configured(config.load(str(y))).read_only
    monkeypatch.setenv("S2BUILD_REMOTE_CACHE", "s3://team/cache")
    r = configured(config.load(str(y)))
    assert (r.url, r.where) == ("s3://team/cache", "S2BUILD_REMOTE_CACHE")
    monkeypatch.setenv("S2BUILD_REMOTE_CACHE", "off")
    assert configured(config.load(str(y))) is None
