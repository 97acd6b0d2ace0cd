"""Loading user code named in s2build.yaml as `path/file.py:name`.

User code is trusted like a Makefile, but loaded only from files the yaml names (their digests
are in the build key). Errors raised while loading or calling it become BuildErrors located at
the user's own `file:line`, with the yaml location of the reference as a hint.
"""

import hashlib
import importlib.util
import os
import sys
import traceback

from s2build.errors import BuildError, ConfigError

_LOADED = {}


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


def load(target, ref_path):
    """The object named by the yaml value at `ref_path` (a key path such as ('loss',))."""
    value = target.config
    for k in ref_path:
        value = value[k]
    rel, _, name = value.rpartition(":")
    path = os.path.join(target.root, rel)
    yaml_loc = target.loc(*ref_path)
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        raise ConfigError(f"user file '{rel}' not found", yaml_loc) from None
    module = _LOADED.get(digest)
    if module is None:
        mod_name = f"s2build_user_{digest[:16]}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(mod_name, None)
            raise BuildError(f"loading {rel} raised {type(e).__name__}: {e}",
                             user_location(e, path) or rel, f"referenced at {yaml_loc}") from e
        _LOADED[digest] = module
    obj = getattr(module, name, None)
    if obj is None:
        raise ConfigError(f"'{rel}' has no '{name}'", yaml_loc,
                          "check the name after the colon")
    return obj, path


def call(fn, path, what, *args, **kwargs):
    """Call user function `fn`; an exception becomes a BuildError at the user's file:line."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        raise BuildError(f"{what} raised {type(e).__name__}: {e}",
                         user_location(e, path) or os.path.relpath(path)) from e
