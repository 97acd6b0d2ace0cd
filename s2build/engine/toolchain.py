"""The toolchain: every fact outside the project that can change an artifact's bytes.

`toolchain(device, threads)` is part of each build key (fingerprint.py) and is recorded with
every build, so `explain` names what changed (`toolchain changed: numpy (2.1.0 -> 2.2.0)`):

- s2build: the display version; s2build_code: SHA-256 of s2build's own source (every .py
  file under the package, sorted relative paths + bytes; its first 16 hex digits), so an edit
  to the trainer, the exporter or a loader changes every key (~40 small files: ~1 ms, once
  per process);
- python (minor), machine, cpu (the kernel class torch dispatches to: AVX512 / AVX2 / ...);
- the versions of torch, onnx, onnxscript, onnx-ir (the dynamo exporter's optimizer), numpy,
  pillow (decodes and resizes images) and pyarrow, read from `NAME-VERSION.dist-info` folder
  names on sys.path (no imports), "missing" when not installed;
- device (resolved, see below) and threads; on cuda also gpu (the model from
  /proc/driver/nvidia/gpus/*/information), cuda (torch's CUDA version) and cudnn.

`resolve_device(requested)` is the one device resolution, used by the key and by training:
'auto' -> 'cuda' only when the installed torch is a CUDA build (torch/version.py's `cuda = ...`
line, read as text), CUDA_VISIBLE_DEVICES is not "" or "-1" and /dev/nvidia0 exists; else
'cpu'. The environment variable S2BUILD_DEVICE (cpu | cuda) forces what 'auto' resolves to.

`shard_salt()` is what, besides a file's bytes and the loader config, changes a shard's bytes:
the digest of s2build's data-reading code (s2build/data/*.py) and the numpy, pillow and pyarrow
versions.

Only the standard library: this module is on the no-op path.
"""

import glob
import hashlib
import os
import re
import sys

from s2build import __version__
from s2build.errors import ConfigError

TOOL_PACKAGES = ("torch", "onnx", "onnxscript", "onnx-ir", "numpy", "pillow", "pyarrow")
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../s2build
DEVICE_ENV = "S2BUILD_DEVICE"


def normalise(name):
    """A distribution name as PEP 503 compares them: `Pillow`, `onnx_ir` -> `pillow`, `onnx-ir`."""
    return re.sub(r"[-_.]+", "-", name).lower()


_DISTS = None


def _dists():
    """[(normalised name, version)] of every `NAME-VERSION.dist-info` folder on sys.path, in
    sys.path order (the first one wins, as for an import). Read once per process."""
    global _DISTS
    if _DISTS is None:
        _DISTS = []
        for entry in sys.path:
            try:
                listing = sorted(os.listdir(entry or "."))
            except OSError:
                continue
            for item in listing:
                if item.endswith(".dist-info"):
                    name, _, version = item[: -len(".dist-info")].partition("-")
                    _DISTS.append((normalise(name), version))
    return _DISTS


def _installed_versions(names):
    """{name: version} for the distributions `names` (normalised) found on sys.path."""
    wanted = {normalise(n) for n in names}
    found = {}
    for name, version in _dists():
        if name in wanted and name not in found:
            found[name] = version
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


# --- s2build's own code --------------------------------------------------------------------

_CODE = {}


def code_digest(sub=None):
    """SHA-256 of s2build's .py files (all of them, or those directly in subpackage `sub`):
    for each file in sorted relative-path order, the path, a NUL, the byte count, a NUL and the
    bytes. Cached per process: the code of a running process does not change under it."""
    if sub not in _CODE:
        if sub is None:
            files = sorted(os.path.relpath(os.path.join(d, f), PACKAGE_DIR)
                           for d, dirs, names in os.walk(PACKAGE_DIR)
                           if "__pycache__" not in d for f in names if f.endswith(".py"))
        else:
            files = sorted(os.path.join(sub, f) for f in os.listdir(os.path.join(PACKAGE_DIR, sub))
                           if f.endswith(".py"))
        h = hashlib.sha256()
        for rel in files:
            with open(os.path.join(PACKAGE_DIR, rel), "rb") as f:
                data = f.read()
            h.update(b"%s\0%d\0" % (rel.replace(os.sep, "/").encode(), len(data)))
            h.update(data)
        _CODE[sub] = h.hexdigest()
    return _CODE[sub]


_SALT = None


