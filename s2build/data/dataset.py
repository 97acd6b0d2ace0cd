"""The dataset of a target: its source files' blocks (shards.py) joined into one in-memory table,
in source order, with row origins, class indices and the holdout split, all as whole arrays.

Tables (csv, parquet, feather) keep their raw columns (`raw`, a RawTable) and a TablePrep fitted
on the training rows (`prep`: standardisation, imputation and missing indicators, one-hot
categories); `x` is `prep.transform(raw)`, what the network sees. The artifact holds the same
preprocessing in its graph and takes the raw columns. Other formats: `x` is the rows as read.

Origins: `file:line` (csv, jsonl), `file[index]` (npz, npy, parquet, feather), `file` (images).
Holdout: the target's holdout files, or else rowhash.holdout_mask over the rows' input hashes,
so editing one row never reshuffles the others. Imported lazily (numpy): not on the no-op path.
"""

from dataclasses import dataclass, field

import numpy as np

from s2build.data import consistency, heap, labels, rowhash
from s2build.data.cells import origin
from s2build.data.shards import TABLES, SourcesChanged
from s2build.errors import DataError


PARSE_THREADS = 2


class Origins:
    """Where each row comes from, made into text only when asked: `origins[i]`, iteration,
    `len`. Holds a file index and a line per row, not a million strings."""

    def __init__(self, files, file_index, lines, fmt):
        self.files, self.file_index, self.lines, self.fmt = files, file_index, lines, fmt

    def __len__(self):
        return len(self.lines)

    def __getitem__(self, i):
        if isinstance(i, (slice, np.ndarray, list)):
            return Origins(self.files, self.file_index[i], self.lines[i], self.fmt)
        return origin(self.files[self.file_index[i]], int(self.lines[i]), self.fmt)

    def __iter__(self):
        files, fmt = self.files, self.fmt
        for fi, line in zip(self.file_index.tolist(), self.lines.tolist()):
            yield origin(files[fi], line, fmt)

    def tolist(self):
        return list(self)

    def arrays(self):
        """The compact form dynamics.npz stores (see `load_dynamics`)."""
        return {"origin_files": np.asarray(self.files, dtype=np.str_),
                "origin_file": self.file_index.astype(np.int32),
                "origin_line": self.lines.astype(np.int64),
                "origin_format": np.asarray(self.fmt)}


def load_dynamics(path):
    """dynamics.npz as a dict, with `origins` (str [n]) made from its compact form: a file
    index and a line per row (a million origin strings took 100 MB and a second to write)."""
    with np.load(path, allow_pickle=False) as z:
        dyn = dict(z)
    if "origins" not in dyn and "origin_file" in dyn:
        files = [str(f) for f in dyn["origin_files"]]
        fmt = str(dyn["origin_format"])
        dyn["origins"] = np.asarray(list(Origins(files, dyn["origin_file"], dyn["origin_line"],
                                                 fmt)), dtype=np.str_)
    return dyn


@dataclass
class Dataset:
    """Rows of a target, in source order: `x` float32 [n, *shape]; `origins[i]` is where row i
    comes from; `holdout` is a bool mask [n]."""

    x: "np.ndarray"
    y: "np.ndarray"          # int64 [n] class indices, or float32 [n, k] values / 0-1 labels
    origins: object          # Origins (or a list of str)
    row_hash: "np.ndarray"
    input_hash: "np.ndarray"  # None in a lean (build) dataset
    holdout: "np.ndarray"
    features: list           # names of x's columns (tables: after preprocessing)
    classes: list            # class names (classification) or [] (regression)
    task: str
    parsed_files: list       # files with at least one block parsed this time
    raw: object = None       # RawTable (tables)
    prep: object = None      # TablePrep fitted on the training rows (tables)
    blocks: dict = field(default_factory=dict)   # {"parsed": n, "reused": n}

    @property
    def n_train(self):
        return int((~self.holdout).sum())

    @property
    def n_holdout(self):
        return int(self.holdout.sum())


