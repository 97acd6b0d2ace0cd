"""Data larger than memory: a table target read block by block from its shards.

When `train.memory` is set and the target's rows would need more than that in memory (raw
columns plus the network's input, float32, from the manifests' row counts; `estimate`), the
dataset is a `Stream` instead of an in-memory Dataset. Shards are written as they are parsed and
dropped; training, evaluation and the preprocessing fit then read one block at a time
(compile/stream.py), so the process holds a block, not the table.

Order: every epoch visits the blocks in an order drawn from a generator seeded with
`train.seed`, and the training rows of each block in a seeded permutation: a function of the
data and the seed alone, so release builds are reproducible. The preprocessing is fitted in two
passes over the training rows (sums, then squared deviations, float64), with the vocabulary of
every category column counted over all training rows.
"""

import numpy as np

from s2build.data import rowhash, shardfile, tablefile
from s2build.data.shards import _from_file
from s2build.errors import DataError


def parse_size(text):
    """'1GB', '512MB', '1GiB', '2g', 1000000 -> bytes (K, M, G, T are powers of 1024)."""
    import re
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def estimate(rows, names, kinds, vocab_sizes=None):
    """Bytes an in-memory build of `rows` table rows needs: raw columns, the network input (a
    category one-hot counted at 8 slots when its vocabulary is unknown) and row hashes."""
    width = sum(1 if k == "number" else 8 for k in kinds)
    return rows * (4 * len(kinds) + 4 * width + 48)


STAT_ROWS = 65536       # rows per float64 chunk of the statistics passes (16 MB at 32 columns)


def _chunks(x, keep):
    """float64 copies of the rows `keep` (bool) of `x`, STAT_ROWS at a time: the statistics
    of a block never hold it whole in float64."""
    for i in range(0, len(x), STAT_ROWS):
        part = x[i:i + STAT_ROWS][keep[i:i + STAT_ROWS]]
        if len(part):
            yield part.astype(np.float64)


class Stream:
    """A table target's rows as blocks. `refs`: [(shard path, file index, first line, rows,
    source)] (source: where ShardStore.numbers reads a parquet / IPC block's numbers);
    `files`: the source paths; per block, `holdout` masks are recomputed from the shards."""

    def __init__(self, target, refs, files, names, kinds, holdout_files, store=None):
        self.target, self.refs, self.files, self.store = target, refs, files, store
        self.names, self.kinds = names, kinds
        self.holdout_files = holdout_files
        loader = target.config["loader"]
        self.task, self.fmt, self.loader = loader["task"], loader["format"], loader
        self.prep = self.classes = None
        self.n_train = self.n_holdout = 0
        self.raw = None                 # verification rows (a RawTable), after prepare()
        self.x = None                   # no in-memory matrix: what callers test for
        self.features = names
        self.parsed_files, self.blocks = [], {}

    def block(self, i):
        """(Block, holdout mask) of block i, read from its shard."""
        path, fi, first_line, _rows, source = self.refs[i]
        arrays, meta = shardfile.read(path, mapped=True)
        b = _from_file(arrays, meta, first_line,
                       numbers=(lambda: self.store.numbers(*source)) if self.store else None)
        if self.holdout_files:
            hold = np.full(len(b), self.files[fi] in self.holdout_files)
        else:
            h = self.target.config["holdout"]
            hold = rowhash.holdout_mask(b.input_hash, h["fraction"], h["seed"])
        return b, hold

    def labels(self, b, fi):
        """Class indices (or values) of block `b` of file `fi`; a label outside the classes
        is a DataError at its row."""
        if self.task != "classification":
            return np.asarray(b.labels, dtype=np.float32)
        from s2build.data.cells import origin
        from s2build.data.labels import class_lookup
        y = class_lookup(b.label_vocab, self.classes)[b.labels]
        bad = np.flatnonzero(y < 0)
        if len(bad):
            raise DataError(f"label '{b.label_vocab[b.labels[bad[0]]]}' is out of range "
                            f"(classes: {', '.join(self.classes)})",
                            origin(self.files[fi], int(b.lines[bad[0]]), self.fmt),
                            "fix the label or loader.classes")
        return y

    def raw_of(self, b, vocab):
        """The block's RawTable with codes remapped to the stream's `vocab`."""
        from s2build.data.table import RawTable
        codes = np.stack([tablefile.remap(b.codes[:, j], b.vocab[j], vocab[j])
                          for j in range(b.codes.shape[1])], axis=1) \
            if b.codes.shape[1] else np.zeros((len(b), 0), np.int32)
        return RawTable(names=list(self.names), kinds=list(self.kinds), num=np.asarray(b.x),
                        codes=codes, vocab=vocab)

    def prepare(self):
        """Classes, counts and the preprocessing fit: two passes over the blocks."""
        from s2build.data.labels import class_names
        from s2build.data import columns
        c = self.kinds.count("category")
        vocab = [set() for _ in range(c)]
        label_vocab, k = set(), self.kinds.count("number")
        total, count = np.zeros(k), np.zeros(k, dtype=np.int64)
        for i in range(len(self.refs)):
            b, hold = self.block(i)
            train = ~hold
            self.n_train += int(train.sum())
            self.n_holdout += int(hold.sum())
            for j in range(c):
                vocab[j].update(b.vocab[j])
            if b.label_vocab is not None:
                label_vocab.update(b.label_vocab)
            for x in _chunks(np.asarray(b.x), train):
                count += (~np.isnan(x)).sum(axis=0)
                total += np.nansum(x, axis=0)
        if not self.n_train:
            raise DataError("no training rows", self.target.loc("sources"),
                            "add data, or lower holdout.fraction")
        self.vocab = [sorted(v) for v in vocab]
        self.classes = class_names(self.loader, [sorted(label_vocab)]) \
            if self.task == "classification" else []
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        sq = np.zeros(k)
        counts = [np.zeros(len(v) + 1, dtype=np.int64) for v in self.vocab]
        for i in range(len(self.refs)):
            b, hold = self.block(i)
            raw = self.raw_of(b, self.vocab)
            train = ~hold
            for x in _chunks(raw.num, train):
                x -= mean
                sq += np.nansum(x * x, axis=0)
            for j in range(c):
                counts[j] += np.bincount(raw.codes[train, j] + 1, minlength=len(self.vocab[j]) + 1)
            if self.raw is None or len(self.raw) < 512:
                part = raw.take(np.flatnonzero(hold)[:512])
                self.raw = part if self.raw is None else self.raw.concat([part])
        std = np.sqrt(sq / np.maximum(count, 1)).astype(np.float32)
        std = np.where((std > 0) & np.isfinite(std), std, np.float32(1.0))
        numbers = [n for n, kind in zip(self.names, self.kinds) if kind == "number"]
        cats = [n for n, kind in zip(self.names, self.kinds) if kind != "number"]
        stats = {n: (np.float32(mean[i]), std[i], int(count[i])) for i, n in enumerate(numbers)}
        self.prep = columns.TablePrep.from_stats(
            self.names, self.kinds, stats,
            {n: (counts[j], self.vocab[j]) for j, n in enumerate(cats)}, self.n_train)
        if self.raw is not None:
            self.raw = self.raw.take(slice(0, 512))
        return self
