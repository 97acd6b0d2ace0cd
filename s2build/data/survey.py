"""What a data folder holds, for `s2build init`: the format, the source glob, the label and the
task, each with the reason it was chosen (scaffold.py writes the reasons as yaml comments).

The heuristic, in order:
- image class folders: subfolders that hold PNG/JPEG files -> `images`, one class per folder;
- otherwise the most common table or jsonl extension (.csv, .parquet, .jsonl) among the files;
  its columns (fields) come from the first file;
- the label is `--label` when given, else the first column named label, class, target,
  species, y (any case), else the last column;
- the task: a label whose values (in the first file, up to 10,000 rows) are strings of 0/1 of
  one length > 1 is multilabel; at most 20 distinct values, all whole numbers or text, is
  classification; anything else is regression.

Standard library only, but pyarrow (parquet) and Pillow (image sizes) are imported lazily.
"""

import csv
import json
import os
from collections import Counter

LABEL_NAMES = ("label", "class", "target", "species", "y")
MAX_CLASSES = 20
SAMPLE_ROWS = 10_000
IMAGE_EXT = (".png", ".jpg", ".jpeg")
TABLE_EXT = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
SKIP = (".s2build", "build", "__pycache__", ".git")


class Survey:
    """What init proposes. `why` is a list of sentences behind the choices."""

    def __init__(self, fmt, sources, label=None, features=None, task="classification",
                 text=None, size=None, rows=0, classes=(), why=()):
        self.fmt, self.sources, self.label, self.features = fmt, sources, label, features
        self.task, self.text, self.size, self.rows = task, text, size, rows
        self.classes, self.why = list(classes), list(why)


def _files(folder):
    for d, dirs, names in os.walk(folder):
        dirs[:] = sorted(x for x in dirs if x not in SKIP and not x.startswith("."))
        for n in sorted(names):
            yield os.path.relpath(os.path.join(d, n), folder)


def survey(folder, label=None):
    """The Survey of `folder`; UsageError when nothing s2build reads is there."""
    from s2build.errors import UsageError
    files = list(_files(folder))
    images = [f for f in files if f.lower().endswith(IMAGE_EXT) and os.path.dirname(f)]
    if images:
        return _images(folder, images)
    by_ext = Counter(os.path.splitext(f)[1].lower() for f in files
                     if os.path.splitext(f)[1].lower() in TABLE_EXT)
    if not by_ext:
        raise UsageError(f"init: no data in {folder}", None,
                         "put CSV, parquet or jsonl files, or one folder of images per class, "
                         "in the folder (or a data/ folder inside it)")
    ext = by_ext.most_common(1)[0][0]
    chosen = [f for f in files if f.lower().endswith(ext)]
    return _table(folder, chosen, TABLE_EXT[ext], label)


def _glob(files, ext):
    """One glob that matches `files` (same folder: `*EXT`, or every one named)."""
    dirs = sorted({os.path.dirname(f) for f in files})
    if len(dirs) == 1:
        return [os.path.join(dirs[0], "*" + ext) if len(files) > 1 else files[0]]
    return [os.path.join(d, "*" + ext) for d in dirs]


def _images(folder, images):
    parents = sorted({os.path.dirname(f) for f in images})
    top = sorted({os.path.dirname(p) for p in parents})
    exts = sorted({os.path.splitext(f)[1].lower() for f in images})
    base = top[0]
    sources = [os.path.join(base, "*", "*" + e) for e in exts]
    classes = sorted(os.path.basename(p) for p in parents if os.path.dirname(p) == base)
    why = [f"{len(classes)} folders of images under {base or '.'}/: one class per folder "
           "(its name)"]
    size = _image_size(folder, [f for f in images if os.path.dirname(os.path.dirname(f)) == base])
    if size:
        why.append(f"images differ in size: resized to the first one's, {size[0]}x{size[1]}")
    n = sum(1 for f in images if os.path.dirname(os.path.dirname(f)) == base)
    return Survey("images", sources, task="classification", size=size, rows=n, classes=classes,
                  why=why)


