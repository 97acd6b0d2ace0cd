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
"""

import numpy as np


def query_factors_from_rows(dyn, row, pred):
    """(dz [c, k], a [c, h]) of dataset row `row`, with dz re-taken at class `pred`
    (cross-entropy: dz = softmax - onehot, so the stored dz for the row's own label gives the
    probabilities back)."""
    y = int(dyn["y"][row])
    dz = dyn["grad_out"][:, row, :].astype(np.float64).copy()     # [c, k]
    probs = dz.copy()
    probs[:, y] += 1.0
    dz = probs
    dz[:, pred] -= 1.0
    return dz, dyn["grad_in"][:, row, :].astype(np.float64)


def query_factors_from_model(module, x):
    """(dz [1, k], a [1, h]) of input `x` [1, ...] under the final network, at its prediction."""
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
    return dz[None], seen[0].reshape(1, -1).double().numpy(), pred, p


def influence(dyn, dz_q, a_q, train_rows):
    """Influence [len(train_rows)] of each training row on the query."""
    lrs = dyn["ckpt_lr"].astype(np.float64)
    total = np.zeros(len(train_rows))
    c_count = len(lrs)
    for c in range(c_count):
        qc = min(c, len(dz_q) - 1)                    # final-model queries: one set of factors
        dz = dyn["grad_out"][c][train_rows].astype(np.float64)
        a = dyn["grad_in"][c][train_rows].astype(np.float64)
        total += lrs[c] * (dz @ dz_q[qc]) * (a @ a_q[qc])
    return total


def blame(dyn, origins, query_row=None, module=None, x=None, k=10):
    """Top-k proponents of the query's current output: ([(origin, label index, score)],
    predicted class, probability, exact: whether the query's own checkpoint factors were used)."""
    if "grad_out" not in dyn:
        raise ValueError("no gradient checkpoints were recorded for this target (its last "
                         "layer is not linear, or the factors were too large)")
    if dyn["grad_out"].shape[1] != len(origins):
        raise ValueError("these dynamics were recorded by an older s2build (gradients of "
                         "training rows only); rebuild: s2build clean --cache && s2build build")
    train_rows = dyn["train_rows"]
    if query_row is not None:
        logits = dyn["logits"][query_row].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        pred = int(p.argmax())
        dz_q, a_q = query_factors_from_rows(dyn, query_row, pred)
        exact = True
    else:
        dz_q, a_q, pred, p = query_factors_from_model(module, x)
        exact = False
    scores = influence(dyn, dz_q, a_q, train_rows)
    if query_row is not None:
        scores[train_rows == query_row] = -np.inf          # a row does not explain itself
    order = np.argsort(-scores)[:k]
    return ([(origins[train_rows[i]], int(dyn["y"][train_rows[i]]), float(scores[i]))
             for i in order], pred, float(p[pred]), exact)


def top_rows(dyn, query_row, k):
    """Dataset indices of the k strongest proponents of a dataset row's output (for benches)."""
    train_rows = dyn["train_rows"]
    logits = dyn["logits"][query_row].astype(np.float64)
    pred = int(logits.argmax())
    dz_q, a_q = query_factors_from_rows(dyn, query_row, pred)
    scores = influence(dyn, dz_q, a_q, train_rows)
    scores[train_rows == query_row] = -np.inf
    return train_rows[np.argsort(-scores)[:k]]
