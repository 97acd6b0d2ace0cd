"""Fingerprints: what a target's artifact is a function of, and its build key.

- Sources: each glob is expanded (sorted); each file's SHA-256 comes from the stat cache when
  (size, mtime_ns, ctime_ns, inode) is unchanged, else from reading the file ("stat before
  hash"). A file whose mtime or ctime is not older than the filesystem's clock when it was read
  (a probe file's mtime, as git compares with the index file's) is "racily clean": stored so
  that it is hashed again next time.
- User code: the files the yaml names (`file.py:name`) and the project files they import,
  found by an `ast` scan of their import statements (transitively; cached in the build record
  by file digest, so a no-op parses nothing), plus files the last build saw imported at run
  time that the scan missed (usercode.py records them, Ninja's depfile idea).
- Toolchain: see toolchain.py (s2build's code digest, library versions, device, ...).
- Build key = SHA-256 of canonical JSON (sorted keys) of: source and holdout digests (sorted by
  path), the resolved config minus keys that cannot change the artifact (config.NOT_IN_KEY:
  description, output, specs, deps, the glob patterns, the built-in metrics), digests of user
  code, the toolchain and the build mode. Dependencies only order the build: a dependency's
  key is not part of its dependent's. A target that reads another's artifact (`upstream`) has
  that artifact's graph digest in its key (config.upstream.artifact; compile/upstream.py), not
  the upstream's build key: an upstream rebuild that computes the same graph leaves it current
  (early cutoff).

Only the standard library: this module is on the no-op path.
"""

import fnmatch
import glob
import hashlib
import json
import os
import time

from s2build import atomic
from s2build.engine import toolchain as toolchain_mod
from s2build.project import config as cfgmod
from s2build.errors import ConfigError



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
        fd, path = tempfile.mkstemp(prefix=atomic.tmp_prefix("clock"), dir=folder)
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
    prefix = os.path.join(root, "")
    get, stat = stat_cache.get, os.stat
    for rel in relpaths:                  # the no-op path: 10,000 files, keep the loop lean
        path = prefix + rel
        try:
            st = stat(path)
        except FileNotFoundError:
            raise ConfigError(f"source file '{rel}' disappeared while reading", rel) from None
        entry = get(rel)
        if entry is not None and entry[1] == st.st_mtime_ns and entry[2] == st.st_ctime_ns \
                and entry[0] == st.st_size and entry[3] == st.st_ino:
            out[rel] = entry[4]
            continue
        key = stat_key(st)
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


# --- User code and its project-local imports -------------------------------------------

