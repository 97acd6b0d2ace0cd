"""Why a target is stale: the one place that decides, and it says why in words.

`reasons(target, inputs, record)` compares the target's current `Inputs` with the record of its
last build (from state.json) and the output file on disk. An empty list means up to date. Each
`Reason` has a `kind` (stable, for machines) and a `text` (for people), for example:

    file changed: data/part1.csv
    file moved: data/3/0042.png -> data/8/0042.png
    config changed: train.epochs (30 -> 40)
    output missing: build/wine.onnx

Only the standard library: this module is on the no-op path.
"""

import hashlib
import os

# Reason kinds that concern only the output file: the artifact itself is still current.
OUTPUT_ONLY = ("output-missing", "output-modified")


class Reason:
    """`kind` is stable (for machines: file-changed, config-changed, ...); `text` is for people."""

    __slots__ = ("kind", "text")

    def __init__(self, kind, text):
        self.kind, self.text = kind, text

    def __eq__(self, other):
        return isinstance(other, Reason) and (self.kind, self.text) == (other.kind, other.text)

    def __repr__(self):
        return f"Reason({self.kind!r}, {self.text!r})"


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _short(v):
    text = repr(v) if isinstance(v, str) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def file_changes(kind_prefix, label, old, new):
    """Reasons for the files added, removed, changed, or moved between two {path: digest}
    dicts (moved: a removed file whose bytes were added under another path; for image
    folders, a relabelled example), in path order. The one differ of such dicts: explain,
    the lock check and verify all say file changes in these words."""
    added = {}                                     # digest -> added paths, sorted
    for p in sorted(set(new) - set(old)):
        added.setdefault(new[p], []).append(p)
    moved_to = {}
    for p in sorted(set(old) - set(new)):
        if added.get(old[p]):
            moved_to[p] = added[old[p]].pop(0)
    arrived = set(moved_to.values())
    out = []
    for p in sorted(set(old) | set(new)):
        if p in moved_to:
            out.append(Reason(f"{kind_prefix}moved", f"{label} moved: {p} -> {moved_to[p]}"))
        elif p in arrived:
            continue
        elif p not in old:
            out.append(Reason(f"{kind_prefix}added", f"{label} added: {p}"))
        elif p not in new:
            out.append(Reason(f"{kind_prefix}removed", f"{label} removed: {p}"))
        elif old[p] != new[p]:
            out.append(Reason(f"{kind_prefix}changed", f"{label} changed: {p}"))
    return out


def output_status(target, record):
    """None when the output file is the recorded artifact, else 'missing' or 'modified'.
    Stat first; hash only when the stat tuple differs. May refresh record['output_stat']."""
    try:
        st = os.stat(target.output)
    except FileNotFoundError:
        return "missing"
    stat = [st.st_size, st.st_mtime_ns, st.st_ino]
    if record.get("output_stat") == stat:
        return None
    if st.st_size != record.get("artifact_size", st.st_size):
        return "modified"
    with open(target.output, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != record.get("artifact_sha256"):
        return "modified"
    record["output_stat"] = stat
    return None


def reasons(target, inputs, record):
    """Reasons `target` must be rebuilt or restored; [] when up to date."""
    if not record:
        return [Reason("never-built", "never built")]
    out = []
    if record.get("key") != inputs.key:
        out += file_changes("file-", "file", record.get("sources", {}), inputs.sources)
        out += file_changes("holdout-", "holdout file", record.get("holdout", {}), inputs.holdout)
        out += file_changes("code-", "user code", record.get("user_code", {}), inputs.user_code)
        old_cfg, new_cfg = _flatten(record.get("config", {})), _flatten(inputs.config)
        for k in sorted(set(old_cfg) | set(new_cfg)):
            if old_cfg.get(k, "<unset>") != new_cfg.get(k, "<unset>"):
                out.append(Reason("config-changed", f"config changed: {k} "
                                  f"({_short(old_cfg.get(k, '<unset>'))} -> "
                                  f"{_short(new_cfg.get(k, '<unset>'))})"))
        old_deps = record.get("deps", {})
        for d in sorted(set(old_deps) | set(inputs.deps)):
            if old_deps.get(d) != inputs.deps.get(d):
                out.append(Reason("dep-changed", f"dependency changed: {d}"))
        old_tc = record.get("toolchain", {})
        for k in sorted(set(old_tc) | set(inputs.toolchain)):
            if old_tc.get(k) != inputs.toolchain.get(k):
                out.append(Reason("toolchain-changed", f"toolchain changed: {k} "
                                  f"({old_tc.get(k)} -> {inputs.toolchain.get(k)})"))
        if record.get("mode") != inputs.mode:
            out.append(Reason("mode-changed", f"mode changed: {record.get('mode')} -> {inputs.mode}"))
        if not out:
            out.append(Reason("key-changed", "build key changed"))
        return out
    status = output_status(target, record)
    if status:
        out.append(Reason(f"output-{status}", f"output {status}: {target.config['output']}"))
    return out
