"""Label noise: the default `s2build lint` against cleanlab over logistic regression, side by side.

    .venv/bin/python bench/labelnoise.py [--datasets digits breast_cancer wine] [--seeds 5]
                                         [--json FILE]

Datasets: examples/digits (1,797 8x8 images, its own yaml) and scikit-learn's breast_cancer
(569 rows, 30 columns) and wine (178 rows, 13 columns) written out as CSV with the yaml a new
user writes (sources, label, classes, a 25% holdout; every other setting the default).
Noise, over all rows, `seeds` seeds each: 5% and 10% of labels, `uniform` (to a random other
class) or `class` (class-dependent: rows of higher classes flip more often, always to the next
class, a systematic confusion).
Per run: the target trains as `s2build build` does (same loop, dynamics recorded), and lint's
label-error scoring (debug/labelerr.py) ranks every row; the baseline is cleanlab's
`get_label_quality_scores` over 5-fold `cross_val_predict` probabilities of scikit-learn's
StandardScaler + LogisticRegression on the same rows and noisy labels. AUROC and precision@k
(k = the number of flipped rows) for both; medians (min) over seeds per row of the table.
Calibration: every row lint reports (P(wrong) >= 0.5), pooled, binned by its printed
confidence, with the share that is really flipped.
"""

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2build.compile import train  # noqa: E402
from s2build.data import dataset as data  # noqa: E402
from s2build.data.shards import ShardStore  # noqa: E402
from s2build.debug import labelerr  # noqa: E402
from s2build.engine import fingerprint  # noqa: E402
from s2build.project import config  # noqa: E402

BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)


def auroc(scores, truth):
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata
    ranks = rankdata(scores)
    pos = int(truth.sum())
    neg = len(truth) - pos
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def precision_at_k(scores, truth):
    k = int(truth.sum())
    return float(truth[np.argsort(-scores, kind="stable")[:k]].mean())


def load(project_dir, name):
    target = config.load(str(project_dir / "s2build.yaml")).targets[name]
    inputs, _ = fingerprint.target_inputs(target, {}, {})
    return target, data.load_dataset(target, inputs, ShardStore(str(project_dir / ".s2build")))


def table_project(name, d):
    """scikit-learn's `name` as data/rows.csv and a new user's s2build.yaml in d."""
    from sklearn import datasets
    bunch = getattr(datasets, f"load_{name}")()
    (d / "data").mkdir(parents=True)
    cols = [f"f{i}" for i in range(bunch.data.shape[1])]
    lines = [",".join(cols + ["label"])]
    lines += [",".join(f"{v:.6g}" for v in r) + f",{int(c)}" for r, c in zip(bunch.data, bunch.target)]
    (d / "data" / "rows.csv").write_text("\n".join(lines) + "\n")
    (d / "s2build.yaml").write_text(
        f"targets:\n  {name}:\n    sources: [data/rows.csv]\n"
        f"    loader: {{label: label, classes: {len(set(bunch.target.tolist()))}}}\n"
        "    holdout: {fraction: 0.25, seed: 0}\n")
    return load(d, name)


def digits_project(d):
    shutil.copytree(ROOT / "examples" / "digits", d, ignore=shutil.ignore_patterns("build", ".s2build"))
    return load(d, "digits")


def noisy(y, classes, rate, kind, seed):
    """(noisy labels, flipped mask)."""
    rng = np.random.default_rng(1000 + seed)
    n = len(y)
    m = int(round(rate * n))
    if kind == "uniform":
        flip = rng.choice(n, size=m, replace=False)
        new = (y[flip] + rng.integers(1, classes, size=m)) % classes
    else:
        weight = 1 + 2 * y / max(classes - 1, 1)
        flip = rng.choice(n, size=m, replace=False, p=weight / weight.sum())
        new = (y[flip] + 1) % classes
    out = y.copy()
    out[flip] = new
    truth = np.zeros(n, bool)
    truth[flip] = True
    return out, truth


def cleanlab_scores(x, y):
    import warnings
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                                  x.reshape(len(y), -1), y, cv=5, method="predict_proba")
    return 1 - get_label_quality_scores(y, probs)


