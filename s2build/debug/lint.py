"""Data diagnostics, like a compiler's: `ORIGIN: SEVERITY[CHECK]: MESSAGE`.

    data/train.csv:212: warning[label-error]: labelled 3, the model says 8 (p=0.97)

Checks (each a `check` name, for `--json` and for filtering):

    non-finite         error    an inf cell (NaN too outside tables), found by the build's readers
    conflicting-label  error    same input as an earlier row, with a different label
    leakage            error    a holdout row whose input is also a training row
    duplicate          warning  same input and label as an earlier row
    label-error        warning  the label disagrees with what the data teaches: a calibrated
                                P(label wrong) >= 0.5 from the recorded training dynamics stacked
                                with a cross-fitted linear model (labelerr.py), or with --folds K
                                from K networks' out-of-sample probabilities through cleanlab
    outlier            warning  far from every other row (distance to its 5th neighbour over 3x
                                the 90th percentile of that distance)
    near-duplicate     note     almost the same input as an earlier row
    class-imbalance    warning  a class with under a tenth of the rows of the largest one
    mostly-missing     warning  tables: a column missing in over half of the rows
    unseen-category    warning  tables: a holdout row whose category no training row has
    shortcut           warning  an image window or table column that separates a class in
                                training far better than in the holdout and that the network
                                responds to (shortcut.py); a note at each training row carrying it

Each diagnostic has a `confidence` in [0, 1]; `sort` ranks by severity, then confidence, and
`budget` chooses what is printed (the strongest of each check, in file order).
"""

import os

import numpy as np

SEVERITIES = ("note", "warning", "error")


class Diagnostic:
    """`fix`: the edit that resolves it, (kind, value) for fixes.of: ("relabel", class) or
    ("drop", None); `target`: the name of the target it was found in (set by lint_run)."""

    def __init__(self, origin, severity, check, message, confidence=1.0, fix=None):
        self.origin, self.severity, self.check = origin, severity, check
        self.message, self.confidence = message, float(confidence)
        self.fix, self.target = fix, None

    def __str__(self):
        return f"{self.origin}: {self.severity}[{self.check}]: {self.message}"

    def as_dict(self):
        out = {"origin": self.origin, "severity": self.severity, "check": self.check,
               "message": self.message, "confidence": round(self.confidence, 4)}
        if self.fix is not None:
            out["fix"] = {"kind": self.fix[0], "to": self.fix[1]}
        return out


def sort(diags):
    return sorted(diags, key=lambda d: (-SEVERITIES.index(d.severity), -d.confidence, d.origin))


# --- Checks that need no model ---------------------------------------------------------------

def scan_nonfinite(target, relpaths):
    """Every NaN/inf cell of the sources (the build stops at the first one), found by the
    build's own readers in their collecting mode. A file with another error is skipped here:
    the build that follows reports that error."""
    from s2build.data import readers
    from s2build.errors import DataError
    loader = target.config["loader"]
    if loader["format"] == "images":
        return []
    out = []
    for rel in relpaths:
        bad = []
        try:
            with open(os.path.join(target.root, rel), "rb") as f:
                readers.parse(rel, f.read(), loader, bad=bad)
        except (OSError, DataError):
            pass
        out += [Diagnostic(e.location, "error", "non-finite", e.message) for e in bad]
    return out


def _label(ds, i):
    return ds.classes[int(ds.y[i])] if ds.classes else str(ds.y[i].tolist())


def duplicates(ds):
    """Exact duplicates (same input and label) and conflicting labels (same input)."""
    out, first_by_input, first_by_row = [], {}, {}
    for i, (ih, rh) in enumerate(zip(ds.input_hash.tolist(), ds.row_hash.tolist())):
        if rh in first_by_row:
            j = first_by_row[rh]
            out.append(Diagnostic(ds.origins[i], "warning", "duplicate",
                                  f"duplicate of {ds.origins[j]}", fix=("drop", None)))
        elif ih in first_by_input:
            j = first_by_input[ih]
            out.append(Diagnostic(ds.origins[i], "error", "conflicting-label",
                                  f"same input as {ds.origins[j]}, labelled '{_label(ds, j)}' "
                                  f"there and '{_label(ds, i)}' here"))
        first_by_input.setdefault(ih, i)
        first_by_row.setdefault(rh, i)
    return out


