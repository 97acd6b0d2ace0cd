"""Shards, the object files of software 2.0: every source file is cut into blocks of rows, and
each block is parsed once (readers.py) and cached by its content:

    .s2build/shards/ab/<key>.s2s       one Block (shardfile.py format; lines relative to the
                                       block's first line, so a block that moves keeps its shard)
    .s2build/shards/files/ab/<key>.json  a table file's manifest {"manifest": {"header": [...],
                                       "kinds": {...}, "blocks": [[content, first line, rows,
                                       lo, hi]]}, "sha256": of the manifest's canonical JSON}

A CSV file is cut into content-defined blocks (csvblocks.py: an edit or insertion changes the
block it falls in, not the others), a parquet file into its row groups, an Arrow IPC file into
its record batches; every other format is one block per file. Block keys are SHA-256 over the
canonical JSON of the block's content digest, the loader, the column kinds and
`toolchain.shard_salt()` (the data code, numpy, pillow and pyarrow versions). A fresh process
whose file did not change reads the manifest and the shards, never the file.

Shards and manifests are written atomically; a damaged one costs a warning and a re-parse,
never a wrong row. Blocks loaded in this process stay in memory (MEMO) for a long-lived
`watch`. Imported lazily (numpy): not on the no-op path.
"""

import hashlib
import json
import os
import threading

import numpy as np

from s2build import atomic
from s2build.data import readers, shardfile
from s2build.data.block import Block
from s2build.engine import toolchain
from s2build.project.schema import TABLES

SHARD_VERSION = 4
FROM_SOURCE = ("parquet", "feather")    # their shards hold no numbers: read from the file


class SourcesChanged(Exception):
    """A source file's bytes no longer match its fingerprint: fingerprint again."""


def read_verified(root, rel, digest):
    """The bytes of `rel`, which must have SHA-256 `digest` (else SourcesChanged)."""
    with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SourcesChanged(rel)
    return data


def shard_key(content, loader_json, extra=None):
    """SHA-256 hex of the canonical JSON of {"content": digest, "extra": kinds or folder,
    "loader": loader, "salt": toolchain.shard_salt(), "v": SHARD_VERSION}."""
    extra = json.dumps(extra, sort_keys=True, separators=(",", ":"))
    blob = (f'{{"content":{json.dumps(content)},"extra":{extra},'
            f'"loader":{loader_json},"salt":{json.dumps(toolchain.shard_salt())},'
            f'"v":{SHARD_VERSION}}}')
    return hashlib.sha256(blob.encode()).hexdigest()


class Memo:
    """Blocks loaded in this process, by shard path: a long-lived process (watch) re-reads
    nothing that did not change. Shards are content-addressed, so entries never go stale.
    Past `limit` bytes the memo starts over."""

    def __init__(self, limit=0):
        self.entries, self.bytes, self.limit = {}, 0, limit

    def get(self, path):
        return self.entries.get(path)

    def put(self, path, block):
        if path in self.entries:
            return
        size = block.nbytes
        if self.bytes + size > self.limit:
            self.entries.clear()
            self.bytes = 0
        self.entries[path] = block
        self.bytes += size


MEMO = Memo()


def _arrays(block, fmt=None):
    out = {"x": block.x, "codes": block.codes, "lines": block.lines - block.first_line,
           "input_hash": block.input_hash, "row_hash": block.row_hash}
    if block.labels is not None:
        out["labels"] = block.labels
    if fmt in FROM_SOURCE:          # parquet decodes nearly as fast as a shard reads, and a
        del out["x"]                # copy of its numbers was 1.2x the (compressed) sources
    return out


def _meta(block, fmt=None):
    meta = {"features": block.features, "kinds": block.kinds, "vocab": block.vocab,
            "label_vocab": block.label_vocab}
    if fmt in FROM_SOURCE:
        meta["x_from_source"] = list(block.x.shape[1:])
    return meta


