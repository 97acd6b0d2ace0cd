"""`s2build predict`: run a target's ONNX artifact in onnxruntime on rows of a file.

Input files: `.csv` with a header naming the feature columns (other columns are ignored), or
`.json` / `.jsonl` holding objects keyed by feature name (or lists in feature order). The
artifact's own metadata (features, classes, task) drives the mapping, so predict always agrees
with what was built. Each prediction keeps its row's origin (`file:line`).
"""

import csv
import json
import os

from s2build.errors import DataError, UsageError


def _rows_from_file(path, features):
    rel = os.path.relpath(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {rel}: {e.strerror}") from None
    rows = []
    if path.endswith(".csv"):
        reader = csv.DictReader(text.splitlines())
        missing = [c for c in features if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"no column '{missing[0]}' in the header", f"{rel}:1")
        for i, r in enumerate(reader, start=2):
            rows.append((f"{rel}:{i}", [_num(r[c], c, rel, i) for c in features]))
        return rows
    if path.endswith(".jsonl"):
        items = [(i, json.loads(line)) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    elif path.endswith(".json"):
        data = json.loads(text)
        items = [(None, d) for d in (data if isinstance(data, list) else [data])]
    else:
        raise UsageError(f"{rel}: expected a .csv, .json or .jsonl file")
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


def _rows_by_loader(path, loader):
    """Rows decoded as the target's loader does: image files (a file or a folder of them), or
    jsonl lines with the loader's feature fields (the label field is not needed)."""
    from s2build.data import dataset as data
    rel = os.path.relpath(path)
    if loader["format"] == "images":
        if os.path.isdir(path):
            files = sorted(os.path.join(d, f) for d, _s, fs in os.walk(path) for f in fs
                           if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif")))
        else:
            files = [path]
        rows = []
        for f in files:
            with open(f, "rb") as fh:
                rows.append((os.path.relpath(f), data.decode_image(os.path.relpath(f), fh.read(),
                                                                   loader)))
        return rows
    with open(path, "rb") as f:
        shard, _features = data.parse_jsonl(rel, f.read(), dict(loader, shape=None),
                                            with_label=False)
    return [(data.origin(rel, line, "jsonl"), x) for line, x in zip(shard.lines.tolist(), shard.x)]


def _rows(meta, path):
    """[(origin, values)] of `path`, decoded as the artifact with metadata `meta` expects."""
    loader = json.loads(meta.get("s2build.loader", "{}"))
    if loader.get("format") in ("images", "jsonl"):
        return _rows_by_loader(path, loader)
    return _rows_from_file(path, json.loads(meta["s2build.features"]))


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


def _num(v, col, rel, line):
    try:
        return float(v)
    except (TypeError, ValueError):
        raise DataError(f"column '{col}': {v!r} is not a number", f"{rel}:{line}") from None


def predict(target, path):
    """[{origin, prediction, probability?, probabilities?}] for each row of `path`."""
    import numpy as np
    art = _open(target)
    meta, classes, shape = art.meta, art.classes, art.json("s2build.input_shape")
    rows = _rows(meta, path)
    if not rows:
        return []
    x = np.asarray([np.ravel(v) for _o, v in rows], dtype=np.float32)
    if shape:
        x = x.reshape([len(x)] + shape)
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
            results.append({"origin": origin, "prediction": classes[k],
                            "probability": float(p[k]),
                            "probabilities": {c: float(q) for c, q in zip(classes, p)}})
    else:
        for (origin, _), v in zip(rows, outputs[0]):
            vals = [float(a) for a in np.ravel(v)]
            results.append({"origin": origin, "prediction": vals[0] if len(vals) == 1 else vals})
    return results