def leakage(ds):
    """Holdout rows whose input is also a training row: their metric is inflated."""
    train = {}
    for i in np.flatnonzero(~ds.holdout):
        train.setdefault(ds.input_hash[i], i)
    return [Diagnostic(ds.origins[i], "error", "leakage",
                       f"holdout row is also a training row ({ds.origins[train[ds.input_hash[i]]]})",
                       1.0)
            for i in np.flatnonzero(ds.holdout) if ds.input_hash[i] in train]


def _neighbours(x, k, chunk=2048):
    """(distances [n, k], indices [n, k]) of each row's k nearest other rows (euclidean)."""
    import torch
    xt = torch.from_numpy(x)
    dists, idx = [], []
    for s in range(0, len(xt), chunk):
        d = torch.cdist(xt[s:s + chunk], xt)
        d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = float("inf")
        v, i = d.topk(min(k, len(xt) - 1), dim=1, largest=False)
        dists.append(v)
        idx.append(i)
    return torch.cat(dists).numpy(), torch.cat(idx).numpy()


def geometry(ds, max_rows=50_000):
    """Near duplicates and outliers, in standardised feature space."""
    n = len(ds.x)
    if n < 8 or n > max_rows:
        return []
    x = ds.x.reshape(n, -1).astype(np.float32)
    std = x.std(axis=0)
    std = np.maximum(std, 0.1 * std.mean() + 1e-12)   # a nearly constant feature (a corner pixel)
    x = (x - x.mean(axis=0)) / std                     # must not make one rare value look far
    k = min(5, n - 1)
    d, idx = _neighbours(x, k)
    out = []
    nn = d[:, 0]
    typical = float(np.median(nn)) or 1e-12
    for i in range(n):
        j = int(idx[i, 0])
        same = ds.input_hash[i] == ds.input_hash[j]
        if not same and nn[i] < 0.05 * typical and j < i:
            out.append(Diagnostic(ds.origins[i], "note", "near-duplicate",
                                  f"nearly the same input as {ds.origins[j]} (distance "
                                  f"{nn[i]:.3g}; typical nearest row {typical:.3g})",
                                  1 - nn[i] / (0.05 * typical)))
    far = d[:, -1]
    med = float(np.median(far))
    limit = 3 * float(np.percentile(far, 90))     # robust even when 2% of rows are outliers
    for i in np.flatnonzero(far > limit):
        out.append(Diagnostic(ds.origins[i], "warning", "outlier",
                              f"far from every other row (distance to its {k}th nearest "
                              f"{far[i]:.3g}; typical {med:.3g})",
                              min(1.0, (far[i] - limit) / (limit + 1e-12))))
    return out


def imbalance(ds, where):
    if not ds.classes:
        return []
    counts = np.bincount(ds.y[~ds.holdout], minlength=len(ds.classes))
    top = int(counts.max())
    out = []
    for c, n in enumerate(counts.tolist()):
        if n < top / 10:
            out.append(Diagnostic(where, "warning", "class-imbalance",
                                  f"class '{ds.classes[c]}' has {n} training rows; the largest "
                                  f"has {top}", 1 - n / top))
    return out


# --- Label errors ------------------------------------------------------------------------

def label_errors(ds, dyn, seed=0):
    """label-error warnings: rows whose calibrated P(label wrong) is at least 0.5, from the
    network's recorded dynamics stacked with a cross-fitted linear model (debug/labelerr.py)."""
    from s2build.debug import labelerr
    if ds.task != "classification" or not ds.classes:
        return []
    found = labelerr.scores(ds, dyn, seed=seed)
    if found is None:
        return []
    wrong, pred = found["wrong"], found["pred"]
    out = []
    for i in np.flatnonzero(wrong >= 0.5):
        out.append(Diagnostic(ds.origins[i], "warning", "label-error",
                              f"labelled {_label(ds, i)}, the data says {ds.classes[pred[i]]} "
                              f"(confidence {wrong[i]:.2f})", wrong[i],
                              fix=("relabel", ds.classes[pred[i]])))
    return out


