"""Row identity over whole arrays: 128-bit content hashes of rows and the holdout split.

A row's identity is its content: the float32 bytes of its numbers (every NaN counted as one
value), the text of its category values and, for `row_hash`, its label. Identical content gives
identical hashes in every file, block and process, so an edit never changes another row's hash
and the holdout split, a function of `input_hash` alone, never reshuffles the other rows.

The hash is two independent 64-bit lanes; a lane sums fmix64(word ^ key) over the row's 64-bit
words (murmur3's finaliser; a key per position and lane), then finishes with fmix64 again:
whole-matrix numpy ops, not a Python loop over rows (1M rows x 32 features: about 0.3 s on the
2-core dev machine, where BLAKE2b per row took 2.5 s). Strings (category values, class names) are hashed once per distinct value with
BLAKE2b and enter the chain as a 64-bit word. Not cryptographic: identity within a dataset
(collision odds about n^2 / 2^129).

Split v3: a row is held out when fmix64(input lane 0 ^ fmix64(seed)) < fraction * 2^64.
(v2, before 0.2, used BLAKE2b of the seed and the row's bytes; `SPLIT_VERSION` lets a build say
once that the split changed.)
"""

import hashlib

import numpy as np

SPLIT_VERSION = 3
_K = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_SEEDS = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344))
_NAN = np.float32("nan").view(np.uint32)
MISSING_WORD = np.uint64(0x6D697373696E6721)     # a missing category value


def _fmix(h):
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def string_words(values):
    """uint64 [len(values)]: one word per string (BLAKE2b-64 of its UTF-8)."""
    return np.array([int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(),
                                    "little") for v in values], dtype=np.uint64)


def float_words(a):
    """uint64 [n, w]: the float32 bytes of each row of `a` as 64-bit words (NaN canonical)."""
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), -1)
    bits = a.view(np.uint32)
    nan = np.isnan(a)
    if nan.any():
        bits = np.where(nan, _NAN, bits)
    if bits.shape[1] % 2:
        bits = np.concatenate([bits, np.zeros((len(bits), 1), np.uint32)], axis=1)
    return np.ascontiguousarray(bits).view(np.uint64)


def word_table(vocab):
    """uint64 [len(vocab) + 1]: the word of each value, then MISSING_WORD (for code -1)."""
    return np.append(string_words(vocab), MISSING_WORD)


def _words(table, codes):
    """The words of int codes (-1 missing) through a word_table."""
    return table[np.where(codes < 0, len(table) - 1, codes)]


def _keys(lane, start, stop):
    """Per-position keys of a lane: fmix64(position * K + seed)."""
    with np.errstate(over="ignore"):
        pos = np.arange(start, stop, dtype=np.uint64)
        return _fmix(pos * _K[lane] + _SEEDS[lane])


class Chain:
    """Two 64-bit lanes per row: lane = sum over positions j of fmix64(word_j ^ key_j) mod
    2^64, keys differing per position and lane, so order matters and each word is mixed on
    its own (whole-matrix numpy ops, whatever the row width)."""

    def __init__(self, n):
        self.sums = [np.zeros(n, dtype=np.uint64) for _ in _SEEDS]
        self.pos = 0

    def feed(self, words):
        """Mix uint64 words [n] or [n, w] into every row's lanes, at the next positions."""
        words = words.reshape(len(words), -1) if words.ndim > 1 else words[:, None]
        w = words.shape[1]
        with np.errstate(over="ignore"):
            for i in range(len(self.sums)):
                self.sums[i] = self.sums[i] + \
                    _fmix(words ^ _keys(i, self.pos, self.pos + w)).sum(axis=1, dtype=np.uint64)
        self.pos += w
        return self

    def digest(self):
        """S16 [n]: the two finished lanes, little-endian."""
        with np.errstate(over="ignore"):
            out = np.stack([_fmix(s ^ np.uint64(self.pos)) for s in self.sums], axis=1)
        return np.ascontiguousarray(out.astype("<u8")).view("S16").reshape(-1)


CHUNK = 1 << 15        # rows hashed at a time: bounds the temporaries, keeps them in cache


def row_hashes(n, x=None, codes=None, vocab=(), labels=None, label_vocab=None):
    """(input_hash, row_hash), both S16 [n]. `x`: numbers [n, ...]; `codes` int32 [n, c] with
    `vocab` (one list per column); labels: int codes into `label_vocab`, or float32 values."""
    tables = [word_table(v) for v in vocab]
    label_table = word_table(label_vocab) if label_vocab is not None else None
    ih, rh = np.empty(n, "S16"), np.empty(n, "S16")
    for lo in range(0, max(n, 1), CHUNK):
        hi = min(n, lo + CHUNK)
        chain = Chain(hi - lo)
        if x is not None and x.size:
            chain.feed(float_words(x[lo:hi]))
        if codes is not None:
            for j, table in enumerate(tables):
                chain.feed(_words(table, codes[lo:hi, j]))
        ih[lo:hi] = chain.digest()
        if labels is not None:
            lab = labels[lo:hi]
            chain.feed(_words(label_table, lab) if label_table is not None else float_words(lab))
        rh[lo:hi] = chain.digest()
    return ih, rh


def holdout_mask(input_hash, fraction, seed):
    """bool [n]: held out when fmix64(lane 0 ^ fmix64(seed)) < fraction * 2^64."""
    lane = np.ascontiguousarray(input_hash).view("<u8").reshape(len(input_hash), 2)[:, 0]
    salt = int.from_bytes(hashlib.blake2b(str(seed).encode(), digest_size=8).digest(), "little")
    with np.errstate(over="ignore"):
        u = _fmix(lane.astype(np.uint64) ^ np.uint64(salt))
    limit = min(int(fraction * 2**64), 2**64 - 1)
    return u < np.uint64(limit)
