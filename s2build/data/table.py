"""A table's feature columns kept raw, as in the file: `RawTable`.

Contract (docs: /work/notes/contract.md, "RawTable"):

    names: list[str]        feature columns in file order (label excluded)
    kinds: list[str]        "number" | "category" per name
    num:   float32 [n, k]   the number columns, in names order; NaN = missing
    codes: int32 [n, c]     the category columns, in names order; -1 = missing; index into vocab[j]
    vocab: list[list[str]]  per category column, its distinct non-missing values, sorted

The j-th number column of `names` is `num[:, j]`, the j-th category column is `codes[:, j]` with
values `vocab[j]`. `take(rows)`, `copy()`, `concat(others)` (vocabularies merged, codes
remapped) and `set_column(name, value)` (specs' perturbations) keep that shape. NULL_TOKENS, the
texts that mean missing, live here: every reader and input path shares them. Nothing here is
fitted: standardising, imputing and one-hot encoding live in `data/columns.TablePrep`, fitted on
training rows.
"""

from dataclasses import dataclass

import numpy as np

KINDS = ("number", "category")
# strings that mean "missing" in a cell or a string input, after stripping whitespace (the
# pyarrow default list); parquet/feather nulls and float NaN are missing too
NULL_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
               "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null")


@dataclass(eq=False)               # arrays: compare tables field by field, not with ==
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
        """The RawTable of `rows` (int indices, a bool mask or a slice: then num and codes are
        views), vocabularies unchanged."""
        if not isinstance(rows, slice):
            rows = np.asarray(rows)
        return RawTable(list(self.names), list(self.kinds), self.num[rows], self.codes[rows],
                        [list(v) for v in self.vocab])

    def copy(self):
        """A deep copy (arrays and vocabularies)."""
        return RawTable(list(self.names), list(self.kinds), self.num.copy(), self.codes.copy(),
                        [list(v) for v in self.vocab])

    def set_column(self, name, value):
        """Set column `name` to `value` in every row, in place: a number (None, NaN or a
        NULL_TOKEN = missing), or a category's text (None or a NULL_TOKEN = missing; a new text
        joins the vocabulary, which stays sorted); strings are stripped. ValueError when a
        number column gets text that is not a number."""
        kind, j = self._slot[name]
        text = None if value is None else str(value).strip()
        if kind == "number":
            if text is None or text in NULL_TOKENS:
                v = np.nan
            else:
                try:
                    v = np.float32(float(value))
                except (TypeError, ValueError):
                    raise ValueError(f"column {name!r} is a number column, "
                                     f"got {value!r}") from None
            self.num = np.array(self.num, dtype=np.float32, copy=True)
            self.num[:, j] = v
            return
        codes = np.array(self.codes, dtype=np.int32, copy=True)
        if text is None or text in NULL_TOKENS:
            codes[:, j] = -1
        else:
            vocab = sorted(set(self.vocab[j]) | {text})
            codes[:, j] = vocab.index(text)
            self.vocab[j] = vocab
        self.codes = codes

    def perturbed(self, values=None, noise=None, seed=0):
        """A copy with columns set to `values` ({name: number or text}) and Gaussian noise of
        `noise` x each number column's spread (NaN-aware) added; missing stays missing."""
        out = self.copy()
        for name, v in (values or {}).items():
            out.set_column(name, v)
        if noise is not None and len(out.num):
            rng = np.random.default_rng(seed)
            import warnings
            with warnings.catch_warnings():     # an all-missing column has no spread
                warnings.simplefilter("ignore", RuntimeWarning)
                spread = np.nan_to_num(np.nanstd(out.num, axis=0))
            out.num = out.num + (rng.standard_normal(out.num.shape) * noise * spread
                                 ).astype(np.float32)
        return out

    def concat(self, others):
        """This table's rows, then each of `others`' (same names and kinds); the vocabularies
        are merged (sorted union) and the codes remapped."""
        tables = [self, *others]
        for t in others:
            if t.names != self.names or t.kinds != self.kinds:
                raise ValueError(f"cannot join tables with columns {self.names} and {t.names}")
        vocab = [sorted(set().union(*(t.vocab[j] for t in tables))) for j in range(len(self.vocab))]
        codes = []
        for t in tables:
            c = np.empty(t.codes.shape, dtype=np.int32)
            for j, v in enumerate(vocab):
                table = np.searchsorted(v, t.vocab[j]).astype(np.int32) if t.vocab[j] \
                    else np.zeros(1, np.int32)
                c[:, j] = np.where(t.codes[:, j] < 0, -1, table[np.maximum(t.codes[:, j], 0)])
            codes.append(c)
        num = np.concatenate([t.num for t in tables]).astype(np.float32, copy=False)
        return RawTable(list(self.names), list(self.kinds), num,
                        np.concatenate(codes).reshape(len(num), len(vocab)), vocab)
