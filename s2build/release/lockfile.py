"""s2build.lock: what a release build of each target was made from and what it gave.

The file sits next to s2build.yaml and is meant to be committed. A constant first line, then
one block per target (sorted by name): a header line `[NAME]`, then one fact per line, sorted,
and a blank line after the block:

    # s2build.lock v2: written by `s2build lock`; one block per target, one fact per line, sorted; do not edit

    [wine]
    wine artifact c3dd1354...            SHA-256 of build/wine.onnx
    wine code models/net.py 9f2c...      user code the yaml names
    wine config 5be0...                  digest of the resolved config that enters the key
    head dep extractor 77aa...           graph digest of the upstream artifact it reads
    wine rule boards 5c3e...             key of a rule whose outputs it reads
    wine holdout data/test.csv 1c2d...   holdout.sources files
    wine key fa78...                     build key
    wine metric accuracy 0.981818        holdout metrics (6 significant digits)
    wine mode release
    wine source data/wine-1.csv 4e1b...  every source file
    wine specdata data/extra.csv 0a0b... files the specs read
    wine toolchain cpu=AVX2 device=cpu machine=x86_64 onnx=1.17.0 ... torch=2.5.1

Nothing in it changes unless the target changes (no timestamps, no host). Each block starts
with its header, a line that never changes, and ends with a blank line: a branch that adds a
target between two others and a branch that rebuilds the next one (whose first fact,
`artifact`, changes) touch lines with an unchanged line between them, so git merges them
without conflict (v1 started each block with the artifact line, and they conflicted). Paths
with whitespace-free names are written as is; other paths are JSON strings. Digests must be
64 hex digits, so a truncated or extended line is an error at its line, never a silent value.
v1 files (no headers) are still read; the next `s2build lock` writes v2.

Only the standard library.
"""

import json
import os
import re

from s2build import atomic
from s2build.engine.explain import file_changes
from s2build.errors import LockStaleError as LockError

LOCK_NAME = "s2build.lock"
HEADER = ("# s2build.lock v2: written by `s2build lock`; one block per target, one fact per line, "
          "sorted; do not edit")
HEADER_V1 = "# s2build.lock v1: written by `s2build lock`; one fact per line, sorted; do not edit"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
WORD = re.compile(r"^[a-z]+$")
PATH_FACTS = ("code", "holdout", "source", "specdata")


def path_of(project):
    return os.path.join(project.root, LOCK_NAME)


def _quote(path):
    if path and not any(c.isspace() for c in path) and not path.startswith('"') \
            and path.isprintable():
        return path
    return json.dumps(path)


def _split_path(rest):
    """(path, remainder) from 'PATH VALUE' where PATH may be a JSON string."""
    if rest.startswith('"'):
        dec = json.JSONDecoder()
        path, end = dec.raw_decode(rest)
        return path, rest[end:].strip()
    path, _, value = rest.rpartition(" ")
    return path, value


def _fmt_metric(v):
    return f"{float(v):.6g}"


def entry(record, inputs, spec_files, rules=None):
    """The lock facts of one target: a dict, from its state record (after a release build),
    its current fingerprint inputs, {relpath: sha256} of the files its specs read and
    {rule name: rule key} of the rules whose outputs it reads."""
    from s2build.engine.fingerprint import canonical_digest
    return {
        "artifact": record["artifact_sha256"],
        "key": record["key"],
        "mode": record.get("mode", "release"),
        "config": canonical_digest(inputs.config),
        "metrics": {k: _fmt_metric(v) for k, v in (record.get("metrics") or {}).items()},
        "source": dict(inputs.sources),
        "holdout": dict(inputs.holdout),
        "code": dict(inputs.user_code),
        "dep": dict(inputs.deps),
        **({"rule": dict(rules)} if rules else {}),
        "specdata": dict(spec_files),
        "toolchain": dict(inputs.toolchain),
    }


def format_lock(entries):
    """Text of the lock for {target: entry}."""
    blocks = []
    for name in sorted(entries):
        e = entries[name]
        lines = [f"{name} artifact {e['artifact']}", f"{name} config {e['config']}",
                 f"{name} key {e['key']}", f"{name} mode {e['mode']}"]
        lines += [f"{name} metric {k} {v}" for k, v in e["metrics"].items()]
        lines += [f"{name} dep {d} {k}" for d, k in e["dep"].items()]
        lines += [f"{name} rule {d} {k}" for d, k in e.get("rule", {}).items()]
        for fact in PATH_FACTS:
            lines += [f"{name} {fact} {_quote(p)} {d}" for p, d in e[fact].items()]
        tc = " ".join(f"{k}={str(v).replace(' ', '_')}" for k, v in sorted(e["toolchain"].items()))
        lines.append(f"{name} toolchain {tc}")
        blocks.append(f"[{name}]\n" + "\n".join(sorted(lines)) + "\n")
    return HEADER + "\n\n" + "\n".join(blocks)


