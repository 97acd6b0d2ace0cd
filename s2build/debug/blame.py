"""Blame: which training rows caused this output (the debugger of software 2.0).

Last-layer TracIn over the checkpoints recorded during training (train.Dynamics): the influence
of training row i on query q is

    sum over checkpoints c of  lr_c * (dz_i . dz_q) * (a_i . a_q)

where a is the input of the last linear layer and dz the gradient of the loss with respect to
the logits (the per-example gradient of the last layer is the outer product dz a^T). The query's
gradient is taken at the class the network predicts, so a positive influence means "training
on this row pushed the query towards its current output" (a proponent).

A query that is a row of the dataset (its origin, e.g. `data/a.csv:12`) uses its own factors
at every checkpoint. Any other input uses the final network's factors (loaded from
`weights.pt` in the cache entry) against every checkpoint: an approximation, stated in the output.

The factors are stored sketched (compile/tracin.py: dz @ Bz and a @ Ba, float16 with a scale per
checkpoint); a query's factors are projected with the same bases (grad_z_basis, grad_a_basis), so
scores are computed in the projected space: (gz_i . gz_q)(ga_i . ga_q).
"""

import numpy as np

from s2build.compile import tracin

OLD_FORMAT = ("these dynamics were recorded by an older s2build (unsketched gradient factors); "
              "rebuild it: s2build clean --cache && s2build build")


def query_factors_from_rows(dyn, row, pred):
    """(gz [c, dz], ga [c, da]) of dataset row `row`, with dz re-taken at class `pred`
    (cross-entropy: dz = softmax - onehot(y), so dz' = dz + onehot(y) - onehot(pred); the
    projection is linear: gz' = gz + Bz[y] - Bz[pred])."""
    c = len(dyn["ckpt_lr"])
    gz = np.stack([tracin.decode(dyn["grad_z"], dyn["grad_z_scale"], i, row) for i in range(c)])
    ga = np.stack([tracin.decode(dyn["grad_a"], dyn["grad_a_scale"], i, row) for i in range(c)])
    y = int(dyn["y"][row])
    if y != pred:
        b = dyn["grad_z_basis"].astype(np.float64)       # [c, k, dz]
        gz = gz + b[:, y] - b[:, pred]
    return gz, ga


def query_factors_from_model(module, x):
    """(dz [1, k], a [1, h], pred, p) of input `x` [1, ...] under the final network, at its
    prediction."""
    import torch

    from s2build.compile import models
    head = models.last_linear(module)
    seen = []
    hook = head.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():
        z = module(torch.from_numpy(x))
    hook.remove()
    p = torch.softmax(z, dim=1)[0].double().numpy()
    pred = int(p.argmax())
    dz = p.copy()
    dz[pred] -= 1.0
    a = seen[0].reshape(1, -1).double().numpy()
    return dz[None], a, pred, p


def influence(dyn, dz_q, a_q, train_rows):
    """Influence [len(train_rows)] of each training row on the query."""
    lrs = dyn["ckpt_lr"].astype(np.float64)
    total = np.zeros(len(train_rows))
    c_count = len(lrs)
    for c in range(c_count):
        gz = tracin.decode(dyn["grad_z"], dyn["grad_z_scale"], c, train_rows)
        ga = tracin.decode(dyn["grad_a"], dyn["grad_a_scale"], c, train_rows)
        total += lrs[c] * (gz @ dz_q[c]) * (ga @ a_q[c])
    return total


def blame(dyn, origins, query_row=None, module=None, x=None, k=10):
    """Top-k proponents of the query's current output: ([(origin, label index, score)],
    predicted class, probability, exact: whether the query's own checkpoint factors were used)."""
    check(dyn, len(origins))
    train_rows = dyn["train_rows"]
    if query_row is not None:
        logits = dyn["logits"][query_row].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        pred = int(p.argmax())
        dz_q, a_q = query_factors_from_rows(dyn, query_row, pred)
        exact = True
    else:
        dz, a, pred, p = query_factors_from_model(module, x)      # one set, every checkpoint
        dz_q = np.stack([dz[0] @ b for b in dyn["grad_z_basis"].astype(np.float64)])
        a_q = np.stack([a[0] @ b for b in dyn["grad_a_basis"].astype(np.float64)])
        exact = False
    scores = influence(dyn, dz_q, a_q, train_rows)
    if query_row is not None:
        scores[train_rows == query_row] = -np.inf          # a row does not explain itself
    order = np.argsort(-scores)[:k]
    return ([(origins[train_rows[i]], int(dyn["y"][train_rows[i]]), float(scores[i]))
             for i in order], pred, float(p[pred]), exact)


def check(dyn, n):
    """ValueError (the caller words it) unless `dyn` holds this format's factors of n rows."""
    if "grad_out" in dyn or "version" not in dyn:
        raise ValueError(OLD_FORMAT)
    if "grad_z" not in dyn:
        raise ValueError("no gradient checkpoints were recorded for this target (its last "
                         "layer is not linear, or the factors were too large)")
    if dyn["grad_z"].shape[1] != n:
        raise ValueError(OLD_FORMAT)


def top_rows(dyn, query_row, k):
    """Dataset indices of the k strongest proponents of a dataset row's output (for benches)."""
    train_rows = dyn["train_rows"]
    logits = dyn["logits"][query_row].astype(np.float64)
    pred = int(logits.argmax())
    dz_q, a_q = query_factors_from_rows(dyn, query_row, pred)
    scores = influence(dyn, dz_q, a_q, train_rows)
    scores[train_rows == query_row] = -np.inf
    return train_rows[np.argsort(-scores)[:k]]