def _raw_imports(path):
    """[[level, module, [names]]] of every import statement in the file (anywhere in it:
    imports inside functions and try blocks count). A file that does not parse has none.
    `ast` is imported here, not on the no-op path (a 4 ms import; a no-op reuses the scan)."""
    import ast
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [[0, a.name, []] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append([node.level, node.module or "", [a.name for a in node.names]])
    return out


def _local(rel):
    """True for a relative path that user code may import as project code: inside the project,
    not under .s2build/, not in a virtualenv or an installed package folder, not s2build."""
    parts = rel.split("/")
    return not (parts[0] in ("..", ".s2build", "s2build") or "site-packages" in parts
                or "dist-packages" in parts or os.path.isabs(rel))


def _module_files(root, base, parts, names):
    """Project files (relative) that importing `parts` (then `names` from it) from folder
    `base` (relative to root) executes: each package's __init__.py, the module, and any of
    `names` that is itself a submodule."""
    out, folder = [], base
    for i, part in enumerate(parts):
        folder = os.path.normpath(os.path.join(folder, part))
        init = os.path.join(folder, "__init__.py")
        if os.path.isfile(os.path.join(root, init)):
            out.append(init)
        elif i == len(parts) - 1 and os.path.isfile(os.path.join(root, folder + ".py")):
            return out + [folder + ".py"]
    for name in names:
        sub = os.path.normpath(os.path.join(folder, name)) + ".py"
        if os.path.isfile(os.path.join(root, sub)):
            out.append(sub)
    return out


def _resolve(root, rel, dirs, imp):
    """Project files (relative) that import `imp` (from _raw_imports) in file `rel` loads, where
    absolute imports search `dirs` (relative folders, in sys.path order)."""
    level, module, names = imp
    parts = [p for p in module.split(".") if p]
    if level:
        base = os.path.dirname(rel)
        for _ in range(level - 1):
            base = os.path.dirname(base)
        found = _module_files(root, base, parts, names)
    else:
        found = []
        for base in dirs:
            top = os.path.normpath(os.path.join(base, parts[0])) if parts else None
            if top and (os.path.isfile(os.path.join(root, top + ".py"))
                        or os.path.isdir(os.path.join(root, top))):
                found = _module_files(root, base, parts, names)
                break
    return [f.replace(os.sep, "/") for f in found if _local(f.replace(os.sep, "/"))]


def user_code(target, stat_cache, record=None):
    """The user files a target's artifact depends on: the files the yaml names, the project
    files they import (found by an `ast` scan of the import statements, transitively, as
    the loader resolves them: the user file's folder first, then the project root), and the
    files the last build saw imported at run time that the scan missed (record["user_deps"]).

    Returns ({relpath: sha256}, scan, static, n_hashed): static is the set of files the yaml
    names or the scan found; scan is {relpath: [sha256, raw imports]},
    recorded with the build so the next plan parses only files whose digest changed."""
    root = target.root
    old_scan = (record or {}).get("user_scan") or {}
    digests, scan, hashed = {}, {}, 0

    def walk(todo):
        nonlocal hashed
        while todo:
            rel, dirs = todo.pop()
            if rel not in digests:
                d, n = digest_files([rel], root, stat_cache)
                digests[rel], hashed = d[rel], hashed + n
            if rel in scan:
                continue
            cached = old_scan.get(rel)
            raw = cached[1] if isinstance(cached, list) and len(cached) == 2 \
                and cached[0] == digests[rel] else _raw_imports(os.path.join(root, rel))
            scan[rel] = [digests[rel], raw]
            for imp in raw:
                try:
                    todo += [(f, dirs) for f in _resolve(root, rel, dirs, imp) if f not in scan]
                except (ValueError, TypeError, IndexError, AttributeError):
                    continue            # a malformed cached entry: the file is parsed next time

    refs = sorted({rel for _r, _p, rel, _n in target.user_refs()})
    walk([(rel, [os.path.dirname(rel) or ".", "."]) for rel in refs])
    static = set(scan)
    walk([(rel, ["."]) for rel in (record or {}).get("user_deps") or []
          if isinstance(rel, str) and _local(rel) and os.path.isfile(os.path.join(root, rel))])
    return dict(sorted(digests.items())), scan, static, hashed


def note_runtime_deps(inputs, imported):
    """After a build: keep in `inputs` (its release inputs for an incremental build) the files
    user code imported at run time that the static scan did not find, to be recorded as
    user_deps; return those the build key missed (sorted). `imported` is
    usercode.imported_files(target): None when no user code was loaded in this build."""
    src = getattr(inputs, "release", None) or inputs
    if imported is None:
        return []
    src.user_deps = sorted(set(imported) - src.user_static)
    return sorted(set(imported) - set(src.user_code))


def user_record(inputs):
    """The user-code facts a build record keeps besides the key: the import scan and the
    run-time discovered dependencies (the release inputs' for an incremental build)."""
    src = getattr(inputs, "release", None) or inputs
    return {"user_scan": src.user_scan, "user_deps": src.user_deps}


# --- Inputs and the build key --------------------------------------------------------------

class Inputs:
    """Everything a target's artifact depends on, and the key derived from it.

    sources / holdout / user_code: relpath -> sha256; config: config.key_config(target);
    toolchain: see toolchain.toolchain(); mode: release | incremental. No dependency keys, no
    target name: two targets with the same recipe share one key (and one cached artifact).
    `deps` (the lock file's `dep` lines read it) is {} but for a target that reads an
    upstream artifact: {upstream name: its graph digest}; other dependencies only order the
    build. Not in the key: user_scan (see user_code()) and user_deps (files the last build saw
    user code import at run time that the static scan did not find)."""

    deps = {}
    user_scan, user_deps, user_static = {}, [], frozenset()

    def __init__(self, sources, holdout, config, user_code, toolchain, mode="release"):
        self.sources, self.holdout, self.config = sources, holdout, config
        self.user_code, self.toolchain, self.mode = user_code, toolchain, mode
        self.key = canonical_digest({"sources": sources, "holdout": holdout, "config": config,
                                     "user_code": user_code, "toolchain": toolchain,
                                     "mode": mode})


UNKNOWN = "<unknown>"   # an upstream artifact not built yet (engine/runner.py plans after it)


def target_inputs(target, stat_cache, dep_keys=None, mode="release", record=None,
                  upstream=None):
    """Fingerprint `target` now. Returns (Inputs, number of files hashed). `record` is its last
    build record (for the user-code import scan and recorded imports). `dep_keys` is accepted
    for callers that still pass it and ignored: dependencies are not in the key. `upstream`:
    the SHA-256 of the artifact the target reads (`upstream.target`): in the key as
    config.upstream.artifact, in place of the upstream's name."""
    root = target.root
    sources = expand(target, "sources")
    holdout = expand(target, "holdout") if target.config["holdout"]["sources"] else []
    src_d, n1 = digest_files(sources, root, stat_cache)
    hold_d, n2 = digest_files(holdout, root, stat_cache)
    user_d, scan, static, n3 = user_code(target, stat_cache, record)
    threads = 1
    tc = toolchain_mod.toolchain(target.config["train"]["device"], threads)
    config = cfgmod.key_config(target)
    if config.get("upstream"):
        if not upstream or upstream == UNKNOWN:
            raise ValueError(f"{target.name}: the upstream artifact's digest is not known yet")
        config["upstream"] = dict(config["upstream"], artifact=upstream)
    inputs = Inputs(sources=src_d, holdout=hold_d, config=config,
                    user_code=user_d, toolchain=tc, mode=mode)
    inputs.user_scan, inputs.user_static = scan, static
    if config.get("upstream"):                      # the lock's `dep` line: what it reads
        inputs.deps = {target.config["upstream"]["target"]: upstream}
    inputs.user_deps = sorted(set((record or {}).get("user_deps") or []) & set(user_d))
    return inputs, n1 + n2 + n3


class Pending:
    """The inputs of a target that reads a stale rule's outputs (engine/rules.py) or an
    upstream artifact still to be built: not known until that is done, so no key (None) and
    no files. `plan_mode`: the mode it is planned in once known (release | dev)."""

    def __init__(self, plan_mode="release"):
        self.plan_mode = plan_mode

    key = None
    sources, holdout, user_code, config, toolchain, deps = {}, {}, {}, {}, {}, {}
    mode = "release"
