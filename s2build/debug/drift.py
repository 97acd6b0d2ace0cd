"""Where one class's training rows differ from its holdout rows: the data half (step 2) of the
`shortcut` check (shortcut.py holds the method, the network half and the diagnostics).

`regions(ds)` cuts the input into named regions: image windows (pixel boxes, 0-based from the
top left), table columns, or single features. `candidates(ds, regs)` runs two tests per class c
over them, on at most MAX_ROWS rows per split (evenly spaced), each at a family-wise ALPHA
(Bonferroni over every class and region, or unit, tested):

    separation  each row's region content projected on d = m_c - m_o (the class's mean content
                minus the other classes', training rows): t = (v - m_o).d / |d|^2. The AUC of
                t, c against the rest, in training (A_tr) and in the holdout (A_ho); passes when
                A_tr >= MIN_TRAIN_AUC, A_tr - A_ho >= MIN_GAP and (A_tr - A_ho) / SE is past the
                one-sided bound, SE from Hanley and McNeil at A_tr with each split's counts.
    drift       per unit (an image pixel over its channels; a table column; a feature) the
                Kolmogorov-Smirnov distance between the class's training and holdout values,
                past its asymptotic bound, while the other classes' rows (training against
                holdout) stay under the uncorrected bound: a change of one class only. Pixels
                join into 8-connected components.

Per class, the separation window of highest z, or else the drift component of largest summed
distance, is kept; a drift component that overlaps the window gives the region its extent (the
pixels that changed). A window with no drift behind it must show the class's training rows
moving along d against its holdout rows (AUC, one-sided, Bonferroni over the classes): else it
is the mirror image of another class's shortcut. Standard library and numpy (lazily).
"""

from statistics import NormalDist

MIN_TRAIN_AUC = 0.7     # separation: the region separates the class this well in training
MIN_GAP = 0.15          # ... and at least this much (AUC) better than in the holdout
ALPHA = 0.01            # family-wise error of each test
MIN_CLASS_ROWS = 5      # a class needs this many rows (and the rest too) in each split
MAX_ROWS = 4000         # rows per split read (evenly spaced)


def regions(ds):
    """[(name, feature indices int64 [m], box or None)] over the flattened input; box =
    (r0, r1, c0, c1) for image windows, inclusive."""
    import numpy as np
    shape = ds.x.shape[1:]
    if ds.prep is not None:                        # a table: one region per raw column
        out, at = [], 0
        for col in ds.prep.columns:
            width = len(col.feature_names) if col.kind == "number" else col.slots
            out.append((f"column '{col.name}'", np.arange(at, at + width), None))
            at += width
        return out
    if len(shape) in (2, 3) and min(shape[-2:]) >= 4:
        h, w = shape[-2:]
        side = min(h, w)
        sizes = (1, 2, 3) if side <= 16 else sorted({max(1, round(side * f))
                                                     for f in (1 / 8, 1 / 4, 3 / 8)})
        out = []
        for k in sizes:
            stride = 1 if side <= 16 else max(1, k // 2)
            for r in range(0, h - k + 1, stride):
                for c in range(0, w - k + 1, stride):
                    box = (r, r + k - 1, c, c + k - 1)
                    out.append((box_name(box), box_indices(shape, box), box))
        return out
    n = int(np.prod(shape))
    names = ds.features if len(ds.features) == n else None
    return [(f"feature '{names[i]}'" if names else f"feature {i}", np.asarray([i]), None)
            for i in range(n)]


def box_name(box):
    r0, r1, c0, c1 = box
    rows = f"row {r0}" if r0 == r1 else f"rows {r0}-{r1}"
    cols = f"col {c0}" if c0 == c1 else f"cols {c0}-{c1}"
    return f"pixels {rows}, {cols}"


def box_indices(shape, box):
    """Flat indices of every channel's pixels in `box` of an image shaped [C, H, W] or [H, W]."""
    import numpy as np
    ch, h, w = (1,) + tuple(shape) if len(shape) == 2 else tuple(shape)
    r0, r1, c0, c1 = box
    return np.arange(ch * h * w).reshape(ch, h, w)[:, r0:r1 + 1, c0:c1 + 1].ravel()


def auc(t, pos):
    """AUC of scores `t` [n] for `pos` (bool [n]) against the rest, ties counted half."""
    import numpy as np
    neg = np.sort(t[~pos])
    p = t[pos]
    if not len(p) or not len(neg):
        return 0.5
    lo = np.searchsorted(neg, p, "left")
    hi = np.searchsorted(neg, p, "right")
    return float((lo + hi).sum()) / (2 * len(p) * len(neg))


def _auc_var(a, n1, n0):
    """Hanley and McNeil's variance of an AUC `a` from n1 positives and n0 negatives."""
    a = min(max(a, 0.5), 0.98)                   # a perfect training AUC would make it 0
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)


