"""A table's feature columns kept raw, as in the file: `RawTable`.

Contract (docs: /work/notes/contract.md, "RawTable"):

    names: list[str]        feature columns in file order (label excluded)
    kinds: list[str]        "number" | "category" per name
    num:   float32 [n, k]   the number columns, in names order; NaN = missing
    codes: int32 [n, c]     the category columns, in names order; -1 = missing; index into vocab[j]
    vocab: list[list[str]]  per category column, its distinct non-missing values, sorted

The j-th number column of `names` is `num[:, j]`, the j-th category column is `codes[:, j]` with
values `vocab[j]`. Nothing here is fitted: standardising, imputing and one-hot encoding live in
`data/columns.TablePrep`, fitted on training rows.
"""

from dataclasses import dataclass

import numpy as np

KINDS = ("number", "category")


@dataclass
class RawTable:
    names: list
    kinds: list
    num: np.ndarray
    codes: np.ndarray
    vocab: list

    def __post_init__(self):
        if len(self.names) != len(self.kinds):
            raise ValueError(f"{len(self.names)} names but {len(self.kinds)} kinds")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"unknown column kind {bad[0]!r} (use number or category)")
        k, c = self.kinds.count("number"), self.kinds.count("category")
        if self.num.ndim != 2 or self.num.shape[1] != k or self.codes.ndim != 2 \
                or self.codes.shape[1] != c or len(self.num) != len(self.codes) \
                or len(self.vocab) != c:
            raise ValueError(f"RawTable parts disagree: {k} number and {c} category columns, "
                             f"num {self.num.shape}, codes {self.codes.shape}, "
                             f"{len(self.vocab)} vocabularies")
        # position of each column inside num (number) or codes/vocab (category)
        self._slot, counts = {}, {"number": 0, "category": 0}
        for name, kind in zip(self.names, self.kinds):
            self._slot[name] = (kind, counts[kind])
            counts[kind] += 1

    def __len__(self):
        return len(self.num)

    def index(self, name):
        """(kind, position inside num or codes) of column `name`; KeyError when unknown."""
        return self._slot[name]

    def column(self, name):
        """Column `name` over all rows: float32 [n] (NaN = missing) for a number column, an
        object array of str [n] ("" for missing) for a category column."""
        kind, j = self._slot[name]
        if kind == "number":
            return self.num[:, j]
        values = np.array(list(self.vocab[j]) + [""], dtype=object)
        return values[self.codes[:, j]]                  # code -1 picks the trailing ""

    def take(self, rows):
        """The RawTable of `rows` (int indices or a bool mask), vocabularies unchanged."""
        rows = np.asarray(rows)
        return RawTable(list(self.names), list(self.kinds), self.num[rows], self.codes[rows],
                        [list(v) for v in self.vocab])