def _image_size(folder, images):
    """[height, width] of the first image when the first 50 differ in size, else None."""
    try:
        from PIL import Image
    except ImportError:
        return None
    sizes = []
    for f in images[:50]:
        with Image.open(os.path.join(folder, f)) as im:
            sizes.append((im.height, im.width))
    first = sizes[0]
    h, w = first if max(first) <= 64 else (32, 32)
    return [h, w] if len(set(sizes)) > 1 or max(first) > 64 else None


def _columns(path, fmt):
    """(column names, {column: sample values}) of the first file."""
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            values = {c: [] for c in header}
            for i, row in enumerate(rows):
                if i >= SAMPLE_ROWS:
                    break
                for c, v in zip(header, row):
                    values[c].append(v.strip())
        return header, values
    if fmt == "parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(path).slice(0, SAMPLE_ROWS)
        return table.column_names, {c: table.column(c).to_pylist() for c in table.column_names}
    header, values = [], {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            if i >= SAMPLE_ROWS:
                break
            if not line.strip():
                continue
            obj = json.loads(line)
            for k, v in obj.items():
                if k not in values:
                    header.append(k)
                    values[k] = []
                values[k].append(v)
    return header, values


def _number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _task(values):
    """(task, why) from the label's sample values."""
    vals = [v for v in values if v not in (None, "", "NA")]
    if vals and all(isinstance(v, str) and len(v) > 1 and set(v) <= {"0", "1"} for v in vals) \
            and len({len(v) for v in vals}) == 1:
        return "multilabel", f"its values are strings of {len(vals[0])} 0/1 digits: multilabel"
    distinct = {str(v) for v in vals}
    nums = [_number(v) for v in vals]
    whole_or_text = all(n is None or float(n).is_integer() for n in nums)
    if len(distinct) <= MAX_CLASSES and whole_or_text:
        return "classification", (f"{len(distinct)} distinct values (at most {MAX_CLASSES}, "
                                  "whole numbers or text): classification")
    return "regression", (f"{len(distinct)} distinct numeric values: regression" if all(
        n is not None for n in nums) else "many distinct values: regression")


def _table(folder, files, fmt, label):
    from s2build.errors import UsageError
    ext = os.path.splitext(files[0])[1]
    header, values = _columns(os.path.join(folder, files[0]), fmt)
    if len(header) < 2:
        raise UsageError(f"init: {files[0]} has {len(header)} column(s); need a label and at "
                         "least one feature", None, "check the delimiter or the header line")
    why = [f"{len(files)} {fmt} file(s); columns from {files[0]}"]
    if label is not None:
        if label not in header:
            raise UsageError(f"init: --label {label}: no such column in {files[0]}", None,
                             "columns: " + ", ".join(header))
        why.append(f"label '{label}': given with --label")
    else:
        named = [c for c in header if c.lower() in LABEL_NAMES]
        label = named[0] if named else header[-1]
        why.append(f"label '{label}': " + ("its name says so" if named else "the last column")
                   + " (change it with --label)")
    task, reason = _task(values[label])
    why.append(f"task from '{label}': {reason}")
    features = [c for c in header if c != label]
    text = None
    if fmt == "jsonl":
        strings = [c for c in features if values[c] and isinstance(values[c][0], str)]
        if strings:
            digits = all(isinstance(v, str) and v.isdigit() for c in strings for v in values[c])
            text = "digits" if digits else "hash"
            why.append(f"text fields {', '.join(strings)}: " + (
                "digits, one value per character" if digits else "hashed bag of words"))
    rows = len(values[label]) * len(files)     # about: the first file times the files
    return Survey(fmt, _glob(files, ext), label=label, features=features, task=task, text=text,
                  rows=rows, why=why)
