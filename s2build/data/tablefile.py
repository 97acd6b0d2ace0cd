"""Table files (csv, parquet, feather) as blocks: cut a file into blocks, parse chosen blocks.

    cut(rel, data, loader) -> manifest  {"header": [names], "kinds": {column: kind},
                                         "blocks": [[content, first_line, rows, lo, hi]]}

`content` identifies a block's bytes: the SHA-256 of the header line plus the block's records
(csv; csvblocks.py cuts at content-defined record boundaries, so an edit changes one block),
or "<file digest>:<i>" for the i-th row group (parquet) or record batch (feather). `lo`/`hi`
are byte offsets (csv) or row offsets. `first_line` is the line of the block's first record
(csv) or its first row index. Kinds: loader.columns, else inferred from the first block
(arrowread.infer_kinds); the dataset uses the first source file's kinds for every file.

    parse_blocks(rel, data, loader, kinds, manifest, which) -> {i: Block}
    parse_whole(rel, data, loader, with_label, bad) -> Block    (predict, lint, specs)
"""

import hashlib

import numpy as np

from s2build.data import arrowread, csvblocks, rowhash
from s2build.data.block import Block


INFER_BYTES = 1 << 20


def _digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _block_bytes(data, rec, lo, hi):
    """The bytes of records lo..hi-1 (blank lines between them left out)."""
    if hi - lo > 1 and not (rec.ends[lo:hi - 1] == rec.starts[lo + 1:hi]).all():
        return b"".join(data[a:b] for a, b in zip(rec.starts[lo:hi].tolist(),
                                                 rec.ends[lo:hi].tolist()))
    return data[int(rec.starts[lo]):int(rec.ends[hi - 1])]


def cut(rel, data, loader, rec=None):
    fmt = loader["format"]
    if fmt == "csv":
        rec = rec or csvblocks.split_records(data)
        header = data[rec.header_start:rec.header_end]
        names = arrowread.header_names(rel, header, loader)
        spans = csvblocks.cut_blocks(data, rec)
        # kinds are inferred from the first block's first MB (pyarrow infers from its first
        # block too); a typo further down is reported where it stands
        head = int(np.searchsorted(rec.ends, rec.starts[0] + INFER_BYTES)) if len(rec) else 0
        first = _block_bytes(data, rec, 0, max(1, min(head, spans[0][1]))) if spans else b""
        kinds = arrowread.infer_kinds(rel, header, first, loader)
        blocks = [[_digest(header, _block_bytes(data, rec, lo, hi)), int(rec.lines[lo]),
                   hi - lo, lo, hi] for lo, hi in spans]
        return {"header": names, "kinds": kinds, "blocks": blocks}
    digest = hashlib.sha256(data).hexdigest()
    names, kinds, sizes = arrowread.arrow_layout(rel, data, loader)
    blocks, at = [], 0
    for i, rows in enumerate(sizes):
        blocks.append([f"{digest}:{i}", at, rows, at, at + rows])
        at += rows
    return {"header": names, "kinds": kinds, "blocks": blocks}


def _finish(cols, first_line, with_label=True):
    """Block from an arrowread.Columns: hash the rows."""
    labels, label_vocab = None, None
    if with_label and cols.labels is not None:
        if isinstance(cols.labels, tuple):
            labels, label_vocab = cols.labels
        else:
            labels = cols.labels
    ih, rh = rowhash.row_hashes(len(cols.lines), x=cols.num, codes=cols.codes, vocab=cols.vocab,
                                labels=labels, label_vocab=label_vocab)
    return Block(x=np.ascontiguousarray(cols.num, dtype=np.float32),
                 codes=np.ascontiguousarray(cols.codes, dtype=np.int32), vocab=cols.vocab,
                 labels=labels, label_vocab=label_vocab,
                 lines=np.asarray(cols.lines, dtype=np.int64), input_hash=ih, row_hash=rh,
                 features=list(cols.names), kinds=list(cols.kinds), first_line=first_line)


