"""A table's header: its column names (CSV header lines), the label and feature columns chosen
from them, and the check that every source file has the first one's columns. Errors are
DataErrors at the header (`file:1`) with the fix: a close column name, the delimiter a
one-column header holds, `loader.features`."""

import csv
import difflib
import io

from s2build.errors import DataError


def _close(name, names):
    close = difflib.get_close_matches(name, names, n=1)
    return f"did you mean '{close[0]}'?" if close else "columns: " + ", ".join(names)


def header_names(rel, header, loader):
    """Column names of a CSV header line (bytes), stripped; duplicates are an error."""
    if not header.strip():
        raise DataError("empty file: expected a header row", rel)
    try:
        text = header.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", rel) from None
    try:
        names = next(csv.reader(io.StringIO(text, newline=""),
                                delimiter=loader.get("delimiter") or ","))
    except (csv.Error, StopIteration) as e:
        raise DataError(f"malformed CSV: {e}", f"{rel}:1",
                        "a header cell over 128 KiB: check the delimiter and the quotes"
                        if "field limit" in str(e) else None) from None
    names = [h.strip() for h in names]
    seen = set()
    for h in names:
        if h in seen:
            raise DataError(f"duplicate column '{h}' in the header", f"{rel}:1",
                            "give every column its own name")
        seen.add(h)
    return names


def _delimiter_hint(names, loader):
    """A fix when the header reads as one column holding another common delimiter."""
    if len(names) == 1:
        for d in (",", ";", "\t", "|"):
            if d in names[0] and d != (loader.get("delimiter") or ","):
                return f"the header is one column '{names[0]}': set loader.delimiter: " \
                    + (repr(d) if d != "\t" else '"\\t"')
    return None


def select(rel, names, loader, with_label=True, where=None):
    """(label or None, feature names) of a table with columns `names`, checked."""
    where = where or f"{rel}:1"
    label = loader.get("label") if with_label else None
    features = loader.get("features") or [h for h in names if h != loader.get("label")]
    if with_label and label is not None and label in features:
        raise DataError(f"'{label}' is both the label and a feature", where,
                        f"remove '{label}' from loader.features in s2build.yaml")
    for col in ([label] if label is not None else []) + list(features):
        if col not in names:
            raise DataError(f"no column '{col}' in the header", where,
                            _delimiter_hint(names, loader) or _close(col, names))
    for col in loader.get("columns") or {}:
        if col not in names:
            raise DataError(f"loader.columns names '{col}', which is not a column", where,
                            _close(col, names))
    return label, list(features)


def same_columns(rel, features, kinds, label, where):
    """A file without the first file's feature columns (the dataset uses its kinds) is an error
    at its header, never a KeyError or a shifted column."""
    known = [k for k in kinds if k != label]
    extra = [f for f in features if f not in kinds]
    missing = [k for k in known if k not in features]
    if extra or missing:
        what = "; ".join([f"{w} " + ", ".join(map(repr, c)) for w, c in
                          (("extra", extra), ("missing", missing)) if c])
        raise DataError(f"the feature columns differ from the first source file's ({what})",
                        where, "give every source file the same columns, or list the ones to "
                        "use in loader.features")
