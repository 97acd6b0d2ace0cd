"""Table preprocessing at real size: TablePrep fit, transform and feeds in numpy, and the merged
artifact (prep graph + MLP) on raw columns in onnxruntime (one thread, Artifact's chunks).

    .venv/bin/python bench/tableprep.py [--rows 1000000] [--numbers 10] [--categories 3]
                                        [--levels 50] [--runs 5] [--json FILE]

Synthetic table: `numbers` standard-normal float32 columns with 5% NaN, `categories` columns of
`levels` values with ~2% missing; 80% of rows train. transform writes into a matrix already
touched once (first-touch page faults of a fresh [n, width] float32 matrix are the dataset's one
allocation, not the transform's). Prints the median (min, max) of `runs` runs of each step and
the parity of the artifact's outputs with torch on the numpy features.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s2build.compile import artifact, export, prepgraph  # noqa: E402
from s2build.data.columns import TablePrep  # noqa: E402
from s2build.data.table import RawTable  # noqa: E402


def table(rows, numbers, categories, levels, seed=0):
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(rows, numbers)).astype(np.float32)
    num[rng.random((rows, numbers)) < 0.05] = np.nan
    codes = rng.integers(0, levels, size=(rows, categories))
    codes[rng.random((rows, categories)) < 0.02] = -1
    names = [f"n{i}" for i in range(numbers)] + [f"c{j}" for j in range(categories)]
    raw = RawTable(names, ["number"] * numbers + ["category"] * categories, num,
                   codes.astype(np.int32), [[f"v{i:03d}" for i in range(levels)]] * categories)
    return raw, rng.random(rows) < 0.8


def timed(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def main():
    import torch
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--numbers", type=int, default=10)
    ap.add_argument("--categories", type=int, default=3)
    ap.add_argument("--levels", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    raw, train = table(args.rows, args.numbers, args.categories, args.levels)
    figures = {}
    prep, figures["fit"] = timed(lambda: TablePrep.fit(raw, train), args.runs)
    out = np.ones((len(raw), prep.width), np.float32)
    _, figures["transform"] = timed(lambda: prep.transform(raw, out=out), args.runs)
    feeds, figures["feeds"] = timed(lambda: prep.feeds(raw), args.runs)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(prep.width, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 3)).eval()
    network = export.export_onnx(net, torch.zeros(2, prep.width), output_names=["logits"],
                                 metadata={}, exporter="legacy")
    merged, figures["prepend"] = timed(lambda: prepgraph.prepend(prep, network), args.runs)
    a = artifact.Artifact(data=merged)
    a.outputs_feeds({k: v[:10] for k, v in feeds.items()})            # session made untimed
    got, figures["artifact_on_raw_feeds"] = timed(lambda: a.outputs_feeds(feeds), args.runs)
    with torch.no_grad():
        want = net(torch.from_numpy(out)).numpy()
    parity = float(np.abs(got - want).max())
    print(f"{args.rows:,} rows, {args.numbers} number + {args.categories} category columns "
          f"({args.levels} levels) -> width {prep.width}; artifact {len(merged):,} bytes")
    for step, f in figures.items():
        print(f"  {step:24s} {f['median_s']:.3f} s  (min {f['min_s']:.3f}, max {f['max_s']:.3f})")
    print(f"  max|onnx - torch|        {parity:.2e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "width": prep.width, "figures": figures,
                       "max_abs_diff": parity}, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
