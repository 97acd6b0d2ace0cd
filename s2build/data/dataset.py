"""Data: source files -> per-file shards -> one in-memory dataset with row origins.

Each source file is parsed once into a *shard* (the object file of software 2.0), cached under

    .s2build/shards/ab/<sha256(file digest, loader config, SHARD_VERSION, toolchain.shard_salt())>.npz

holding `x` (float32 [rows, *shape]), `labels` (str [rows] for classification, float32
[rows, k] for regression and multilabel), `lines` (int64 [rows]: 1-based line for csv/jsonl,
index for arrays, 0 for one-file-per-example images) and `row_hash` / `input_hash` (S16 [rows]:
BLAKE2b-128 of features+label and of features only). An edit re-parses only the files whose
digest changed. Shards are written atomically; an unreadable shard is parsed again. A
target's shards are also packed into one file (packs.py), so a fresh process reads one file.

Formats (loader.format): csv, jsonl, npz, npy, images (one folder per class, PNG/JPEG).
Origins: `file:line` (csv, jsonl), `file[index]` (npz, npy), `file` (images). Malformed rows
raise DataError at their origin. Imported lazily (numpy): not on the no-op path.
"""

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from s2build import atomic
from s2build.engine import toolchain
from s2build.errors import DataError

SHARD_VERSION = 2
PACK_MIN_READS = 32     # shards read from their own files before a new pack is written


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
    regression = loader["task"] != "classification"
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
    lab = np.asarray(labels, dtype=np.float32).reshape(len(xs), 1) if regression \
        else np.asarray(labels, dtype=np.str_)
    return _shard(x, lab, lines, loader, rel), features


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


