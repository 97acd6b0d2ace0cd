"""`s2build predict`: run a target's ONNX artifact in onnxruntime on rows of a file.

Input files: `.csv` with a header naming the feature columns (other columns are ignored), or
`.json` / `.jsonl` holding objects keyed by feature name (or lists in feature order). A file in
the target's own format is read by the build's reader (data/readers.py: the loader's delimiter,
NaN/inf rejected at `file:line`). The artifact's own metadata (features, classes, task, loader)
drives the mapping, so predict always agrees with what was built. Each prediction keeps its
row's origin (`file:line`).
"""

import json
import os

from s2build.errors import DataError, UsageError


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {os.path.relpath(path)}: {e.strerror}") from None


def _by_reader(path, loader):
    """[(origin, values)] of a file read by the target's own reader (data/readers.py): the
    loader's delimiter and features, NaN/inf rejected at `file:line`; no label needed."""
    from s2build.data import readers
    rel = os.path.relpath(path)
    block = readers.parse(rel, _read_bytes(path), dict(loader, shape=None), with_label=False)
    return [(readers.origin(rel, line, loader["format"]), x)
            for line, x in zip(block.lines.tolist(), block.x)]


def _table_rows(art, path):
    """(origins, RawTable) of `path` for a table artifact, which takes raw columns:
    a file of the target's table format (or any .csv/.parquet/.feather) by the build's reader;
    .json/.jsonl objects keyed by column (strings for categories, null or "NA" for missing)."""
    from s2build.data.table import NULL_TOKENS
    from s2build.data import readers, tablefile
    loader = json.loads(art.meta.get("s2build.loader", "{}"))
    rel = os.path.relpath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".feather": "feather",
           ".arrow": "feather"}.get(ext)
    if fmt is not None:
        table_loader = dict(loader, format=fmt, features=art.features, label=None,
                            columns=dict(zip(art.features, art.json("s2build.columns", {}).values()))
                            if art.json("s2build.columns") else loader.get("columns"))
        if fmt != "csv":
            table_loader.pop("delimiter", None)
        block = readers.parse(rel, _read_bytes(path), table_loader, with_label=False)
        origins = [readers.origin(rel, line, fmt) for line in block.lines.tolist()]
        return origins, tablefile.raw_of(block)
    if ext not in (".json", ".jsonl"):
        raise UsageError(f"{rel}: expected a .csv, .parquet, .feather, .json or .jsonl file")
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", rel) from None
    try:
        if ext == ".jsonl":
            items = [(f"{rel}:{i}", json.loads(line)) for i, line in readers.text_lines(text)
                     if line.strip()]
        else:
            data = json.loads(text)
            items = [(f"{rel}[{n}]", d) for n, d in
                     enumerate(data if isinstance(data, list) else [data])]
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", f"{rel}:{e.lineno}") from None
    kinds = art.prep.kinds
    for n, (where, item) in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"expected an object with keys {art.features}", where)
        missing = [c for c in art.features if c not in item]
        if missing:
            raise DataError(f"missing column '{missing[0]}' (give null for a missing value)",
                            where)
        for c, kind in zip(art.features, kinds):
            v = item[c]
            if kind == "number" and v is not None and not (isinstance(v, str) and
                                                          v.strip() in NULL_TOKENS):
                line = where.rpartition(":")[2] if ext == ".jsonl" else n
                _num(v, c, rel, line)      # not a number, or NaN/inf: an error at its row
    try:
        raw = art.prep.raw_from_values([item for _w, item in items])
    except ValueError as e:
        raise DataError(str(e), rel) from None
    return [w for w, _i in items], raw