def _digest(value):
    if not HEX64.match(value):
        raise ValueError(value)
    return value


def parse_lock(text, fname=LOCK_NAME):
    """{target: entry} from lock text (v2, or v1 without headers); raises LockError at
    `fname:LINE` when a line is malformed, a digest is not 64 hex digits, or a fact sits in
    another target's block."""
    entries, block = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        if n == 1 and line not in (HEADER, HEADER_V1):
            raise LockError("not an s2build.lock header (v1 or v2)", f"{fname}:1",
                            "written by a newer s2build? run `s2build lock` to write it again")
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(("<<<<<<<", "=======", ">>>>>>>", "|||||||")):
            raise LockError("merge conflict marker", f"{fname}:{n}",
                            "run `s2build lock` to write it again from the builds")
        if line.startswith("[") and line.endswith("]") and " " not in line:
            block = line[1:-1]
            continue
        parts = line.split(" ", 2)
        if len(parts) < 3:
            raise LockError(f"cannot read '{line[:60]}'", f"{fname}:{n}",
                            "run `s2build lock` to write it again")
        name, fact, rest = parts
        if block is not None and name != block:
            raise LockError(f"a fact of '{name}' in the block of '{block}'", f"{fname}:{n}",
                            "run `s2build lock` to write it again")
        e = entries.setdefault(name, {"artifact": None, "key": None, "mode": None,
                                      "config": None, "metrics": {}, "source": {},
                                      "holdout": {}, "code": {}, "dep": {}, "specdata": {},
                                      "toolchain": {}})
        try:
            if fact in ("artifact", "key", "config"):
                e[fact] = _digest(rest)
            elif fact == "mode":
                if not WORD.match(rest):
                    raise ValueError(rest)
                e[fact] = rest
            elif fact == "metric":
                k, v = rest.split(" ")
                float(v)
                e["metrics"][k] = v
            elif fact in ("dep", "rule"):
                d, k = rest.split(" ")
                e.setdefault(fact, {})[d] = _digest(k)       # `rule`: only when present
            elif fact in PATH_FACTS:
                p, d = _split_path(rest)
                if not p:
                    raise ValueError(rest)
                e[fact][p] = _digest(d)
            elif fact == "toolchain":
                pairs = [kv.split("=", 1) for kv in rest.split(" ")]
                if any(len(kv) != 2 or not kv[0] for kv in pairs):
                    raise ValueError(rest)
                e["toolchain"] = dict(pairs)
            else:
                raise LockError(f"unknown fact '{fact}'", f"{fname}:{n}",
                                "written by a newer s2build? run `s2build lock` to write it again")
        except (ValueError, json.JSONDecodeError):
            raise LockError(f"cannot read '{line[:60]}'", f"{fname}:{n}",
                            "run `s2build lock` to write it again") from None
    return entries


def read(project):
    """{target: entry}, or None when there is no lock file."""
    path = path_of(project)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise LockError(f"cannot read: {e}", LOCK_NAME) from None
    return parse_lock(text)


def write(project, entries):
    """Write the lock atomically if its text changed; returns True when it did."""
    path = path_of(project)
    text = format_lock(entries)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic.write_text(path, text)
    return True


def source_differences(locked, current):
    """In words, how the inputs of `current` (an entry, or the parts of one) differ from
    `locked`: files added, removed, changed or moved (engine/explain.py's
    `file_changes`), the config, dependencies. [] when they match.
    The toolchain, artifact and metrics are not sources and are compared elsewhere."""
    out = []
    for label, field in (("file", "source"), ("holdout file", "holdout"), ("user code", "code"),
                         ("spec file", "specdata")):
        out += [r.text for r in file_changes("", label, locked[field], current[field])]
    if locked["config"] != current["config"]:
        out.append("config changed")
    lr = locked.get("rule", {})
    cr = current.get("rule", lr)
    for d in sorted(set(lr) | set(cr)):
        if lr.get(d) != cr.get(d):
            out.append(f"rule {'added' if d not in lr else 'removed' if d not in cr else 'changed'}"
                       f": {d}")
    for d in sorted(set(locked["dep"]) | set(current["dep"])):
        if d not in current["dep"]:
            out.append(f"dependency removed: {d}")
        elif d not in locked["dep"]:
            out.append(f"dependency added: {d}")
    return out


def toolchain_differences(locked, current):
    """['torch 2.5.1 -> 2.6.0', ...] between two toolchain dicts (values compared as text)."""
    out = []
    for k in sorted(set(locked) | set(current)):
        a, b = locked.get(k), current.get(k)
        if str(a).replace(" ", "_") != str(b).replace(" ", "_"):
            out.append(f"{k} {a if a is not None else '<none>'} -> "
                       f"{b if b is not None else '<none>'}")
    return out
