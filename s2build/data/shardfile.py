"""The on-disk shard format: named numpy arrays in one file, raw and aligned, so a reader can
memory-map them or read them straight into a larger array without a second copy.

    offset 0    b"S2SHARD3"
    offset 8    uint64 little-endian: header length H
    offset 16   header, UTF-8 JSON: {"arrays": {name: [dtype, shape, offset, nbytes]},
                                     "meta": {...}, "sha256": hex of every byte after the header}
    then        each array's C-order bytes at its offset (a multiple of 64 from the file start)

Files are written atomically (s2build/atomic.py), without fsync: the checksum below turns a
file a power loss left empty or partial into a miss. A reader checks the magic, the header, that
every array lies inside the file, and the SHA-256 of the payload: a damaged file raises
ShardDamaged and costs a re-parse, never a wrong row.
"""

import hashlib
import json
import mmap
import os

import numpy as np

from s2build import atomic

MAGIC = b"S2SHARD3"
ALIGN = 64


class ShardDamaged(ValueError):
    """The file is not a whole shard (truncated, overwritten, wrong version)."""


def write(path, arrays, meta):
    """Write `arrays` ({name: ndarray}) and `meta` (JSON-able) to `path` atomically."""
    index, offset, payload = {}, 0, []
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        pad = -offset % ALIGN
        if pad:
            payload.append(b"\0" * pad)
            offset += pad
        index[name] = [a.dtype.str, list(a.shape), offset, a.nbytes]
        payload.append(memoryview(a).cast("B") if a.nbytes else b"")
        offset += a.nbytes
    digest = hashlib.sha256()
    for part in payload:
        digest.update(part)
    body = json.dumps({"arrays": index, "meta": meta, "sha256": digest.hexdigest()},
                      sort_keys=True, separators=(",", ":")).encode()
    head_len = 16 + len(body)
    start = head_len + (-head_len % ALIGN)
    # array offsets are relative to `start`, which is itself aligned
    chunks = [MAGIC, len(body).to_bytes(8, "little"), body, b"\0" * (start - head_len)] + payload
    atomic.write_bytes(path, chunks, durable=False)       # the arrays' own memory, no join


def _header(buf, size):
    if size < 16 or bytes(buf[:8]) != MAGIC:
        raise ShardDamaged("not a shard file (bad magic)")
    n = int.from_bytes(bytes(buf[8:16]), "little")
    if 16 + n > size:
        raise ShardDamaged("truncated header")
    try:
        head = json.loads(bytes(buf[16:16 + n]))
        index, meta, digest = head["arrays"], head["meta"], head["sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise ShardDamaged(f"unreadable header ({e})") from None
    start = 16 + n + (-(16 + n) % ALIGN)
    for name, (dtype, shape, off, nbytes) in index.items():
        if start + off + nbytes > size or int(np.prod(shape)) * np.dtype(dtype).itemsize != nbytes:
            raise ShardDamaged(f"array '{name}' does not fit the file")
    return index, meta, digest, start


def read(path, mapped=False, verify=True):
    """({name: ndarray}, meta). mapped=True: read-only arrays over a memory map of the file
    (pages are read when touched; the payload hash is checked once here). verify=False skips
    the payload hash: only for a file this process has just written. Raises
    FileNotFoundError, or ShardDamaged for anything that is not a whole shard."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if mapped and size:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            buf = memoryview(f.read())
    index, meta, digest, start = _header(buf, size)
    if verify and hashlib.sha256(memoryview(buf)[start:]).hexdigest() != digest:
        raise ShardDamaged("payload does not match its checksum")
    arrays = {name: np.frombuffer(buf, dtype=np.dtype(dtype), count=int(np.prod(shape)),
                                  offset=start + off).reshape(shape)
              for name, (dtype, shape, off, _n) in index.items()}
    return arrays, meta
