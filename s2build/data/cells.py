"""Cells and origins: what every reader shares. A cell's text becomes a float by the same rules
in every format, and a row's origin is written one way for users (`file:line`, `file[i]`,
`file`)."""

import math

from s2build.errors import DataError


def _flag(err, bad):
    """Raise `err`, or (lint's collecting mode) append it to `bad` and carry on."""
    if bad is None:
        raise err
    bad.append(err)


def number(text, col, rel, line, bad=None):
    """A cell's text -> float. Rejects what Python's float() accepts but a data file should
    not mean: underscores (`1_0`), and NaN/inf (see `bad`)."""
    try:
        if "_" in text:
            raise ValueError(text)
        v = float(text)
    except ValueError:
        shown = text if len(text) < 30 else text[:27] + "..."
        raise DataError(f"column '{col}': {shown!r} is not a number", f"{rel}:{line}") from None
    if not math.isfinite(v):
        _flag(DataError(f"column '{col}' is {text.strip()}", f"{rel}:{line}",
                        "fix or remove the row"), bad)
    return v


def origin(rel, line, fmt):
    """Where a row comes from, as users see it."""
    if fmt in ("csv", "jsonl"):
        return f"{rel}:{line}"
    if fmt == "images":
        return rel
    return f"{rel}[{line}]"
