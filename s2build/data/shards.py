"""Per-file shards, the object files of software 2.0: each source file is parsed once (readers.py)
into a Shard, cached under

    .s2build/shards/ab/<shard_key(file digest, loader config, folder, toolchain.shard_salt())>.npz

holding the Shard's arrays (`x`, `labels`, `lines`, `row_hash`, `input_hash`, see readers.py)
and `features` (str [f]). An edit re-parses only the files whose digest changed. Shards are
written atomically; a damaged or unreadable shard (or pack) costs a warning and a re-parse, never
a wrong row. A target's shards are also packed into one file (packs.py), so that a fresh process
reads one file. Shards loaded in this process are kept in memory (MEMO) for a long-lived
`watch`. Imported lazily (numpy): not on the no-op path.
"""

import hashlib
import io
import json
import os

import numpy as np

from s2build import atomic
from s2build.data import readers
from s2build.data.readers import Shard
from s2build.engine import toolchain

SHARD_VERSION = 2
PACK_MIN_READS = 32     # shards read from their own files before a new pack is written


class SourcesChanged(Exception):
    """A source file's bytes no longer match its fingerprint: fingerprint again."""


def read_verified(root, rel, digest):
    """The bytes of `rel`, which must have SHA-256 `digest` (else SourcesChanged)."""
    with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SourcesChanged(rel)
    return data


def shard_key(digest, loader_json, label=None):
    """SHA-256 hex of the canonical JSON of {"file": digest, "label": folder (images only),
    "loader": loader, "salt": toolchain.shard_salt() (the data code's digest, numpy and pillow
    versions: what can change a shard's bytes), "v": SHARD_VERSION}; `loader_json` is the
    loader's canonical JSON."""
    label = "" if label is None else ',"label":' + json.dumps(label)
    blob = (f'{{"file":{json.dumps(digest)}{label},"loader":{loader_json},'
            f'"salt":{json.dumps(toolchain.shard_salt())},"v":{SHARD_VERSION}}}')
    return hashlib.sha256(blob.encode()).hexdigest()


class Memo:
    """Shards loaded in this process, by shard path: a long-lived process (watch) re-reads
    nothing that did not change. Shards are content-addressed, so entries never go stale.
    `bytes` counts each entry once; past `limit` the memo starts over."""

    def __init__(self, limit=512 * 2**20):
        self.entries, self.bytes, self.limit = {}, 0, limit

    def get(self, path):
        return self.entries.get(path)

    def put(self, path, shard, features):
        if path in self.entries:
            return
        size = shard.x.nbytes + shard.labels.nbytes
        if self.bytes + size > self.limit:
            self.entries.clear()
            self.bytes = 0
        self.entries[path] = (shard, features)
        self.bytes += size


MEMO = Memo()


def _valid(shard, features):
    """A shard read back from disk is used only when its arrays agree with each other."""
    n = len(shard.x)
    return all(len(a) == n for a in (shard.labels, shard.lines, shard.row_hash,
                                     shard.input_hash)) \
        and shard.row_hash.dtype == shard.input_hash.dtype == np.dtype("S16") \
        and shard.x.dtype == np.float32 and shard.lines.dtype == np.int64 \
        and isinstance(features, list)


class ShardStore:
    """Shard cache: parse a file only when (its digest, the loader config) is new. For image
    folders the label is the file's folder, so the folder is part of the key: moving an image
    to another class folder relabels it. `warnings` lists damaged files that were discarded."""

    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "shards")
        self.pack_path = None       # set by use_pack: shards are looked up in that pack too
        self.packed = None          # {shard file name: (fields, features)} once read
        self.file_reads = 0         # shards that came from their own file or a parse
        self.loaded = []            # [(shard file name, Shard, features)] in load order
        self.warnings = []
        self._loader, self._loader_json = None, ""

    def use_pack(self, target_name):
        """Look shards up in `target_name`'s pack (see packs.py) before their own files, and
        record what is loaded so that `save_pack` can write a new one."""
        from s2build.data import packs
        self.pack_path = packs.path(self.root, target_name)

    def save_pack(self, min_reads=PACK_MIN_READS):
        """Write the pack of what was loaded when at least `min_reads` shards came from their
        own files (a first build, or many edits since the last pack). Best effort."""
        if self.pack_path is None or self.file_reads < min_reads:
            return
        from s2build.data import packs
        try:
            packs.write(self.pack_path, [(key, vars(shard), feats)
                                         for key, shard, feats in self.loaded])
        except OSError:
            pass                    # a missing pack costs speed, never correctness

    def _path(self, digest, loader, rel=""):
        """The shard file of `rel` (see shard_key). The loader's JSON is made once per loader
        object, not once per file (1,797 files: 35 ms)."""
        if self._loader is not loader:
            self._loader = loader
            self._loader_json = json.dumps(loader, sort_keys=True, separators=(",", ":"))
        label = (os.path.basename(os.path.dirname(rel)) or ".") \
            if loader["format"] == "images" else None
        key = shard_key(digest, self._loader_json, label)
        return os.path.join(self.root, key[:2], key + ".npz")

    def load(self, root, rel, digest, loader, parse=True):
        """(Shard, feature names, parsed?); with parse=False, (None, None, False) on a miss."""
        path = self._path(digest, loader, rel)
        got = MEMO.get(path)
        if got is None:
            got = self._lookup(path)
            if got is None and not parse:
                return None, None, False
        was_parsed = got is None
        if got is None:
            got = readers.parse(rel, read_verified(root, rel, digest), loader)
            shard, features = got
            buf = io.BytesIO()
            np.savez(buf, x=shard.x, labels=shard.labels, lines=shard.lines,
                     row_hash=shard.row_hash, input_hash=shard.input_hash,
                     features=np.asarray(features, dtype=np.str_))
            atomic.write_bytes(path, buf.getvalue())
            self.file_reads += 1
        MEMO.put(path, *got)
        if self.pack_path is not None:
            self.loaded.append((os.path.basename(path), *got))
        return got + (was_parsed,)

    def _lookup(self, path):
        """(Shard, features) from the pack or the shard's file; None on a miss."""
        if self.pack_path is not None:
            if self.packed is None:
                from s2build.data import packs
                self.packed, why = packs.read(self.pack_path)
                if why:
                    self.warnings.append(f"shard pack {os.path.basename(self.pack_path)} {why}; "
                                         "discarded")
            hit = self.packed.get(os.path.basename(path))
            if hit is not None:
                return Shard(**hit[0]), hit[1]
        try:
            with np.load(path, allow_pickle=False) as z:
                shard = Shard(z["x"], z["labels"], z["lines"], z["row_hash"], z["input_hash"])
                features = [str(f) for f in z["features"]]
            if not _valid(shard, features):
                raise ValueError("arrays of different lengths or types")
        except FileNotFoundError:
            return None
        except Exception as e:      # any damage (BadZipFile, bad header, CRC...): parse again
            self.warnings.append(f"shard {os.path.basename(path)[:12]} is unreadable "
                                 f"({type(e).__name__}: {e}); parsed again")
            return None
        self.file_reads += 1
        return shard, features
