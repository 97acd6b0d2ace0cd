"""The remote cache: the local cache's entries shared through any fsspec URL.

A team or a CI fleet points every checkout at one URL (`s3://bucket/prefix`, `gs://...`,
`file:///mnt/shared/s2build`, a plain path on a shared disk, anything fsspec speaks). On a local
miss the runner pulls the entry, verifies it and writes it into the local cache
(store/local.py), then restores from there; after a verified build it pushes the entry.

Configuration (s2build.yaml, top level; schema.CACHE), overridden by the environment:

    cache:
      remote: s3://bucket/s2build    # S2BUILD_REMOTE_CACHE=URL (`off`: no remote)
      mode: read-write               # read-only: pull, never push (S2BUILD_REMOTE_READONLY=1)
      options: {endpoint_url: ...}   # keyword arguments of the fsspec filesystem

Credentials come from where the filesystem looks for them (for S3: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ~/.aws, instance roles), never from the yaml; fsspec's
own FSSPEC_<PROTOCOL>_<OPTION> variables work too. The remote URL and its options are NOT in the
build key: where an entry is kept cannot change an artifact's bytes, and every byte pulled is
checked against the SHA-256 its record names.

Layout under URL (Bazel's split into an action cache and a content-addressed store):

    ac/ab/abcdef....json     the entry of build key abcdef...: the local record.json, byte for
                             byte (artifact_sha256, files {name: sha256}, record_sha256)
    cas/12/1234....          a file, named by its SHA-256 (model.onnx, weights.pt, ...)
    tmp/UUID                 uploads in flight; moved into place when complete

Publishing: every file goes to `tmp/UUID` and is moved to its `cas/` name (a rename on a shared
disk; on object stores each PUT or copy is whole anyway), and the record is published the same
way, last. Two pushers of one key write identical `cas/` objects and either's record, so a reader
sees no entry or a whole one. A reader trusts a record only when its own SHA-256 holds and every
file it names arrives with that SHA-256; otherwise the entry is a miss and a warning (the file
is overwritten by the next push), never an artifact.

`fsspec` is imported only when a remote is used: by a stale target, never on the no-op path.
"""

import json
import os
import re

from s2build.errors import ConfigError

_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")     # a file name, never a path


def _truthy(value):
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def configured(project):
    """The project's Remote, or None when no remote is configured (no fsspec import)."""
    cfg = getattr(project, "cache", None) or {}
    locs = getattr(project, "cache_locs", {})
    url, where = cfg.get("remote"), locs.get(("cache", "remote"))
    env = os.environ.get("S2BUILD_REMOTE_CACHE")
    if env is not None and env.strip():
        url, where = (None if env.strip().lower() == "off" else env.strip()), \
            "S2BUILD_REMOTE_CACHE"
    if not url:
        return None
    read_only = cfg.get("mode") == "read-only" or _truthy(os.environ.get("S2BUILD_REMOTE_READONLY"))
    if "://" not in url and not os.path.isabs(url):          # a folder relative to the yaml
        url = os.path.join(project.root, url)
    return Remote(url, read_only=read_only, options=cfg.get("options") or {}, where=where)


class Keys:
    """The keys a build can restore, for plan.decide (`key in keys`): the local cache's, then,
    only for a key missing locally, the remote's (one existence check)."""

    def __init__(self, cache, remote=None):
        self.cache, self.remote = cache, remote

    def __contains__(self, key):
        return self.cache.has(key) or (self.remote is not None and self.remote.has(key, self.cache))


