"""Blame quality by the linear datamodeling score (LDS), top-20 removal, and blame at 100k rows.

    .venv/bin/python bench/lds.py [--subsets 50] [--queries 20]
                                  [--datasets digits wine breast_cancer] [--removal-random 5]
                                  [--rows 100000] [--runs 5] [--no-cli] [--json FILE]

Datasets: examples/digits (its own yaml: CNN, 15 epochs) and scikit-learn's wine and
breast_cancer as a new user's CSV project (bench/labelnoise.py: MLP [64, 64], 30 epochs, 25%
holdout). Each trains once as the build does (train.train, dynamics recorded).

1. LDS (as TRAK and dattri report it). Queries: `--queries` evenly spaced holdout rows. Output
   of a query under a model: the margin of the full model's predicted class (its logit minus
   the best other logit). `--subsets` M random halves of the training rows (seeded); each is
   a counterfactual retrain, train.train(exclude=rows not in the half): same seed, every kept
   row in its place in the data order, so one retrain per subset (no seed averaging: the
   training is deterministic). The predicted output for subset S is the sum over i in S of
   the estimator's score tau(q, i); LDS of a query = Spearman correlation over the M subsets
   of predicted vs actual output. Reported: the mean over queries with a 95% bootstrap
   interval (queries resampled), the median and the min. Estimators, from the one recording:
     tracin     blame.influence: last-layer TracIn over the recorded checkpoints (the default)
     trak       blame.influence_trak: the same factors with TRAK's inverse kernel in the
                sketched last-layer gradient space (damping 1; `trak d=X` rows: other dampings)
     graddot    the same factors at the final checkpoint only, no lr weighting
     nn-label   input-space neighbours: +exp(-d/d20) for rows of the predicted class, minus
                for others (d20: distance of the 20th nearest; standardised inputs)
     nn-dist    -distance in input space, unsigned (as a literal nearest-neighbour score)
     random     Gaussian scores (expect about 0)
2. Top-20 removal: for the `--queries` least-sure holdout rows, remove the 20 rows an arm
   names and retrain (exclude): tracin's and trak's top 20 proponents, the 20 nearest
   training rows of the predicted class, and `--removal-random` draws of 20 random rows per
   query; count the queries whose prediction flips. Ratio: an arm's flip rate over random's
   (random at 0 flips is counted as 1, and the ratio marked as a lower bound), and the
   conservative ratio over the upper end of random's 95% Wilson interval.
3. Blame at `--rows` training-table rows (synthetic: 16 float features, 3 classes from a
   random two-layer rule with label noise, MLP [64, 64], 3 epochs, batch 128): trained through
   train.train with dynamics recorded; blame.blame of a holdout row (median of 5), trak
   (kernels once, then per query), and unless --no-cli `s2build --no-server blame` end to end
   on the same table as a CSV project (after an untimed `s2build --no-server build`).
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
sys.path.insert(0, str(ROOT / "bench"))

from s2build.compile import tracin, train  # noqa: E402
from s2build.debug import blame  # noqa: E402
import labelnoise  # noqa: E402  (bench/labelnoise.py)

S2 = [sys.executable, "-m", "s2build"]
DAMPINGS = (0.1, 0.3, 3.0)       # trak's sensitivity rows (the estimator itself: damping 1)


def record(target, ds):
    trained = train.train(target, ds)
    dyn = trained.dynamics.arrays()
    dyn["y"] = ds.y
    return trained, dyn


def margin(z, pred):
    """z [m, k], pred [m]: z[pred] - the best other logit."""
    rows = np.arange(len(z))
    other = z.copy()
    other[rows, pred] = -np.inf
    return z[rows, pred] - other.max(axis=1)


def outputs(module, x):
    import torch
    with torch.no_grad():
        return module(torch.from_numpy(x)).double().numpy()


def retrain_outputs(target, ds, drop, x):
    """Logits on x of the counterfactual retrain without dataset rows `drop` (bool [n])."""
    return outputs(train.train(target, ds, exclude=drop, record=False).module, x)


def input_distances(ds, queries, train_rows):
    x = ds.x.reshape(len(ds.x), -1).astype(np.float64)
    mu, sd = x[train_rows].mean(axis=0), x[train_rows].std(axis=0) + 1e-9
    xs = (x - mu) / sd
    q, t = xs[queries], xs[train_rows]
    d2 = (q * q).sum(1)[:, None] + (t * t).sum(1)[None] - 2 * q @ t.T
    return np.sqrt(np.clip(d2, 0, None))                         # [Q, n_train]


def estimators(dyn, ds, queries, preds, seed=0):
    """{name: (scores [Q, n_train], seconds per query)}."""
    train_rows = dyn["train_rows"]
    facts = [blame.query_factors_from_rows(dyn, q, int(p)) for q, p in zip(queries, preds)]
    out = {}

    def timed(name, fn, setup=None):
        t0 = time.perf_counter()
        state = setup() if setup else None
        scores = np.stack([fn(dz, a, state) for dz, a in facts])
        out[name] = (scores, (time.perf_counter() - t0) / len(queries))

    timed("tracin", lambda dz, a, _s: blame.influence(dyn, dz, a, train_rows))
    timed("trak", lambda dz, a, k: blame.influence_trak(dyn, dz, a, train_rows, k),
          lambda: blame.trak_kernels(dyn, train_rows, 1.0))
    c = len(dyn["ckpt_lr"]) - 1
    gz = tracin.decode(dyn["grad_z"], dyn["grad_z_scale"], c, train_rows)
    ga = tracin.decode(dyn["grad_a"], dyn["grad_a_scale"], c, train_rows)
    timed("graddot", lambda dz, a, _s: (gz @ dz[c]) * (ga @ a[c]))
    t0 = time.perf_counter()
    d = input_distances(ds, queries, train_rows)
    d20 = np.sort(d, axis=1)[:, min(19, d.shape[1] - 1)][:, None] + 1e-12
    same = ds.y[train_rows][None] == np.asarray(preds)[:, None]
    t_nn = (time.perf_counter() - t0) / len(queries)
    out["nn-label"] = (np.where(same, 1.0, -1.0) * np.exp(-d / d20), t_nn)
    out["nn-dist"] = (-d, t_nn)
    out["random"] = (np.random.default_rng(seed).normal(size=d.shape), 0.0)
    for lam in DAMPINGS:
        timed(f"trak d={lam:g}", lambda dz, a, k: blame.influence_trak(dyn, dz, a, train_rows, k),
              lambda lam=lam: blame.trak_kernels(dyn, train_rows, lam))
    return out


def subsets(target, ds, train_rows, queries, preds, m, seed=0):
    """(in-subset masks [m, n_train], actual margins [m, Q]) of m random half subsets."""
    rng = np.random.default_rng(seed)
    masks, actual = [], []
    for _ in range(m):
        keep = np.zeros(len(train_rows), bool)
        keep[rng.choice(len(train_rows), len(train_rows) // 2, replace=False)] = True
        drop = np.zeros(len(ds.y), bool)
        drop[train_rows[~keep]] = True
        masks.append(keep)
        actual.append(margin(retrain_outputs(target, ds, drop, ds.x[queries]), preds))
    return np.array(masks), np.array(actual)


def lds(scores, masks, actual, boot=2000, seed=0):
    from scipy.stats import spearmanr
    predicted = masks.astype(np.float64) @ scores.T                      # [m, Q]
    per = []
    for j in range(scores.shape[0]):
        if np.ptp(predicted[:, j]) == 0 or np.ptp(actual[:, j]) == 0:
            per.append(0.0)                  # undefined correlation: counted as none
        else:
            per.append(float(spearmanr(predicted[:, j], actual[:, j])[0]))
    per = np.array(per)
    rng = np.random.default_rng(seed)
    means = per[rng.integers(0, len(per), size=(boot, len(per)))].mean(axis=1)
    return {"mean": float(per.mean()), "ci95": [float(np.percentile(means, 2.5)),
                                                float(np.percentile(means, 97.5))],
            "median": float(np.median(per)), "min": float(per.min()), "per_query": per.tolist()}


def removal(target, ds, dyn, kernels, queries, k, draws, seed=3):
    """Prediction flips of the least-sure holdout rows when an arm's k rows are removed."""
    train_rows = dyn["train_rows"]
    logits = dyn["logits"].astype(np.float64)
    hold = np.flatnonzero(ds.holdout)
    srt = np.sort(logits[hold], axis=1)
    fragile = hold[np.argsort(srt[:, -1] - srt[:, -2], kind="stable")[:queries]]
    preds = logits[fragile].argmax(axis=1)
    d = input_distances(ds, fragile, train_rows)
    rng = np.random.default_rng(seed)
    trak = lambda dyn_, dz, a, tr: blame.influence_trak(dyn_, dz, a, tr, kernels)  # noqa: E731
    flips = {"tracin": 0, "trak": 0, "nn-class": 0, "random": 0}
    for j, (q, pred) in enumerate(zip(fragile, preds)):
        arms = [("tracin", blame.top_rows(dyn, q, k)),
                ("trak", blame.top_rows(dyn, q, k, estimator=trak)),
                ("nn-class", train_rows[np.argsort(np.where(ds.y[train_rows] == pred, d[j],
                                                            np.inf), kind="stable")[:k]])]
        arms += [("random", rng.choice(train_rows, size=k, replace=False)) for _ in range(draws)]
        for name, rows in arms:
            drop = np.zeros(len(ds.y), bool)
            drop[rows] = True
            flips[name] += int(retrain_outputs(target, ds, drop, ds.x[q:q + 1])[0].argmax() != pred)
    trials = {"tracin": len(fragile), "trak": len(fragile), "nn-class": len(fragile),
              "random": len(fragile) * draws}
    rand = max(flips["random"], 1) / trials["random"]
    hi = wilson_upper(flips["random"], trials["random"])
    return {"queries": len(fragile), "k": k, "random_draws": draws, "random_rate_upper95": hi,
            "arms": {a: {"flips": flips[a], "trials": trials[a], "rate": flips[a] / trials[a],
                         "ratio_to_random": flips[a] / trials[a] / rand,
                         "ratio_to_random_upper95": flips[a] / trials[a] / hi} for a in flips},
            "ratio_is_lower_bound": flips["random"] == 0}