def _gather(target, inputs, store):
    """([(rel, [Block])] of the target's files in source order, then holdout-only files;
    kinds; sink). Tables: every block is copied, file by file, into one preallocated array per
    field (`sink`, sized from the manifests) and kept as a view of it, so the process holds the
    rows once, not once per block plus once joined."""
    import dataclasses
    loader = target.config["loader"]
    rels = list(inputs.sources) + [r for r in inputs.holdout if r not in inputs.sources]
    digest = lambda r: inputs.sources.get(r) or inputs.holdout[r]      # noqa: E731
    kinds = sink = None
    refs = {}
    if loader["format"] in TABLES and rels:
        # first every new block is parsed and written as a shard (one file in memory at a
        # time), then the shards are read into the sink
        kinds, refs = _parallel_refs(store, target.root, rels, digest, loader)
        n = sum(rows for rs in refs.values() for _p, _l, rows in rs)
        sink = {}
    out, at = [], 0
    for rel in rels:
        blocks = [store._get(path, first, (target.root, rel, digest(rel), loader, kinds, i))
                  for i, (path, first, _rows) in enumerate(refs[rel])] if rel in refs else None
        if blocks is None or any(b is None for b in blocks):
            blocks = store.blocks(target.root, rel, digest(rel), loader, kinds)
        if sink is not None:
            views = []
            for b in blocks:
                if not sink:
                    sink.update(x=np.empty((n,) + b.x.shape[1:], np.float32),
                                codes=np.empty((n,) + b.codes.shape[1:], np.int32),
                                labels=np.empty((n,) + b.labels.shape[1:], b.labels.dtype),
                                lines=np.empty(n, np.int64), input_hash=np.empty(n, "S16"),
                                row_hash=np.empty(n, "S16"))
                if at + len(b) > n or b.x.shape[1:] != sink["x"].shape[1:] or \
                        b.codes.shape[1:] != sink["codes"].shape[1:] or \
                        b.labels.shape[1:] != sink["labels"].shape[1:]:
                    sink = None                     # not what the manifests said: join later
                    views = None
                    break
                fields = {}
                for f, arr in sink.items():
                    arr[at:at + len(b)] = getattr(b, f)
                    fields[f] = arr[at:at + len(b)]
                views.append(dataclasses.replace(b, **fields))
                at += len(b)
            if views is not None:
                blocks = views
        out.append((rel, blocks))
    store.release()
    if sink is not None and at != n:
        sink = None
    return out, kinds, sink


def _parallel_refs(store, root, rels, digest, loader):
    """(kinds, {rel: store.refs(...)}): files cut and parsed by PARSE_THREADS threads (pyarrow,
    numpy and hashlib release the GIL), each file's bytes in one thread's hands at a time.
    The kinds are those the first file implies; a thread cuts its own file while the first
    is being cut, then waits for them (a block's shard key holds them) before it parses."""
    import os
    from concurrent.futures import Future, ThreadPoolExecutor
    store._json(loader)                         # the loader's JSON, made once
    threads = max(1, min(PARSE_THREADS, os.cpu_count() or 1, len(rels)))
    first = Future()

    def work(rel):
        if rel == rels[0]:
            try:
                first.set_result(store.file_kinds(root, rel, digest(rel), loader))
            except BaseException as e:
                first.set_exception(e)
                raise
        else:
            store.manifest(root, rel, digest(rel), loader)
        return store.refs(root, rel, digest(rel), loader, first.result())

    heap.one_arena()            # the threads' frees go where heap.trim() sees them
    # (no M_MMAP_THRESHOLD: mmap per buffer made the parse 10% slower)
    if threads == 1:
        out = {r: work(r) for r in rels}
    else:
        with ThreadPoolExecutor(threads) as pool:
            out = dict(zip(rels, pool.map(work, rels)))
    heap.trim()
    return first.result(), out


def _stream(target, inputs, store):
    """A data.stream.Stream when `train.memory` is set and the table would not fit in it."""
    from s2build.data import stream
    loader = target.config["loader"]
    budget = target.config["train"].get("memory")
    if budget is None or loader["format"] not in TABLES:
        return None
    rels = list(inputs.sources) + [r for r in inputs.holdout if r not in inputs.sources]
    if not rels:
        return None
    digests = [inputs.sources.get(r) or inputs.holdout[r] for r in rels]
    manifests = [store.manifest(target.root, r, d, loader) for r, d in zip(rels, digests)]
    kinds = manifests[0]["kinds"]
    names = [n for n in manifests[0]["header"] if n in kinds]
    rows = sum(b[2] for m in manifests for b in m["blocks"])
    if stream.estimate(rows, names, [kinds[n] for n in names]) <= stream.parse_size(budget):
        return None
    refs = []
    for fi, (rel, digest) in enumerate(zip(rels, digests)):
        refs += [(p, fi, first, n, (target.root, rel, digest, loader, kinds, i))
                 for i, (p, first, n) in enumerate(store.refs(target.root, rel, digest, loader,
                                                              kinds))]
    heap.trim()
    st = stream.Stream(target, refs, rels, names, [kinds[n] for n in names],
                       set(inputs.holdout), store).prepare()
    heap.trim()
    st.parsed_files = [r for r in rels if r in store.parsed_files]
    st.blocks = {"parsed": store.parsed_blocks, "reused": store.reused_blocks}
    return st