class Remote:
    """One remote cache. `has`, `pull` and `push` never raise for a remote that misbehaves
    (unreachable, denied, damaged): they warn into `cache.warnings` and the build goes on as
    without a remote. A missing fsspec or an unknown protocol is a ConfigError."""

    def __init__(self, url, read_only=False, options=None, where=None):
        self.url, self.read_only, self.options, self.where = url, read_only, options or {}, where
        self._fs = self._root = None
        self._known = {}               # key -> whether its record exists (one look per run)
        self._bad = set()              # cas digests found damaged: the next push rewrites them
        self._down = None              # why the remote failed; then it is not asked again

    def __repr__(self):
        return f"Remote({self.url!r}{', read-only' if self.read_only else ''})"

    # -- paths -------------------------------------------------------------------------------
    def _fs_root(self):
        if self._fs is None:
            try:
                import fsspec.core
            except ImportError:
                raise ConfigError("the remote cache needs fsspec", self.where,
                                  "pip install 's2build[remote]'") from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.options)
            except (ImportError, ValueError, TypeError) as e:    # TypeError: a bad option
                raise ConfigError(f"cannot use remote cache {self.url}: {e}", self.where,
                                  "check cache.options; install the fsspec filesystem of its "
                                  "protocol, e.g. s3fs for s3://, gcsfs for gs://") from None
            self._root = self._root.rstrip("/")
        return self._fs, self._root

    def _path(self, *parts):
        return "/".join((self._fs_root()[1],) + parts)

    def record_path(self, key):
        return self._path("ac", key[:2], key + ".json")

    def blob_path(self, sha):
        return self._path("cas", sha[:2], sha)

    def _failed(self, cache, what, e):
        self._down = f"{what}: {type(e).__name__}: {e}"[:300]
        cache.warnings.append(f"remote cache {self.url} failed ({self._down}); "
                              "going on without it")

    # -- reading -----------------------------------------------------------------------------
    def has(self, key, cache):
        """Whether the remote holds a record for `key` (one existence check, remembered)."""
        if key in self._known:
            return self._known[key]
        if self._down:
            return False
        fs, _ = self._fs_root()
        try:
            self._known[key] = bool(fs.exists(self.record_path(key)))
        except Exception as e:                  # noqa: BLE001  (any storage backend's error)
            self._failed(cache, "exists", e)
            return False
        return self._known[key]

    def pull(self, key, cache):
        """Copy entry `key` into the local `cache` after verifying every file; True when the
        local cache now holds it. A damaged or partial entry: False and a warning."""
        from s2build.store.local import _record_digest
        if self._down:
            return False
        fs, _ = self._fs_root()
        short = key[:12]
        try:
            data = fs.cat_file(self.record_path(key))
        except FileNotFoundError:
            self._known[key] = False
            return False
        except Exception as e:                  # noqa: BLE001
            self._failed(cache, "read", e)
            return False
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):
            record = None
        files = record.get("files") if isinstance(record, dict) else None
        if not isinstance(files, dict) or not isinstance(record.get("artifact_sha256"), str) \
                or record.get("record_sha256") != _record_digest(record) \
                or not all(isinstance(n, str) and _NAME.match(n) and n not in ("model.onnx",
                           "record.json") and isinstance(s, str) and _SHA.match(s)
                           for n, s in files.items()) \
                or not _SHA.match(record["artifact_sha256"]):
            cache.warnings.append(f"remote cache entry {short} has a damaged record; "
                                  "building instead")
            return False
        import hashlib
        got = {}
        for name, sha in [("model.onnx", record["artifact_sha256"]), *sorted(files.items())]:
            try:
                blob = fs.cat_file(self.blob_path(sha))
            except FileNotFoundError:
                cache.warnings.append(f"remote cache entry {short} lacks {name}; "
                                      "building instead")
                return False
            except Exception as e:              # noqa: BLE001
                self._failed(cache, "read", e)
                return False
            if hashlib.sha256(blob).hexdigest() != sha:
                self._bad.add(sha)
                cache.warnings.append(f"remote cache entry {short} has a {name} that does not "
                                      "match its recorded SHA-256; building instead")
                return False
            got[name] = blob
        cache.put(key, got.pop("model.onnx"), record, got)
        return cache.has(key)

    # -- writing -----------------------------------------------------------------------------
    def push(self, key, cache):
        """Publish local entry `key` (files first, the record last); False when read-only, the
        entry is not (or no longer) verified locally, or the remote failed (with a warning)."""
        if self.read_only or self._down:
            return False
        record = cache.record(key)
        if record is None:
            return False
        names = ["model.onnx", *sorted(record.get("files") or {})]
        want = {"model.onnx": record["artifact_sha256"], **(record.get("files") or {})}
        fs, _ = self._fs_root()
        try:
            for name in names:
                sha = want[name]
                dest = self.blob_path(sha)
                data = cache.read_file(key, name, record)
                if data is None:               # damaged locally: dropped, nothing to share
                    return False
                if sha not in self._bad and _exists_with_size(fs, dest, len(data)):
                    continue                   # content-addressed: the same bytes are there
                self._publish(fs, dest, data)
            with open(os.path.join(cache.entry_dir(key), "record.json"), "rb") as f:
                self._publish(fs, self.record_path(key), f.read())
        except Exception as e:                  # noqa: BLE001
            self._failed(cache, "write", e)
            return False
        self._known[key] = True
        return True

    def share(self, key, cache):
        """Push local entry `key` unless the remote already has its record (a local restore of
        an entry built before the remote was configured, or by a read-only run)."""
        return not self.read_only and not self.has(key, cache) and self.push(key, cache)

    def _publish(self, fs, dest, data):
        """Write `data` under tmp/ and move it to `dest` (never a half-written `dest`)."""
        import uuid
        tmp = self._path("tmp", uuid.uuid4().hex)
        try:
            fs.pipe_file(tmp, bytes(data))
        except FileNotFoundError:              # a folder-backed remote: make tmp/ first
            fs.makedirs(self._path("tmp"), exist_ok=True)
            fs.pipe_file(tmp, bytes(data))
        try:
            fs.mv(tmp, dest)
        except FileNotFoundError:
            fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
            fs.mv(tmp, dest)


def _exists_with_size(fs, path, size):
    try:
        return fs.size(path) == size
    except FileNotFoundError:
        return False
