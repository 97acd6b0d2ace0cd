"""Training-row statistics of a table's columns: moments of the numbers, counts of the
category codes (TablePrep.fit)."""

import numpy as np

CHUNK = 65536


def _moments(num, rows):
    """Per number column over `rows`: float32 mean, float32 std (1.0 when 0, not finite or
    no value), int count of non-missing values. Two passes in float64, CHUNK rows each; a
    missing value counts 0 in the sums (what np.nansum does, without its extra copy)."""
    k = num.shape[1]
    total, count = np.zeros(k), np.zeros(k, dtype=np.int64)
    for i in range(0, len(rows), CHUNK):
        x = num[rows[i:i + CHUNK]].astype(np.float64)
        nan = np.isnan(x)
        if nan.any():
            x[nan] = 0.0
            count += len(x) - nan.sum(axis=0)
        else:
            count += len(x)
        total += x.sum(axis=0)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    sq = np.zeros(k)
    with np.errstate(invalid="ignore", over="ignore"):   # an inf: fit raises on the mean
        for i in range(0, len(rows), CHUNK):
            x = num[rows[i:i + CHUNK]].astype(np.float64)
            nan = np.isnan(x)
            x -= mean
            x *= x
            if nan.any():
                x[nan] = 0.0
            sq += x.sum(axis=0)
    std = np.sqrt(sq / np.maximum(count, 1)).astype(np.float32)
    std = np.where((std > 0) & np.isfinite(std), std, np.float32(1.0))
    return mean.astype(np.float32), std, count


def _code_counts(codes, j, size, rows):     # int64 [size + 1]: rows per code + 1, [0] missing
    counts = np.zeros(size + 1, dtype=np.int64)
    for i in range(0, len(rows), CHUNK):
        counts += np.bincount(codes[rows[i:i + CHUNK], j] + 1, minlength=size + 1)
    return counts
