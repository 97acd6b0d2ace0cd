"""The content-addressed artifact cache: build key -> verified ONNX file.

Layout:

    .s2build/cache/ab/abcdef.../model.onnx     the artifact (byte-exact)
                               dynamics.npz   training dynamics (see train.Dynamics), optional
                               rows.npz       row hashes and classes (incremental builds)
                               weights.pt     the trained state_dict (blame, warm starts)
                               optimizer.pt   the optimizer's final state (warm starts)
                               record.json    provenance + volatile facts; written last
    .s2build/tmp/                             entries being written

An entry is written into `.s2build/tmp/` and moved into place with one `os.replace` of its
folder, so an entry is either complete or absent. `get` re-hashes the artifact against the
record; a damaged entry is deleted with a warning and reads as a miss.
"""

import hashlib
import json
import os

from s2build import atomic


class Cache:
    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "cache")
        self.tmp = os.path.join(state_dir, "tmp")
        self.warnings = []

    def entry_dir(self, key):
        return os.path.join(self.root, key[:2], key)

    def has(self, key):
        return os.path.isfile(os.path.join(self.entry_dir(key), "record.json"))

    def get(self, key):
        """(onnx_bytes, record) for `key`, or None. Verifies the artifact's SHA-256."""
        d = self.entry_dir(key)
        try:
            with open(os.path.join(d, "record.json"), "rb") as f:
                record = json.loads(f.read())
            with open(os.path.join(d, "model.onnx"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self._drop(d, f"unreadable ({e})")
            return None
        if hashlib.sha256(data).hexdigest() != record.get("artifact_sha256"):
            self._drop(d, "artifact does not match its recorded SHA-256")
            return None
        try:
            os.utime(d)                       # last use, for `s2build gc` (store/gc.py)
        except OSError:
            pass
        return data, record

    def put(self, key, onnx_bytes, record, extra=None):
        """Store atomically. `record` gains `artifact_sha256`; `extra` maps further file names
        (e.g. dynamics.npz) to bytes. Returns the entry folder."""
        import tempfile
        record = dict(record, artifact_sha256=hashlib.sha256(onnx_bytes).hexdigest())
        final = self.entry_dir(key)
        if self.has(key):
            return final
        os.makedirs(self.tmp, exist_ok=True)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        import shutil
        tmp = tempfile.mkdtemp(prefix=atomic.TMP_PREFIX, dir=self.tmp)
        try:
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
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _drop(self, d, why):
        import shutil
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
