"""Table readers through pyarrow (multithreaded C++): CSV blocks, parquet row groups, Arrow IPC
record batches -> `Columns` (the raw feature columns of a block; see tablefile.py).

CSV: a block's bytes are parsed with the header line prepended, every feature and label column
with an explicit type (number -> float64, category and classification labels -> string), nulls
= NULL_TOKENS. Line numbers come from csvblocks.py, so quoted newlines give the right
`file:line`. When pyarrow refuses a block (a short row, a cell that is not a number), the block
is scanned row by row in Python to report the first bad row at its `file:line` and column, as
the Python reader did. Parquet and Arrow IPC: nulls and NaN are missing; integer, float and
decimal columns are numbers, every other type a category (by its text). Cells are stripped of
surrounding whitespace; a stripped NULL_TOKEN is missing. +-inf in a number column is a
DataError (in lint's collecting mode, appended to `bad` with the row kept).
"""

import csv
import io
from dataclasses import dataclass

import numpy as np

from s2build.data import arrowbuf
from s2build.data.header import header_names, same_columns, select  # noqa: F401 (re-exported)
from s2build.data.table import NULL_TOKENS
from s2build.errors import DataError


@dataclass
class Columns:
    names: list
    kinds: list
    num: "np.ndarray"       # float32 [n, k] number columns, NaN = missing
    codes: "np.ndarray"     # int32 [n, c] category columns, -1 = missing
    vocab: list             # per category column, its sorted values in this block
    labels: object          # (codes int32 [n], vocab) | float32 [n, 1] | None
    lines: "np.ndarray"     # int64 [n]


_POOL_SET = False


def _pa():
    global _POOL_SET
    import pyarrow
    import pyarrow.compute
    import pyarrow.csv      # noqa: F401  (submodules used below)
    if not _POOL_SET:       # give freed buffers back: one block is parsed at a time, and an
        _POOL_SET = True    # allocator's cached pages would count as the build's memory
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())    # malloc: trimmed by
                                                                  # heap.trim
    return pyarrow


def _kind_of(t, pa):
    return "number" if (pa.types.is_integer(t) or pa.types.is_floating(t) or
                        pa.types.is_decimal(t) or pa.types.is_null(t)) else "category"


def infer_kinds(rel, header, first_block, loader):
    """{feature column: kind}: loader.columns, else pyarrow's inference over the first block."""
    pa = _pa()
    names = header_names(rel, header, loader)
    _label, features = select(rel, names, loader, with_label=False)
    declared = loader.get("columns") or {}
    todo = [f for f in features if f not in declared]
    kinds = {f: declared[f] for f in features if f in declared}
    if todo:
        try:
            table = pa.csv.read_csv(io.BytesIO(header + first_block), **_options(
                loader, {c: None for c in todo}, infer=True))
            for f in todo:
                kinds[f] = _kind_of(table.schema.field(f).type, pa)
                if kinds[f] == "category" and _mostly_numbers(table.column(f), pa):
                    kinds[f] = "number"     # a typo in a number column: reported, not inferred
        except pa.lib.ArrowInvalid:
            for f in todo:             # the block's error is reported when it is parsed
                kinds[f] = "number"
    return kinds


NUMBER_SHARE = 0.9     # a column whose cells are at least this share numbers is a number column
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity)$"


def _mostly_numbers(col, pa):
    """Whether most non-missing cells of a text column look like numbers: then the others are
    typos to report at their line, not a reason to make the column a category."""
    cells = pa.compute.drop_null(_strings(col, pa))
    if not len(cells):
        return False
    hits = pa.compute.sum(pa.compute.match_substring_regex(cells, _NUMBER, ignore_case=True))
    return (hits.as_py() or 0) >= NUMBER_SHARE * len(cells)


def _options(loader, types, infer=False, quoted=True):
    """pyarrow's CSV options. One thread per call: blocks are parsed by several threads of
    ours already (dataset.PARSE_THREADS), and nested threads made it 30% slower on 2 cores.
    `quoted=False` (the bytes hold no quote character, so no field can hold a newline) takes
    pyarrow's faster parser."""
    pa = _pa()
    return dict(
        read_options=pa.csv.ReadOptions(use_threads=False, block_size=1 << 20),
        parse_options=pa.csv.ParseOptions(delimiter=loader.get("delimiter") or ",",
                                          newlines_in_values=quoted),
        convert_options=pa.csv.ConvertOptions(
            column_types={} if infer else types, include_columns=list(types),
            null_values=list(NULL_TOKENS), strings_can_be_null=True,
            quoted_strings_can_be_null=True))