VERIFY_ROWS = 512


def verification_rows(holdout):
    """int64 indices of the rows a build verifies its artifact on: the first VERIFY_ROWS
    holdout rows, or the first rows when fewer than two are held out."""
    rows = np.flatnonzero(holdout)
    return (rows if len(rows) >= 2 else np.arange(len(holdout)))[:VERIFY_ROWS]


def load_dataset(target, inputs, store, allow_stream=False, lean=False):
    """Build the target's Dataset from its fingerprinted sources (`inputs`); with
    `allow_stream`, a data.stream.Stream when the rows exceed `train.memory`. lean=True (a
    build) keeps only what a build reads: no `input_hash` (None); tables' `raw` holds only the
    `verification_rows`, and where the preprocessing allows it (TablePrep.in_place) `x` is the
    raw matrix transformed in place, so the process holds the feature matrix once."""
    loader = target.config["loader"]
    fmt, task = loader["format"], loader["task"]
    if allow_stream:
        got = _stream(target, inputs, store)
        if got is not None:
            return got
    parts, kinds, sink = _gather(target, inputs, store)
    n = sum(len(b) for _r, bs in parts for b in bs)
    if n == 0:
        raise DataError("no rows in the sources", target.loc("sources"), "add data")
    ref = consistency.check_same(parts, fmt, task)
    blocks = [b for _r, bs in parts for b in bs]
    files = [r for r, _bs in parts]
    file_index = np.concatenate([np.full(len(b), i, np.int32)
                                 for i, (_r, bs) in enumerate(parts) for b in bs])
    lines = sink["lines"] if sink else np.concatenate([b.lines for b in blocks])
    origins = Origins(files, file_index, lines, fmt)

    # labels: class indices through one lookup table per block
    if task == "classification":
        classes = labels.class_names(loader, [b.label_vocab for b in blocks])
        if len(classes) < 2 and loader["classes"] is None:
            shown = f"only class '{classes[0]}'" if classes else "no labels"
            raise DataError(f"label '{loader.get('label', 'y')}' holds {shown}: a classifier "
                            "needs at least 2 classes", target.loc("loader"),
                            "add rows of another class, or declare them with loader.classes")
        y = np.empty(n, dtype=np.int64)
        at = 0
        for b in blocks:
            idx = labels.class_lookup(b.label_vocab, classes)[b.labels] if len(b) else \
                np.empty(0, np.int64)
            bad = np.flatnonzero(idx < 0)
            if len(bad):
                i = at + int(bad[0])
                shown = f"0..{len(classes) - 1}" if isinstance(loader["classes"], int) \
                    else ", ".join(classes)
                raise DataError(f"label '{b.label_vocab[b.labels[bad[0]]]}' is out of range "
                                f"(classes: {shown})", origins[i],
                                "fix the label or loader.classes")
            y[at:at + len(b)] = idx
            at += len(b)
    else:
        classes = []
        y = np.concatenate([b.labels for b in blocks]).astype(np.float32)
        if task == "multilabel" and not np.isin(y, (0.0, 1.0)).all():
            i = int(np.argmax(~np.isin(y, (0.0, 1.0)).all(axis=1)))
            raise DataError("multilabel targets must be 0 or 1", origins[i])

    input_hash = sink["input_hash"] if sink else np.concatenate([b.input_hash for b in blocks])
    holdout_files = set(inputs.holdout)
    if holdout_files:
        holdout = np.concatenate([np.full(len(b), rel in holdout_files, dtype=bool)
                                  for rel, bs in parts for b in bs])
    else:
        h = target.config["holdout"]
        holdout = rowhash.holdout_mask(input_hash, h["fraction"], h["seed"])
    if not (~holdout).any():
        if n > 1 and len(np.unique(input_hash)) == 1:
            raise DataError(f"all {n} rows are identical, so the holdout split (by row content) "
                            "put them all in the holdout", target.loc("sources"),
                            "add varied rows, or give holdout.sources")
        raise DataError("no training rows", target.loc("sources"),
                        "add data, or lower holdout.fraction")

    row_hash = sink["row_hash"] if sink else np.concatenate([b.row_hash for b in blocks])
    parsed = [rel for rel in files if rel in store.parsed_files]
    raw = prep = None
    if fmt in TABLES:
        from s2build.data.columns import TablePrep
        raw = _raw_table(ref.features, ref.kinds, blocks, n, sink)
        del blocks, parts, sink, ref                # views of the matrix raw now holds
        prep = TablePrep.fit(raw, ~holdout)
        if not lean:
            x = prep.transform(raw)
        else:
            kept = raw.take(verification_rows(holdout))
            x = prep.transform(raw, out=raw.num) if prep.in_place(raw) else prep.transform(raw)
            raw = kept
        features = list(prep.feature_names)
    else:
        x = np.empty((n,) + ref.x.shape[1:], dtype=np.float32)
        at = 0
        for b in blocks:
            x[at:at + len(b)] = b.x
            at += len(b)
        features = list(ref.features)
    if lean:
        input_hash = None
    heap.trim()                         # the parse's and the join's freed memory, back to the OS
    return Dataset(x=x, y=y, origins=origins, row_hash=row_hash,
                   input_hash=input_hash, holdout=holdout, features=features, classes=classes,
                   task=task, parsed_files=parsed, raw=raw, prep=prep,
                   blocks={"parsed": store.parsed_blocks, "reused": store.reused_blocks})


