"""Label errors for the default `lint`: two out-of-sample views of each row, stacked, then a
calibrated probability that its label is wrong.

1. The network's view, from the training dynamics the build recorded: for a training row the
   sigmoid of its mean margin over the second half of training (area under the margin), for a
   holdout row the final network's class probabilities (out of sample).
2. A cross-fitted linear view: multinomial logistic regression (L2, lambda 1 as scikit-learn's
   C=1) on standardised inputs (a table's features as its TablePrep made them: standardised
   numbers, one-hot categories, missing indicators), fitted K=5 times without one fold and averaged over REPEATS
   seeded fold assignments, so every row's probabilities come from models that never saw it.
   It is cheap (full-batch L-BFGS) and strong where the network is weak: small tables.

The two are mixed with the weight `w` (network) that maximises the mixture's likelihood of the
labels of the holdout rows, where both views are out of sample (0.5 with fewer than
MIN_HOLDOUT holdout rows or without dynamics; 0 without a network view). q = w p_net(label) +
(1-w) p_lin(label) is the probability of the label; `score` = 1 - q ranks the rows.

Calibration: the label's log-odds logit(q) of mislabelled rows and of clean rows form two
humps; a two-component Gaussian mixture fitted by EM (wrong_probability) gives each row the
posterior of the low hump, P(label wrong), and the share of wrong labels. A row is reported
when P(wrong) >= 0.5; bench/labelnoise.py prints how often rows reported at confidence c are
really wrong.

Budget: the linear view runs up to MAX_ROWS rows (REPEATS seeds up to 20,000 rows, one above),
on at most MAX_WIDTH input columns (wider inputs go through their top principal directions,
tracin.basis); beyond MAX_ROWS only the network's view is used.
"""

import numpy as np

FOLDS = 5
REPEATS = 3
MAX_ROWS = 200_000
MAX_WIDTH = 256
MIN_HOLDOUT = 20
L2 = 1.0
NU = 10.0            # the clean hump's tails: Student's t with NU degrees of freedom


def standardise(x):
    """[n, d] float64 (n <= 20,000) or float32, each column centred and scaled; a nearly
    constant column (a corner pixel) is scaled by a tenth of the mean spread, not its own."""
    n = len(x)
    x = np.asarray(x, dtype=np.float64 if n <= 20_000 else np.float32).reshape(n, -1)
    if x.shape[1] > MAX_WIDTH:
        from s2build.compile import tracin
        x = x @ tracin.basis(x - x.mean(axis=0), MAX_WIDTH).astype(x.dtype)
    std = x.std(axis=0)
    std = np.maximum(std, 0.1 * std.mean() + 1e-12)
    return (x - x.mean(axis=0)) / std


def linear_probabilities(x, y, classes, seed=0, repeats=None):
    """Out-of-fold class probabilities [n, classes] of L2 logistic regression on x (standardised)."""
    import torch
    n = len(y)
    repeats = repeats or (REPEATS if n <= 20_000 else 1)
    X = torch.from_numpy(np.ascontiguousarray(x))
    Y = torch.from_numpy(np.asarray(y, dtype=np.int64))
    probs = np.zeros((n, classes), dtype=np.float64)
    for r in range(repeats):
        fold = np.random.default_rng(seed + r).permutation(n) % FOLDS
        for f in range(FOLDS):
            held = torch.from_numpy(fold == f)
            if not held.any() or held.all():
                continue
            probs[fold == f] += _fit_predict(X[~held], Y[~held], X[held], classes)
    return probs / repeats


