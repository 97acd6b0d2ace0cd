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


def top_rows(dyn, query_row, k, estimator=None):
    """Dataset indices of the k strongest proponents of a dataset row's output (for benches).
    `estimator(dyn, dz_q, a_q, train_rows)`: the scores (default influence, last-layer TracIn)."""
    train_rows = dyn["train_rows"]
    logits = dyn["logits"][query_row].astype(np.float64)
    pred = int(logits.argmax())
    dz_q, a_q = query_factors_from_rows(dyn, query_row, pred)
    scores = (estimator or influence)(dyn, dz_q, a_q, train_rows)
    scores[train_rows == query_row] = -np.inf
    return train_rows[np.argsort(-scores)[:k]]


TRAK_ROWS = 20_000   # training rows each checkpoint's kernel is estimated from (evenly spaced)


def trak_kernels(dyn, train_rows, damping=1.0, chunk=4096):
    """Per checkpoint, the inverse [d, d] (d = dz * da <= 1024) of the damped feature kernel
    of influence_trak: K_c = sum_i phi_i phi_i^T / r_i^2 over up to TRAK_ROWS evenly spaced
    training rows (scaled to all of them), plus lambda I with lambda = damping * trace(K_c) / d.
    phi_i = vec(gz_i ga_i^T) is the row's sketched last-layer loss gradient and r_i = 1 - p_y
    its residual at that checkpoint (-dz_i[y_i], read back through the basis; clipped to
    [1e-3, 1]), so phi_i / r_i is the gradient of the row's margin log(p_y / (1 - p_y)), as
    TRAK projects it. Computed once per dynamics; a query then costs O(n * d)."""
    lrs = dyn["ckpt_lr"]
    sample = np.unique(np.linspace(0, len(train_rows) - 1,
                                   min(len(train_rows), TRAK_ROWS)).astype(np.int64))
    rows = train_rows[sample]
    y = np.asarray(dyn["y"])[rows].astype(np.int64)
    out = []
    for c in range(len(lrs)):
        gz = tracin.decode(dyn["grad_z"], dyn["grad_z_scale"], c, rows)
        ga = tracin.decode(dyn["grad_a"], dyn["grad_a_scale"], c, rows)
        bz = dyn["grad_z_basis"][c].astype(np.float64)              # [k, dz]
        r = np.clip(-(gz * bz[y]).sum(axis=1), 1e-3, 1.0)
        d = gz.shape[1] * ga.shape[1]
        kern = np.zeros((d, d))
        for i in range(0, len(rows), chunk):
            phi = (gz[i:i + chunk, :, None] * ga[i:i + chunk, None, :]).reshape(-1, d)
            phi /= r[i:i + chunk, None]
            kern += phi.T @ phi
        kern *= len(train_rows) / max(len(rows), 1)
        lam = damping * np.trace(kern) / d
        if not lam > 0:
            lam = 1.0
        out.append(np.linalg.inv(kern + lam * np.eye(d)))
    return out


def influence_trak(dyn, dz_q, a_q, train_rows, kernels=None, damping=1.0):
    """Influence [len(train_rows)] of each training row on the query, TRAK-style: TracIn's
    per-checkpoint inner product with the inverse of the training rows' feature kernel between
    them (a Gauss-Newton / inverse-Hessian correction in the sketched last-layer gradient
    space; TRAK, Park et al. 2023):

        sum over checkpoints c of  lr_c * phi_i^T (K_c + lambda I)^-1 phi_q

    phi = vec(gz ga^T) (the row's sketched loss gradient), phi_q the query's (at its predicted
    class, as influence()); K_c, lambda: trak_kernels (`kernels`, computed when None). Large
    `damping` tends to TracIn (each checkpoint rescaled); little overfits the kernel of a small
    table (damping 1 was best or near it on digits, wine and breast_cancer). The sign is
    influence()'s: positive pushed the query towards its current output. The linear
    datamodeling score of both: bench/lds.py."""
    if kernels is None:
        kernels = trak_kernels(dyn, train_rows, damping)
    lrs = dyn["ckpt_lr"].astype(np.float64)
    total = np.zeros(len(train_rows))
    for c in range(len(lrs)):
        gz = tracin.decode(dyn["grad_z"], dyn["grad_z_scale"], c, train_rows)
        ga = tracin.decode(dyn["grad_a"], dyn["grad_a_scale"], c, train_rows)
        w = (kernels[c] @ np.outer(dz_q[c], a_q[c]).ravel()).reshape(gz.shape[1], ga.shape[1])
        total += lrs[c] * ((gz @ w) * ga).sum(axis=1)
    return total
