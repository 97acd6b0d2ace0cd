"""The one place that decides whether a target is stale, what to do about it, and why in words.

`decide(inputs, record, cached, output, mode, parent_kept_state)` is a pure function of plain
data (no files, no clock, standard library only):

    inputs             the target's current release fingerprint: an object with key, sources,
                       holdout, user_code ({path: sha256}), config, toolchain (dicts), mode
    record             the target's last build from state.json (a dict), or None
    cached             the build keys in the cache (anything supporting `key in cached`)
    output             the output file against the record: None (it is the recorded
                       artifact), "missing" or "modified"
    mode               "release" or "dev" (`build --dev`, `watch`)
    parent_kept_state  dev only: the last build's cache entry holds its weights and optimizer
                       state, so it can be fine-tuned

It returns a `Decision`: `action` (up-to-date | restore | build | incremental), `reasons`
([Reason], [] when up to date), `key` (the build key the action produces or keeps) and
`parent` (for incremental builds and their records: the build key fine-tuned from).

Release: no record -> "never built"; the recorded key differs -> one reason per difference
(file added/removed/changed/moved, holdout file ..., user code ..., config changed: K (A -> B),
toolchain changed: K (A -> B), mode changed: A -> B); the same key -> up to date unless the
output is missing or modified. A stale target is restored when its key is cached, else built.

Dev: the release key when it is cached, never built or current; an incremental build's record
of exactly these inputs stays current; when only source files changed and the last build kept
its state, an incremental build (its own key, `incremental_key`, never equal to a release key);
otherwise a full (release) build whose first reason says why.
"""

import hashlib
import json

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


class Decision:
    __slots__ = ("action", "reasons", "key", "parent")

    def __init__(self, action, reasons, key, parent=None):
        self.action, self.reasons, self.key, self.parent = action, reasons, key, parent

    def __repr__(self):
        return f"Decision({self.action!r}, {self.reasons!r}, parent={self.parent!r})"


def incremental_key(release_key, parent):
    """The key of an incremental build of inputs `release_key` fine-tuned from build `parent`:
    SHA-256 of canonical JSON, so never a release key."""
    blob = json.dumps({"inputs": release_key, "mode": "incremental", "parent": parent},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _plain(v):
    """A toolchain value: a version as it is, an absent one as none."""
    return "none" if v is None else str(v)


def _short(v):
    """A config value as the yaml writes it: null, true, 'text', [1, 2]."""
    import json
    text = repr(v) if isinstance(v, str) else json.dumps(v, default=str) \
        if v is None or isinstance(v, (bool, list, dict)) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def file_changes(kind_prefix, label, old, new):
    """Reasons for files added, removed, changed, or moved (a removed file whose bytes were
    added under another path: for image folders, a relabelled example)."""
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


def differences(inputs, record):
    """Reasons, in words, for every way `inputs` differ from the build `record`."""
    out = file_changes("file-", "file", record.get("sources", {}), inputs.sources)
    out += file_changes("holdout-", "holdout file", record.get("holdout", {}), inputs.holdout)
    out += file_changes("code-", "user code", record.get("user_code", {}), inputs.user_code)
    old_cfg, new_cfg = _flatten(record.get("config", {})), _flatten(inputs.config)
    for k in sorted(set(old_cfg) | set(new_cfg)):
        a, b = old_cfg.get(k, "<unset>"), new_cfg.get(k, "<unset>")
        if a != b and k == "upstream.artifact":
            out.append(Reason("upstream-changed", "upstream artifact changed: "
                              f"{str(a)[:12]} -> {str(b)[:12]}"))
        elif a != b:
            out.append(Reason("config-changed", f"config changed: {k} ({_short(a)} -> {_short(b)})"))
    old_tc = record.get("toolchain", {})
    for k in sorted(set(old_tc) | set(inputs.toolchain)):
        if old_tc.get(k) != inputs.toolchain.get(k):
            out.append(Reason("toolchain-changed", f"toolchain changed: {k} "
                              f"({_plain(old_tc.get(k))} -> {_plain(inputs.toolchain.get(k))})"))
    if record.get("mode") != inputs.mode:
        out.append(Reason("mode-changed", f"mode changed: {record.get('mode')} -> {inputs.mode}"))
    return out or [Reason("key-changed", "build key changed")]


def _at(key, record, cached, output, path, build="build", parent=None, stale=None):
    """The decision for build `key` given the last `record`: current, restorable or to build.
    `stale`: the reasons when the record is of another key (default: none computed)."""
    if not record:
        reasons = [Reason("never-built", "never built")]
    elif record.get("key") != key:
        reasons = stale or [Reason("key-changed", "build key changed")]
    elif output:
        reasons = [Reason(f"output-{output}", f"output {output}: {path}")]
    else:
        return Decision("up-to-date", [], key, parent)
    return Decision("restore" if key in cached else build, reasons, key, parent)


def _same_recipe(inputs, record):
    """Words for what differs besides source files and the upstream artifact (a downstream
    dev build fine-tunes on the upstream's new outputs), or [] when only those changed."""
    return [label for field, label in (("holdout", "holdout files"), ("config", "config"),
                                       ("user_code", "user code"), ("toolchain", "toolchain"))
            if _recipe(field, record.get(field)) != _recipe(field, getattr(inputs, field))]


def _recipe(field, value):
    """`value` of a record field with the upstream artifact's digest left out."""
    if field != "config" or not isinstance(value, dict) or not value.get("upstream"):
        return value
    return dict(value, upstream={k: v for k, v in value["upstream"].items() if k != "artifact"})


def decide(inputs, record, cached, output=None, mode="release", parent_kept_state=False,
           output_path="the output"):
    """The Decision for one target (see the module docstring); `output_path` names the output
    file in words."""
    key = inputs.key
    stale = differences(inputs, record) if record and record.get("key") != key else None
    if mode != "dev":
        return _at(key, record, cached, output, output_path, stale=stale)
    dev_stale = [r for r in stale or [] if r.kind != "mode-changed"] or stale
    if key in cached or not record or record.get("key") == key:
        d = _at(key, record, cached, output, output_path, stale=dev_stale)
        if d.action == "build" and not record:
            d.reasons = [Reason("full-build", "full build")] + d.reasons
        return d
    if record.get("mode") == "incremental" and record.get("inputs_key") == key:
        parent = record.get("parent")
        return _at(incremental_key(key, parent), record, cached, output, output_path,
                   "incremental", parent)
    other = _same_recipe(inputs, record)
    if other or not parent_kept_state:
        why = (", ".join(other) + " changed") if other else \
            "the last build kept no weights or optimizer state"
        return Decision("build", [Reason("full-build", f"full build: {why}")] + dev_stale, key)
    parent = record["key"]
    ikey = incremental_key(key, parent)
    if ikey in cached:
        return Decision("restore", dev_stale, ikey, parent)
    return Decision("incremental", [Reason("incremental", f"incremental from {parent[:12]}")]
                    + dev_stale, ikey, parent)