def shard_salt():
    """Text that changes whenever code or libraries that write shards change: the digest of
    s2build/data/*.py and the numpy, pillow and pyarrow versions. Cached per process."""
    global _SALT
    if _SALT is None:
        versions = _installed_versions(("numpy", "pillow", "pyarrow"))
        _SALT = "data=%s;numpy=%s;pillow=%s;pyarrow=%s" % (
            code_digest("data")[:16], versions.get("numpy", "missing"),
            versions.get("pillow", "missing"), versions.get("pyarrow", "missing"))
    return _SALT


# --- Device --------------------------------------------------------------------------------

def torch_cuda_version():
    """The CUDA version the installed torch was built with (torch/version.py's `cuda` line,
    read as text, not imported); None for a CPU build or when torch is missing."""
    for entry in sys.path:
        path = os.path.join(entry or ".", "torch", "version.py")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(.+?)\s*$", text, re.M)
        if not m:
            return None
        value = m.group(1).strip()         # None or a quoted string (no `ast`: 4 ms import)
        return value[1:-1] or None if value[:1] in "'\"" and value[-1:] == value[:1] else None
    return None


def decide_device(requested, torch_cuda, visible_devices, node_present, override=None):
    """The device `requested` (auto | cpu | cuda) resolves to, from injected facts: the torch
    build's CUDA version (None: CPU build), CUDA_VISIBLE_DEVICES (None: unset), whether
    /dev/nvidia0 exists, and S2BUILD_DEVICE (None: unset). A pure function."""
    if requested != "auto":
        return requested
    if override:
        if override not in ("cpu", "cuda"):
            raise ConfigError(f"{DEVICE_ENV}={override!r} is not a device", DEVICE_ENV,
                              "use cpu or cuda, or unset it")
        return override
    if torch_cuda and visible_devices not in ("", "-1") and node_present:
        return "cuda"
    return "cpu"


def resolve_device(requested):
    """'auto' | 'cpu' | 'cuda' -> the device this machine trains on (see decide_device)."""
    if requested != "auto":
        return requested
    return decide_device(requested, torch_cuda_version(),
                         os.environ.get("CUDA_VISIBLE_DEVICES"),
                         os.path.exists("/dev/nvidia0"), os.environ.get(DEVICE_ENV) or None)


def determinism(device, deterministic, env):
    """The switches a build on `device` sets before training, as plain data (a pure function of
    the device, whether the build must be reproducible (release) and the environment `env`):
    {"env": variables to set (CUBLAS_WORKSPACE_CONFIG=:4096:8 unless `env` has one; cuBLAS reads
    it when CUDA starts), "deterministic_algorithms", "cudnn_deterministic", "cudnn_benchmark"};
    None on cpu or for a dev build (nothing to set). compile/train.pick_device applies it."""
    if device != "cuda" or not deterministic:
        return None
    return {"env": {} if env.get("CUBLAS_WORKSPACE_CONFIG") else
            {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
            "deterministic_algorithms": True, "cudnn_deterministic": True,
            "cudnn_benchmark": False}


def gpu_model():
    """The first GPU's model name (from the NVIDIA driver's /proc files), or 'unknown'."""
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("Model:"):
                        return line.split(":", 1)[1].strip() or "unknown"
        except OSError:
            continue
    return "unknown"


def cudnn_version():
    """The version of the installed nvidia-cudnn-* wheel, or 'missing'."""
    for name, version in _dists():
        if name.startswith("nvidia-cudnn-"):
            return version
    return "missing"


# --- The toolchain -------------------------------------------------------------------------

_BASE = None
HOLDOUT_SPLIT = "rowhash-v3"     # = "rowhash-v%d" % data.rowhash.SPLIT_VERSION (a test checks)


def toolchain(device="cpu", threads=1):
    """The toolchain facts that can change an artifact's bytes (a flat {str: str|int} dict)."""
    global _BASE
    if _BASE is None:
        versions = _installed_versions(TOOL_PACKAGES)
        # holdout_split: which rows are held out (data/rowhash.py SPLIT_VERSION, a literal here:
        # the no-op path imports no numpy); a change says so once, in the first rebuild's line
        _BASE = {"s2build": __version__, "s2build_code": code_digest()[:16],
                 "holdout_split": HOLDOUT_SPLIT,
                 "python": "%d.%d" % sys.version_info[:2],
                 "machine": os.uname().machine,
                 "cpu": cpu_capability(),
                 **{p: versions.get(p, "missing") for p in TOOL_PACKAGES}}
    out = dict(_BASE, device=resolve_device(device), threads=threads)
    if out["device"] == "cuda":
        out.update(gpu=gpu_model(), cuda=torch_cuda_version() or "none", cudnn=cudnn_version())
    return out
