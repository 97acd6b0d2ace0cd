"""The dataset of a target: its source files' shards (shards.py) joined into one in-memory table,
in source order, with row origins, class indices and the holdout split.

Origins: `file:line` (csv, jsonl), `file[index]` (npz, npy), `file` (images). Holdout: the
target's holdout files, or else a row is held out when BLAKE2b(seed, features) < fraction, so
editing one row never reshuffles the others. Imported lazily (numpy): not on the no-op path.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from s2build.data.readers import origin
from s2build.data.shards import SourcesChanged
from s2build.errors import DataError


@dataclass
class Dataset:
    """Rows of a target, in source order: `x` float32 [n, *shape]; `origins[i]` is where row i
    comes from ('file:line', 'file[i]' or 'file'); `holdout` is a bool mask [n]."""

    x: "np.ndarray"
    y: "np.ndarray"          # int64 [n] class indices, or float32 [n, k] values / 0-1 labels
    origins: list
    row_hash: "np.ndarray"
    input_hash: "np.ndarray"
    holdout: "np.ndarray"
    features: list
    classes: list            # class names (classification) or [] (regression)
    task: str
    parsed_files: list       # files parsed this time (shard cache misses)

    @property
    def n_train(self):
        return int((~self.holdout).sum())


def _class_names(loader, shards):
    """Class names in index order, from `classes` (int or list) or inferred from the labels."""
    classes = loader["classes"]
    if isinstance(classes, int):
        return [str(i) for i in range(classes)]
    if isinstance(classes, list):
        return list(classes)
    seen = sorted({str(l) for _rel, s in shards for l in s.labels.tolist()})
    try:
        return sorted(seen, key=float)
    except ValueError:
        return seen


def _split(input_hash, fraction, seed):
    """Holdout mask: a row is held out when BLAKE2b(seed, features) falls below `fraction`.
    Depends on the row's features only, so editing one row never reshuffles the others."""
    salt = str(seed).encode()
    limit = int(fraction * 2**64)
    return np.array([int.from_bytes(hashlib.blake2b(salt + h, digest_size=8).digest(), "big") < limit
                     for h in input_hash.tolist()], dtype=bool)


def load_dataset(target, inputs, store):
    """Build the target's Dataset from its fingerprinted sources (`inputs`)."""
    loader = target.config["loader"]
    fmt, task = loader["format"], loader["task"]
    root = target.root
    parsed, parts, features = [], [], None
    holdout_files = set(inputs.holdout)
    store.use_pack(target.name)
    for rel in list(inputs.sources) + [r for r in inputs.holdout if r not in inputs.sources]:
        digest = inputs.sources.get(rel) or inputs.holdout[rel]
        shard, feats, was_parsed = store.load(root, rel, digest, loader)
        if was_parsed:
            parsed.append(rel)
        if parts and (feats != features or shard.x.shape[1:] != parts[0][1].x.shape[1:]):
            raise DataError(f"features {feats} {list(shard.x.shape[1:])} differ from those of "
                            f"'{parts[0][0]}' {features} {list(parts[0][1].x.shape[1:])}",
                            origin(rel, 1, fmt) if fmt in ("csv", "jsonl") else rel,
                            "every source file of a target needs the same features")
        if parts and task != "classification" and shard.labels.shape[1:] != parts[0][1].labels.shape[1:]:
            raise DataError(f"label has {shard.labels.shape[1]} values; '{parts[0][0]}' has "
                            f"{parts[0][1].labels.shape[1]}", rel)
        features = feats
        parts.append((rel, shard))
    classes = _class_names(loader, parts) if task == "classification" else []
    xs, ys, origins, rh, ih, hold = [], [], [], [], [], []
    pos = {c: i for i, c in enumerate(classes)}
    for rel, s in parts:
        if task == "classification":
            idx = np.empty(len(s.labels), dtype=np.int64)
            for j, lab in enumerate(s.labels.tolist()):
                k = pos.get(lab)
                if k is None:
                    k = _numeric_match(lab, pos)
                if k is None:
                    shown = f"0..{len(classes) - 1}" if isinstance(loader["classes"], int) \
                        else ", ".join(classes)
                    raise DataError(f"label '{lab}' is out of range (classes: {shown})",
                                    origin(rel, int(s.lines[j]), fmt),
                                    "fix the label or loader.classes")
                idx[j] = k
            ys.append(idx)
        else:
            y = s.labels.astype(np.float32)
            if task == "multilabel" and not np.isin(y, (0.0, 1.0)).all():
                j = int(np.argmax(~np.isin(y, (0.0, 1.0)).all(axis=1)))
                raise DataError("multilabel targets must be 0 or 1", origin(rel, int(s.lines[j]), fmt))
            ys.append(y)
        xs.append(s.x)
        origins += [origin(rel, ln, fmt) for ln in s.lines.tolist()]
        rh.append(s.row_hash)
        ih.append(s.input_hash)
        hold.append(np.full(len(s.lines), rel in holdout_files, dtype=bool))
    if not parts or sum(len(s.lines) for _r, s in parts) == 0:
        raise DataError("no rows in the sources", target.loc("sources"), "add data")
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    input_hash = np.concatenate(ih)
    if holdout_files:
        holdout = np.concatenate(hold)
    else:
        h = target.config["holdout"]
        holdout = _split(input_hash, h["fraction"], h["seed"])
    ds = Dataset(x=x, y=y, origins=origins, row_hash=np.concatenate(rh), input_hash=input_hash,
                 holdout=holdout, features=features or [], classes=classes, task=task,
                 parsed_files=parsed)
    if ds.n_train == 0:
        raise DataError("no training rows", target.loc("sources"),
                        "add data, or lower holdout.fraction")
    store.save_pack()
    return ds


def _numeric_match(label, pos):
    """Match '1.0' to class '1' when class names are integers."""
    try:
        v = float(label)
    except ValueError:
        return None
    return pos.get(str(int(v))) if v.is_integer() else None


def row_changes(target, rel, old_digest, new_digest, store, limit=10):
    """Rows of `rel` that differ between two versions of the file, as ['row changed: f:12', ...]
    (at most `limit`, then a count). Compares per-row content hashes of the two shards; the old
    shard must still be in the shard cache (else returns [])."""
    loader = target.config["loader"]
    fmt = loader["format"]
    try:
        old, _f, _p = store.load(target.root, rel, old_digest, loader, parse=False)
        new, _f, _p = store.load(target.root, rel, new_digest, loader)
    except (DataError, SourcesChanged):
        return []
    if old is None:
        return []
    old_lines = dict(zip(old.lines.tolist(), old.row_hash.tolist()))
    new_set, old_set = set(new.row_hash.tolist()), set(old.row_hash.tolist())
    out, changed = [], set()
    for line, h in zip(new.lines.tolist(), new.row_hash.tolist()):
        if h in old_set:
            continue
        if line in old_lines and old_lines[line] not in new_set:
            changed.add(line)
            out.append(f"row changed: {origin(rel, line, fmt)}")
        else:
            out.append(f"row added: {origin(rel, line, fmt)}")
    for line, h in old_lines.items():
        if h not in new_set and line not in changed:
            out.append(f"row removed: {origin(rel, line, fmt)} (old numbering)")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more rows"]
    return out
