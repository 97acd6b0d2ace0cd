"""The content-addressed artifact cache: build key -> verified ONNX file.

Layout:

    .s2build/cache/ab/abcdef.../model.onnx     the artifact (byte-exact)
                               dynamics.npz   training dynamics (see train.Dynamics), optional
                               rows.npz       row hashes and classes (incremental builds)
                               weights.pt     the trained state_dict (blame, warm starts)
                               optimizer.pt   the optimizer's final state (warm starts)
                               record.json    provenance + volatile facts; written last
    .s2build/tmp/                             entries being written

A rule's entry (engine/rulerun.py) has the same shape, so gc, the remote cache and the
checks treat it alike: its record says `"kind": "rule"` and maps each output path to the
name of the file holding it (`outputs`: {relpath: "out-N"}, and `output_sha256`); the
`model.onnx` slot holds the JSON manifest {relpath: sha256} of the outputs.

An entry is written into `.s2build/tmp/` and moved into place with one `os.replace` of its
folder, so an entry is either complete or absent. The record holds the SHA-256 of every other
file (`artifact_sha256`, `files`: {name: sha256}) and of itself (`record_sha256`: the canonical
JSON of the record without that field). `get` and `read_file` check them: a damaged entry
(truncated, garbled, not a JSON object) is deleted with a warning and reads as a miss, never
as a wrong artifact or a wrong warm start.
"""

import hashlib
import json
import os

from s2build import atomic


def _record_digest(record):
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Cache:
    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "cache")
        self.tmp = os.path.join(state_dir, "tmp")
        self.warnings = []

    def entry_dir(self, key):
        return os.path.join(self.root, key[:2], key)

    def has(self, key):
        return os.path.isfile(os.path.join(self.entry_dir(key), "record.json"))

    def record(self, key):
        """The verified record of `key`, or None (missing; damaged: dropped with a warning)."""
        d = self.entry_dir(key)
        try:
            with open(os.path.join(d, "record.json"), "rb") as f:
                record = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as e:
            self._drop(d, f"has an unreadable record ({type(e).__name__})")
            return None
        if not isinstance(record, dict) or not isinstance(record.get("artifact_sha256"), str):
            self._drop(d, "has a record that is not an entry's")
            return None
        if "record_sha256" in record and record["record_sha256"] != _record_digest(record):
            self._drop(d, "has a record that does not match its SHA-256")
            return None
        return record

    def read_file(self, key, name, record=None):
        """Bytes of file `name` of entry `key`, checked against the record; None when the
        entry or the file is missing, or damaged (then the entry is dropped with a warning)."""
        record = record or self.record(key)
        if record is None:
            return None
        want = record["artifact_sha256"] if name == "model.onnx" \
            else (record.get("files") or {}).get(name)
        d = self.entry_dir(key)
        try:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if name == "model.onnx" or want:
                self._drop(d, f"lacks {name}")
            return None
        except OSError as e:
            self._drop(d, f"has an unreadable {name} ({e.strerror})")
            return None
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            self._drop(d, f"has a {name} that does not match its recorded SHA-256")
            return None
        return data

    def get(self, key):
        """(onnx_bytes, record) for `key`, or None. Verifies the record and the artifact."""
        record = self.record(key)
        data = self.read_file(key, "model.onnx", record) if record is not None else None
        if data is None:
            return None
        try:
            os.utime(self.entry_dir(key))       # last use, for `s2build gc` (store/gc.py)
        except OSError:
            pass
        return data, record

    def put(self, key, onnx_bytes, record, extra=None):
        """Store atomically. `record` gains `artifact_sha256`; `extra` maps further file names
        (e.g. dynamics.npz) to bytes. Returns the entry folder. A write the file system refuses
        raises atomic.WriteFailed naming the entry (exit 5); no half entry is left."""
        import tempfile
        record = dict(record, artifact_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                      files={n: hashlib.sha256(b).hexdigest() for n, b in (extra or {}).items()})
        record["record_sha256"] = _record_digest(record)
        final = self.entry_dir(key)
        if self.has(key):
            return final
        import shutil
        tmp = None
        try:
            os.makedirs(self.tmp, exist_ok=True)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=atomic.tmp_prefix(), dir=self.tmp)
            files = [("model.onnx", onnx_bytes), *sorted((extra or {}).items()),
                     ("record.json", json.dumps(record, sort_keys=True, indent=1).encode())]
            for name, data in files:
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            if os.path.isdir(final):          # a damaged leftover (no record.json): replace it
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError as e:                  # a full disk, a read-only mount: nothing stored
            raise atomic.WriteFailed.of(final, e) from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def put_outputs(self, key, files, record):
        """Store a rule's outputs ({relpath: bytes}) under `key`, atomically (see above)."""
        names = {rel: f"out-{i}" for i, rel in enumerate(sorted(files))}
        shas = {rel: hashlib.sha256(files[rel]).hexdigest() for rel in sorted(files)}
        manifest = json.dumps(shas, sort_keys=True, indent=1).encode()
        return self.put(key, manifest, dict(record, kind="rule", outputs=names,
                                            output_sha256=shas),
                        {names[rel]: files[rel] for rel in files})

    def get_outputs(self, key):
        """({relpath: bytes}, record) of a rule's entry, each file verified; None on a miss."""
        got = self.get(key)
        if got is None or got[1].get("kind") != "rule":
            return None
        record, out = got[1], {}
        for rel, name in sorted((record.get("outputs") or {}).items()):
            data = self.read_file(key, name, record)
            if data is None:
                return None
            out[rel] = data
        return out, record

    def _drop(self, d, why):
        import shutil
        if not os.path.isdir(d):
            return
        self.warnings.append(f"cache entry {os.path.basename(d)[:12]} {why}; discarded")
        shutil.rmtree(d, ignore_errors=True)

    def clean_tmp(self):
        """Remove half-written entries left by a killed process (call only under the lock)."""
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def size(self):
        """(entries, bytes) in the cache."""
        n = total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            if "record.json" in files:
                n += 1
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return n, total