def wilson_upper(k, n, z=1.96):
    """The upper end of the 95% Wilson interval of a rate k/n."""
    p = k / n
    return (p + z * z / (2 * n) + z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) \
        / (1 + z * z / n)


def bench_dataset(name, work, m, q, draws):
    target, ds = labelnoise.digits_project(work / name) if name == "digits" \
        else labelnoise.table_project(name, work / name)
    t0 = time.perf_counter()
    trained, dyn = record(target, ds)
    t_train = time.perf_counter() - t0
    train_rows = dyn["train_rows"]
    hold = np.flatnonzero(ds.holdout)
    queries = hold[np.unique(np.linspace(0, len(hold) - 1, min(q, len(hold))).round().astype(int))]
    preds = dyn["logits"][queries].argmax(axis=1)
    est = estimators(dyn, ds, queries, preds)
    t0 = time.perf_counter()
    masks, actual = subsets(target, ds, train_rows, queries, preds, m)
    t_sub = time.perf_counter() - t0
    res = {"rows": len(ds.y), "train_rows": int(len(train_rows)), "queries": len(queries),
           "subsets": m, "train_seconds": t_train, "subset_retrain_seconds": t_sub,
           "holdout": trained.metrics, "lds": {}}
    print(f"  {name}: {len(train_rows)} training rows, {len(queries)} queries, {m} half-subset "
          f"retrains in {t_sub:.0f} s (full train {t_train:.1f} s)", flush=True)
    for est_name, (scores, secs) in est.items():
        res["lds"][est_name] = {**lds(scores, masks, actual), "seconds_per_query": secs}
    t0 = time.perf_counter()
    res["removal"] = removal(target, ds, dyn, blame.trak_kernels(dyn, train_rows), q, 20, draws)
    res["removal"]["seconds"] = time.perf_counter() - t0
    return res