def _even(rows, n):
    return rows if len(rows) <= n else rows[:: -(-len(rows) // n)]


class _Test:
    """The train/holdout test of step 2 for one class over the regions (columns of `member`)."""

    def __init__(self, xt, yt, xh, yh, c, member, zcrit):
        import numpy as np
        self.mc, self.mo = xt[yt == c].mean(0), xt[yt != c].mean(0)
        d = self.mc - self.mo
        dd = (d * d) @ member                                     # [regions]
        self.ok = dd > 1e-12
        dmat = member[:, self.ok] * d[:, None]
        self.col = np.cumsum(self.ok) - 1                         # region -> column of ok ones
        self.st = ((xt - self.mo) @ dmat) / dd[self.ok]           # [train rows, ok regions]
        self.sh = ((xh - self.mo) @ dmat) / dd[self.ok]
        self.pt, self.ph, self.zcrit = yt == c, yh == c, zcrit

    def stats(self, j, min_auc=MIN_TRAIN_AUC, gate=True):
        """dict(j, a_tr, a_ho, gap, z) of region j; None when it fails the test (gate)."""
        if not self.ok[j]:
            return None
        k = self.col[j]
        a_tr = auc(self.st[:, k], self.pt)
        if gate and a_tr < min_auc:
            return None
        a_ho = auc(self.sh[:, k], self.ph)
        se = (_auc_var(a_tr, self.pt.sum(), (~self.pt).sum()) +
              _auc_var(a_tr, self.ph.sum(), (~self.ph).sum())) ** 0.5
        gap = a_tr - a_ho
        if gate and (gap < MIN_GAP or gap / se < self.zcrit):
            return None
        return dict(j=int(j), a_tr=a_tr, a_ho=a_ho, gap=gap, z=gap / se)


def ks(a, b):
    """Kolmogorov-Smirnov distance between the columns of a [n1, F] and b [n0, F]: [F]."""
    import numpy as np
    v = np.concatenate([a, b])
    order = np.argsort(v, axis=0, kind="stable")
    sv = np.take_along_axis(v, order, 0)
    cum = np.cumsum(np.where(order < len(a), 1 / len(a), -1 / len(b)), axis=0)
    last = np.ones(sv.shape, bool)                   # the last of a run of equal values
    last[:-1] = sv[1:] != sv[:-1]
    return np.abs(np.where(last, cum, 0)).max(0) if len(v) else np.zeros(v.shape[1])


def _ks_bound(alpha, n1, n0):
    import math
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n1 + n0) / (n1 * n0))


def units(ds, regs):
    """(feature indices per unit, image grid (h, w) or None): pixels over their channels for
    images, else the regions."""
    shape = ds.x.shape[1:]
    if regs and regs[0][2] is not None:
        h, w = shape[-2:]
        return [box_indices(shape, (r, r, c, c)) for r in range(h) for c in range(w)], (h, w)
    return [idx for _n, idx, _b in regs], None


def _components(sig, grid):
    """Connected groups of significant units: [[unit]], 8-connected pixels on a grid."""
    if grid is None:
        return [[u] for u in range(len(sig)) if sig[u]]
    h, w = grid
    seen, out = set(), []
    for start in range(len(sig)):
        if not sig[start] or start in seen:
            continue
        comp, todo = [], [start]
        seen.add(start)
        while todo:
            u = todo.pop()
            comp.append(u)
            r, c = divmod(u, w)
            for q in ((r + dr) * w + c + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                      if 0 <= r + dr < h and 0 <= c + dc < w):
                if sig[q] and q not in seen:
                    seen.add(q)
                    todo.append(q)
        out.append(comp)
    return out


