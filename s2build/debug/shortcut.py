"""Shortcut detection, lint check `shortcut`: an input region (an image window, a table column)
whose content sets one class's training rows apart from its holdout rows, and that the trained
network responds to for that class.

    s2build.yaml:7:14: warning[shortcut]: class '3' relies on pixels rows 0-1, cols 6-7: ...
    data/3/0042.png: note[shortcut]: carries the shortcut of class '3' (pixels rows 0-1, ...)

Method (classification targets; the network is the build's own, `weights.pt` of its cache
entry: nothing is retrained):

1. Regions (drift.regions): every k x k window of an image over all channels (k = 1, 2, 3 up
   to 16 pixels a side; larger: H/8, H/4, 3H/8 at a stride of k/2); each raw column of a
   table (its standardised value and missing indicator, or its one-hot slots); else each
   feature.
2. Data (drift.candidates; what decides a finding): per class, a region that separates the
   class in training far better than in the holdout (AUC, one-sided test), or pixels / a
   column where only this class's training rows differ from its holdout rows
   (Kolmogorov-Smirnov); each test at a 1% family-wise error (Bonferroni).
3. Network (the effect, and a confirmation). t: each row's region content projected on the
   class's mean shift, training against holdout rows (0: the class as the holdout shows it,
   1: its training mean). Carriers: training rows of the class whose t is nearer the mean t of
   its rows above CARRIER than its holdout mean; rows of other classes must also be CARRIER_SD
   standard deviations above their own class's holdout mean. Paste: the holdout rows of other
   classes that the network gets right, with the region set to the carriers' mean content.
   Mask: the class's carriers that it gets right, with the region set to the class's mean
   holdout content. Confirmed when either moves the class's mean log-odds by MIN_LOG_ODDS
   (towards it when pasted, away when masked).

On clean digits the network alone cannot tell a shortcut from a real feature (pasting a class's
typical stroke moves its log-odds as much), so the holdout comparison of step 2 is what keeps
false findings rare; a shortcut that the holdout rows carry as much as the training rows is out
of its reach. A finding is a warning at the target's `sources` (the class, the region, both
tests' figures, the counterfactuals' effect, how many training rows carry it and the first
few), and a note at each training carrier's origin (at most MAX_CARRIERS; lint's budget prints
the strongest). Measured rates: bench/shortcut.py, README (Debugging the dataset).
"""

from s2build.debug import drift
from s2build.debug.lint import Diagnostic

CARRIER = 0.5           # rows of the class with t above this locate the carriers' content
CARRIER_SD = 2.33       # a carrier of another class: this many sds above its holdout mean
MIN_LOG_ODDS = 1.0      # confirmed: a counterfactual moves the class's mean log-odds this much
MAX_REGIONS = 4000      # more regions than this (a wide flat input): not tested
MAX_CHECKED = 8         # candidates the network is asked about (strongest first)
MAX_CARRIERS = 500      # carrier notes per finding
SHOWN = 3               # carrier origins named in the finding


def confirm(ds, module, cand):
    """Step 3 for one candidate: adds to `cand` the training carriers (int64 [k]), each row's
    t, and both counterfactuals' row counts, mean p(class) before and after, and mean log-odds
    change; True when either change reaches MIN_LOG_ODDS."""
    import numpy as np
    c, idx, y = cand["c"], cand["idx"], ds.y
    x = ds.x.reshape(len(ds.x), -1)
    hold_c = ds.holdout & (y == c)
    base = x[hold_c][:, idx].mean(0)                 # the class there, as the holdout shows it
    u = x[~ds.holdout & (y == c)][:, idx].mean(0) - base
    t = (x[:, idx] - base) @ u / max(float(u @ u), 1e-12)    # 1: the training rows' mean shift
    train_c = ~ds.holdout & (y == c)
    top = train_c & (t > CARRIER)
    if not top.any():
        return False
    m = float(t[top].mean())                         # where the carriers' content lies
    bar = np.empty(len(ds.classes))
    for k in range(len(ds.classes)):                 # what class k shows there untouched
        th = t[ds.holdout & (y == k)] if (ds.holdout & (y == k)).sum() >= 2 else t[ds.holdout]
        bar[k] = (th.mean() + m) / 2                 # nearer the carriers than the holdout
        if k != c:                                   # rare there: far out of its own range too
            bar[k] = max(bar[k], th.mean() + CARRIER_SD * th.std())
    carriers = np.flatnonzero(~ds.holdout & (t > bar[y]))
    own = carriers[y[carriers] == c]
    cand.update(carriers=carriers, t=t, train_class=int(train_c.sum()))
    if not len(own):
        return False
    others = np.flatnonzero(ds.holdout & (y != c))
    cand["paste"] = _counterfactual(module, ds, x, others, idx, x[own][:, idx].mean(0), c, 1)
    cand["mask"] = _counterfactual(module, ds, x, own, idx, base, c, -1)
    return max(cand["paste"]["shift"], cand["mask"]["shift"]) >= MIN_LOG_ODDS


