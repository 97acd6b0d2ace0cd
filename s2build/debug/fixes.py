"""`lint --fix`: the edit that resolves a diagnostic, printed, or with `--apply` performed.

A fix is one of:

    relabel   label-error: write the class the data teaches into the row's label (a CSV cell at
              `file:line`, a JSON Lines field) or move the image into that class's folder
    drop      duplicate: remove the row's line (CSV, JSON Lines) or the image file

`Fix.describe()` says it in words; `apply(target, fixes)` performs them: each file rewritten
once, atomically (temp file + os.replace), after checking it still holds what lint read (its
SHA-256), so a file edited since is skipped, never mangled. Tables in parquet or feather and
arrays have no automatic fix. Standard library only.
"""

import csv
import hashlib
import io
import json
import os

from s2build import atomic


class Fix:
    """kind: relabel | drop; rel: the file; line: its line (None for images); to: the class."""

    def __init__(self, kind, rel, line=None, to=None):
        self.kind, self.rel, self.line, self.to = kind, rel, line, to

    @property
    def origin(self):
        return f"{self.rel}:{self.line}" if self.line is not None else self.rel

    def describe(self, target):
        label = target.config["loader"].get("label")
        if self.kind == "relabel":
            if self.line is None:
                return f"move it to {_image_destination(self.rel, self.to)}"
            return f"set {label} to {self.to}"
        return "delete the file" if self.line is None else f"delete line {self.line}"

    def as_dict(self):
        return {"kind": self.kind, "file": self.rel, "line": self.line, "to": self.to}


def of(target, origin, kind, to=None):
    """The Fix for a diagnostic at `origin` (`file:line` or an image `file`), or None where
    the format has none."""
    fmt = target.config["loader"]["format"]
    if fmt in ("csv", "jsonl"):
        rel, _, line = origin.rpartition(":")
        return Fix(kind, rel, int(line), to) if line.isdigit() else None
    if fmt == "images":
        return Fix(kind, origin, None, to)
    return None


def _image_destination(rel, cls):
    parent = os.path.dirname(os.path.dirname(rel))
    return os.path.join(parent, cls, os.path.basename(rel))


def apply(target, fixes, digests):
    """Perform `fixes` ([Fix]); `digests` {rel: sha256} of the files as lint read them.
    Returns ([(Fix, None)] done, [(Fix, why)] skipped)."""
    done, skipped = [], []
    by_file = {}
    for f in fixes:
        by_file.setdefault(f.rel, []).append(f)
    for rel, group in sorted(by_file.items()):
        path = os.path.join(target.root, rel)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            skipped += [(f, f"cannot read {rel}: {e.strerror}") for f in group]
            continue
        if digests.get(rel) and hashlib.sha256(data).hexdigest() != digests[rel]:
            skipped += [(f, f"{rel} changed since lint read it: run lint again") for f in group]
            continue
        if group[0].line is None:                   # an image: one fix per file
            f = group[0]
            if f.kind == "drop":
                os.unlink(path)
            else:
                dest = os.path.join(target.root, _image_destination(rel, f.to))
                if os.path.exists(dest):
                    skipped.append((f, f"{os.path.relpath(dest, target.root)} exists"))
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(path, dest)
            done.append((f, None))
            continue
        lines = data.decode("utf-8").splitlines(keepends=True)
        drop = set()
        for f in sorted(group, key=lambda f: f.line):
            if not 1 <= f.line <= len(lines):
                skipped.append((f, f"{rel} has no line {f.line}"))
            elif f.kind == "drop":
                drop.add(f.line)
                done.append((f, None))
            else:
                try:
                    lines[f.line - 1] = _relabel(target, lines, f.line, f.to)
                    done.append((f, None))
                except ValueError as e:
                    skipped.append((f, str(e)))
        lines = [line for n, line in enumerate(lines, 1) if n not in drop]
        atomic.write_bytes(path, "".join(lines).encode("utf-8"))
    return done, skipped


def _relabel(target, lines, n, to):
    """Line `n` (1-based) of `lines` with its label set to `to` (its line ending kept)."""
    loader = target.config["loader"]
    line = lines[n - 1]
    body = line.rstrip("\r\n")
    end = line[len(body):]
    if loader["format"] == "jsonl":
        obj = json.loads(body)
        old = obj.get(loader["label"])
        obj[loader["label"]] = int(to) if isinstance(old, int) and to.lstrip("-").isdigit() \
            else to
        return json.dumps(obj) + end
    delim = loader.get("delimiter") or ","
    header = next(csv.reader([lines[0].lstrip("\ufeff")], delimiter=delim))
    names = [h.strip() for h in header]
    if loader["label"] not in names:
        raise ValueError(f"no column '{loader['label']}' in the header")
    cells = next(csv.reader([body], delimiter=delim))
    cells[names.index(loader["label"])] = to
    out = io.StringIO()
    csv.writer(out, delimiter=delim, lineterminator="").writerow(cells)
    return out.getvalue() + end