def _shard(x, labels, lines, loader, rel):
    """Assemble a Shard: reshape features to loader.shape and hash every row."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if loader.get("shape"):
        shape = tuple(loader["shape"])
        per_row = int(np.prod(shape))
        if x.shape[1:] != shape and int(np.prod(x.shape[1:])) != per_row:
            raise DataError(f"rows have {int(np.prod(x.shape[1:]))} feature values; loader.shape "
                            f"{list(shape)} needs {per_row}", rel)
        x = x.reshape((len(x),) + shape)
    input_hash = np.array([_blake(r.tobytes()) for r in x], dtype="S16")
    row_hash = np.array([_blake(r.tobytes() + (l.tobytes() if isinstance(l, np.ndarray)
                                               else str(l).encode()))
                         for r, l in zip(x, labels)], dtype="S16")
    return Shard(x, labels, np.asarray(lines, dtype=np.int64), row_hash, input_hash)


def _json_values(value, field, where, loader):
    """A JSON field -> list of floats: a number, a (nested) list of numbers, or a string
    decoded per loader.text (digits: one value per character; hash: bag of words)."""
    if isinstance(value, bool) or value is None:
        raise DataError(f"field '{field}': {value!r} is not a number", where)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise DataError(f"field '{field}' is {value}", where, "fix or remove the row")
        return [float(value)]
    if isinstance(value, list):
        out = []
        for v in value:
            out += _json_values(v, field, where, loader)
        return out
    if isinstance(value, str):
        mode = loader.get("text", "error")
        if mode == "digits":
            if not value.isdigit():
                raise DataError(f"field '{field}': expected a string of digits, got {value[:30]!r}",
                                where)
            return [float(c) for c in value]
        if mode == "hash":
            vec = [0.0] * loader["buckets"]
            for word in value.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                vec[h % loader["buckets"]] += 1.0
            return vec
        raise DataError(f"field '{field}' is text", where,
                        "set loader.text to 'digits' or 'hash' to turn text into numbers")
    raise DataError(f"field '{field}': unsupported value {type(value).__name__}", where)


def parse_jsonl(rel, data, loader, with_label=True):
    """One JSON object per line; features and label by field name. With with_label=False
    (predict), the label field is neither needed nor read and labels are empty."""
    import json
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", rel) from None
    regression = loader["task"] != "classification"
    xs, labels, lines, width = [], [], [], None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{rel}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", where) from None
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object per line", where)
        vals = []
        for f in loader["features"] + ([loader["label"]] if with_label else []):
            if f not in obj:
                raise DataError(f"missing field '{f}'", where)
        for f in loader["features"]:
            vals += _json_values(obj[f], f, where, loader)
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise DataError(f"{len(vals)} feature values, but earlier rows have {width}", where)
        lab = obj[loader["label"]] if with_label else None
        if not with_label:
            labels.append("")
        elif regression:
            labels.append(_json_values(lab, loader["label"], where, dict(loader, text="digits")))
            if len(labels[-1]) != len(labels[0]):
                raise DataError(f"label has {len(labels[-1])} values, earlier rows {len(labels[0])}",
                                where)
        else:
            if isinstance(lab, (dict, list)) or lab is None or str(lab).strip() == "":
                raise DataError(f"label '{loader['label']}' must be a class name or number", where)
            labels.append(str(lab).strip())
        xs.append(vals)
        lines.append(lineno)
    x = np.asarray(xs, dtype=np.float32).reshape(len(xs), width or 0)
    lab = np.asarray(labels, dtype=np.float32).reshape(len(xs), -1) if regression and with_label \
        else np.asarray(labels, dtype=np.str_)
    return _shard(x, lab, lines, loader, rel), list(loader["features"])


def _check_array(arr, rel, what):
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} has dtype {arr.dtype}, expected numbers", rel)
    bad = ~np.isfinite(arr.reshape(len(arr), -1).astype(np.float64)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{what} holds NaN or inf", f"{rel}[{i}]", "fix or remove the row")


def _array_labels(y, rel, loader):
    if loader["task"] == "classification":
        if y.ndim != 1:
            raise DataError(f"labels have shape {list(y.shape)}, expected one per row", rel)
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        return np.asarray([str(v) for v in y.tolist()], dtype=np.str_)
    _check_array(y, rel, "labels")
    return y.astype(np.float32).reshape(len(y), -1)


def parse_npz(rel, data, loader):
    """An .npz archive: features array `loader.features`, labels array `loader.label`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise DataError(f"cannot read .npz: {e}", rel) from None
    for k in (loader["features"], loader["label"]):
        if k not in arrays:
            raise DataError(f"no array '{k}' in the archive (has: {', '.join(sorted(arrays))})", rel)
    x, y = arrays[loader["features"]], arrays[loader["label"]]
    if len(x) != len(y):
        raise DataError(f"{len(x)} feature rows but {len(y)} labels", rel)
    _check_array(x, rel, f"array '{loader['features']}'")
    x = x.astype(np.float32).reshape(len(x), -1) if x.ndim == 1 else x.astype(np.float32)
    shard = _shard(x, _array_labels(y, rel, loader), np.arange(len(x)), loader, rel)
    return shard, [loader["features"]]


