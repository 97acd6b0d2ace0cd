"""One reader per source format: bytes of one file -> a Block (data/block.py: rows, labels, row
origins, hashes). Tables (csv, parquet, feather) are read by pyarrow through tablefile.py and
arrowread.py; this module reads jsonl, npz, npy and images (one folder per class, PNG/JPEG).

`parse(rel, data, loader, with_label=True, bad=None)` reads a whole file; `rel` names it in
errors. Build, specs, predict and lint all read through it, so a file means the same to each.

- Malformed input raises DataError at its origin: `file:line` (csv, jsonl; 1-based), `file[i]`
  (npz, npy, parquet, feather), `file` (images).
- with_label=False (predict): the label is neither needed nor read (labels None).
- bad=[] (lint): a NaN/inf cell is appended to `bad` as the DataError it would raise and the
  row is kept, so that every such cell is found in one pass; other errors still raise.
  (In tables NaN means missing; inf is the error.)

Row hashes: rowhash.py, over whole arrays. Imported lazily (numpy): not on the no-op path.
"""

import hashlib
import io
import json
import math
import os

import numpy as np

from s2build.data import rowhash
from s2build.data.block import Block
from s2build.data.cells import _flag, number, origin  # noqa: F401  (re-exported)
from s2build.errors import DataError


def _text(rel, data):
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (byte {e.start})", f"{rel}:{line}",
                        "save the file as UTF-8") from None



def _label_not_feature(loader, features, where, with_label):
    label = loader.get("label")
    if with_label and label is not None and label in features:
        raise DataError(f"'{label}' is both the label and a feature", where,
                        f"remove '{label}' from loader.features in s2build.yaml")