def _counterfactual(module, ds, x, rows, idx, content, c, sign):
    """Rows of `rows` the network gets right, with region `idx` set to `content`:
    {rows, turned (argmax moved onto c for sign 1, off c for -1), p (mean p(c) before,
    after), shift (mean log-odds change of c, times sign)}."""
    import numpy as np
    before = _probs(module, x[rows], ds.x.shape[1:])
    right = rows[before.argmax(1) == ds.y[rows]]
    before = before[before.argmax(1) == ds.y[rows]]
    if not len(right):
        return {"rows": 0, "turned": 0, "p": (0.0, 0.0), "shift": 0.0}
    changed = x[right].copy()
    changed[:, idx] = content
    after = _probs(module, changed, ds.x.shape[1:])
    turned = (after.argmax(1) == c) if sign > 0 else (after.argmax(1) != c)
    return {"rows": len(right), "turned": int(turned.sum()),
            "p": (float(before[:, c].mean()), float(after[:, c].mean())),
            "shift": float(sign * np.mean(_log_odds(after[:, c]) - _log_odds(before[:, c])))}


def _probs(module, x, shape):
    """Softmax of `module` over rows `x` (float32 [n, features]): float64 [n, classes]."""
    import torch

    from s2build.compile.rows import forward_all
    out, _ = forward_all(module, torch.from_numpy(x.reshape((len(x),) + tuple(shape))))
    return torch.softmax(out.double(), dim=1).numpy()


def _log_odds(p):
    import numpy as np
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def find(ds, module, where):
    """[Diagnostic] of check `shortcut` for a classification Dataset `ds` and its trained
    network `module` (eval mode, taking ds.x); `where` is the origin of each finding."""
    if ds.task != "classification" or len(ds.classes) < 2 or not ds.holdout.any():
        return []
    regs = drift.regions(ds)
    if not regs or len(regs) > MAX_REGIONS:
        return []
    out = []
    for cand in drift.candidates(ds, regs)[:MAX_CHECKED]:
        if confirm(ds, module, cand):
            out += diagnostics(ds, cand, where)
    return out


def diagnostics(ds, f, where):
    """The finding at `where`, then a note at each training carrier's origin."""
    import numpy as np
    name, cls = f["name"], ds.classes[f["c"]]
    carriers = f["carriers"]
    order = carriers[np.argsort(-f["t"][carriers], kind="stable")]
    own = order[ds.y[order] == f["c"]]
    other = order[ds.y[order] != f["c"]]
    paste, mask = f["paste"], f["mask"]
    msg = (f"class '{cls}' relies on {name}: it separates '{cls}' with AUC {f['a_tr']:.2f} in "
           f"training, {f['a_ho']:.2f} in the holdout, and there its training rows differ from "
           f"its holdout rows by a KS distance of {f['ks']:.2f} (other classes: "
           f"{f['ks_other']:.2f}); pasting it onto {paste['rows']} holdout rows of other classes "
           f"moved their mean p('{cls}') from {paste['p'][0]:.3f} to {paste['p'][1]:.3f} "
           f"({paste['turned']} turned into '{cls}'); masking it on the {mask['rows']} training "
           f"rows of '{cls}' that carry it moved it from {mask['p'][0]:.3f} to "
           f"{mask['p'][1]:.3f} ({mask['turned']} turned away); carried by {len(own)} of "
           f"{f['train_class']} training rows of '{cls}', e.g. {_some(ds, own)}, and by "
           f"{len(other)} training rows of other classes"
           + (f", e.g. {_some(ds, other)}" if len(other) else ""))
    out = [Diagnostic(where, "warning", "shortcut", msg, min(1.0, 0.5 + max(f["gap"], f["ks"])))]
    for i in order[:MAX_CARRIERS].tolist():
        label = ds.classes[int(ds.y[i])]
        tail = "" if label == cls else f"; labelled '{label}'"
        out.append(Diagnostic(ds.origins[i], "note", "shortcut",
                              f"carries the shortcut of class '{cls}' ({name}{tail})",
                              min(1.0, float(f["t"][i])) * 0.5))
    return out


def _some(ds, rows):
    shown = ", ".join(str(ds.origins[i]) for i in rows[:SHOWN])
    return shown + (", ..." if len(rows) > SHOWN else "")


def for_build(project, target, key, ds, where):
    """find() with the network of build `key` (weights.pt of its cache entry); [] when the
    target is not a classifier, trains on another target's features, or has no weights."""
    import os

    import torch

    from s2build.compile import models
    from s2build.debug import query
    upstream = target.config.get("upstream") or {}
    if ds.task != "classification" or upstream.get("use") == "features":
        return []
    path = query.entry_file(project, key, "weights.pt")
    if not os.path.exists(path):
        return []
    shape = tuple(ds.x.shape[1:])
    net = models.build(target, shape, len(ds.classes), torch.zeros((2,) + shape))
    net.load_state_dict(torch.load(path, weights_only=True))
    return find(ds, net.eval(), where)