def read_csv_block(rel, header, block, lines, loader, kinds, with_label=True, bad=None):
    """Columns of one CSV block (`block` bytes, data records only; `lines` their lines)."""
    pa = _pa()
    names = header_names(rel, header, loader)
    label, features = select(rel, names, loader, with_label)
    same_columns(rel, features, kinds, label, f"{rel}:1")
    regression = loader["task"] != "classification"
    types = {f: pa.float64() if kinds[f] == "number" else pa.string() for f in features}
    if label is not None:
        types[label] = pa.float64() if regression else pa.string()
    try:
        table = pa.csv.read_csv(io.BytesIO(header + block),
                                **_options(loader, types, quoted=b'"' in header or b'"' in block))
    except (pa.lib.ArrowInvalid, UnicodeDecodeError) as e:
        _locate(rel, header, block, lines, loader, names, label, features, kinds, regression)
        raise DataError(f"malformed CSV: {str(e).splitlines()[0]}",
                        f"{rel}:{int(lines[0]) if len(lines) else 1}") from None
    if table.num_rows != len(lines):
        _locate(rel, header, block, lines, loader, names, label, features, kinds, regression)
        raise DataError(f"malformed CSV: {table.num_rows} rows read where {len(lines)} lines "
                        "start a record", f"{rel}:{int(lines[0]) if len(lines) else 1}",
                        "check the quoting of this block's fields")
    return columns_of(rel, table, label, features, kinds, regression, lines, bad)


def _locate(rel, header, block, lines, loader, names, label, features, kinds, regression):
    """Raise the DataError of the first bad row of a block pyarrow refused (Python scan)."""
    from s2build.data.cells import number
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start} of the block at line "
                        f"{int(lines[0])})", f"{rel}:{int(lines[0])}") from None
    index = {h: i for i, h in enumerate(names)}
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # pyarrow has no limit
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=loader.get("delimiter") or ",")
    for k, line in enumerate(lines.tolist()):
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"malformed CSV: {e}", f"{rel}:{line}") from None
        while not row or (len(row) == 1 and not row[0].strip()):
            row = next(reader, None)
            if row is None:
                return
        if len(row) != len(names):
            raise DataError(f"expected {len(names)} fields (as in the header), got {len(row)}",
                            f"{rel}:{line}",
                            "fix the row or quote fields that contain the delimiter")
        for f in features:
            cell = row[index[f]].strip()
            if kinds[f] == "number" and cell not in NULL_TOKENS:
                try:
                    number(cell, f, rel, line, bad=[])
                except DataError as e:
                    raise DataError(e.message, e.location,
                                    "fix the cell, or declare the column a category: "
                                    f"loader.columns: {{{f}: category}}") from None
        if label is not None and regression:
            try:
                number(row[index[label]].strip(), label, rel, line, bad=[])
            except DataError as e:
                raise DataError(e.message, e.location, "a regression label is a number: fix "
                                "the cell, or set loader.task: classification") from None


def _strings(col, pa):
    """A column as stripped strings with NULL_TOKENS (after stripping) as nulls."""
    pc = pa.compute
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        else:
            col = pc.cast(col, pa.string())
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    col = pc.utf8_trim_whitespace(col)
    nulls = pc.is_in(col, value_set=pc.cast(arrowbuf.string_array(NULL_TOKENS, pa), col.type))
    return pc.if_else(nulls, pa.nulls(len(col), col.type), col)


def _encode(col, pa):
    """(int32 codes [n] with -1 missing, sorted vocabulary) of a string column."""
    enc = pa.compute.dictionary_encode(col).combine_chunks() if hasattr(col, "chunks") \
        else pa.compute.dictionary_encode(col)
    values = enc.dictionary.to_pylist()
    idx = arrowbuf.numpy(pa.compute.cast(enc.indices, pa.int64()), np.int64, -1, pa)
    order = np.argsort(np.asarray(values, dtype=object).astype(str), kind="stable") \
        if values else np.zeros(0, np.int64)
    rank = np.empty(len(values), np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    codes = np.where(idx < 0, -1, rank[np.maximum(idx, 0)] if len(values) else -1)
    return codes.astype(np.int32), [values[i] for i in order.tolist()]


def _floats(col, pa, name, rel, where):
    """A number column as float32 (when stored so: exact) or float64 numpy, NaN = missing."""
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or
            pa.types.is_null(col.type) or pa.types.is_decimal(col.type) or
            pa.types.is_boolean(col.type)):
        try:
            col = pa.compute.cast(_strings(col, pa), pa.float64())
        except pa.lib.ArrowInvalid as e:
            raise DataError(f"column '{name}' is not a number column ({e})", rel,
                            f"declare it a category: loader.columns: {{{name}: category}}") \
                from None
    if pa.types.is_float32(col.type):
        return arrowbuf.numpy(col, np.float32, np.nan, pa)
    return arrowbuf.numpy(pa.compute.cast(col, pa.float64()), np.float64, np.nan, pa)


