"""Class names: from `loader.classes` or inferred from the labels, and each block's class names
mapped to their indices (one lookup table per block, not a lookup per row)."""

import numpy as np


def class_names(loader, label_vocabs):
    """Class names in index order, from `classes` (int or list) or inferred from the labels."""
    classes = loader["classes"]
    if isinstance(classes, int):
        return [str(i) for i in range(classes)]
    if isinstance(classes, list):
        return [str(c) for c in classes]
    seen = sorted(set().union(*label_vocabs)) if label_vocabs else []
    try:
        return sorted(seen, key=float)
    except ValueError:
        return seen


def class_lookup(vocab, classes):
    """int64 [len(vocab)]: each block class name's index in `classes` ('1.0' matches class '1'
    when class names are integers), -1 when absent."""
    pos = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(vocab), dtype=np.int64)
    for j, name in enumerate(vocab):
        k = pos.get(name)
        if k is None:
            try:
                v = float(name)
                k = pos.get(str(int(v))) if v.is_integer() else None
            except (ValueError, OverflowError):
                k = None
        out[j] = -1 if k is None else k
    return out
