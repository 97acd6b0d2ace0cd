"""`.s2build/state.json`: the stat cache and the last build of each target.

Format (JSON, written atomically):

    {"version": 2,
     "files":   {"data/a.csv": [size, mtime_ns, ctime_ns, inode, "sha256hex"], ...},
     "targets": {"NAME": {"key": ..., "target": "NAME", "artifact_sha256": ...,
                          "artifact_size": N, "output": "build/NAME.onnx",
                          "output_stat": [size, mtime_ns, ctime_ns, inode],
                          "sources": {path: sha}, "holdout": {path: sha},
                          "user_code": {path: sha}, "config": {...}, "toolchain": {...},
                          "mode": "release", "metrics": {...}, "artifact_metrics": {...},
                          "user_scan": {path: [sha, imports]}, "user_deps": [path]}},
     "rules":   {"NAME": {"key": ..., "outputs": {path: sha}, "inputs": {path: sha},
                          "program": {path: sha}, "command": [...], "env": {...},
                          "toolchain": {...}, "user_scan": {...}}}}

A stat entry whose mtime_ns is 0 was racily clean when hashed (fingerprint.digest_files): it
never matches, so the file is hashed again. `metrics` are the ones the target's `metrics:`
selects; `artifact_metrics` all that the artifact records. Version 1 (no ctime) is read as
another version: a warning and starting over. `user_scan` caches the import scan of each user
file by digest; `user_deps` are project files user code imported at run time that the scan
missed (fingerprint.user_code). `rules` (optional, so older files read as having none) holds
the last run of each rule (engine/rules.py): its key, the digest of every file it produced
and the facts `explain` compares.

A missing file is an empty state. A corrupt file, or one of another version, is an empty state
plus a warning: it costs a rebuild (or a cache restore), never a crash.
"""

import json
import os

from s2build import atomic

VERSION = 2
FILE = "state.json"


class State:
    def __init__(self, path):
        self.path = path
        self.files = {}
        self.targets = {}
        self.rules = {}
        self.rule_steps = []       # engine/rules.RuleStep of the last runner.status (not saved)
        self.warning = None
        self.dirty = False

    @classmethod
    def load(cls, state_dir):
        st = cls(os.path.join(state_dir, FILE))
        try:
            with open(st.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return st
        except OSError as e:
            st.warning = f"cannot read {st.path}: {e.strerror}; starting over"
            return st
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version') if isinstance(data, dict) else '?'}")
            files, targets = data["files"], data["targets"]
            rules = data.get("rules", {})
            if not isinstance(rules, dict) or not all(
                    isinstance(v, dict) and isinstance(v.get("key"), str)
                    and isinstance(v.get("outputs"), dict) for v in rules.values()):
                raise ValueError("bad rule records")
            if not isinstance(files, dict) or not isinstance(targets, dict):
                raise ValueError("bad layout")
            for k, v in files.items():
                if not (isinstance(v, list) and len(v) == 5 and isinstance(v[4], str)):
                    raise ValueError(f"bad entry for {k}")
            for k, v in targets.items():
                if not (isinstance(v, dict) and isinstance(v.get("key"), str)):
                    raise ValueError(f"bad record for {k}")
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            st.warning = f"{os.path.relpath(st.path)} is corrupt ({e}); starting over"
            return st
        st.files, st.targets, st.rules = files, targets, rules
        return st

    def save(self):
        data = {"version": VERSION, "files": self.files, "targets": self.targets}
        if self.rules:
            data["rules"] = self.rules
        atomic.write_text(self.path, json.dumps(data, sort_keys=True, separators=(",", ":")))
        self.dirty = False