def run_dataset(name, target, ds, seeds, calib):
    rows = []
    k = len(ds.classes)
    for kind in ("uniform", "class"):
        for rate in (0.05, 0.10):
            for seed in range(seeds):
                y, truth = noisy(ds.y, k, rate, kind, seed)
                nds = dataclasses.replace(ds, y=y)
                dyn = train.train(target, nds).dynamics.arrays()
                t0 = time.perf_counter()
                found = labelerr.scores(nds, dyn, seed=target.config["train"]["seed"])
                lint_s = time.perf_counter() - t0
                base = cleanlab_scores(ds.x, y)
                rows.append({"dataset": name, "kind": kind, "rate": rate, "seed": seed,
                             "lint_auroc": auroc(found["score"], truth),
                             "lint_pk": precision_at_k(found["score"], truth),
                             "cleanlab_auroc": auroc(base, truth),
                             "cleanlab_pk": precision_at_k(base, truth),
                             "weight": found["weight"], "noise": found["noise"],
                             "scoring_seconds": lint_s})
                rep = found["wrong"] >= 0.5
                calib.append((found["wrong"][rep], truth[rep]))
                r = rows[-1]
                print(f"  {name} {kind} {rate:.0%} seed {seed}: lint {r['lint_auroc']:.3f}/"
                      f"{r['lint_pk']:.3f}, cleanlab {r['cleanlab_auroc']:.3f}/"
                      f"{r['cleanlab_pk']:.3f} (w {r['weight']:.2f}, noise {r['noise']:.3f})",
                      flush=True)
    return rows


def summary(rows):
    """One line per (dataset, kind, rate): medians (min) of both."""
    out = []
    keys = sorted({(r["dataset"], r["kind"], r["rate"]) for r in rows},
                  key=lambda t: (t[0] != "digits", t[0], t[1] != "uniform", t[2]))
    print(f"{'dataset':<14}{'noise':<13}{'lint AUROC':>12}{'lint P@k':>10}{'cleanlab AUROC':>16}"
          f"{'cleanlab P@k':>14}{'lint >= cl':>11}{'scoring s':>11}")
    for d, kind, rate in keys:
        rr = [r for r in rows if (r["dataset"], r["kind"], r["rate"]) == (d, kind, rate)]
        med = {m: statistics.median(r[m] for r in rr) for m in
               ("lint_auroc", "lint_pk", "cleanlab_auroc", "cleanlab_pk", "scoring_seconds")}
        out.append({"dataset": d, "kind": kind, "rate": rate, "runs": len(rr), **med})
        print(f"{d:<14}{kind + ' ' + format(rate, '.0%'):<13}{med['lint_auroc']:>12.3f}"
              f"{med['lint_pk']:>10.3f}{med['cleanlab_auroc']:>16.3f}{med['cleanlab_pk']:>14.3f}"
              f"{'yes' if med['lint_pk'] >= med['cleanlab_pk'] else 'NO':>11}"
              f"{med['scoring_seconds']:>11.2f}")
    return out


def calibration(calib):
    conf = np.concatenate([c for c, _ in calib]) if calib else np.zeros(0)
    wrong = np.concatenate([t for _, t in calib]) if calib else np.zeros(0, bool)
    out = []
    print(f"{'printed confidence':<20}{'rows':>8}{'really wrong':>14}")
    for lo, hi in zip(BINS, BINS[1:]):
        m = (conf >= lo) & (conf < hi)
        if m.any():
            out.append({"from": lo, "to": min(hi, 1.0), "rows": int(m.sum()),
                        "mean_confidence": float(conf[m].mean()), "wrong": float(wrong[m].mean())})
            print(f"{f'{lo:.1f}-{min(hi, 1.0):.1f}':<20}{int(m.sum()):>8}"
                  f"{wrong[m].mean():>14.3f}   (mean confidence {conf[m].mean():.3f})")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer", "wine"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    report = bench(args.datasets, args.seeds)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def bench(names, seeds):
    work = Path(tempfile.mkdtemp(prefix="s2bench-labelnoise-"))
    rows, calib = [], []
    try:
        for name in names:
            target, ds = digits_project(work / name) if name == "digits" \
                else table_project(name, work / name)
            rows += run_dataset(name, target, ds, seeds, calib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"runs": rows, "summary": summary(rows), "calibration": calibration(calib)}


if __name__ == "__main__":
    main()