def _from_file(arrays, meta, first_line, numbers=None):
    """The Block of a shard's arrays. A shard without "x" (FROM_SOURCE formats) gets its
    numbers from `numbers()`: the block's number columns read from the verified source."""
    if not isinstance(meta, dict) or "row_hash" not in arrays:
        raise shardfile.ShardDamaged("not a block's arrays")
    n = len(arrays["row_hash"])
    if "x" in arrays:
        x = arrays["x"]
    elif isinstance(meta.get("x_from_source"), list) and numbers is not None:
        x = numbers()
        if x.shape[1:] != tuple(meta["x_from_source"]):
            raise shardfile.ShardDamaged("the source's numbers do not fit the shard")
    else:
        raise shardfile.ShardDamaged("no numbers")
    labels = arrays.get("labels")
    fields = [x, arrays["codes"], arrays["lines"], arrays["input_hash"]] + \
        ([labels] if labels is not None else [])
    if any(len(a) != n for a in fields) or x.dtype != np.float32 or \
            arrays["input_hash"].dtype != np.dtype("S16"):
        raise shardfile.ShardDamaged("arrays of different lengths or types")
    return Block(x=x, codes=arrays["codes"], vocab=meta["vocab"], labels=labels,
                 label_vocab=meta["label_vocab"], lines=arrays["lines"] + first_line,
                 input_hash=arrays["input_hash"], row_hash=arrays["row_hash"],
                 features=meta["features"], kinds=meta["kinds"], first_line=first_line)


