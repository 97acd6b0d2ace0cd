"""pyarrow arrays to and from numpy without pyarrow's pandas shim.

pyarrow imports pandas, when it is installed (cleanlab pulls it in), on its first `to_numpy`,
`pa.array(list)` or `pa.scalar`: 0.5-1.2 s of a build, holding the import lock another parse
thread then waits on. These helpers go through buffers and compute kernels only, which never
import it (tests/test_tables.py checks a CSV and a parquet read in a fresh process).
"""

import numpy as np

_VALUE_SETS = {}


def string_array(values, pa):
    """A pyarrow string array of `values` (str), built from buffers."""
    key = tuple(values)
    got = _VALUE_SETS.get(key)
    if got is None:
        data = [v.encode("utf-8") for v in values]
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in data])]).astype(np.int32)
        got = _VALUE_SETS[key] = pa.StringArray.from_buffers(
            len(values), pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(data)))
    return got


def numpy(arr, dtype, fill, pa):
    """A primitive (fixed-width) pyarrow array or chunked array of `dtype` as a numpy array,
    nulls set to `fill`."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    bufs = arr.buffers()
    if n == 0:
        return np.zeros(0, dtype)
    if bufs[1] is None:                                  # all null
        return np.full(n, fill, dtype)
    width = np.dtype(dtype).itemsize
    vals = np.frombuffer(bufs[1], dtype, count=n, offset=arr.offset * width)
    if arr.null_count:
        bits = np.unpackbits(np.frombuffer(bufs[0], np.uint8), bitorder="little")
        vals = vals.copy()
        vals[bits[arr.offset:arr.offset + n] == 0] = fill
    return vals
