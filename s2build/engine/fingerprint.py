"""Fingerprints: what a target's artifact is a function of, and its build key.

- Sources: each glob is expanded (sorted); each file's SHA-256 comes from the stat cache when
  (size, mtime_ns, inode) is unchanged, else from reading the file ("stat before hash").
- Toolchain: versions of s2build, torch, onnx, onnxscript, the Python minor version, machine,
  CPU capability class, training threads and device; read without importing torch.
- Build key = SHA-256 of canonical JSON (sorted keys) of: source and holdout digests (sorted by
  path), the resolved config minus keys that cannot change the artifact, digests of user code,
  the build keys of dependencies, the toolchain and the build mode.

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

# A file hashed this soon after its mtime may change again within the same timestamp tick.
RACY_NS = 100_000_000
COARSE_RACY_NS = 2_000_000_000


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


def _racy(st, now_ns):
    """True when the file may change again within its current mtime tick: its stat tuple will
    not be trusted next time (git's "racy clean" problem). Whole-second mtimes mean a coarse
    filesystem, so the window is wider there."""
    window = COARSE_RACY_NS if st.st_mtime_ns % 1_000_000_000 == 0 else RACY_NS
    return now_ns - st.st_mtime_ns < window


def digest_files(relpaths, root, stat_cache):
    """{relpath: sha256} using `stat_cache` ({relpath: [size, mtime_ns, inode, sha]}), updated
    in place. Returns (digests, n_hashed). A cached entry is trusted when its stat tuple matches;
    racily-clean files are stored with mtime 0 so they are hashed again next time."""
    out, hashed = {}, 0
    now_ns = time.time_ns()
    for rel in relpaths:
        path = os.path.join(root, rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigError(f"source file '{rel}' disappeared while reading", rel) from None
        entry = stat_cache.get(rel)
        if entry and entry[1] == st.st_mtime_ns and entry[0] == st.st_size and entry[2] == st.st_ino:
            out[rel] = entry[3]
            continue
        digest = sha256_file(path)
        hashed += 1
        stat_cache[rel] = [st.st_size, 0 if _racy(st, now_ns) else st.st_mtime_ns, st.st_ino, digest]
        out[rel] = digest
    return out, hashed


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

    sources / holdout / user_code: relpath -> sha256; config: resolved config minus NOT_IN_KEY;
    deps: dependency name -> its build key; toolchain: see toolchain(); mode: release | dev."""

    def __init__(self, sources, holdout, config, user_code, deps, toolchain, mode="release"):
        self.sources, self.holdout, self.config = sources, holdout, config
        self.user_code, self.deps, self.toolchain, self.mode = user_code, deps, toolchain, mode
        self.key = canonical_digest({"sources": sources, "holdout": holdout, "config": config,
                                     "user_code": user_code, "deps": deps,
                                     "toolchain": toolchain, "mode": mode})


def target_inputs(target, stat_cache, dep_keys, mode="release"):
    """Fingerprint `target` now. `dep_keys` maps each dependency to its current build key.
    Returns (Inputs, number of files hashed)."""
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
                    user_code=user_d, deps={d: dep_keys[d] for d in target.config["deps"]},
                    toolchain=tc, mode=mode)
    return inputs, n1 + n2 + n3
