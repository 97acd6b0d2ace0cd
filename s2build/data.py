"""Data: source files -> per-file shards -> one in-memory dataset with row origins.

Each source file is parsed once into a *shard* (the object file of software 2.0), cached under

    .s2build/shards/ab/<sha256(file digest, loader config, SHARD_VERSION)>.npz

holding `x` (float32 [rows, features]), `labels` (str [rows] for classification, float32 for
regression), `lines` (int64 [rows], 1-based line of each row) and `row_hash` / `input_hash`
(S16 [rows]: BLAKE2b-128 of features+label and of features only). An edit re-parses only the
files whose digest changed. Shards are written atomically; an unreadable shard is re-parsed.

Every row keeps its origin (`file:line`); malformed rows raise DataError at that origin.
Imported lazily (numpy): not on the no-op path.
"""

import csv
import hashlib
import io
import math
import os
from dataclasses import dataclass

import numpy as np

from . import atomic
from .errors import DataError

SHARD_VERSION = 1


class SourcesChanged(Exception):
    """A source file's bytes no longer match its fingerprint: fingerprint again."""


@dataclass
class Shard:
    x: "np.ndarray"
    labels: "np.ndarray"
    lines: "np.ndarray"
    row_hash: "np.ndarray"
    input_hash: "np.ndarray"


@dataclass
class Dataset:
    """Rows of a target, in source order. `y` holds class indices (int64 [n]) or values
    (float32 [n]); `origins[i]` is 'file:line'; `holdout` is a bool mask [n]."""

    x: "np.ndarray"
    y: "np.ndarray"
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


def _blake(data):
    return hashlib.blake2b(data, digest_size=16).digest()


def _read_verified(root, rel, digest):
    with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SourcesChanged(rel)
    return data