def _shard(x, labels, lines, loader, rel, features=None):
    """Assemble a Block: reshape features to loader.shape, encode class names, hash every row."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if loader.get("shape"):
        shape = tuple(loader["shape"])
        per_row = int(np.prod(shape))
        if x.shape[1:] != shape and int(np.prod(x.shape[1:])) != per_row:
            raise DataError(f"rows have {int(np.prod(x.shape[1:]))} feature values; loader.shape "
                            f"{list(shape)} needs {per_row}", rel)
        x = x.reshape((len(x),) + shape)
    label_vocab = None
    if labels.dtype.kind in "US":
        vocab, codes = np.unique(labels, return_inverse=True)
        label_vocab, labels = [str(v) for v in vocab], codes.astype(np.int32).reshape(-1)
    input_hash, row_hash = rowhash.row_hashes(len(x), x=x, labels=labels, label_vocab=label_vocab)
    return Block(x=x, codes=np.zeros((len(x), 0), np.int32), vocab=[], labels=labels,
                 label_vocab=label_vocab, lines=np.asarray(lines, dtype=np.int64),
                 input_hash=input_hash, row_hash=row_hash, features=list(features or []))


def json_values(value, field, where, loader, bad=None):
    """A JSON field -> list of floats: a number, a (nested) list of numbers, or a string
    decoded per loader.text (digits: one value per character; hash: bag of words)."""
    if isinstance(value, bool) or value is None:
        raise DataError(f"field '{field}': {json.dumps(value)} is not a number", where,
                        "write a number, or leave the row out")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            _flag(DataError(f"field '{field}' is {value}", where, "fix or remove the row"), bad)
        return [float(value)]
    if isinstance(value, list):
        out = []
        for v in value:
            out += json_values(v, field, where, loader, bad)
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


def text_lines(text):
    """(line number, line) of a text file, split on '\\n' only ('\\r\\n' too): JSON strings may
    hold U+2028 and other characters that str.splitlines() would split on."""
    for lineno, line in enumerate(text.split("\n"), 1):
        yield lineno, line[:-1] if line.endswith("\r") else line


def parse_jsonl(rel, data, loader, with_label=True, bad=None):
    """One JSON object per line; features and label by field name."""
    import json
    regression = loader["task"] != "classification"
    _label_not_feature(loader, loader["features"], rel, with_label)
    xs, labels, lines, width = [], [], [], None
    for lineno, line in text_lines(_text(rel, data)):
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
            vals += json_values(obj[f], f, where, loader, bad)
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise DataError(f"{len(vals)} feature values, but earlier rows have {width}", where)
        lab = obj[loader["label"]] if with_label else None
        if not with_label:
            labels.append("")
        elif regression:
            labels.append(json_values(lab, loader["label"], where, dict(loader, text="digits"),
                                      bad))
            if len(labels[-1]) != len(labels[0]):
                raise DataError(f"label has {len(labels[-1])} values, earlier rows {len(labels[0])}",
                                where)
        else:
            if isinstance(lab, (dict, list)) or lab is None or str(lab).strip() == "":
                raise DataError(f"label '{loader['label']}' must be a class name or number", where)
            labels.append(json.dumps(lab) if isinstance(lab, bool) else str(lab).strip())
        xs.append(vals)
        lines.append(lineno)
    x = _float32(np.asarray(xs, dtype=np.float64).reshape(len(xs), width or 0),
                 lambda i: f"{rel}:{lines[i]}", "a feature value")
    lab = _float32(np.asarray(labels, dtype=np.float64).reshape(len(xs), -1),
                   lambda i: f"{rel}:{lines[i]}", "the label") if regression and with_label \
        else np.asarray(labels, dtype=np.str_)
    return _shard(x, lab, lines, loader, rel, loader["features"])


def _float32(a, where, what):
    """float64 array `a` as float32; a finite value beyond float32's range (it would become
    inf) is a DataError at `where(row)`."""
    big = np.flatnonzero((np.isfinite(a) & (np.abs(a) > np.finfo(np.float32).max))
                         .reshape(len(a), -1).any(axis=1))
    if len(big):
        i = int(big[0])
        v = a.reshape(len(a), -1)[i]
        v = v[np.isfinite(v) & (np.abs(v) > np.finfo(np.float32).max)][0]
        raise DataError(f"{what}: {v:g} is too large for float32", where(i), "rescale it")
    return a.astype(np.float32)


def _check_array(arr, rel, what, bad=None):
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} has dtype {arr.dtype}, expected numbers", rel)
    flat = arr.reshape(len(arr), -1).astype(np.float64)
    rows = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    for i in (rows if bad is not None else rows[:1]).tolist():
        _flag(DataError(f"{what} holds NaN or inf", f"{rel}[{i}]", "fix or remove the row"), bad)
    if arr.dtype.itemsize > 4 or arr.dtype.kind in "iu":
        _float32(flat, lambda i: f"{rel}[{i}]", what)


def _array_labels(y, rel, loader, bad=None):
    if loader["task"] == "classification":
        if y.ndim != 1:
            raise DataError(f"labels have shape {list(y.shape)}, expected one per row", rel)
        if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        return np.asarray([str(v) for v in y.tolist()], dtype=np.str_)
    _check_array(y, rel, "labels", bad)
    return y.astype(np.float32).reshape(len(y), -1)


def parse_npz(rel, data, loader, with_label=True, bad=None):
    """An .npz archive: features array `loader.features`, labels array `loader.label`."""
    try:
        if not data.startswith(b"PK"):
            raise ValueError("not an .npz archive (a zip of .npy arrays, as np.savez writes)")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise DataError(f"cannot read .npz: {e}", rel) from None
    if with_label and loader["features"] == loader["label"]:
        _label_not_feature(loader, [loader["features"]], rel, with_label)
    names = [loader["features"]] + ([loader["label"]] if with_label else [])
    for k in names:
        if k not in arrays:
            raise DataError(f"no array '{k}' in the archive (has: {', '.join(sorted(arrays))})", rel)
    x = arrays[loader["features"]]
    y = arrays[loader["label"]] if with_label else np.full(len(x), "")
    if len(x) != len(y):
        raise DataError(f"{len(x)} feature rows but {len(y)} labels", rel)
    _check_array(x, rel, f"array '{loader['features']}'", bad)
    x = x.astype(np.float32).reshape(len(x), -1) if x.ndim == 1 else x.astype(np.float32)
    labels = _array_labels(y, rel, loader, bad) if with_label else y.astype(np.str_)
    return _shard(x, labels, np.arange(len(x)), loader, rel, [loader["features"]])


def parse_npy(rel, data, loader, with_label=True, bad=None):
    """A 2-D .npy array [rows, columns]; column `loader.label_column` is the label."""
    try:
        if not data.startswith(b"\x93NUMPY"):
            raise ValueError("not an .npy file (as np.save writes)")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        raise DataError(f"cannot read .npy: {e}", rel) from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(f"expected a 2-D array with a label column, got shape {list(arr.shape)}", rel)
    _check_array(arr, rel, "array", bad)
    col = loader["label_column"] % arr.shape[1]
    x = np.delete(arr, col, axis=1).astype(np.float32)
    return _shard(x, _array_labels(arr[:, col], rel, loader, bad), np.arange(len(arr)), loader, rel,
                  [f"c{i}" for i in range(arr.shape[1]) if i != col])


def decode_image(rel, data, loader):
    """Image bytes -> float32 [channels, height, width] (resized, scaled)."""
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        why = "the file is empty" if not data else \
            "not an image file" if isinstance(e, UnidentifiedImageError) else str(e)
        raise DataError(f"cannot decode image: {why}", rel, "replace or remove the file") from None
    img = img.convert("L" if loader["channels"] == 1 else "RGB")
    if loader["size"]:
        h, w = loader["size"]
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) * loader["scale"]
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def parse_image(rel, data, loader, with_label=True, bad=None):
    """One image file = one row; its class is the name of its folder."""
    x = decode_image(rel, data, loader)[None]
    label = (os.path.basename(os.path.dirname(rel)) or ".") if with_label else ""
    return _shard(x, np.asarray([label], dtype=np.str_), [0], dict(loader, shape=None), rel,
                  ["pixels"])


FORMATS = {"jsonl": parse_jsonl, "npz": parse_npz, "npy": parse_npy,
           "images": parse_image}


def parse(rel, data, loader, with_label=True, bad=None):
    """Read one whole file of format loader.format into a Block (see the module docstring);
    tables (csv, parquet, feather) through tablefile.py."""
    if loader["format"] in ("csv", "parquet", "feather"):
        from s2build.data import tablefile
        return tablefile.parse_whole(rel, data, loader, with_label=with_label, bad=bad)
    return FORMATS[loader["format"]](rel, data, loader, with_label=with_label, bad=bad)