def fold_probabilities(target, ds, k, progress=None):
    """Out-of-sample class probabilities [n, classes] from k models, each trained without one
    fold (folds by row index modulo k after a seeded shuffle)."""
    import torch

    from s2build.data import dataset as datamod
    from s2build.compile import train
    rng = np.random.default_rng(target.config["train"]["seed"])
    fold = rng.permutation(len(ds.y)) % k
    probs = np.zeros((len(ds.y), len(ds.classes)), dtype=np.float32)
    for f in range(k):
        sub = datamod.Dataset(x=ds.x, y=ds.y, origins=ds.origins, row_hash=ds.row_hash,
                              input_hash=ds.input_hash, holdout=fold == f, features=ds.features,
                              classes=ds.classes, task=ds.task, parsed_files=[])
        trained = train.train(target, sub, record=False)
        out, _ = train.forward_all(trained.module, torch.from_numpy(ds.x[fold == f]))
        probs[fold == f] = torch.softmax(out, dim=1).numpy()
        if progress:
            progress(f + 1, k)
    return probs


def label_errors_cleanlab(ds, probs):
    """Confident learning (cleanlab) on out-of-sample probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    quality = get_label_quality_scores(ds.y, probs)
    issues = find_label_issues(ds.y, probs)
    out = []
    for i in np.flatnonzero(issues):
        pred = int(probs[i].argmax())
        out.append(Diagnostic(ds.origins[i], "warning", "label-error",
                              f"labelled {_label(ds, i)}, the model says {ds.classes[pred]} "
                              f"(p={probs[i, pred]:.2f}, out of sample)", 1 - quality[i],
                              fix=("relabel", ds.classes[pred])))
    return out


MOSTLY_MISSING = 0.5       # a column missing in more than this share of rows is reported
UNSEEN_SHOWN = 20          # unseen-category rows listed per column, then a count


def table_columns(ds):
    """Tables only. mostly-missing (warning): a column missing in over half of the rows, at
    the first file's header. unseen-category (warning): a holdout row whose category value no
    training row has (the artifact maps it to the '(other)' slot)."""
    raw = ds.raw
    if raw is None or not len(raw):
        return []
    out = []
    first = ds.origins.files[0] if hasattr(ds.origins, "files") else str(ds.origins[0])
    header = f"{first}:1" if ds.origins.fmt == "csv" else first
    ni = ci = 0
    train = ~ds.holdout
    for name, kind in zip(raw.names, raw.kinds):
        if kind == "number":
            missing = np.isnan(raw.num[:, ni])
            ni += 1
        else:
            codes = raw.codes[:, ci]
            missing = codes < 0
            seen = np.zeros(len(raw.vocab[ci]) + 1, dtype=bool)
            seen[codes[train & ~missing]] = True
            unseen = np.flatnonzero(ds.holdout & ~missing & ~seen[np.maximum(codes, 0)])
            for i in unseen[:UNSEEN_SHOWN].tolist():
                out.append(Diagnostic(ds.origins[i], "warning", "unseen-category",
                                      f"column '{name}': '{raw.vocab[ci][codes[i]]}' appears in "
                                      "no training row; the model treats it as unknown"))
            if len(unseen) > UNSEEN_SHOWN:
                out.append(Diagnostic(header, "warning", "unseen-category",
                                      f"column '{name}': {len(unseen) - UNSEEN_SHOWN} more "
                                      "holdout rows with categories no training row has"))
            ci += 1
        share = float(missing.mean())
        if share > MOSTLY_MISSING:
            out.append(Diagnostic(header, "warning", "mostly-missing",
                                  f"column '{name}' is missing in {share:.0%} of the rows"
                                  + (" (all of them)" if share == 1.0 else ""), share))
    return out


def run(target, ds, dyn, where, folds=0, progress=None):
    """Every model-aware check on a loaded dataset; `dyn` is the loaded dynamics.npz."""
    diags = duplicates(ds) + leakage(ds) + geometry(ds) + imbalance(ds, where) + \
        table_columns(ds)
    if ds.task == "classification":
        if folds:
            diags += label_errors_cleanlab(ds, fold_probabilities(target, ds, folds, progress))
        else:
            diags += label_errors(ds, dyn, seed=target.config["train"]["seed"])
    return sort(diags)