def columns_of(rel, table, label, features, kinds, regression, lines, bad=None, fmt="csv"):
    """Columns of a pyarrow Table; `lines` number its rows in errors."""
    from s2build.data.cells import origin
    pa = _pa()
    n = table.num_rows
    where = lambda i: origin(rel, int(lines[i]), fmt)        # noqa: E731
    numbers = [f for f in features if kinds[f] == "number"]
    cats = [f for f in features if kinds[f] != "number"]
    num = np.empty((len(numbers), n), dtype=np.float32)   # column-major, transposed once
    for j, f in enumerate(numbers):
        v = _floats(table.column(f), pa, f, rel, where)
        with np.errstate(over="ignore"):
            num[j] = v
        if not np.isinf(num[j]).any():          # one scan in the common case
            continue
        inf = np.flatnonzero(np.isinf(v))
        for i in (inf if bad is not None else inf[:1]).tolist():
            err = DataError(f"column '{f}' is {'inf' if v[i] > 0 else '-inf'}", where(i),
                            "fix or remove the row")
            if bad is None:
                raise err
            bad.append(err)
        big = np.flatnonzero(np.isinf(num[j]) & ~np.isinf(v))
        if len(big):
            raise DataError(f"column '{f}': {v[big[0]]:g} is too large for float32", where(big[0]),
                            "rescale the column")
    codes = np.empty((n, len(cats)), dtype=np.int32)
    vocab = []
    for j, f in enumerate(cats):
        codes[:, j], voc = _encode(_strings(table.column(f), pa), pa)
        vocab.append(voc)
    labels = None
    if label is not None:
        col = table.column(label)
        if regression:
            y = _floats(col, pa, label, rel, where)
            gone = np.flatnonzero(~np.isfinite(y))
            if len(gone):
                i = int(gone[0])
                what = "empty" if np.isnan(y[i]) else "not finite"
                err = DataError(f"label column '{label}' is {what}", where(i),
                                "give every row a value")
                if bad is None or np.isnan(y[i]):
                    raise err
                bad.append(err)
            labels = y.astype(np.float32).reshape(n, 1)
        else:
            lab, voc = _encode(_strings(col, pa), pa)
            if (lab < 0).any():
                raise DataError(f"label column '{label}' is empty", where(int(np.argmax(lab < 0))))
            labels = (lab, [str(v) for v in voc])
    return Columns(names=list(features), kinds=[kinds[f] for f in features],
                   num=np.ascontiguousarray(num.T),
                   codes=codes, vocab=[[str(v) for v in voc] for voc in vocab], labels=labels,
                   lines=np.asarray(lines, dtype=np.int64))


# --- parquet and Arrow IPC ----------------------------------------------------------------

def _open(rel, data, fmt):
    pa = _pa()
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            return pq.ParquetFile(io.BytesIO(data))
        import pyarrow.ipc as ipc
        try:
            return ipc.open_file(io.BytesIO(data))
        except pa.lib.ArrowInvalid:
            return ipc.open_stream(io.BytesIO(data)).read_all()
    except Exception as e:          # not a parquet / IPC file, truncated footer ...
        raise DataError(f"cannot read {fmt}: {str(e).splitlines()[0]}", rel,
                        "is this file really " + fmt + "?") from None


def arrow_layout(rel, data, loader):
    """(column names, {feature: kind}, [rows per block]) of a parquet or Arrow IPC file."""
    pa = _pa()
    f = _open(rel, data, loader["format"])
    if loader["format"] == "parquet":
        schema = f.schema_arrow
        sizes = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
    elif isinstance(f, pa.Table):
        schema, sizes = f.schema, [f.num_rows]
    else:
        schema = f.schema
        sizes = [f.get_batch(i).num_rows for i in range(f.num_record_batches)]
    names = list(schema.names)
    _label, features = select(rel, names, loader, with_label=False, where=rel)
    declared = loader.get("columns") or {}
    kinds = {c: declared.get(c) or _kind_of(schema.field(c).type, pa) for c in features}
    return names, kinds, sizes


def read_arrow(rel, data, loader, kinds, which, with_label=True, bad=None):
    """{i: Columns} of blocks `which` (row groups or record batches) of a parquet / IPC file."""
    pa = _pa()
    fmt = loader["format"]
    f = _open(rel, data, fmt)
    names = list(f.schema_arrow.names if fmt == "parquet" else f.schema.names)
    label, features = select(rel, names, loader, with_label, where=rel)
    same_columns(rel, features, kinds, label, rel)
    regression = loader["task"] != "classification"
    cols = features + ([label] if label is not None else [])
    if fmt == "parquet":
        sizes = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
    elif isinstance(f, pa.Table):
        sizes = [f.num_rows]
    else:
        sizes = [f.get_batch(i).num_rows for i in range(f.num_record_batches)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = {}
    for i in which:
        if fmt == "parquet":
            table = f.read_row_group(i, columns=cols)
        elif isinstance(f, pa.Table):
            table = f.select(cols)
        else:
            table = pa.Table.from_batches([f.get_batch(i)]).select(cols)
        lines = np.arange(starts[i], starts[i + 1], dtype=np.int64)
        out[i] = columns_of(rel, table, label, features, kinds, regression, lines, bad, fmt=fmt)
    return out
