"""A block of rows, the unit that is parsed, cached as a shard (shards.py) and joined into a
dataset (dataset.py). Imported lazily (numpy): not on the no-op path."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Block:
    """Rows of one block of a file (a whole file for jsonl, npz, npy and images).

    x           float32 [n, *shape]  numbers (tables: the number columns, NaN = missing)
    codes       int32 [n, c]         tables: category columns, -1 = missing, into vocab[j]
    vocab       [[str]]              per category column, its values in this block, sorted
    labels      int32 [n] class codes into label_vocab | float32 [n, k] values | None
    label_vocab [str] | None         the block's class names, sorted
    lines       int64 [n]            csv/jsonl: line of the row's first line; arrays,
                                     parquet, feather: row index; images: 0
    input_hash, row_hash  S16 [n]    rowhash.py: of the inputs, of inputs and label
    features    [str]                feature (column) names; kinds: "number"|"category" each,
                                     None outside tables
    first_line  int                  the block's first line (shards store lines relative to it)
    """
    x: "np.ndarray"
    codes: "np.ndarray"
    vocab: list
    labels: "np.ndarray"
    label_vocab: list
    lines: "np.ndarray"
    input_hash: "np.ndarray"
    row_hash: "np.ndarray"
    features: list
    kinds: list = None
    first_line: int = 0

    def __len__(self):
        return len(self.x)

    @property
    def nbytes(self):
        return sum(a.nbytes for a in (self.x, self.codes, self.lines, self.input_hash,
                                      self.row_hash) + ((self.labels,) if self.labels is not None
                                                        else ()))

    def moved(self, first_line):
        """This block, starting at line `first_line` instead."""
        if first_line == self.first_line:
            return self
        import dataclasses
        return dataclasses.replace(self, lines=self.lines + (first_line - self.first_line),
                                   first_line=first_line)

    def class_names(self):
        """[str] per row (classification)."""
        return np.asarray(self.label_vocab, dtype=np.str_)[self.labels]
