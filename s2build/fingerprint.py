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

import glob
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

from . import __version__, config as cfgmod
from .errors import ConfigError

# A file whose mtime is this close to "now" may still be written to within the same timestamp
# granularity; its stat tuple is not trusted next time (git's "racy clean" problem).
RACY_NS = 2_000_000_000


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
        matches = [m for m in glob.glob(os.path.join(glob.escape(root), pattern), recursive=True)
                   if os.path.isfile(m)]
        if not matches:
            if glob.has_magic(pattern):
                raise ConfigError(f"glob '{pattern}' matches no files", target.loc(*base_path, i),
                                  "check the path; it is relative to s2build.yaml's folder")
            raise ConfigError(f"source file '{pattern}' not found", target.loc(*base_path, i),
                              "check the path; it is relative to s2build.yaml's folder")
        found.update(os.path.relpath(m, root) for m in matches)
    return sorted(found)


def digest_files(relpaths, root, stat_cache, now_ns=None):
    """{relpath: sha256} using `stat_cache` ({relpath: [size, mtime_ns, ino, sha]}), which is
    updated in place. Returns (digests, n_hashed)."""
    now_ns = now_ns or time.time_ns()
    out, hashed = {}, 0
    for rel in relpaths:
        path = os.path.join(root, rel)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigError(f"source file '{rel}' disappeared while reading", rel) from None
        entry = stat_cache.get(rel)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns and entry[2] == st.st_ino:
            out[rel] = entry[3]
            continue
        digest = sha256_file(path)
        hashed += 1
        racy = now_ns - st.st_mtime_ns < RACY_NS
        stat_cache[rel] = [st.st_size, 0 if racy else st.st_mtime_ns, st.st_ino, digest]
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
    machine = platform.machine().lower()
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
                      "machine": platform.machine(),
                      "cpu": cpu_capability(),
                      **{p: versions.get(p, "missing") for p in _TOOL_PACKAGES}}
    return dict(_TOOLCHAIN, device=resolve_device(device), threads=threads)


# --- Inputs and the build key --------------------------------------------------------------

@dataclass
class Inputs:
    """Everything a target's artifact depends on, and the key derived from it."""

    sources: dict                 # relpath -> sha256
    holdout: dict                 # relpath -> sha256 (holdout.sources files)
    config: dict                  # resolved config minus NOT_IN_KEY
    user_code: dict               # relpath -> sha256
    deps: dict                    # dep name -> its build key
    toolchain: dict
    mode: str = "release"
    key: str = field(default="")

    def __post_init__(self):
        self.key = canonical_digest({"sources": self.sources, "holdout": self.holdout,
                                     "config": self.config, "user_code": self.user_code,
                                     "deps": self.deps, "toolchain": self.toolchain,
                                     "mode": self.mode})


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
