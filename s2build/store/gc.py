"""Removing what s2build wrote, and nothing else: `clean` (outputs) and `collect` (the cache).

clean(project, names): a target's output and its sidecar `OUTPUT.json` are removed only when
s2build recorded writing them: state.json's record of the target names the output, and the file
on disk is that artifact (its stat tuple [size, mtime_ns, inode] as recorded, else its SHA-256
equals the recorded `artifact_sha256`); the sidecar only when it is JSON naming that same
artifact SHA-256. Anything else (a file the user put there, a later edit) is kept and reported.

collect(project, max_bytes): the cache (.s2build/cache/) is cut down to `max_bytes` by removing
the least recently used entries. Never removed ("pinned"): every build key in s2build.lock,
the latest build of each target in state.json (seed variants included), and the parent chain
of any pinned dev build (record.json's `parent`). "Recently used" is the entry folder's mtime:
set when the entry is written, and touched by Cache.get on every restore. Runs under the build
lock; an entry leaves by one os.replace into .s2build/tmp/ (so it is whole or gone), then is
deleted. Sizes: K, M, G, T are powers of 1024; printed MB are 1024 * 1024 bytes.
The upstream outputs (.s2build/upstream/, compile/upstream.py: an upstream network's outputs
over one source file) count toward `max_bytes` and go least recently used first beside the
entries (their mtime, touched on every hit); they are never pinned, because a later build
computes a missing one again (one onnxruntime pass over that file) and none is in a build key.
collect also removes the graph cache entries (.s2build/graphs/ and the user's shared folder,
compile/relink.py) that can never be hit again: damaged ones and those of another toolchain
(in the shared folder, only those unused for relink.SHARED_STALE_DAYS): Collected.graphs; the
others are a few KB each (no weights) and stay. `clean --cache` removes .s2build/graphs/ with the rest.
"""

import json
import os
import re
import shutil
import tempfile

from s2build import atomic

UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
SIZE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text):
    """Bytes of '500M', '2G', '1.5g', '2GiB', '1048576'; ValueError otherwise."""
    m = SIZE.match(text or "")
    if not m:
        raise ValueError("not a size")
    return int(float(m["n"]) * UNITS[m["unit"].upper()])


def megabytes(n):
    return f"{n / 1024 ** 2:.1f} MB"


def cache_size(project):
    """(entries, bytes) of the cache."""
    from s2build.store.local import Cache
    return Cache(project.state_dir).size()


# --- clean ---------------------------------------------------------------------------------

def _is_recorded_artifact(path, rec):
    from s2build.engine.fingerprint import sha256_file, stat_key
    if stat_key(os.stat(path)) == rec.get("output_stat"):
        return True
    return bool(rec.get("artifact_sha256")) and sha256_file(path) == rec["artifact_sha256"]


def _is_recorded_sidecar(path, rec):
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(rec.get("artifact_sha256")) \
        and data.get("artifact_sha256") == rec["artifact_sha256"]


def _inside(root, rel):
    full = os.path.normpath(os.path.join(root, rel))
    return not os.path.isabs(rel) and full.startswith(os.path.join(root, ""))


def _clean_rule(project, state, name, removed, kept):
    """Remove the files rule `name` was recorded writing (state.json `rules`), each only while
    it still holds the recorded bytes; then its output folders, if left empty."""
    from s2build.engine.fingerprint import sha256_file
    rec = state.rules.get(name) or {}
    for rel, sha in sorted((rec.get("outputs") or {}).items()):
        p = os.path.join(project.root, rel)
        if not os.path.isfile(p) or not _inside(project.root, rel):
            continue
        if sha256_file(p) != sha:
            kept.append((os.path.relpath(p), "not the output s2build recorded; changed since"))
            continue
        os.unlink(p)
        removed.append(os.path.relpath(p))
    for rel, folder in project.rules[name].outputs:
        p = os.path.join(project.root, rel)
        if folder and os.path.isdir(p) and not any(f for _d, _s, f in os.walk(p)):
            shutil.rmtree(p, ignore_errors=True)


def clean(project, names, cache=False, on_wait=None, rule_names=None):
    """Remove the recorded outputs of targets `names` and of rules `rule_names` (default: every
    rule) (and with `cache`, everything under .s2build/ but the lock). Returns (removed
    relpaths, [(relpath, why kept)])."""
    from s2build.engine.locking import BuildLock
    from s2build.engine.state import State
    removed, kept = [], []
    os.makedirs(project.state_dir, exist_ok=True)
    with BuildLock(project.state_dir, "s2build clean", wait=True, on_wait=on_wait):
        state = State.load(project.state_dir)
        for name in names:
            rec = state.targets.get(name) or {}
            outs = {project.targets[name].config["output"]}
            if rec.get("output"):
                outs.add(rec["output"])
            for rel in sorted(outs):
                out = os.path.join(project.root, rel)
                for p, ours in ((out, _is_recorded_artifact), (out + ".json", _is_recorded_sidecar)):
                    if not os.path.isfile(p):
                        continue
                    shown = os.path.relpath(p)
                    if not rec or rel != rec.get("output") or not _inside(project.root, rel):
                        kept.append((shown, "s2build has no record of writing it"))
                    elif not ours(p, rec):
                        kept.append((shown, "not the artifact s2build recorded; changed since"))
                    else:
                        os.unlink(p)
                        removed.append(shown)
        for name in rule_names if rule_names is not None else list(project.rules):
            _clean_rule(project, state, name, removed, kept)
        if cache:
            for entry in os.listdir(project.state_dir):
                if entry in ("lock", "lock.owner"):
                    continue
                p = os.path.join(project.state_dir, entry)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            removed.append(os.path.relpath(project.state_dir) + "/ (cache and state)")
    return removed, kept


