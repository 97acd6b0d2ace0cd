"""Shard packs: one file holding the shards a target loaded last, so that a fresh process reads
one file instead of one per source file (1,797 image shards: one read instead of 1,797).

    .s2build/shards/packs/<BLAKE2b-64 of the target name>.npz     (uncompressed, atomic)

        keys      str [m]        shard file names (content-addressed, see shards.ShardStore)
        offsets   int64 [m + 1]  rows of shard i are offsets[i]:offsets[i + 1]
        features  str [f]        feature names, common to every shard of the pack
        x, labels, lines, row_hash, input_hash    the shards' arrays, concatenated

A pack is an index over content-addressed shards, never a source of truth: a shard whose key
is not in the pack is read from its own file, and an unreadable pack reads as empty. A pack is
written only when its shards agree in dtypes (strings: in kind) and trailing shapes, so
slicing returns the arrays that were packed (strings widened to the longest).
"""

import hashlib
import io
import os

import numpy as np

from s2build import atomic

FIELDS = ("x", "labels", "lines", "row_hash", "input_hash")


def path(shard_root, target_name):
    name = hashlib.blake2b(target_name.encode(), digest_size=8).hexdigest()
    return os.path.join(shard_root, "packs", name + ".npz")


def read(pack_path):
    """({shard file name: (fields dict, feature names)}, why): ({}, None) when missing,
    ({}, reason in words) when damaged (any read error, or an index that does not fit)."""
    try:
        with np.load(pack_path, allow_pickle=False) as z:
            arrays = {f: z[f] for f in FIELDS}
            keys, offsets = z["keys"].tolist(), z["offsets"]
            features = [str(f) for f in z["features"]]
    except FileNotFoundError:
        return {}, None
    except Exception as e:          # BadZipFile, CRC, truncated header...: costs a re-read
        return {}, f"is unreadable ({type(e).__name__}: {e})"
    n = len(arrays["x"])
    if len(offsets) != len(keys) + 1 or offsets.dtype != np.int64 or \
            any(len(a) != n for a in arrays.values()) or (len(offsets) and int(offsets[-1]) != n) \
            or int(offsets[0]) != 0 or (np.diff(offsets) < 0).any():
        return {}, "has an index that does not fit its arrays"
    return {key: ({f: a[offsets[i]:offsets[i + 1]] for f, a in arrays.items()}, features)
            for i, key in enumerate(keys)}, None


def _same_dtype(a, b):
    """Equal dtypes; strings of any length count as one (class names differ in length)."""
    return a == b or (a.kind == b.kind and a.kind in "US")


def write(pack_path, entries):
    """Pack `entries` [(shard file name, fields dict, feature names)] atomically. Returns False
    (and writes nothing) when the shards differ in features, dtypes or trailing shapes."""
    if not entries:
        return False
    _, first, features = entries[0]
    for _, fields, feats in entries:
        if feats != features or any(not _same_dtype(fields[f].dtype, first[f].dtype) or
                                    fields[f].shape[1:] != first[f].shape[1:] for f in FIELDS):
            return False
    offsets = np.zeros(len(entries) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(fields["x"]) for _, fields, _ in entries])
    buf = io.BytesIO()
    np.savez(buf, keys=np.asarray([k for k, _, _ in entries], dtype=np.str_), offsets=offsets,
             features=np.asarray(features, dtype=np.str_),
             **{f: np.concatenate([fields[f] for _, fields, _ in entries]) for f in FIELDS})
    atomic.write_bytes(pack_path, buf.getvalue())
    return True