def parse_csv(rel, data, loader):
    """Parse CSV bytes into a Shard; `rel` names the file in errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", rel) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=loader["delimiter"])
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("empty file: expected a header row", rel) from None
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", f"{rel}:1") from None
    header = [h.strip() for h in header]
    label = loader["label"]
    features = loader["features"] or [h for h in header if h != label]
    index = {h: i for i, h in enumerate(header)}
    for col in [label] + features:
        if col not in index:
            import difflib
            close = difflib.get_close_matches(col, header, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "columns: " + ", ".join(header)
            raise DataError(f"no column '{col}' in the header", f"{rel}:1", hint)
    fidx = [index[c] for c in features]
    lidx = index[label]
    regression = loader["task"] == "regression"
    xs, labels, lines = [], [], []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"malformed CSV: {e}", f"{rel}:{start}") from None
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise DataError(f"expected {len(header)} fields (as in the header), got {len(row)}",
                            f"{rel}:{start}", "fix the row or quote fields that contain the delimiter")
        vals = []
        for c, i in zip(features, fidx):
            vals.append(_number(row[i], c, rel, start))
        raw = row[lidx].strip()
        if regression:
            labels.append(_number(raw, label, rel, start))
        else:
            if not raw:
                raise DataError(f"label column '{label}' is empty", f"{rel}:{start}")
            labels.append(raw)
        xs.append(vals)
        lines.append(start)
    x = np.asarray(xs, dtype=np.float32).reshape(len(xs), len(features))
    lab = np.asarray(labels, dtype=np.float32 if regression else np.str_)
    input_hash = np.array([_blake(r.tobytes()) for r in x], dtype="S16")
    row_hash = np.array([_blake(r.tobytes() + str(l).encode()) for r, l in zip(x, labels)],
                        dtype="S16")
    return Shard(x, lab, np.asarray(lines, dtype=np.int64), row_hash, input_hash), features


def _number(text, col, rel, line):
    try:
        v = float(text)
    except ValueError:
        shown = text if len(text) < 30 else text[:27] + "..."
        raise DataError(f"column '{col}': {shown!r} is not a number", f"{rel}:{line}") from None
    if not math.isfinite(v):
        raise DataError(f"column '{col}' is {text.strip()}", f"{rel}:{line}",
                        "fix or remove the row")
    return v


FORMATS = {"csv": parse_csv}


class ShardStore:
    """Shard cache: parse a file only when (its digest, the loader config) is new."""

    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "shards")

    def _path(self, digest, loader):
        from .fingerprint import canonical_digest
        key = canonical_digest({"file": digest, "loader": loader, "v": SHARD_VERSION})
        return os.path.join(self.root, key[:2], key + ".npz")

    def load(self, root, rel, digest, loader):
        """(Shard, feature names, parsed?)."""
        path = self._path(digest, loader)
        try:
            with np.load(path, allow_pickle=False) as z:
                shard = Shard(z["x"], z["labels"], z["lines"], z["row_hash"], z["input_hash"])
                features = [str(f) for f in z["features"]]
            return shard, features, False
        except (OSError, KeyError, ValueError, EOFError):
            pass                                  # missing or damaged: parse again
        data = _read_verified(root, rel, digest)
        shard, features = FORMATS[loader["format"]](rel, data, loader)
        buf = io.BytesIO()
        np.savez(buf, x=shard.x, labels=shard.labels, lines=shard.lines,
                 row_hash=shard.row_hash, input_hash=shard.input_hash,
                 features=np.asarray(features, dtype=np.str_))
        atomic.write_bytes(path, buf.getvalue())
        return shard, features, True


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
    root = target.root
    parsed, parts, features = [], [], None
    holdout_files = set(inputs.holdout)
    for rel in list(inputs.sources) + [r for r in inputs.holdout if r not in inputs.sources]:
        digest = inputs.sources.get(rel) or inputs.holdout[rel]
        shard, feats, was_parsed = store.load(root, rel, digest, loader)
        if was_parsed:
            parsed.append(rel)
        if features is None:
            features = feats
        elif feats != features:
            raise DataError(f"columns differ from those of '{parts[0][0]}'", f"{rel}:1",
                            "every source file of a target needs the same feature columns")
        parts.append((rel, shard))
    task = loader["task"]
    classes = _class_names(loader, parts) if task == "classification" else []
    xs, ys, origins, rh, ih, hold = [], [], [], [], [], []
    for rel, s in parts:
        if task == "classification":
            pos = {c: i for i, c in enumerate(classes)}
            idx = np.empty(len(s.labels), dtype=np.int64)
            for j, lab in enumerate(s.labels.tolist()):
                k = pos.get(lab)
                if k is None:
                    k = _numeric_match(lab, pos)
                if k is None:
                    shown = f"0..{len(classes) - 1}" if isinstance(loader["classes"], int) \
                        else ", ".join(classes)
                    raise DataError(f"label '{lab}' is out of range (classes: {shown})",
                                    f"{rel}:{s.lines[j]}", "fix the label or loader.classes")
                idx[j] = k
            ys.append(idx)
        else:
            ys.append(s.labels.astype(np.float32))
        xs.append(s.x)
        origins += [f"{rel}:{ln}" for ln in s.lines.tolist()]
        rh.append(s.row_hash)
        ih.append(s.input_hash)
        hold.append(np.full(len(s.lines), rel in holdout_files, dtype=bool))
    n_feat = len(features or [])
    x = np.concatenate(xs) if xs else np.zeros((0, n_feat), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    input_hash = np.concatenate(ih) if ih else np.zeros(0, "S16")
    if holdout_files:
        holdout = np.concatenate(hold)
    else:
        h = target.config["holdout"]
        holdout = _split(input_hash, h["fraction"], h["seed"])
    ds = Dataset(x=x, y=y, origins=origins, row_hash=np.concatenate(rh) if rh else np.zeros(0, "S16"),
                 input_hash=input_hash, holdout=holdout, features=features or [],
                 classes=classes, task=task, parsed_files=parsed)
    if ds.n_train == 0:
        raise DataError("no training rows", target.loc("sources"),
                        "add data, or lower holdout.fraction")
    return ds


def _numeric_match(label, pos):
    """Match '1.0' to class '1' when class names are integers."""
    try:
        v = float(label)
    except ValueError:
        return None
    return pos.get(str(int(v))) if v.is_integer() else None