# --- gc ------------------------------------------------------------------------------------

class Collected:
    """removed: [(key, bytes)], oldest first; freed: their bytes; kept / kept_bytes: the
    entries left; pinned: how many of those may never be removed; graphs: [(file name, bytes,
    why)] of the graph cache entries removed (not counted in freed)."""

    def __init__(self):
        self.removed, self.freed, self.kept, self.kept_bytes, self.pinned = [], 0, 0, 0, 0
        self.graphs = []
        self.upstream, self.upstream_freed = [], 0     # [(file name, bytes)] removed


def _upstream_outputs(state_dir):
    """[(path, bytes, last used ns)] of the upstream output files (.s2build/upstream/*/*.npy)."""
    out = []
    root = os.path.join(state_dir, "upstream")
    for sub in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        folder = os.path.join(root, sub)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name)
            if name.endswith(".npy") and not name.startswith(atomic.TMP_PREFIX):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append((path, st.st_size, st.st_mtime_ns))
    return out


def _entries(cache):
    """{key: (folder, bytes, last used ns)} of complete entries (those with record.json)."""
    out = {}
    if not os.path.isdir(cache.root):
        return out
    for shard in os.listdir(cache.root):
        sd = os.path.join(cache.root, shard)
        if not os.path.isdir(sd):
            continue
        for key in os.listdir(sd):
            d = os.path.join(sd, key)
            try:
                files = os.listdir(d)
                if "record.json" not in files:
                    continue
                size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
                out[key] = (d, size, os.stat(d).st_mtime_ns)
            except OSError:
                continue
    return out


def pinned_keys(project, cache):
    """Build keys gc never removes: the lock file's, state.json's latest builds', and the
    parent chain of each (dev builds warm-start from their parent)."""
    from s2build.engine.state import State
    from s2build.release import lockfile
    keys = set()
    for e in (lockfile.read(project) or {}).values():      # a damaged lock: LockStaleError
        if e.get("key"):
            keys.add(e["key"])
    for rec in State.load(project.state_dir).targets.values():
        keys.update(k for k in (rec.get("key"), rec.get("parent"), rec.get("inputs_key")) if k)
    todo = list(keys)
    while todo:
        try:
            with open(os.path.join(cache.entry_dir(todo.pop()), "record.json"), "rb") as f:
                parent = json.loads(f.read()).get("parent")
        except (OSError, ValueError, AttributeError):
            continue
        if parent and parent not in keys:
            keys.add(parent)
            todo.append(parent)
    return keys


def collect(project, max_bytes, dry_run=False, on_wait=None):
    """Remove least recently used unpinned entries until the cache is at most `max_bytes`
    (or only pinned entries are left). Returns a Collected."""
    from s2build.engine.locking import BuildLock
    from s2build.store.local import Cache
    cache = Cache(project.state_dir)
    res = Collected()
    os.makedirs(project.state_dir, exist_ok=True)
    with BuildLock(project.state_dir, "s2build gc", wait=True, on_wait=on_wait):
        entries = _entries(cache)
        pinned = pinned_keys(project, cache)
        ups = _upstream_outputs(project.state_dir)
        total = sum(size for _d, size, _t in entries.values()) + sum(s for _p, s, _t in ups)
        queue = [(entries[k][2], k, None) for k in entries if k not in pinned]
        queue += [(t, None, (path, size)) for path, size, t in ups]
        for _t, key, up in sorted(queue, key=lambda q: (q[0], q[1] or "")):
            if total <= max_bytes:
                break
            if up is not None:
                path, size = up
                if not dry_run:
                    try:
                        os.unlink(path)                 # one file: whole or gone
                    except OSError:
                        continue
                res.upstream.append((os.path.basename(path), size))
                res.upstream_freed += size
                total -= size
                continue
            d, size, _t = entries[key]
            if not dry_run:
                os.makedirs(cache.tmp, exist_ok=True)
                gone = tempfile.mkdtemp(prefix=atomic.TMP_PREFIX + "gc-", dir=cache.tmp)
                os.replace(d, os.path.join(gone, key))       # out of the cache in one step
                shutil.rmtree(gone, ignore_errors=True)
            res.removed.append((key, size))
            res.freed += size
            total -= size
        from s2build.compile import relink
        folders = [(os.path.join(project.state_dir, relink.FOLDER), 0)]
        if relink.shared_dir() is not None:
            folders.append((relink.shared_dir(), relink.SHARED_STALE_DAYS))
        for path, size, why in [x for folder, age in folders
                                for x in relink.stale(folder, age)]:
            if not dry_run:
                try:
                    os.unlink(path)
                except OSError:
                    continue
            res.graphs.append((os.path.basename(path), size, why))
        left = [k for k in entries if k not in {k for k, _s in res.removed}]
        res.kept = len(left)
        res.kept_bytes = total - (sum(s for _p, s, _t in ups) - res.upstream_freed)
        res.pinned = sum(k in pinned for k in left)
    return res
