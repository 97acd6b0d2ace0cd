"""Fingerprints: what a target's artifact is a function of, and its build key.

- Sources: each glob is expanded (sorted); each file's SHA-256 comes from the stat cache when
  (size, mtime_ns, ctime_ns, inode) is unchanged, else from reading the file ("stat before
  hash"). A file whose mtime or ctime is not older than the filesystem's clock when it was read
  (a probe file's mtime, as git compares with the index file's) is "racily clean": stored so
  that it is hashed again next time.
- Toolchain: versions of s2build, torch, onnx, onnxscript, the Python minor version, machine,
  CPU capability class, training threads and device; read without importing torch.
- Build key = SHA-256 of canonical JSON (sorted keys) of: source and holdout digests (sorted by
  path), the resolved config minus keys that cannot change the artifact (config.NOT_IN_KEY:
  description, output, specs, deps, the glob patterns, the built-in metrics), digests of user
  code, the toolchain and the build mode. Dependencies only order the build: until targets
  consume each other's artifacts, a dependency's key is not part of its dependent's.

Only the standard library: this module is on the no-op path.
"""

import fnmatch
import glob
import hashlib
import json
import os
import sys
import time

from s2build import __version__
from s2build.project import config as cfgmod
from s2build.errors import ConfigError

PROBE_PREFIX = ".s2build-clock-"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def canonical_digest(obj):
    """SHA-256 hex of canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _match(root, pattern):
    """Relative paths of regular files under `root` matching `pattern`, unsorted.

    Fast path for the common `dir/sub/*.ext` (magic only in the last component): one scandir,
    file type from the directory entry, no per-file stat. Anything else goes through glob."""
    head, tail = os.path.split(pattern)
    if not glob.has_magic(head) and "**" not in tail:
        folder = os.path.join(root, head)
        if not glob.has_magic(tail):
            return [pattern] if os.path.isfile(folder if not tail else os.path.join(folder, tail)) else []
        try:
            entries = os.scandir(folder)
        except OSError:
            return []
        prefix = head + "/" if head else ""
        with entries:
            names = [e.name for e in entries if e.is_file()]
        if not tail.startswith("."):
            names = [n for n in names if not n.startswith(".")]
        return [prefix + n for n in fnmatch.filter(names, tail)]
    return [m for m in glob.glob(pattern, root_dir=root, recursive=True)
            if os.path.isfile(os.path.join(root, m))]


def expand(target, which="sources"):
    """Sorted relative paths matched by the target's globs (`sources` or `holdout`).

    A glob that matches no file is a ConfigError at its yaml location."""
    root = target.root
    globs = target.config["sources"] if which == "sources" else target.config["holdout"]["sources"]
    base_path = ("sources",) if which == "sources" else ("holdout", "sources")
    found = set()
    for i, pattern in enumerate(globs):
        if os.path.isabs(pattern):
            raise ConfigError(f"source glob '{pattern}' is absolute", target.loc(*base_path, i),
                              "use a path relative to s2build.yaml's folder")
        matches = _match(root, os.path.normpath(pattern))
        if not matches:
            if glob.has_magic(pattern):
                raise ConfigError(f"glob '{pattern}' matches no files", target.loc(*base_path, i),
                                  "check the path; it is relative to s2build.yaml's folder")
            raise ConfigError(f"source file '{pattern}' not found", target.loc(*base_path, i),
                              "check the path; it is relative to s2build.yaml's folder")
        found.update(matches)
    return sorted(found)


def fs_clock_ns(folder):
    """The filesystem's clock now: the mtime of a probe file created (and removed) in `folder`,
    or None when `folder` is not writable. Coarse filesystems give whole seconds here, too."""
    import tempfile
    try:
        fd, path = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass


def stat_key(st):
    """The stat tuple a stat-cache entry is trusted by: [size, mtime_ns, ctime_ns, inode].
    ctime catches a same-size rewrite whose mtime was put back (cp -p, touch -r, rsync -t)."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def digest_files(relpaths, root, stat_cache, probe_dir=None):
    """{relpath: sha256} using `stat_cache` ({relpath: [size, mtime_ns, ctime_ns, inode, sha]}),
    updated in place. Returns (digests, n_hashed). A cached entry is trusted when its stat tuple
    matches. After hashing, the filesystem's clock is read once (a probe file in `probe_dir`,
    default ROOT/.s2build or ROOT): a file whose mtime or ctime is not older than that clock at
    the time it was read may change again within the same timestamp tick (a rewrite that puts
    the mtime back and lands in the same ctime tick would keep the whole tuple), so it is stored
    with mtime 0 and hashed again next time (git's "racy clean" rule)."""
    out, fresh = {}, []
    for rel in relpaths:
        path = os.path.join(root, rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigError(f"source file '{rel}' disappeared while reading", rel) from None
        entry = stat_cache.get(rel)
        key = stat_key(st)
        if entry and entry[:4] == key:
            out[rel] = entry[4]
            continue
        digest = sha256_file(path)
        fresh.append((rel, key, time.monotonic_ns()))
        stat_cache[rel] = key + [digest]
        out[rel] = digest
    if fresh:
        if probe_dir is None:
            probe_dir = os.path.join(root, ".s2build")
            probe_dir = probe_dir if os.path.isdir(probe_dir) else root
        clock, mono = fs_clock_ns(probe_dir), time.monotonic_ns()
        for rel, key, read_at in fresh:
            # the filesystem's clock when the file was read: the probe's, less the time since
            if clock is None or max(key[1], key[2]) >= clock - (mono - read_at):
                stat_cache[rel][1] = 0
    return out, len(fresh)


# --- Toolchain -----------------------------------------------------------------------------

_TOOL_PACKAGES = ("torch", "onnx", "onnxscript")


def _installed_versions(names):
    """{name: version} from `NAME-VERSION.dist-info` folders on sys.path (no imports)."""
    found = {}
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            if item.endswith(".dist-info"):
                base = item[: -len(".dist-info")]
                name, _, version = base.partition("-")
                name = name.lower().replace("_", "-")
                if name in names and name not in found:
                    found[name] = version
        if len(found) == len(names):
            break
    return found


def cpu_capability():
    """The CPU class that selects torch's kernels (AVX512 / AVX2 / DEFAULT on x86)."""
    machine = os.uname().machine.lower()
    if machine not in ("x86_64", "amd64"):
        return machine
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
                        return "AVX512"
                    if "avx2" in flags:
                        return "AVX2"
                    return "DEFAULT"
    except OSError:
        pass
    return "unknown"


def resolve_device(device):
    """'auto' -> 'cuda' when an NVIDIA device node is present, else 'cpu' (no torch import)."""
    if device != "auto":
        return device
    return "cuda" if os.path.exists("/dev/nvidia0") else "cpu"


_TOOLCHAIN = None


def toolchain(device="cpu", threads=1):
    """The toolchain facts that can change an artifact's bytes."""
    global _TOOLCHAIN
    if _TOOLCHAIN is None:
        versions = _installed_versions(_TOOL_PACKAGES)
        _TOOLCHAIN = {"s2build": __version__,
                      "python": "%d.%d" % sys.version_info[:2],
                      "machine": os.uname().machine,
                      "cpu": cpu_capability(),
                      **{p: versions.get(p, "missing") for p in _TOOL_PACKAGES}}
    return dict(_TOOLCHAIN, device=resolve_device(device), threads=threads)


# --- Inputs and the build key --------------------------------------------------------------

class Inputs:
    """Everything a target's artifact depends on, and the key derived from it.

    sources / holdout / user_code: relpath -> sha256; config: config.key_config(target);
    toolchain: see toolchain(); mode: release | incremental. No dependency keys, no target
    name: two targets with the same recipe share one key (and one cached artifact). `deps` is
    always {} (the lock file's `dep` lines read it): dependencies only order the build."""

    deps = {}

    def __init__(self, sources, holdout, config, user_code, toolchain, mode="release"):
        self.sources, self.holdout, self.config = sources, holdout, config
        self.user_code, self.toolchain, self.mode = user_code, toolchain, mode
        self.key = canonical_digest({"sources": sources, "holdout": holdout, "config": config,
                                     "user_code": user_code, "toolchain": toolchain,
                                     "mode": mode})


def target_inputs(target, stat_cache, dep_keys=None, mode="release"):
    """Fingerprint `target` now. Returns (Inputs, number of files hashed). `dep_keys` is
    accepted for callers that still pass it and ignored: dependencies are not in the key."""
    root = target.root
    sources = expand(target, "sources")
    holdout = expand(target, "holdout") if target.config["holdout"]["sources"] else []
    src_d, n1 = digest_files(sources, root, stat_cache)
    hold_d, n2 = digest_files(holdout, root, stat_cache)
    user_files = sorted({rel for _r, _p, rel, _n in target.user_refs()})
    user_d, n3 = digest_files(user_files, root, stat_cache)
    threads = 1
    tc = toolchain(target.config["train"]["device"], threads)
    inputs = Inputs(sources=src_d, holdout=hold_d, config=cfgmod.key_config(target),
                    user_code=user_d, toolchain=tc, mode=mode)
    return inputs, n1 + n2 + n3
