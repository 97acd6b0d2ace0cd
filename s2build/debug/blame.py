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

Every task: the query's direction dz_q in output space says what "caused this output" means.
classification: the loss gradient at the predicted class (above); multilabel: the loss gradient
at the predicted labels (sigmoid(z) - [z > 0]): proponents push the outputs the way they went;
regression: -e_j for output j, so a row's score is the change one gradient step on it makes to
output j (lr * (dz_i . e_j)(a_i . a_q), sign flipped by the step): positive rows raise the
prediction when upweighted, negative rows lower it. A row query's activations are its own at
every checkpoint (exact); its direction comes from the final outputs (exact for regression,
whose direction is constant).

Gates (`failing`): the training rows that most hurt the holdout rows a gate counts against
(wrong classes or labels; regression: the 10% largest squared errors): harm(i) = -sum over
those rows q of lr (dz_i . dz_q)(a_i . a_q) with dz_q their own loss gradient at their label,
as recorded: a positive harm means training on i raised q's loss.

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


def task_of(dyn):
    """'classification', 'multilabel' or 'regression': dyn["task"] where the caller set it
    (query.dynamics does, from the target), else from the recorded labels."""
    if "task" in dyn:
        return str(dyn["task"])
    y = dyn["y"]
    if y.ndim == 1:
        return "classification"
    return "multilabel" if len(dyn["classes"]) else "regression"


def direction(dyn, z, output=0):
    """dz_q [k] of a query with final outputs z [k] (see the module docstring); for
    classification the predicted class's loss gradient."""
    task = task_of(dyn)
    z = np.asarray(z, dtype=np.float64)
    if task == "regression":
        d = np.zeros(len(z))
        d[output] = -1.0
        return d
    if task == "multilabel":
        p = 1 / (1 + np.exp(-z))
        return p - (z > 0)
    p = np.exp(z - z.max())
    p /= p.sum()
    d = p.copy()
    d[int(p.argmax())] -= 1.0
    return d


def project(dyn, dz, a=None):
    """(gz [c, dz], ga [c, da] or None) of a logit-space direction dz [k] (and activation a [h])
    on every checkpoint's bases."""
    gz = np.stack([dz @ b for b in dyn["grad_z_basis"].astype(np.float64)])
    ga = None if a is None else np.stack([a @ b for b in dyn["grad_a_basis"].astype(np.float64)])
    return gz, ga


def row_activations(dyn, row):
    c = len(dyn["ckpt_lr"])
    return np.stack([tracin.decode(dyn["grad_a"], dyn["grad_a_scale"], i, row) for i in range(c)])


def scores_for(dyn, row=None, z=None, a=None, output=0):
    """Influence [n_train] of each training row on a query of any task: a dataset row (its
    recorded activations), or final outputs z [k] and last-layer input a [h] of a new input."""
    train_rows = dyn["train_rows"]
    if row is not None and task_of(dyn) == "classification":
        pred = int(np.asarray(dyn["logits"][row]).argmax())
        dz_q, a_q = query_factors_from_rows(dyn, row, pred)
    elif row is not None:
        dz_q, _ = project(dyn, direction(dyn, dyn["logits"][row], output))
        a_q = row_activations(dyn, row)
    else:
        dz_q, a_q = project(dyn, direction(dyn, z, output), a)
    out = influence(dyn, dz_q, a_q, train_rows)
    if row is not None:
        out[train_rows == row] = np.nan                  # a row does not explain itself
    return out


def model_outputs(module, x):
    """(z [k], a [h]) of input x [1, ...] under the final network: its outputs and the input
    of its last linear layer."""
    import torch

    from s2build.compile import models
    seen = []
    hook = models.last_linear(module).register_forward_hook(
        lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():
        z = module(torch.from_numpy(x))
    hook.remove()
    return z[0].double().numpy(), seen[0].reshape(-1).double().numpy()


def explain(dyn, origins, row=None, module=None, x=None, k=10, output=0):
    """Blame for any task: {task, outputs (the query's final outputs), exact, rows: [(origin,
    train index, score)] the k strongest proponents (regression: the rows that most raised
    output `output`), lowering: regression's k rows that most lowered it, else []}."""
    check(dyn, len(origins))
    if row is not None:
        z, a = np.asarray(dyn["logits"][row], dtype=np.float64), None
    else:
        z, a = model_outputs(module, x)
    scores = scores_for(dyn, row=row, z=z, a=a, output=output)
    train_rows = dyn["train_rows"]
    up = np.argsort(-np.nan_to_num(scores, nan=-np.inf))[:k]
    pick = lambda idx: [(origins[train_rows[i]], int(train_rows[i]), float(scores[i]))  # noqa
                        for i in idx]
    task = task_of(dyn)
    down = np.argsort(np.nan_to_num(scores, nan=np.inf))[:k] if task == "regression" else []
    return {"task": task, "outputs": z, "exact": row is not None, "rows": pick(up),
            "lowering": pick(down)}


def failing_rows(dyn):
    """Holdout rows a gate counts against: wrong (classification, multilabel), or the 10% of
    holdout rows with the largest squared error (regression)."""
    hold = np.flatnonzero(dyn["holdout"])
    z, y = dyn["logits"][hold].astype(np.float64), dyn["y"][hold]
    task = task_of(dyn)
    if task == "classification":
        bad = z.argmax(axis=1) != y
    elif task == "multilabel":
        bad = ((z > 0) != (y > 0.5)).any(axis=1)
    else:
        err = ((z - y) ** 2).sum(axis=1)
        bad = err >= np.quantile(err, 0.9) if len(err) else np.zeros(0, bool)
    return hold[bad]


def harm(dyn, rows):
    """harm [n_train] of each training row on the holdout rows `rows` (module docstring),
    summed, and the per-query matrix's count of queries for which it is among the top 10."""
    train_rows = dyn["train_rows"]
    c = len(dyn["ckpt_lr"])
    total = np.zeros(len(train_rows))
    tops = np.zeros(len(train_rows), dtype=np.int64)
    for q in rows:
        gz = np.stack([tracin.decode(dyn["grad_z"], dyn["grad_z_scale"], i, q) for i in range(c)])
        h = -influence(dyn, gz, row_activations(dyn, q), train_rows)
        total += h
        tops[np.argsort(-h)[:10]] += 1
    return total, tops


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