def parse_npy(rel, data, loader):
    """A 2-D .npy array [rows, columns]; column `loader.label_column` is the label."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        raise DataError(f"cannot read .npy: {e}", rel) from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(f"expected a 2-D array with a label column, got shape {list(arr.shape)}", rel)
    _check_array(arr, rel, "array")
    col = loader["label_column"] % arr.shape[1]
    x = np.delete(arr, col, axis=1).astype(np.float32)
    shard = _shard(x, _array_labels(arr[:, col], rel, loader), np.arange(len(arr)), loader, rel)
    return shard, [f"c{i}" for i in range(arr.shape[1]) if i != col]


def decode_image(rel, data, loader):
    """Image bytes -> float32 [channels, height, width] (resized, scaled)."""
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot decode image: {e}", rel, "replace or remove the file") from None
    img = img.convert("L" if loader["channels"] == 1 else "RGB")
    if loader["size"]:
        h, w = loader["size"]
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) * loader["scale"]
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def parse_image(rel, data, loader):
    """One image file = one row; its class is the name of its folder."""
    x = decode_image(rel, data, loader)[None]
    label = os.path.basename(os.path.dirname(rel)) or "."
    return _shard(x, np.asarray([label], dtype=np.str_), [0], dict(loader, shape=None), rel), \
        ["pixels"]


FORMATS = {"csv": parse_csv, "jsonl": parse_jsonl, "npz": parse_npz, "npy": parse_npy,
           "images": parse_image}


def origin(rel, line, fmt):
    """Where a row comes from, as users see it."""
    if fmt in ("csv", "jsonl"):
        return f"{rel}:{line}"
    if fmt == "images":
        return rel
    return f"{rel}[{line}]"


# Shards loaded in this process, by shard path: a long-lived process (watch) re-reads nothing
# that did not change. Shards are immutable (content-addressed), so entries never go stale.
_MEMO = {}
_MEMO_BYTES = [0]
MEMO_LIMIT = 512 * 2**20


def _remember(path, shard, features):
    size = shard.x.nbytes + shard.labels.nbytes
    if _MEMO_BYTES[0] + size > MEMO_LIMIT:
        _MEMO.clear()
        _MEMO_BYTES[0] = 0
    _MEMO[path] = (shard, features)
    _MEMO_BYTES[0] += size


class ShardStore:
    """Shard cache: parse a file only when (its digest, the loader config) is new. For image
    folders the label is the file's folder, so the folder is part of the key: moving an image
    to another class folder relabels it."""

    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "shards")
        self.pack_path = None       # set by use_pack: shards are looked up in that pack too
        self.packed = None          # {shard file name: (fields, features)} once read
        self.file_reads = 0         # shards that came from their own file or a parse
        self.loaded = []            # [(shard file name, Shard, features)] in load order
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
        """The shard file of `rel`: SHA-256 of the canonical JSON of {"file": digest,
        "label": folder (images only), "loader": loader, "v": SHARD_VERSION, "salt":
        toolchain.shard_salt()} (data code digest, numpy and pillow versions). The loader's
        JSON is made once per loader object, not once per file (1,797 files: 35 ms)."""
        if self._loader is not loader:
            self._loader = loader
            self._loader_json = json.dumps(loader, sort_keys=True, separators=(",", ":"))
        label = ""
        if loader["format"] == "images":
            label = ',"label":' + json.dumps(os.path.basename(os.path.dirname(rel)) or ".")
        blob = f'{{"file":{json.dumps(digest)}{label},"loader":{self._loader_json},' \
               f'"salt":{json.dumps(toolchain.shard_salt())},"v":{SHARD_VERSION}}}'
        key = hashlib.sha256(blob.encode()).hexdigest()
        return os.path.join(self.root, key[:2], key + ".npz")

    def load(self, root, rel, digest, loader, parse=True):
        """(Shard, feature names, parsed?); with parse=False, (None, None, False) on a miss."""
        path = self._path(digest, loader, rel)
        got = self._lookup(path)
        if got is None and not parse:
            return None, None, False
        was_parsed = got is None
        if got is None:
            data = _read_verified(root, rel, digest)
            got = FORMATS[loader["format"]](rel, data, loader)
            shard, features = got
            buf = io.BytesIO()
            np.savez(buf, x=shard.x, labels=shard.labels, lines=shard.lines,
                     row_hash=shard.row_hash, input_hash=shard.input_hash,
                     features=np.asarray(features, dtype=np.str_))
            atomic.write_bytes(path, buf.getvalue())
            self.file_reads += 1
        _remember(path, *got)
        if self.pack_path is not None:
            self.loaded.append((os.path.basename(path), *got))
        return got + (was_parsed,)

    def _lookup(self, path):
        """(Shard, features) from memory, the pack or the shard's file; None on a miss."""
        if path in _MEMO:                         # content-addressed: a hit is always valid
            return _MEMO[path]
        if self.pack_path is not None:
            if self.packed is None:
                from s2build.data import packs
                self.packed = packs.read(self.pack_path)
            hit = self.packed.get(os.path.basename(path))
            if hit is not None:
                return Shard(**hit[0]), hit[1]
        try:
            with np.load(path, allow_pickle=False) as z:
                shard = Shard(z["x"], z["labels"], z["lines"], z["row_hash"], z["input_hash"])
                features = [str(f) for f in z["features"]]
        except (OSError, KeyError, ValueError, EOFError):
            return None                           # missing or damaged: parse again
        self.file_reads += 1
        return shard, features


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
