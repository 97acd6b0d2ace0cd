"""The data debugger on the digits example: how good are lint and blame, and how fast.

    .venv/bin/python bench/debugger.py [--noise-seeds 5] [--datasets digits breast_cancer wine]
                                       [--queries 20] [--runs 5] [--json FILE]

1. Label noise (bench/labelnoise.py): digits and scikit-learn's breast_cancer and wine, 5% and
   10% of labels flipped, uniform and class-dependent, `--noise-seeds` seeds: AUROC and
   precision@k of the default lint's label-error ranking beside cleanlab over a cross-validated
   logistic regression on the same rows, and the calibration table of lint's confidence.
2. Planted issues, one kind per project, on digits written out as CSV (64 pixel columns):
   2% exact duplicates, 2% conflicting duplicates, 2% holdout rows copied into training, 2% rows
   with an inf cell (NaN is a missing value in tables, imputed), 2% far outliers. `s2build lint --json` runs on each; precision and recall of
   the matching check against the planted rows.
3. Blame: for each query (the holdout rows the network is least sure about), remove the 20
   training rows blame ranks highest and retrain; separately remove 20 random training rows and
   retrain; count how often the query's prediction flips. Retraining is counterfactual
   (train(exclude=...)): same seed, and every other row keeps its place in the data order, so
   the two arms differ only by which rows are gone.
4. Wall time of `s2build lint` and `s2build blame` on the digits example (build cached).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2build.debug import blame  # noqa: E402
from s2build.project import config
from s2build.data import dataset as data
from s2build.data.shards import ShardStore
from s2build.engine import fingerprint
from s2build.compile import train
import labelnoise  # noqa: E402  (bench/labelnoise.py)

S2 = [sys.executable, "-m", "s2build"]


def load_digits_target(project_dir):
    target = config.load(str(project_dir / "s2build.yaml")).targets["digits"]
    inputs, _ = fingerprint.target_inputs(target, {}, {})
    ds = data.load_dataset(target, inputs, ShardStore(str(project_dir / ".s2build")))
    return target, ds


def write_csv_project(d, x, y, holdout_x=None, holdout_y=None, extra_rows=()):
    """digits as CSV: data/train.csv (+ optional data/holdout.csv as holdout sources)."""
    (d / "data").mkdir(parents=True)
    header = ",".join(f"p{i}" for i in range(64)) + ",label\n"

    def rows(xs, ys):
        return "".join(",".join(("inf" if np.isinf(v) else f"{v:g}") for v in r) + f",{l}\n"
                       for r, l in zip(xs, ys))
    (d / "data" / "train.csv").write_text(header + rows(x, y) + rows(*zip(*extra_rows))
                                          if extra_rows else header + rows(x, y))
    hold = "    holdout: {fraction: 0.2, seed: 0}\n"
    if holdout_x is not None:
        (d / "data" / "holdout.csv").write_text(header + rows(holdout_x, holdout_y))
        hold = "    holdout: {sources: [data/holdout.csv]}\n"
    (d / "s2build.yaml").write_text(
        "targets:\n  digits:\n    sources: [data/train.csv]\n"
        "    loader: {label: label, classes: 10}\n    model: {hidden: [64]}\n"
        "    train: {epochs: 15, batch_size: 64, lr: 0.003}\n" + hold +
        "    export: {exporter: legacy}\n")


def planted(ds, workdir):
    """Precision and recall of each rule-based check on its own planted issue."""
    x = ds.x.reshape(len(ds.x), -1) * 16            # back to 0..16 pixel values
    y = ds.y
    n = len(y)
    rng = np.random.default_rng(7)
    m = int(round(0.02 * n))
    results = {}

    def lint_rows(d, check):
        p = subprocess.run(S2 + ["lint", "--json"], cwd=d, capture_output=True, text=True)
        out = json.loads(p.stdout)
        return {dg["origin"] for dg in out["diagnostics"] if dg["check"] == check}

    def score(name, check, d, truth):
        found = lint_rows(d, check)
        tp = len(found & truth)
        results[name] = {"check": check, "planted": len(truth), "reported": len(found),
                         "precision": tp / len(found) if found else 0.0,
                         "recall": tp / len(truth) if truth else 1.0}
        print(f"  {name}: precision {results[name]['precision']:.3f}, "
              f"recall {results[name]['recall']:.3f} ({tp} of {len(truth)}, {len(found)} reported)",
              flush=True)

    src = rng.choice(n, size=m, replace=False)
    # exact duplicates: copies appended after the originals (lines n+2 ...)
    d = workdir / "dup"
    write_csv_project(d, x, y, extra_rows=[(x[i], y[i]) for i in src])
    natural = _natural(x, y)
    truth = {f"data/train.csv:{n + 2 + j}" for j in range(m)} | natural["dup"]
    score("exact duplicates", "duplicate", d, truth)
    # conflicting duplicates: same pixels, another label
    d = workdir / "conflict"
    other = (y[src] + rng.integers(1, 10, size=m)) % 10
    write_csv_project(d, x, y, extra_rows=[(x[i], o) for i, o in zip(src, other)])
    truth = {f"data/train.csv:{n + 2 + j}" for j in range(m)} | natural["conflict"]
    score("conflicting duplicates", "conflicting-label", d, truth)
    # holdout rows copied into training
    d = workdir / "leak"
    hold = np.zeros(n, bool)
    hold[rng.choice(n, size=n // 5, replace=False)] = True
    leaked = rng.choice(np.flatnonzero(hold), size=m, replace=False)
    write_csv_project(d, x[~hold], y[~hold], x[hold], y[hold],
                      extra_rows=[(x[i], y[i]) for i in leaked])
    hold_index = {i: j for j, i in enumerate(np.flatnonzero(hold))}
    truth = {f"data/holdout.csv:{hold_index[i] + 2}" for i in leaked}
    score("holdout copies in training", "leakage", d, truth)
    # inf cells (NaN is a missing value in a table: imputed, not an error)
    d = workdir / "nan"
    xn = x.copy()
    cols = rng.integers(0, 64, size=m)
    xn[src, cols] = np.inf
    write_csv_project(d, xn, y)
    truth = {f"data/train.csv:{i + 2}" for i in src}
    score("inf cells", "non-finite", d, truth)
    # far outliers: pixel values far outside 0..16
    d = workdir / "outlier"
    xo = x.copy()
    xo[src] = rng.uniform(0, 16, size=(m, 64)) * 20
    write_csv_project(d, xo, y)
    truth = {f"data/train.csv:{i + 2}" for i in src}
    score("far outliers", "outlier", d, truth)
    return results


def _natural(x, y):
    """Exact duplicates and conflicts already in the data (true positives by definition)."""
    seen_row, seen_in, dup, conflict = {}, {}, set(), set()
    for i, (r, l) in enumerate(zip(x, y)):
        key_in = r.tobytes()
        key_row = key_in + bytes([int(l)])
        if key_row in seen_row:
            dup.add(f"data/train.csv:{i + 2}")
        elif key_in in seen_in:
            conflict.add(f"data/train.csv:{i + 2}")
        seen_row.setdefault(key_row, i)
        seen_in.setdefault(key_in, i)
    return {"dup": dup, "conflict": conflict}


def blame_removal(target, ds, queries, k):
    trained = train.train(target, ds)
    dyn = trained.dynamics.arrays()
    dyn["y"] = ds.y
    logits = dyn["logits"]
    hold = np.flatnonzero(ds.holdout)
    srt = np.sort(logits[hold], axis=1)
    fragile = hold[np.argsort(srt[:, -1] - srt[:, -2])[:queries]]    # least sure first
    rng = np.random.default_rng(3)
    train_rows = np.flatnonzero(~ds.holdout)
    flips = {"blamed": 0, "random": 0}
    import torch
    for q in fragile:
        before = int(logits[q].argmax())
        for how in ("blamed", "random"):
            drop = blame.top_rows(dyn, q, k) if how == "blamed" else \
                rng.choice(train_rows, size=k, replace=False)
            exclude = np.zeros(len(ds.y), bool)
            exclude[drop] = True          # same seed, every other row keeps its place in the order
            module = train.train(target, ds, exclude=exclude).module
            with torch.no_grad():
                after = int(module(torch.from_numpy(ds.x[q:q + 1])).argmax())
            flips[how] += after != before
        print(f"  query {ds.origins[q]}: blamed flips {flips['blamed']}, random flips "
              f"{flips['random']} so far", flush=True)
    return {"queries": len(fragile), "k": k, "blamed_flips": flips["blamed"],
            "random_flips": flips["random"],
            "blamed_rate": flips["blamed"] / len(fragile), "random_rate": flips["random"] / len(fragile),
            "ratio": flips["blamed"] / max(flips["random"], 1),
            "ratio_is_lower_bound": flips["random"] == 0}


def timings(d, runs):
    subprocess.run(S2 + ["build"], cwd=d, check=True, capture_output=True)
    out = {}
    for name, args in (("lint", ["lint"]), ("blame", ["blame", "digits", "--input", "data/3/0003.png"])):
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(S2 + args, cwd=d, check=True, capture_output=True)
            ts.append(time.perf_counter() - t0)
        out[name] = {"median": statistics.median(ts), "min": min(ts), "max": max(ts)}
        print(f"  s2build {' '.join(args)}: median {out[name]['median']:.2f} s "
              f"(min {min(ts):.2f}, max {max(ts):.2f})", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noise-seeds", type=int, default=5)
    ap.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer", "wine"])
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    work = Path(tempfile.mkdtemp(prefix="s2bench-debugger-"))
    try:
        proj = work / "digits"
        shutil.copytree(ROOT / "examples" / "digits", proj,
                        ignore=shutil.ignore_patterns("build", ".s2build"))
        target, ds = load_digits_target(proj)
        report = {}
        print("1. label noise: the default lint against cleanlab over logistic regression "
              "(bench/labelnoise.py)")
        report["label_noise"] = labelnoise.bench(args.datasets, args.noise_seeds)
        print("2. planted issues (rule-based checks, digits as CSV)")
        report["planted"] = planted(ds, work / "planted")
        print("3. blame: remove top-20 blamed vs 20 random training rows, retrain")
        report["blame"] = blame_removal(target, ds, args.queries, 20)
        b = report["blame"]
        bound = " (at least: random removal flipped none; counted as 1)" if b["ratio_is_lower_bound"] else ""
        print(f"   flips: blamed {b['blamed_flips']}/{b['queries']}, random "
              f"{b['random_flips']}/{b['queries']}, ratio {b['ratio']:.1f}x{bound}")
        print("4. wall time (digits example, build cached)")
        report["timings"] = timings(proj, args.runs)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