def _images(path, loader):
    """Image files (a file or a folder of them), decoded as the target's loader does."""
    from s2build.data import readers
    if os.path.isdir(path):
        files = sorted(os.path.join(d, f) for d, _s, fs in os.walk(path) for f in fs
                       if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif")))
    else:
        files = [path]
    return [(os.path.relpath(f), readers.decode_image(os.path.relpath(f), _read_bytes(f), loader))
            for f in files]


def _rows_from_file(path, features):
    """A file not in the target's own format: .csv with the default delimiter (through the csv
    reader), .jsonl or .json objects keyed by feature name (or lists in feature order)."""
    rel = os.path.relpath(path)
    if path.endswith(".csv"):
        return _by_reader(path, {"format": "csv", "delimiter": ",", "features": features,
                                 "label": None, "task": "classification"})
    from s2build.data import readers
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", rel) from None
    try:
        if path.endswith(".jsonl"):
            items = [(i, json.loads(line)) for i, line in readers.text_lines(text) if line.strip()]
        elif path.endswith(".json"):
            data = json.loads(text)
            items = [(None, d) for d in (data if isinstance(data, list) else [data])]
        else:
            raise UsageError(f"{rel}: expected a .csv, .json or .jsonl file")
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", f"{rel}:{e.lineno}") from None
    rows = []
    for n, (line, item) in enumerate(items):
        where = f"{rel}:{line}" if line else f"{rel}[{n}]"
        if isinstance(item, dict):
            if any(c not in item for c in features):
                c = next(c for c in features if c not in item)
                raise DataError(f"missing feature '{c}'", where)
            vals = [_num(item[c], c, rel, line or n) for c in features]
        elif isinstance(item, list) and len(item) == len(features):
            vals = [_num(v, f"#{j}", rel, line or n) for j, v in enumerate(item)]
        else:
            raise DataError(f"expected an object with keys {features} or a list of "
                            f"{len(features)} numbers", where)
        rows.append((where, vals))
    return rows


def _num(v, col, rel, line):
    """A JSON value -> float, with the readers' rules (no NaN/inf, no `1_0`)."""
    from s2build.data import readers
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise DataError(f"column '{col}': {v!r} is not a number", f"{rel}:{line}")
    return readers.number(v if isinstance(v, str) else str(v), col, rel, line)


def _rows(meta, path):
    """[(origin, values)] of `path`, decoded as the artifact with metadata `meta` expects: by
    the target's reader when `path` is in the target's format (.csv for csv, any file for
    jsonl), else by `_rows_from_file`."""
    loader = json.loads(meta.get("s2build.loader", "{}"))
    features = json.loads(meta["s2build.features"])
    fmt = loader.get("format")
    if fmt == "images":
        return _images(path, loader)
    if fmt == "jsonl":
        return _by_reader(path, loader)
    if fmt == "csv" and path.endswith(".csv"):
        return _by_reader(path, dict(loader, features=features))
    return _rows_from_file(path, features)


def _open(target):
    """The target's built artifact (compile/artifact.py), or a UsageError when there is none."""
    from s2build.compile.artifact import Artifact, ArtifactError
    try:
        return Artifact(target.output)
    except FileNotFoundError:
        raise UsageError(f"{target.config['output']} does not exist",
                         hint=f"run: s2build build {target.name}") from None
    except (OSError, ArtifactError) as e:
        raise UsageError(f"{target.config['output']} cannot be read: {e}",
                         hint=f"run: s2build build {target.name}") from None


def rows_for_target(target, path):
    """[(origin, values)] of the inputs in `path`, for the target's built artifact."""
    return _rows(_open(target).meta, path)


def predict(target, path):
    """[{origin, prediction, probability?, probabilities?}] for each row of `path`."""
    import numpy as np
    art = _open(target)
    meta, classes, shape = art.meta, art.classes, art.json("s2build.input_shape")
    if art.prep is not None:
        origins, x = _table_rows(art, path)
        rows = [(o, None) for o in origins]
    else:
        rows = _rows(meta, path)
        x = np.asarray([np.ravel(v) for _o, v in rows], dtype=np.float32)
        if shape:
            x = x.reshape([len(x)] + shape)
    if not rows:
        return []
    outputs = art.run(x)
    results = []
    task = meta.get("s2build.task")
    if task == "multilabel":
        for (origin, _), p in zip(rows, outputs[1]):
            bits = (np.ravel(p) > 0.5).astype(int)
            results.append({"origin": origin, "prediction": "".join(map(str, bits)),
                            "probabilities": [float(q) for q in np.ravel(p)]})
    elif task == "classification":
        probs = outputs[1]
        for (origin, _), p in zip(rows, probs):
            k = int(p.argmax())
            results.append({"origin": origin, "prediction": _typed(classes[k]),
                            "probability": float(p[k]),
                            "probabilities": {c: float(q) for c, q in zip(classes, p)}})
    else:
        for (origin, _), v in zip(rows, outputs[0]):
            vals = [float(a) for a in np.ravel(v)]
            results.append({"origin": origin, "prediction": vals[0] if len(vals) == 1 else vals})
    return results


def _typed(name):
    """A class name as the data wrote it: `3` for an integer label column, else the string
    (class names are kept as strings; JSON consumers should not get `"3"` for a digit)."""
    s = str(name)
    return int(s) if s.lstrip("-").isdigit() and str(int(s)) == s else s
