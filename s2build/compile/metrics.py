"""Metric implementations: the one place a metric is computed, on numpy arrays.

Training's evaluation calls them on the holdout outputs of the torch network, spec gates on
the onnxruntime outputs of the artifact: the same function, so a gate sees the value the
build recorded. Each takes `out` (float [n, k]: logits for classification and multilabel,
values for regression) and `y` (int [n] class indices; float [n, k] values or 0/1 labels) and
returns a float, computed in float64. Directions and tasks live in s2build/project/registry.py.

    accuracy  classification: share of rows whose argmax is the label;
              multilabel: share of outputs whose sign (logit > 0) matches the 0/1 label
    f1        macro F1 over the classes that occur in the labels or the predictions
    mse, mae  mean squared / absolute error over every output of every row
    r2        coefficient of determination per output column (against the column's own
              mean), averaged over the columns (scikit-learn's default); a constant column
              scores 1.0 when predicted exactly, else 0.0

`functions(target)` gives the target's metrics as [(name, fn(out, y) -> float)], built-ins
from the registry and user metrics (`path/file.py:fn`, called with torch tensors, as user
losses are) alike. Only numpy is imported here; torch only when a user metric is called.
"""

import numpy as np

from s2build.compile import usercode
from s2build.errors import BuildError
from s2build.project import registry


def accuracy(out, y):
    if y.ndim == 2:                                       # multilabel: per output
        return float(((out.reshape(y.shape) > 0) == (y > 0.5)).mean())
    return float((out.argmax(axis=-1) == y).mean())


def f1(out, y):
    pred = out.argmax(axis=-1)
    scores = []
    for c in range(out.shape[-1]):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def _values(out, y):
    """(out, y) as float64 [n, k] each (a flat target of n values is one column)."""
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(len(y), -1)
    return np.asarray(out, dtype=np.float64).reshape(y.shape), y


def mse(out, y):
    o, y = _values(out, y)
    return float(((o - y) ** 2).mean())


def mae(out, y):
    o, y = _values(out, y)
    return float(np.abs(o - y).mean())


def r2(out, y):
    o, y = _values(out, y)
    ss_res = ((y - o) ** 2).sum(axis=0)                              # [k]
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)                 # [k]
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    per = np.where(ss_tot > 0, 1.0 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
    return float(per.mean()) if per.size else 0.0


def functions(target):
    """[(name, fn(out, y) -> float)] of the target's metrics in the yaml's order; `out` and
    `y` are numpy arrays."""
    out = []
    for use in registry.metrics_of(target.config):
        if use.builtin is not None:
            out.append((use.name, registry.implementation(use.builtin)))
            continue
        fn, path = usercode.load(target, use.ref_path)

        def user_metric(o, t, fn=fn, path=path, use=use):
            import torch
            value = usercode.call(fn, path, f"metric {use.ref}", torch.from_numpy(np.asarray(o)),
                                  torch.from_numpy(np.asarray(t)))
            try:
                return float(value)
            except (TypeError, ValueError):
                raise BuildError(f"metric {use.ref} returned {type(value).__name__}, expected "
                                 "a number", target.loc(*use.ref_path)) from None
        out.append((use.name, user_metric))
    return out