def _raw_table(names, kinds, blocks, n, sink=None):
    """RawTable of the blocks' rows: number columns in one matrix (the sink's, else copied
    once), category codes remapped from each block's vocabulary to the union's (sorted),
    vectorised per block (in place in the sink)."""
    from s2build.data import tablefile
    from s2build.data.table import RawTable
    k = blocks[0].x.shape[1] if blocks else 0
    c = blocks[0].codes.shape[1] if blocks else 0
    num = sink["x"] if sink else np.empty((n, k), dtype=np.float32)
    codes = sink["codes"] if sink else np.empty((n, c), dtype=np.int32)
    vocab = [sorted(set().union(*(b.vocab[j] for b in blocks))) for j in range(c)]
    at = 0
    for b in blocks:
        if not sink:
            num[at:at + len(b)] = b.x
        for j in range(c):
            codes[at:at + len(b), j] = tablefile.remap(b.codes[:, j], b.vocab[j], vocab[j])
        at += len(b)
    return RawTable(names=list(names), kinds=list(kinds), num=num, codes=codes, vocab=vocab)


def row_changes(target, rel, old_digest, new_digest, store, limit=10):
    """Rows of `rel` that differ between two versions of the file, as ['row changed: f:12', ...]
    (at most `limit`, then a count). Compares per-row content hashes of the two versions'
    blocks; the old version's blocks must still be in the shard cache (else returns [])."""
    loader = target.config["loader"]
    fmt = loader["format"]
    try:
        kinds = store.file_kinds(target.root, rel, new_digest, loader) \
            if fmt in TABLES else None
        old = store.blocks(target.root, rel, old_digest, loader, kinds, parse=False)
        new = store.blocks(target.root, rel, new_digest, loader, kinds)
    except (DataError, SourcesChanged):
        return []
    if old is None:
        return []
    old_lines = dict(zip(np.concatenate([b.lines for b in old]).tolist(),
                         np.concatenate([b.row_hash for b in old]).tolist()))
    new_lines = np.concatenate([b.lines for b in new]).tolist()
    new_hash = np.concatenate([b.row_hash for b in new]).tolist()
    new_set, old_set = set(new_hash), set(old_lines.values())
    out, changed = [], set()
    for line, h in zip(new_lines, new_hash):
        if h in old_set:
            continue
        if line in old_lines and old_lines[line] not in new_set:
            changed.add(line)
            out.append(f"row changed: {origin(rel, line, fmt)}")
        else:
            out.append(f"row added: {origin(rel, line, fmt)}")
    for line, h in old_lines.items():
        if h not in new_set and line not in changed:
            out.append(f"row removed: {origin(rel, line, fmt)} (old numbering)")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more rows"]
    return out