def parse_blocks(rel, data, loader, kinds, manifest, which, with_label=True, bad=None,
                 rec=None):
    """{i: Block} of blocks `which`; `rec`: csvblocks.split_records(data) when known."""
    fmt = loader["format"]
    out = {}
    if fmt == "csv":
        rec = rec or csvblocks.split_records(data)
        header = data[rec.header_start:rec.header_end]
        for i in which:
            _content, first_line, _rows, lo, hi = manifest["blocks"][i]
            cols = arrowread.read_csv_block(rel, header, _block_bytes(data, rec, lo, hi),
                                            rec.lines[lo:hi], loader, kinds,
                                            with_label=with_label, bad=bad)
            out[i] = _finish(cols, first_line, with_label)
        return out
    groups = arrowread.read_arrow(rel, data, loader, kinds, which, with_label=with_label, bad=bad)
    for i in which:
        out[i] = _finish(groups[i], manifest["blocks"][i][1], with_label)
    return out


def parse_whole(rel, data, loader, with_label=True, bad=None):
    """Every row of one table file as one Block (kinds as this file implies them)."""
    rec = csvblocks.split_records(data) if loader["format"] == "csv" else None
    manifest = cut(rel, data, loader, rec)
    kinds = manifest["kinds"]
    which = list(range(len(manifest["blocks"])))
    parts = parse_blocks(rel, data, loader, kinds, manifest, which, with_label, bad, rec)
    blocks = [parts[i] for i in which]
    if not blocks:
        names = manifest["header"]
        ks = [kinds[n] for n in names if n in kinds]
        return Block(x=np.zeros((0, ks.count("number")), np.float32),
                     codes=np.zeros((0, ks.count("category")), np.int32),
                     vocab=[[] for _ in range(ks.count("category"))],
                     labels=None, label_vocab=None, lines=np.zeros(0, np.int64),
                     input_hash=np.zeros(0, "S16"), row_hash=np.zeros(0, "S16"),
                     features=[n for n in names if n in kinds], kinds=ks)
    return merge(blocks)


def raw_of(block):
    """The RawTable of one table Block (its own vocabularies)."""
    from s2build.data.table import RawTable
    return RawTable(names=list(block.features), kinds=list(block.kinds), num=block.x,
                    codes=block.codes, vocab=[list(v) for v in block.vocab])


def remap(codes, block_vocab, vocab):
    """int32 codes into `block_vocab` -> codes into `vocab` (sorted, a superset); -1 stays."""
    if not len(block_vocab):
        return np.full(len(codes), -1, np.int32)
    table = np.searchsorted(vocab, block_vocab).astype(np.int32)
    return np.where(codes < 0, -1, table[np.maximum(codes, 0)]).astype(np.int32)


def merge(blocks):
    """One Block holding `blocks`' rows (vocabularies united)."""
    if len(blocks) == 1:
        return blocks[0]
    b0 = blocks[0]
    c = b0.codes.shape[1]
    vocab = [sorted(set().union(*(b.vocab[j] for b in blocks))) for j in range(c)]
    codes = [np.stack([remap(b.codes[:, j], b.vocab[j], vocab[j]) for j in range(c)], axis=1)
             if c else np.zeros((len(b), 0), np.int32) for b in blocks]
    labels, label_vocab = None, None
    if b0.labels is not None and b0.label_vocab is not None:
        label_vocab = sorted(set().union(*(b.label_vocab for b in blocks)))
        labels = np.concatenate([remap(b.labels, b.label_vocab, label_vocab) for b in blocks])
    elif b0.labels is not None:
        labels = np.concatenate([b.labels for b in blocks])
    return Block(x=np.concatenate([b.x for b in blocks]), codes=np.concatenate(codes),
                 vocab=vocab, labels=labels, label_vocab=label_vocab,
                 lines=np.concatenate([b.lines for b in blocks]),
                 input_hash=np.concatenate([b.input_hash for b in blocks]),
                 row_hash=np.concatenate([b.row_hash for b in blocks]),
                 features=b0.features, kinds=b0.kinds, first_line=b0.first_line)