def _fit_predict(x, y, x_out, classes):
    import torch
    w = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-10)
    scale = 0.5 * L2 / len(y)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + scale * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return torch.softmax(x_out @ w + b, dim=1).double().numpy()


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def network_view(ds, dyn):
    """(p_label [n], probs [n, C]) of the network, or None without recorded logits: p_label is
    out of sample for holdout rows and the late-training margin's sigmoid for training rows."""
    if dyn is None or "logits" not in dyn:
        return None
    probs = _softmax(dyn["logits"].astype(np.float64))
    n = len(ds.y)
    p_label = probs[np.arange(n), ds.y].copy()
    if "margin_late" in dyn:
        margin = dyn["margin_late"].astype(np.float64)
    else:                                           # dynamics version 1: every epoch's margins
        epochs = len(dyn["margin"])
        margin = dyn["margin"][epochs // 2:].astype(np.float64).mean(axis=0)
    p_label[dyn["train_rows"]] = 1 / (1 + np.exp(-np.clip(margin, -50, 50)))
    return p_label, probs


def mix_weight(ds, net_probs, lin_probs):
    """The network's weight in [0, 1]: the best of 21 on the holdout rows' label likelihood."""
    h = np.flatnonzero(ds.holdout)
    if len(h) < MIN_HOLDOUT:
        return 0.5
    pn, pl = net_probs[h, ds.y[h]], lin_probs[h, ds.y[h]]
    grid = np.linspace(0, 1, 21)
    ll = [np.log(np.clip(w * pn + (1 - w) * pl, 1e-9, 1)).mean() for w in grid]
    return float(grid[int(np.argmax(ll))])


def wrong_probability(q, iterations=200):
    """(P(label wrong) [n], fitted share of wrong labels) from the label's probability q [n]: a
    two-component Gaussian mixture over z = logit(q), a `wrong` component (mean kept at or
    below min(0, clean mean - 1): the label less likely than not) and a `clean` one, fitted by
    EM; P(wrong) is a row's posterior of the wrong component."""
    z = np.log(np.clip(q, 1e-4, 1 - 1e-4) / np.clip(1 - q, 1e-4, 1))
    share, mw, mc = 0.05, -2.0, float(np.median(z))
    sw = sc = max(1.4826 * float(np.median(np.abs(z - mc))), 0.3)    # robust: the clean hump's
    for _ in range(iterations):
        lw = np.log(share) - np.log(sw) - 0.5 * ((z - mw) / sw) ** 2
        lc = np.log(1 - share) - np.log(sc) - 0.5 * (NU + 1) * np.log1p(((z - mc) / sc) ** 2 / NU)
        p = 1 / (1 + np.exp(np.clip(lc - lw, -50, 50)))
        share = float(np.clip(p.mean(), 1e-4, 0.5))
        mc = float((1 - p) @ z / max((1 - p).sum(), 1e-9))
        mw = min(float(p @ z / max(p.sum(), 1e-9)), 0.0, mc - 1.0)
        sw = max(float(np.sqrt(p @ (z - mw) ** 2 / max(p.sum(), 1e-9))), 0.3)
        sc = max(float(np.sqrt((1 - p) @ (z - mc) ** 2 / max((1 - p).sum(), 1e-9))), 0.3)
    return p, share


def scores(ds, dyn, seed=0):
    """{"score", "wrong", "pred", "weight", "noise"}: score [n] ranks rows (higher = more likely
    mislabelled), wrong [n] is the calibrated P(label wrong), pred [n] the likeliest other class,
    weight the network's share, noise the fitted noise rate. Classification only."""
    n, k = len(ds.y), len(ds.classes)
    net = network_view(ds, dyn)
    lin = None
    if n <= MAX_ROWS and n >= 2 * FOLDS:
        x = ds.x.reshape(n, -1).astype(np.float64 if n <= 20_000 else np.float32) \
            if ds.prep is not None and ds.x.shape[-1] <= MAX_WIDTH else standardise(ds.x)
        lin = linear_probabilities(x, ds.y, k, seed=seed)
    if net is None and lin is None:
        return None
    if net is None:
        w, q, probs = 0.0, lin[np.arange(n), ds.y], lin
    elif lin is None:
        w, q, probs = 1.0, net[0], net[1]
    else:
        w = mix_weight(ds, net[1], lin)
        q = w * net[0] + (1 - w) * lin[np.arange(n), ds.y]
        probs = w * net[1] + (1 - w) * lin
    others = probs.copy()
    others[np.arange(n), ds.y] = -1
    wrong, noise = wrong_probability(q)
    return {"score": 1 - q, "wrong": wrong, "pred": others.argmax(axis=1), "weight": w,
            "noise": noise}
