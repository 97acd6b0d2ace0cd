"""The number columns of a parquet / Arrow IPC block, read again from the source (their
shards hold no numbers: shards.FROM_SOURCE)."""

import numpy as np

from s2build.data.arrowread import _floats, _open, _pa, select


def read_numbers(rel, data, loader, kinds, i):
    """float32 [rows, k]: the number columns (in feature order) of block i (a row group or a
    record batch) of a parquet / IPC file, converted as read_arrow converts them."""
    pa = _pa()
    fmt = loader["format"]
    f = _open(rel, data, fmt)
    names = list(f.schema_arrow.names if fmt == "parquet" else f.schema.names)
    _label, features = select(rel, names, loader, with_label=False, where=rel)
    numbers = [c for c in features if kinds[c] == "number"]
    if fmt == "parquet":
        table = f.read_row_group(i, columns=numbers)
    elif isinstance(f, pa.Table):
        table = f.select(numbers)
    else:
        table = pa.Table.from_batches([f.get_batch(i)]).select(numbers)
    where = lambda r: rel                                   # noqa: E731  (checked at parse)
    num = np.empty((len(numbers), table.num_rows), dtype=np.float32)
    for j, c in enumerate(numbers):
        with np.errstate(over="ignore"):
            num[j] = _floats(table.column(c), pa, c, rel, where)
    return np.ascontiguousarray(num.T)

