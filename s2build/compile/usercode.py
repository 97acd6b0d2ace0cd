"""Loading user code named in s2build.yaml as `path/file.py:name`.

User code is trusted like a Makefile, but loaded only from files the yaml names (their digests
are in the build key). Errors raised while loading or calling it become BuildErrors located at
the user's own `file:line`, with the yaml location of the reference as a hint.

User code may import its own project modules (`from helpers import scale`): while a file is
loaded, its folder and then the project root are first on sys.path (restored after), whatever
the start directory. Project-local modules already in sys.modules are dropped first, so an
edited helper is executed afresh. The project files the load imported (modules whose __file__
is inside the project, not under .s2build/ or an installed-package folder) are recorded, like a
Ninja depfile: `imported_files(target)` gives them to the runner, which records the ones the
static import scan (fingerprint.user_code) missed, so the next build key includes them.
A loaded module is reused only while its file and every file it imported keep their digests.
User files and the project modules they import are compiled from their bytes, never from a
.pyc: Python trusts a .pyc whose source has the same whole-second mtime and size, so an edit
within a second that keeps the size (`1.0` -> `5.0`, under `watch`) would run the old code.
"""

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback

from s2build.errors import BuildError, ConfigError

_LOADED = {}        # abs path -> (file digest, module, {abs path of imported file: digest})
_USED = {}          # (root, abs path of a user file) -> [relpaths it imported], latest load


def _digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _project_file(root, path):
    """`path` relative to `root` when it is project code (see the module docstring), else None."""
    if not path:
        return None
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    parts = rel.split(os.sep)
    if parts[0] in ("..", ".s2build", "s2build") or "site-packages" in parts \
            or "dist-packages" in parts or not rel.endswith(".py"):
        return None
    return rel.replace(os.sep, "/")


def _local_modules(root):
    """{module name: relpath} of sys.modules entries that are project code (not user files
    loaded by this module: those are named s2build_user_*)."""
    out = {}
    prefixes = (os.path.abspath(root) + os.sep, os.path.realpath(root) + os.sep)
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if not isinstance(path, str) or not path.startswith(prefixes) \
                or name.startswith("s2build_user_"):
            continue                    # a quick test first: torch alone has ~2,000 modules
        rel = _project_file(root, path)
        if rel:
            out[name] = rel
    return out


def imported_files(target):
    """Sorted project files the target's user code imported when it was last loaded in this
    process; None when none of its user files was loaded here."""
    seen, any_loaded = set(), False
    for _role, _path, rel, _name in target.user_refs():
        got = _USED.get((target.root, os.path.abspath(os.path.join(target.root, rel))))
        if got is not None:
            any_loaded = True
            seen.update(got)
    return sorted(seen) if any_loaded else None


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """A source file loader that compiles the file's current bytes every time (no .pyc)."""

    def get_code(self, fullname):
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


class _ProjectFinder(importlib.abc.MetaPathFinder):
    """While user code loads (first on sys.meta_path): project modules get a _SourceLoader;
    anything else is left to the normal finders."""

    def __init__(self, root):
        self.root = root

    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader \
                or _project_file(self.root, spec.origin) is None:
            return None
        spec.loader = _SourceLoader(spec.loader.name, spec.loader.path)
        return spec


def _exec(target, path, rel, yaml_loc, digest):
    """Execute user file `path` as a fresh module with its folder and the project root first
    on sys.path; returns (module, {abs path of imported project file: digest})."""
    root = target.root
    for name in _local_modules(root):          # stale helpers: import them again
        sys.modules.pop(name, None)
    mod_name = f"s2build_user_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(mod_name, path,
                                                  loader=_SourceLoader(mod_name, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    saved = list(sys.path)
    sys.path[:0] = [os.path.dirname(os.path.abspath(path)), os.path.abspath(root)]
    finder = _ProjectFinder(root)
    sys.meta_path.insert(0, finder)
    argv = sys.argv
    sys.argv = [path]                            # a module parsing argv sees no s2build flags
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:                      # sys.exit() or argparse at import
        sys.modules.pop(mod_name, None)
        raise BuildError(f"loading {rel} called sys.exit({e.code!r}) (or parsed the command "
                         "line) at import", user_location(e, path) or rel,
                         "move script code under `if __name__ == \"__main__\":`; "
                         f"referenced at {yaml_loc}") from None
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise BuildError(f"loading {rel} raised {type(e).__name__}: {e}",
                         user_location(e, path) or rel, f"referenced at {yaml_loc}") from e
    finally:
        sys.argv = argv
        sys.path[:] = saved
        sys.meta_path.remove(finder)
    deps = {}
    for dep in sorted(set(_local_modules(root).values())):
        full = os.path.join(root, dep)
        if os.path.abspath(full) != os.path.abspath(path):
            deps[full] = _digest(full)
    return module, deps


def user_location(exc, path):
    """'file:line' of the deepest traceback frame inside `path`, else None."""
    path = os.path.realpath(path)
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(frame.filename) == path:
            where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
    if where is None and isinstance(exc, SyntaxError) and exc.filename \
            and os.path.realpath(exc.filename) == path:
        where = f"{os.path.relpath(exc.filename)}:{exc.lineno}"
    return where


def attribute(target, exc):
    """A BuildError at the deepest frame of `exc` inside one of the target's user files (a
    model whose forward raises, a loss called by training), or None when no frame is there:
    then the exception is s2build's own bug."""
    where, what = None, None
    for _role, kpath, rel, name in target.user_refs():
        loc = user_location(exc, os.path.join(target.root, rel))
        if loc is not None and where is None:
            where, what = loc, f"{rel}:{name} (targets.{target.name}.{'.'.join(map(str, kpath))})"
    if where is None:
        return None
    return BuildError(f"user code {what} raised {type(exc).__name__}: {exc}", where,
                      "fix the code at that line; run with -v for the full traceback")


def load(target, ref_path):
    """The object named by the yaml value at `ref_path` (a key path such as ('loss',))."""
    value = target.config
    for k in ref_path:
        value = value[k]
    rel, _, name = value.rpartition(":")
    path = os.path.join(target.root, rel)
    yaml_loc = target.loc(*ref_path)
    digest = _digest(path)
    if digest is None:
        raise ConfigError(f"user file '{rel}' not found", yaml_loc)
    cached = _LOADED.get(os.path.abspath(path))
    if cached and cached[0] == digest and all(_digest(p) == d for p, d in cached[2].items()):
        module, deps = cached[1], cached[2]
    else:
        module, deps = _exec(target, path, rel, yaml_loc, digest)
        _LOADED[os.path.abspath(path)] = (digest, module, deps)
    _USED[(target.root, os.path.abspath(path))] = sorted(
        _project_file(target.root, p) for p in deps)
    obj = getattr(module, name, None)
    if obj is None:
        import difflib
        close = difflib.get_close_matches(name, [n for n in vars(module) if not
                                                 n.startswith("_")], n=1)
        raise ConfigError(f"'{rel}' has no '{name}'", yaml_loc,
                          f"did you mean '{close[0]}'?" if close else
                          "check the name after the colon")
    return obj, path


def call(fn, path, what, *args, **kwargs):
    """Call user function `fn`; an exception becomes a BuildError at the user's file:line."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        raise BuildError(f"{what} raised {type(e).__name__}: {e}",
                         user_location(e, path) or os.path.relpath(path)) from e
