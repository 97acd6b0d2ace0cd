"""Where a target may read and write: checked when s2build.yaml is loaded.

Outputs (`output:`) are files s2build overwrites on `build`; they must stay inside the project
and off every input. An output must be a relative path that
  * ends in `.onnx` (its sidecar is then `OUTPUT.onnx.json`), no name in it over 250 bytes,
  * stays inside the project (no absolute path, no `..` escape, no symlink leading out),
  * is not under `.s2build/`, not s2build.yaml or s2build.lock,
  * is not matched, nor is its sidecar, by any target's `sources` or `holdout.sources` globs,
  * is not a user code file any target names (`path/file.py:name`),
  * is not an existing folder, and no folder on its way is an existing file.
Sources (`sources`, `holdout.sources`) outside the project (absolute, or `..` leading out)
need the top-level opt-in `allow_outside_sources: true`. Each error is a ConfigError at the
yaml location of the offending value. Standard library only (the no-op path).
"""

import os
import re

from s2build.errors import ConfigError

STATE_DIR = ".s2build"
PROJECT_FILES = ("s2build.yaml", "s2build.lock")


def glob_regex(pattern):
    """A compiled regex matching the relative paths `glob.glob(pattern, recursive=True)` would:
    `**` as a whole component spans any number of folders, `*` and `?` stay within one, `[...]`
    is a character class."""
    out, i, parts = [], 0, pattern.split("/")
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        i, piece = 0, []
        while i < len(part):
            c = part[i]
            if c == "*":
                piece.append("[^/]*")
            elif c == "?":
                piece.append("[^/]")
            elif c == "[" and part.find("]", i + 2) > 0:
                k = part.find("]", i + 2 if part[i + 1:i + 2] in ("]", "!") else i + 1)
                body = part[i + 1:k].replace("\\", "\\\\")
                piece.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = k
            else:
                piece.append(re.escape(c))
            i += 1
        out.append("".join(piece) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


def _outside(rel):
    return os.path.isabs(rel) or rel == ".." or rel.startswith("../")


def check(project, allow_outside_sources=False):
    """Raise ConfigError when an output or a source breaks the rules above."""
    inputs = []                          # (regex, pattern, target, key path)
    code = {}                            # user code relpath -> target name
    for t in project.targets.values():
        for key, globs in ((("sources",), t.config["sources"]),
                           (("holdout", "sources"), t.config["holdout"]["sources"])):
            for i, pattern in enumerate(globs):
                norm = os.path.normpath(pattern)
                if _outside(norm) and not allow_outside_sources:
                    raise ConfigError(f"{'.'.join(key)}: '{pattern}' is outside the project",
                                      t.loc(*key, i),
                                      "move the data into the project, or opt in with "
                                      "`allow_outside_sources: true` at the top of s2build.yaml")
                inputs.append((glob_regex(norm), pattern, t, key))
        for _role, _kpath, rel, _fn in t.user_refs():
            code[os.path.normpath(rel)] = t.name
    real_root = os.path.realpath(project.root)
    for t in project.targets.values():
        given, loc = t.config["output"], t.loc("output")
        rel = os.path.normpath(given)
        hint = f"use a path inside the project such as build/{t.name}.onnx"
        if os.path.isabs(given) or _outside(rel):
            raise ConfigError(f"output '{given}' is outside the project", loc, hint)
        if not rel.endswith(".onnx"):
            raise ConfigError(f"output '{given}' must end in .onnx", loc, hint)
        if any(len(part.encode()) > 250 for part in rel.split("/")):
            raise ConfigError(f"output '{given}': a name in it is longer than 250 bytes", loc,
                              "use a shorter name (the file system allows 255, and the "
                              "sidecar adds .json)")
        if rel == STATE_DIR or rel.startswith(STATE_DIR + "/"):
            raise ConfigError(f"output '{given}' is under {STATE_DIR}/, s2build's own state",
                              loc, hint)
        if rel in PROJECT_FILES:
            raise ConfigError(f"output '{given}' is the project's {rel}", loc, hint)
        if rel in code:
            raise ConfigError(f"output '{given}' is user code of target '{code[rel]}'", loc, hint)
        for regex, pattern, other, key in inputs:
            for path in (rel, rel + ".json"):
                if regex.match(path):
                    what = "output" if path == rel else "output's sidecar"
                    raise ConfigError(f"{what} '{path}' is an input: target '{other.name}' "
                                      f"reads {'.'.join(key)} '{pattern}'", loc,
                                      hint + ", or narrow the glob")
        real = os.path.realpath(os.path.join(project.root, rel))
        if not real.startswith(os.path.join(real_root, "")):
            raise ConfigError(f"output '{given}' leads outside the project through a symlink",
                              loc, hint)
        if os.path.isdir(real):
            raise ConfigError(f"output '{given}' is an existing folder", loc, hint)
        parent = os.path.dirname(real)
        while parent != real_root and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ConfigError(f"output '{given}': '{os.path.relpath(parent, real_root)}' is a "
                              "file, not a folder", loc, hint)


S2BUILD_METADATA = b"s2build.build_key"      # a metadata key every s2build artifact holds


def check_not_foreign(t, record):
    """Raise ConfigError when `t`'s output file exists and s2build did not write it: state.json's
    `record` names another output (or none), the file holds no s2build metadata and no sidecar
    `NAME.onnx.json` holds its sha256. A hand-made or downloaded model is never overwritten;
    an artifact from a clone, from before `clean --cache` or from a build killed before its
    sidecar is. Costs a stat unless the output exists unrecorded."""
    if record and record.get("output") == t.config["output"] or not os.path.isfile(t.output):
        return
    import hashlib
    import json
    try:
        with open(t.output, "rb") as f:
            data = f.read()
        if S2BUILD_METADATA in data:            # an artifact s2build wrote, e.g. by a build
            return                              # killed before its sidecar and state.json
        with open(t.output + ".json", "rb") as f:
            recorded = json.loads(f.read()).get("artifact_sha256")
        if recorded and hashlib.sha256(data).hexdigest() == recorded:
            return
    except (OSError, ValueError, AttributeError):
        pass
    raise ConfigError(f"output '{t.config['output']}' exists and s2build did not write it",
                      t.loc("output"), "move that file away, or choose another output")