def candidates(ds, regs):
    """Step 2: [dict(c, name, idx, box, a_tr, a_ho, gap, z, ks, ks_other, mc, mo)], at most one
    per class, highest z first; `ks`: the class's largest drift distance over the region,
    `ks_other` the other classes' there."""
    import numpy as np
    x = ds.x.reshape(len(ds.x), -1)
    train = _even(np.flatnonzero(~ds.holdout), MAX_ROWS)
    hold = _even(np.flatnonzero(ds.holdout), MAX_ROWS)
    xt, xh, yt, yh = x[train], x[hold], ds.y[train], ds.y[hold]
    member = np.zeros((x.shape[1], len(regs)), np.float32)        # [features, regions]
    for j, (_n, idx, _b) in enumerate(regs):
        member[idx, j] = 1
    unit_idx, grid = units(ds, regs)
    classes = [c for c in range(len(ds.classes))
               if min((yt == c).sum(), (yh == c).sum(), (yt != c).sum(), (yh != c).sum())
               >= MIN_CLASS_ROWS]
    zcrit = NormalDist().inv_cdf(1 - ALPHA / max(1, len(classes) * len(regs)))
    zdrift = NormalDist().inv_cdf(1 - ALPHA / max(1, len(classes)))
    out = []
    for c in classes:
        pt, ph = yt == c, yh == c
        test = _Test(xt, yt, xh, yh, c, member, zcrit)
        found = [s for j in range(len(regs)) if (s := test.stats(j)) is not None]
        d_own, d_other = ks(xt[pt], xh[ph]), ks(xt[~pt], xh[~ph])      # [features]
        d_unit = np.asarray([d_own[i].max() for i in unit_idx])
        sig = (d_unit >= _ks_bound(ALPHA / (len(classes) * len(unit_idx)), pt.sum(), ph.sum())) \
            & (np.asarray([d_other[i].max() for i in unit_idx])
               < _ks_bound(ALPHA, (~pt).sum(), (~ph).sum()))
        comps = sorted(_components(sig, grid), key=lambda g: -d_unit[g].sum())
        if found:
            best = max(found, key=lambda f: f["z"])
            name, idx, box = regs[best["j"]]
            near = [g for g in comps if set(np.concatenate([unit_idx[u] for u in g])) & set(idx)]
        elif comps:
            near, box = comps[:1], None
        else:
            continue
        if near:                                    # the units that changed give the extent
            idx = np.unique(np.concatenate([unit_idx[u] for u in near[0]]))
            if grid is not None:
                rs, cs = zip(*(divmod(u, grid[1]) for u in near[0]))
                box = (min(rs), max(rs), min(cs), max(cs))
                idx = box_indices(ds.x.shape[1:], box)
                name = box_name(box)
            else:
                name = next(n for n, i, _b in regs if set(i) >= set(idx))
        one = np.zeros((x.shape[1], 1), np.float32)
        one[idx, 0] = 1
        best = _Test(xt, yt, xh, yh, c, one, zcrit)
        stats = best.stats(0, gate=False)
        if stats is None:
            continue
        stats.update(c=c, name=name, idx=idx, box=box, mc=best.mc, mo=best.mo,
                     ks=float(d_own[idx].max()), ks_other=float(d_other[idx].max()))
        if not near:                                # no drift behind it: a mirror image?
            dd = (best.mc - best.mo)[idx]
            a, b = xt[pt][:, idx] @ dd, xh[ph][:, idx] @ dd
            drift = auc(np.concatenate([a, b]), np.arange(len(a) + len(b)) < len(a))
            if (drift - 0.5) / ((len(a) + len(b) + 1) / (12 * len(a) * len(b))) ** 0.5 < zdrift:
                continue
        out.append(stats)
    return sorted(out, key=lambda f: -f["z"])
