"""Table preprocessing fitted on training rows: `TablePrep` (numpy; its ONNX twin is
compile/prepgraph.py, which computes the same float32 values bit for bit).

Fit (training rows only), per feature column in `names` order:
  * number: mean and std (population, float64 then float32) over the non-missing training
    values; std 0, non-finite or no values -> 1.0; no values -> mean 0 and a warning. Features:
    `name` = (x - mean) / std in float32, a missing x imputed with mean first (so it becomes 0);
    `name (missing)` = 1.0 where x is missing, present only when some training row is missing.
  * category: vocabulary = the values present in training rows, the MAX_CATEGORIES most frequent
    kept (ties by name; a warning says how many went), stored sorted. Features: one-hot over
    `name=v` for v in vocab, then `name=(other)` (values not in vocab; also missing values when
    no training row is missing), then `name=(missing)` when some training row is missing.
    "(other)" and "(missing)" are slots, not values. A value in NULL_TOKENS is always missing,
    even inside a RawTable vocabulary.

Whitespace: readers, `feeds_from_values`, `raw_from_values` and RawTable.set_column strip
strings; the ONNX graph compares them exactly (ONNX has no strip op), so a consumer passes
category values stripped, a missing one as "" (or any NULL_TOKEN), a missing number as NaN.

The ONNX side is `compile/prepgraph.prepend(prep, network_bytes)` (out of this module: data
code never imports onnx). `fit` and the streamed fit (data/stream.py) share `from_stats`.

`to_json()` is canonical (floats are the exact float32 values as Python floats, so
`from_json(to_json())` reproduces every bit); it goes into the build key and the provenance:

    {"format": "s2build.tableprep/1", "columns": [
        {"name": str, "kind": "number", "mean": float, "std": float, "indicator": bool},
        {"name": str, "kind": "category", "vocab": [str, ...], "missing": bool}, ...]}

`warnings` (fit only, not in the JSON) are sentences the caller reports.
"""

import math

import numpy as np

from s2build.data.table import NULL_TOKENS, RawTable

FORMAT = "s2build.tableprep/1"
MAX_CATEGORIES = 256
from s2build.data.colstats import _code_counts, _moments  # noqa: E402

CHUNK = 65536                      # rows per step of fit and transform (bounds temporaries)
OTHER, MISSING = "(other)", "(missing)"
_NULLS = frozenset(NULL_TOKENS)


class NumberPrep:
    """One number column: x -> (x, mean if missing) -> (x - mean) / std, plus the indicator."""
    kind = "number"

    def __init__(self, name, mean, std, indicator):
        self.name, self.indicator = name, bool(indicator)
        self.mean, self.std = np.float32(mean), np.float32(std)

    @property
    def feature_names(self):
        return [self.name] + ([f"{self.name} (missing)"] if self.indicator else [])

    def to_json(self):
        return {"name": self.name, "kind": "number", "mean": float(self.mean),
                "std": float(self.std), "indicator": self.indicator}


class CategoryPrep:
    """One category column: value -> slot (vocab index, other, missing) -> one-hot."""
    kind = "category"

    def __init__(self, name, vocab, missing):
        self.name, self.vocab, self.missing = name, sorted(vocab), bool(missing)
        nulls = [v for v in self.vocab if v in _NULLS or not isinstance(v, str)]
        if nulls or len(set(self.vocab)) != len(self.vocab):
            raise ValueError(f"column {name!r}: the vocabulary holds {nulls[:1] or 'duplicates'}")
        self.other_slot = len(self.vocab)
        self.missing_slot = self.other_slot + 1 if self.missing else self.other_slot
        self.slots = len(self.vocab) + 1 + int(self.missing)

    @property
    def feature_names(self):
        return [f"{self.name}={v}" for v in [*self.vocab, OTHER] + ([MISSING] if self.missing else [])]

    def keys(self):
        """{string: slot} for every string with a slot of its own or the missing slot; any
        other string goes to `other_slot`. The numpy and ONNX encodings both use this."""
        keys = {v: i for i, v in enumerate(self.vocab)}
        keys.update((token, self.missing_slot) for token in NULL_TOKENS)
        return keys

    def to_json(self):
        return {"name": self.name, "kind": "category", "vocab": list(self.vocab),
                "missing": self.missing}