def synthetic_project(d, n, seed=0):
    """A CSV table of n rows: 16 float features, 3 classes from a random two-layer rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    w1, w2 = rng.normal(size=(16, 32)), rng.normal(size=(32, 3))
    y = (np.tanh(x @ w1) @ w2 + rng.gumbel(size=(n, 3))).argmax(axis=1)
    (d / "data").mkdir(parents=True)
    with open(d / "data" / "rows.csv", "w") as f:
        f.write(",".join([f"f{i}" for i in range(16)] + ["label"]) + "\n")
        f.writelines(",".join(f"{v:.5g}" for v in r) + f",{c}\n" for r, c in zip(x, y))
    (d / "s2build.yaml").write_text(
        "targets:\n  big:\n    sources: [data/rows.csv]\n    loader: {label: label, classes: 3}\n"
        "    train: {epochs: 3, batch_size: 128}\n    holdout: {fraction: 0.2, seed: 0}\n")
    return labelnoise.load(d, "big")


def bench_scale(work, n, runs, cli):
    d = work / "big"
    total = int(round(n / 0.8))                     # n training rows after a 20% holdout
    target, ds = synthetic_project(d, total)
    t0 = time.perf_counter()
    _trained, dyn = record(target, ds)
    out = {"rows": len(ds.y), "train_rows": int(len(dyn["train_rows"])),
           "train_seconds": time.perf_counter() - t0}
    origins = [str(o) for o in ds.origins]
    q = int(np.flatnonzero(ds.holdout)[0])
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        blame.blame(dyn, origins, query_row=q, k=10)
        ts.append(time.perf_counter() - t0)
    out["blame_seconds"] = {"median": statistics.median(ts), "min": min(ts), "max": max(ts)}
    ks, ts = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        kern = blame.trak_kernels(dyn, dyn["train_rows"])
        ks.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dz, a = blame.query_factors_from_rows(dyn, q, int(dyn["logits"][q].argmax()))
        blame.influence_trak(dyn, dz, a, dyn["train_rows"], kern)
        ts.append(time.perf_counter() - t0)
    out["trak_kernel_seconds"] = {"median": statistics.median(ks), "min": min(ks), "max": max(ks)}
    out["trak_query_seconds"] = {"median": statistics.median(ts), "min": min(ts), "max": max(ts)}
    if cli:
        t0 = time.perf_counter()
        subprocess.run(S2 + ["--no-server", "build"], cwd=d, check=True, capture_output=True)
        out["cli_build_seconds"] = time.perf_counter() - t0
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(S2 + ["--no-server", "blame", "big", "--input", origins[q]], cwd=d,
                           check=True, capture_output=True)
            ts.append(time.perf_counter() - t0)
        out["cli_blame_seconds"] = {"median": statistics.median(ts), "min": min(ts),
                                    "max": max(ts), "query": origins[q]}
    return out


def print_tables(report):
    print("\nLDS (Spearman over half-subset retrains; mean over queries [95% bootstrap], "
          "median, min; s/query)")
    print(f"{'dataset':<15}{'estimator':<12}{'mean':>7}  {'95% CI':<15}{'median':>7}{'min':>7}"
          f"{'s/query':>9}")
    for name, r in report["datasets"].items():
        for est, v in r["lds"].items():
            ci = f"[{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]"
            print(f"{name:<15}{est:<12}{v['mean']:>7.3f}  {ci:<15}{v['median']:>7.3f}"
                  f"{v['min']:>7.3f}{v['seconds_per_query']:>9.4f}")
    base = ("graddot", "nn-label", "nn-dist", "random")
    for name, r in report["datasets"].items():
        v = r["lds"]
        best = max(base, key=lambda b: v[b]["mean"])
        gain = v["trak"]["mean"] / v["tracin"]["mean"]
        print(f"  {name}: trak {v['trak']['mean']:.2f} = {gain:.1f}x "
              f"tracin {v['tracin']['mean']:.2f}; best baseline {best} {v[best]['mean']:.2f}")
    print("\ntop-20 removal (least-sure holdout rows; retrain without the rows; prediction flips)")
    print(f"{'dataset':<15}{'arm':<10}{'flips':>12}{'rate':>7}{'x random':>10}"
          f"{'x random 95% high':>19}")
    for name, r in report["datasets"].items():
        rm = r["removal"]
        for arm, v in rm["arms"].items():
            bound = ">=" if rm["ratio_is_lower_bound"] and arm != "random" else "  "
            print(f"{name:<15}{arm:<10}{str(v['flips']) + '/' + str(v['trials']):>12}"
                  f"{v['rate']:>7.2f}{bound:>5}{v['ratio_to_random']:>5.1f}"
                  f"{v['ratio_to_random_upper95']:>19.1f}")
    s = report.get("scale")
    if s:
        print(f"\nblame at {s['train_rows']:,} training rows (train {s['train_seconds']:.0f} s): "
              f"blame.blame median {s['blame_seconds']['median']:.3f} s "
              f"(min {s['blame_seconds']['min']:.3f}, max {s['blame_seconds']['max']:.3f}); "
              f"trak kernels {s['trak_kernel_seconds']['median']:.3f} s once, then "
              f"{s['trak_query_seconds']['median']:.3f} s a query")
        if "cli_blame_seconds" in s:
            c = s["cli_blame_seconds"]
            print(f"  s2build --no-server blame big --input {c['query']}: median "
                  f"{c['median']:.2f} s (min {c['min']:.2f}, max {c['max']:.2f}); the build before "
                  f"it {s['cli_build_seconds']:.0f} s, untimed")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subsets", type=int, default=50)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--datasets", nargs="+", default=["digits", "wine", "breast_cancer"])
    ap.add_argument("--removal-random", type=int, default=5, help="random draws per query")
    ap.add_argument("--rows", type=int, default=100_000, help="training rows of the timing "
                    "table (0: skip)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    machine = (f"{os.cpu_count()} cores, load average {load[0]:.2f} at start, Python "
               f"{sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {machine}")
    work = Path(tempfile.mkdtemp(prefix="s2bench-lds-"))
    report = {"machine": machine, "args": vars(args), "datasets": {}}
    started = time.perf_counter()
    try:
        print("1-2. LDS and top-20 removal")
        for name in args.datasets:
            report["datasets"][name] = bench_dataset(name, work, args.subsets, args.queries,
                                                     args.removal_random)
        if args.rows:
            print(f"3. blame at {args.rows:,} training rows", flush=True)
            report["scale"] = bench_scale(work, args.rows, args.runs, not args.no_cli)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["wall_seconds"] = time.perf_counter() - started
    print_tables(report)
    print(f"\nwall time {report['wall_seconds']:.0f} s; load average at end "
          f"{os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