def _body_digest(body):
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class ShardStore:
    """Shard cache of one project. `blocks(root, rel, digest, loader)` gives a file's Blocks,
    parsing only blocks whose content is new. `parsed_blocks` / `reused_blocks` count this
    store's work; `warnings` lists damaged files that were discarded."""

    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "shards")
        self.parsed_blocks = self.reused_blocks = 0
        self.parsed_files = set()   # files with a block parsed by this store
        self.warnings = []
        self._loader, self._loader_json = None, ""
        self._local = threading.local()     # .last: (key, bytes, records) of the file last read
        self._count = threading.Lock()
        self._fresh = set()     # shard paths this store wrote: read back without the checksum

    def _json(self, loader):
        if self._loader is not loader:
            self._loader = loader
            self._loader_json = json.dumps(loader, sort_keys=True, separators=(",", ":"))
        return self._loader_json

    def _path(self, key, sub=""):
        return os.path.join(self.root, sub, key[:2], key + (".json" if sub else ".s2s"))

    def _get(self, path, first_line, source=None):
        """The Block of shard `path` (None: missing, or damaged with a warning). `source`:
        (root, rel, digest, loader, kinds, block index), where FROM_SOURCE numbers are read."""
        block = MEMO.get(path)
        if block is not None:
            return block.moved(first_line)
        try:
            arrays, meta = shardfile.read(path, verify=path not in self._fresh)
            block = _from_file(arrays, meta, first_line,
                               numbers=(lambda: self.numbers(*source)) if source else None)
        except FileNotFoundError:
            return None
        except (shardfile.ShardDamaged, KeyError, TypeError, ValueError) as e:
            self.warnings.append(f"shard {os.path.basename(path)[:12]} is unreadable ({e}); "
                                 "parsed again")
            return None
        MEMO.put(path, block)
        return block

    def _put(self, path, block, fmt=None):
        shardfile.write(path, _arrays(block, fmt), _meta(block, fmt))
        MEMO.put(path, block)

    def numbers(self, root, rel, digest, loader, kinds, i):
        """float32 [rows, k]: the number columns of block i of table file `rel` (FROM_SOURCE
        formats), from its bytes, which must still have SHA-256 `digest`."""
        from s2build.data import arrownum
        data, _rec = self._file(root, rel, digest, loader)
        return arrownum.read_numbers(rel, data, loader, kinds, i)

    def blocks(self, root, rel, digest, loader, kinds=None, parse=True):
        """[Block] of file `rel` (SHA-256 `digest`), in row order. Tables need `kinds` (see
        `file_kinds`). parse=False: None when anything would have to be parsed."""
        fmt = loader["format"]
        if fmt not in TABLES:
            folder = (os.path.basename(os.path.dirname(rel)) or ".") if fmt == "images" else None
            path = self._path(shard_key(digest, self._json(loader), folder))
            block = self._get(path, 0)
            if block is None:
                if not parse:
                    return None
                block = readers.parse(rel, read_verified(root, rel, digest), loader)
                self._put(path, block)
                self.parsed_blocks += 1
                self.parsed_files.add(rel)
            else:
                self.reused_blocks += 1
            return [block]
        manifest = self.manifest(root, rel, digest, loader, parse=parse)
        if manifest is None:
            return None
        out, data, todo = [], None, []
        for i, (content, first_line, *_rest) in enumerate(manifest["blocks"]):
            path = self._path(shard_key(content, self._json(loader), kinds))
            block = self._get(path, first_line, (root, rel, digest, loader, kinds, i))
            if block is None:
                todo.append(i)
            out.append((path, block))
        if todo and not parse:
            return None
        if todo:
            from s2build.data import tablefile      # pyarrow: only for tables
            data, rec = self._file(root, rel, digest, loader)
            parsed = tablefile.parse_blocks(rel, data, loader, kinds, manifest, todo, rec=rec)
            for i, block in parsed.items():
                path = out[i][0]
                self._put(path, block, fmt)
                out[i] = (path, block)
            self.parsed_blocks += len(todo)
            self.parsed_files.add(rel)
        self.reused_blocks += len(out) - len(todo)
        return [b for _p, b in out]

    def _file(self, root, rel, digest, loader):
        """(bytes, csv records or None) of the file last cut or parsed: cutting a file and
        then parsing its new blocks reads and splits it once."""
        last = getattr(self._local, "last", None)      # per thread: see _gather's pool
        if last is None or last[0] != (rel, digest):
            self._local.last = None                     # free the previous file first
            data = read_verified(root, rel, digest)
            rec = None
            if loader["format"] == "csv":
                from s2build.data import csvblocks
                rec = csvblocks.split_records(data)
            self._local.last = last = ((rel, digest), data, rec)
        return last[1], last[2]

    def release(self):
        """Drop the bytes of the file last read (by this thread)."""
        self._local.last = None

    def refs(self, root, rel, digest, loader, kinds):
        """[(shard path, first line, rows)] of a table file's blocks, parsing missing ones one
        at a time and keeping none in memory (data larger than memory: data/stream.py).
        Thread-safe: files may be cut and parsed in parallel."""
        manifest = self.manifest(root, rel, digest, loader)
        out, data = [], None
        for i, (content, first_line, rows, *_span) in enumerate(manifest["blocks"]):
            path = self._path(shard_key(content, self._json(loader), kinds))
            if os.path.exists(path) or MEMO.get(path) is not None:
                with self._count:
                    self.reused_blocks += 1
            else:
                from s2build.data import tablefile
                data, rec = self._file(root, rel, digest, loader)
                block = tablefile.parse_blocks(rel, data, loader, kinds, manifest, [i],
                                               rec=rec)[i]
                shardfile.write(path, _arrays(block, loader["format"]),
                                _meta(block, loader["format"]))
                with self._count:
                    self._fresh.add(path)
                    self.parsed_blocks += 1
                    self.parsed_files.add(rel)
                del block
            out.append((path, first_line, rows))
        self.release()
        return out

    def manifest(self, root, rel, digest, loader, parse=True):
        """A table file's manifest {"header": [...], "kinds": {...}, "blocks": [...]} (see the
        module docstring), from the cache or by cutting the file."""
        path = self._path(shard_key(digest, self._json(loader)), "files")
        try:
            with open(path, encoding="utf-8") as f:
                got = json.load(f)
            body = got.get("manifest") if isinstance(got, dict) else None
            if not isinstance(body, dict) or got.get("sha256") != _body_digest(body) or \
                    not isinstance(body.get("blocks"), list):
                raise ValueError("does not match its checksum")
            return body
        except FileNotFoundError:
            pass
        except (ValueError, OSError) as e:
            self.warnings.append(f"manifest {os.path.basename(path)[:12]} is unreadable ({e}); "
                                 "cut again")
        if not parse:
            return None
        from s2build.data import tablefile
        data, rec = self._file(root, rel, digest, loader)
        got = tablefile.cut(rel, data, loader, rec)
        atomic.write_text(path, json.dumps({"manifest": got, "sha256": _body_digest(got)},
                                           sort_keys=True))
        return got

    def file_kinds(self, root, rel, digest, loader):
        """{column: kind} of a table as its file `rel` implies it (declared or inferred)."""
        return self.manifest(root, rel, digest, loader)["kinds"]