class TablePrep:
    """The fitted preprocessing of a table's feature columns (see the module docstring)."""

    def __init__(self, columns, warnings=()):
        if not columns:
            raise ValueError("a table needs at least one feature column")
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature column names in {names}")
        self.columns, self.warnings = list(columns), list(warnings)
        self.positions, at = [], 0            # first feature index of each column
        for c in self.columns:
            self.positions.append(at)
            at += len(c.feature_names) if c.kind == "number" else c.slots
        self.width = at

    names = property(lambda self: [c.name for c in self.columns])
    kinds = property(lambda self: [c.kind for c in self.columns])
    feature_names = property(lambda self: [f for c in self.columns for f in c.feature_names])
    inputs = property(lambda self: [(c.name, "float" if c.kind == "number" else "string")
                                    for c in self.columns])

    # --- fit -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, raw, train):
        """Fit on the rows of RawTable `raw` where bool [n] `train` is True."""
        train = np.asarray(train, dtype=bool)
        if train.shape != (len(raw),):
            raise ValueError(f"train mask has shape {train.shape}, the table {len(raw)} rows")
        rows = np.flatnonzero(train)
        if not len(rows):
            raise ValueError("no training rows to fit the table preprocessing on")
        numbers = [n for n, k in zip(raw.names, raw.kinds) if k == "number"]
        stats = dict(zip(numbers, zip(*_moments(raw.num, rows)))) if numbers else {}
        cats = [(n, raw.index(n)[1]) for n, k in zip(raw.names, raw.kinds) if k != "number"]
        counts = {n: (_code_counts(raw.codes, j, len(raw.vocab[j]), rows), raw.vocab[j])
                  for n, j in cats}
        return cls.from_stats(raw.names, raw.kinds, stats, counts, len(rows))

    @classmethod
    def from_stats(cls, names, kinds, stats, counts, n_train):
        """From training-row statistics: `stats` {number column: (mean, std, non-missing count)}
        (_moments), `counts` {category column: (rows per code + 1, [0] = missing; vocab)}."""
        warnings, out = [], []
        for name, kind in zip(names, kinds):
            if kind == "number":
                mean, std, count = stats[name]
                if not np.isfinite(mean):
                    raise ValueError(f"column {name!r} holds an infinite value in training rows")
                if count == 0:
                    warnings.append(f"column {name!r} is missing in every training row; "
                                    f"it is imputed with 0")
                out.append(NumberPrep(name, mean, std, count < n_train))
            else:
                out.append(_category_prep(name, *counts[name], warnings))
        return cls(out, warnings)

    # --- transform -------------------------------------------------------------------------

    def in_place(self, raw):
        """Whether transform(raw, out=raw.num) may overwrite the numbers: all number columns,
        in order, no missing indicator."""
        return (not raw.codes.shape[1] and raw.num.flags.c_contiguous and raw.num.shape[1] ==
                self.width and self.names == raw.names and set(raw.kinds) <= {"number"} and
                not any(c.indicator for c in self.columns))

    def transform(self, raw, rows=None, out=None):
        """float32 [n, width] features of `rows` (None: all) of `raw`, written into `out` when
        given (float32 [n, width], C-contiguous); computed CHUNK rows at a time. `out` may be
        `raw.num` itself where `in_place(raw)` holds (all rows)."""
        all_rows = rows is None
        rows = np.arange(len(raw)) if rows is None else np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        n = len(rows)
        if out is None:
            out = np.empty((n, self.width), dtype=np.float32)
        elif out.shape != (n, self.width) or out.dtype != np.float32:
            raise ValueError(f"out is {out.dtype} {out.shape}, needs float32 {(n, self.width)}")
        if np.may_share_memory(out, raw.num) and not (all_rows and self.in_place(raw)):
            raise ValueError("out overlaps the raw numbers, and this transform is not in place")
        nums = [(c, p) for c, p in zip(self.columns, self.positions) if c.kind == "number"]
        cats = [(c, p) for c, p in zip(self.columns, self.positions) if c.kind == "category"]
        num_cols = [self._raw_index(raw, c) for c, _ in nums]
        mean = np.array([c.mean for c, _ in nums], dtype=np.float32)
        std = np.array([c.std for c, _ in nums], dtype=np.float32)
        value_at = np.array([p for _, p in nums], dtype=np.int64)
        ind = [i for i, (c, _) in enumerate(nums) if c.indicator]
        ind_at = np.array([nums[i][1] + 1 for i in ind], dtype=np.int64)
        luts = [(self._raw_index(raw, c), p, _lut(c, raw.vocab[self._raw_index(raw, c)]))
                for c, p in cats]
        every = len(rows) == len(raw) and (n == 0 or (rows[0] == 0 and rows[-1] == n - 1 and
                                                    bool((np.diff(rows) == 1).all())))
        same_cols = num_cols == list(range(raw.num.shape[1]))
        span = (int(value_at[0]), int(value_at[-1]) + 1) if len(value_at) and \
            bool((np.diff(value_at) == 1).all()) else None
        dense = span is not None and not ind and not cats and span == (0, self.width)
        for i in range(0, n, CHUNK):
            part = slice(i, i + CHUNK) if every else rows[i:i + CHUNK]   # views when all rows
            block = out[i:i + CHUNK]
            if not dense:
                block[...] = 0.0
            if nums:
                x = raw.num[part]
                if not same_cols:
                    x = x[:, num_cols]                          # float32 [m, k]
                nan = np.isnan(x)
                if nan.any():
                    x = np.where(nan, mean, x)
                if span is not None:
                    dst = block[:, span[0]:span[1]]
                    np.subtract(x, mean, out=dst)
                    np.divide(dst, std, out=dst)
                else:
                    block[:, value_at] = (x - mean) / std
                if ind:
                    block[:, ind_at] = nan[:, ind]
            m = np.arange(block.shape[0])
            for j, at, lut in luts:
                block[m, at + lut[raw.codes[part, j] + 1]] = 1.0
        return out

    def _raw_index(self, raw, col):
        try:
            kind, j = raw.index(col.name)
        except KeyError:
            raise ValueError(f"the table has no column {col.name!r}") from None
        if kind != col.kind:
            raise ValueError(f"column {col.name!r} is a {kind} in the table, "
                             f"a {col.kind} in the preprocessing")
        return j

    # --- feeds for the artifact (raw inputs) -----------------------------------------------

    def feeds(self, raw, rows=None):
        """{input name: array} for the artifact over `rows` of `raw`: float32 [n] (NaN =
        missing) per number column, object [n] of str ("" = missing) per category column."""
        rows = np.arange(len(raw)) if rows is None else np.asarray(rows)
        out = {}
        for c in self.columns:
            j = self._raw_index(raw, c)
            if c.kind == "number":
                out[c.name] = np.ascontiguousarray(raw.num[rows, j], dtype=np.float32)
            else:
                values = np.array(list(raw.vocab[j]) + [""], dtype=object)
                out[c.name] = values[raw.codes[rows, j]]
        return out

    def feeds_from_values(self, rows):
        """Feeds from inline rows, a list of {column: value}: numbers (or their text) for
        number columns, strings (ints and bools as their text) for category columns, None or
        a NULL_TOKEN for missing. Every column must be given, no other; a ValueError says
        which row and column is wrong (callers add file:line)."""
        known = {c.name: c for c in self.columns}
        return {name: np.array(v, dtype=np.float32 if known[name].kind == "number" else object)
                for name, v in self._values(rows).items()}

    def raw_from_values(self, rows):
        """The RawTable of inline rows (as feeds_from_values takes them), columns in
        `names` order, each category column's vocabulary the distinct texts given."""
        cols = self._values(rows)
        n = len(rows)
        nums = [c.name for c in self.columns if c.kind == "number"]
        cats = [c.name for c in self.columns if c.kind == "category"]
        num = np.array([cols[c] for c in nums], dtype=np.float32).T.reshape(n, len(nums))
        vocab = [sorted({v for v in cols[c] if v != ""}) for c in cats]
        codes = np.array([[vocab[j].index(v) if v != "" else -1 for v in cols[c]]
                          for j, c in enumerate(cats)], dtype=np.int32).T.reshape(n, len(cats))
        return RawTable(self.names, self.kinds, num, codes, vocab)

    def _values(self, rows):
        """{column: [float (NaN = missing) | str ("" = missing)]} of inline rows."""
        known = {c.name: c for c in self.columns}
        cols = {c.name: [] for c in self.columns}
        for r, row in enumerate(rows):
            extra = sorted(set(row) - set(known), key=str)
            absent = [n for n in known if n not in row]
            if extra:
                raise ValueError(f"row {r + 1}: unknown column {extra[0]!r} "
                                 f"(the columns are {', '.join(known)})")
            if absent:
                raise ValueError(f"row {r + 1}: no value for column {absent[0]!r} "
                                 f"(give null for a missing value)")
            for name, c in known.items():
                cols[name].append(_number(row[name], name, r) if c.kind == "number"
                                  else _category(row[name], c))
        return cols

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self):
        return {"format": FORMAT, "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, d):
        """The TablePrep of `to_json()`'s dict; ValueError for anything else (never a crash)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} table preprocessing")
        cols = []
        try:
            for c in d["columns"]:
                if c["kind"] == "number":
                    cols.append(NumberPrep(c["name"], _float(c["mean"]), _float(c["std"]),
                                           c["indicator"]))
                elif c["kind"] == "category":
                    cols.append(CategoryPrep(c["name"], list(c["vocab"]), c["missing"]))
                else:
                    raise ValueError(f"unknown column kind {c['kind']!r}")
        except (KeyError, TypeError) as e:
            raise ValueError(f"damaged {FORMAT} table preprocessing ({type(e).__name__}: "
                             f"{e})") from None
        if any(not isinstance(c.name, str) for c in cols):
            raise ValueError(f"damaged {FORMAT} table preprocessing (a name is not text)")
        return cls(cols)


def _float(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TypeError(f"{v!r} is not a finite number")
    return v


def _category_prep(name, counts, vocab, warnings):
    nulls = np.array([v in _NULLS for v in vocab], dtype=bool)     # missing after all
    missing = int(counts[0] + counts[1:][nulls].sum())
    counts = np.where(nulls, 0, counts[1:])
    present = np.flatnonzero(counts)
    if not len(present):
        warnings.append(f"column {name!r} is missing in every training row; "
                        f"it is encoded as {name}=(missing)")
    if len(present) > MAX_CATEGORIES:
        warnings.append(f"column {name!r} has {len(present)} categories in training rows; the "
                        f"{MAX_CATEGORIES} most frequent are kept, the rest read as {name}={OTHER}")
        # most frequent first, ties by name (vocab is sorted, so by index)
        present = present[np.lexsort((present, -counts[present]))][:MAX_CATEGORIES]
    return CategoryPrep(name, [vocab[i] for i in present], missing > 0)


def _lut(col, raw_vocab):
    """int64 [len(raw_vocab) + 1]: slot of each raw code + 1 (index 0 = code -1, missing)."""
    keys = col.keys()
    lut = np.array([col.missing_slot] + [keys.get(v, col.other_slot) for v in raw_vocab],
                   dtype=np.int64)
    return lut


def _number(value, name, r):
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if text in _NULLS:
            return math.nan
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"row {r + 1}: column {name!r} is a number column, "
                             f"got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"row {r + 1}: column {name!r} is a number column, got {value!r}")
    value = float(value)
    if math.isinf(value):
        raise ValueError(f"row {r + 1}: column {name!r} is {value} (not finite)")
    return value


def _category(value, col):
    """The string the artifact gets for inline `value` ("" = missing)."""
    if value is None:
        return ""
    if isinstance(value, bool):                 # YAML reads yes/true as True: match the data
        words = ("true", "yes", "1") if value else ("false", "no", "0")
        options = [f(w) for w in words for f in (str, str.capitalize, str.upper)]
        return next((o for o in options if o in col.vocab), str(value).lower())
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        options = [repr(value)] + ([str(int(value))] if value.is_integer() else [])
        return next((o for o in options if o in col.vocab), options[0])
    text = str(value).strip()
    return "" if text in _NULLS else text
