"""A target reading another target's artifact, at real size (issue 14 on issue 11's tables).

    .venv/bin/python bench/chain.py [--rows 1000000] [--features 16] [--files 10] [--repeat 3]
                                    [--workdir DIR] [--keep]

Generates (seeded) ROWS rows of FEATURES float features with a 4-class label in FILES CSV
files, and one project: `extractor` (mlp [32, 8], export.embedding, 1 epoch, batch 1024) on the
first half of the files and `head` (upstream: extractor features, mlp [], 1 epoch) on all of
them. Every build is a fresh `python -m s2build build` process (S2BUILD_NO_SERVER=1; legacy
exporter). Measured, in one run:

  cold     both targets from nothing: the build's wall time, and the head's data stage from its
           sidecar (`timings.data`: parse, then the extractor run through onnxruntime over every
           row);
  by hand  the same upstream pass written by hand in this process: onnxruntime over the
           extractor's artifact on every row, fed from pyarrow.csv (a floor for that stage);
  edit     REPEAT times, one row's label changed in a file only the head reads: the extractor
           stays current, the head rebuilds and runs the extractor over that file's rows only
           (the other files' outputs come from .s2build/upstream/): build wall time, head data
           stage;
  cutoff   REPEAT times, the extractor's `train.memory` changed (in its key, but the data fits):
           the extractor rebuilds with the same graph and the head stays up to date.

Prints medians (min-max) and the machine.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

YAML = """\
version: 1
targets:
  extractor:
    sources: ['data/part0[0-4].csv']
    loader: {{format: csv, label: y}}
    model: {{type: mlp, hidden: [32, 8]}}
    train: {{epochs: 1, batch_size: 1024, lr: 0.003{memory}}}
    holdout: {{fraction: 0.1}}
    export: {{exporter: legacy, embedding: true}}
  head:
    sources: [data/*.csv]
    loader: {{format: csv, label: y}}
    upstream: {{target: extractor, use: features}}
    model: {{type: mlp, hidden: []}}
    train: {{epochs: 1, batch_size: 1024, lr: 0.01}}
    holdout: {{fraction: 0.1}}
    export: {{exporter: legacy}}
"""


def generate(d, rows, features, files):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(features, 4))
    (d / "data").mkdir(parents=True)
    per = rows // files
    for i in range(files):
        x = rng.normal(size=(per, features)).round(4)
        y = (x @ w + rng.normal(scale=0.5, size=(per, 4))).argmax(axis=1)
        with open(d / "data" / f"part{i:02d}.csv", "w") as f:
            f.write(",".join(f"x{j}" for j in range(features)) + ",y\n")
            np.savetxt(f, np.column_stack([x, y]), delimiter=",",
                       fmt=["%.4f"] * features + ["%d"])
    (d / "s2build.yaml").write_text(YAML.format(memory=""))


def build(d):
    env = dict(os.environ, S2BUILD_NO_SERVER="1", PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "s2build", "build"], cwd=d, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"build failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return wall, p.stdout


def sidecar(d, name):
    return json.loads((d / "build" / f"{name}.onnx.json").read_text())


def by_hand(d):
    """onnxruntime over the extractor on every row, fed from pyarrow.csv: seconds."""
    import onnxruntime as ort
    import pyarrow.csv as pcsv
    t = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(d / "build" / "extractor.onnx"), opts,
                             providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    n = 0
    for f in sorted((d / "data").glob("*.csv")):           # the head's rows
        table = pcsv.read_csv(f)
        cols = {c: table.column(c).to_numpy().astype(np.float32) for c in names}
        for i in range(0, len(table), 8192):
            n += len(s.run(["embedding"], {c: v[i:i + 8192] for c, v in cols.items()})[0])
    return time.perf_counter() - t


def edit_one_row(d, k):
    """Rewrite one row's label in the middle of one file (same length)."""
    f = sorted((d / "data").glob("*.csv"))[-1 - k % 3]     # a file only the head reads
    lines = f.read_text().splitlines()
    i = len(lines) // 2 + k
    head, label = lines[i].rsplit(",", 1)
    lines[i] = f"{head},{(int(label) + 1) % 4}"
    f.write_text("\n".join(lines) + "\n")


def med(xs):
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="s2chain-"))
    d = work / "proj"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load {open('/proc/loadavg').read().split()[:3]}")
    generate(d, a.rows, a.features, a.files)
    wall, _ = build(d)
    hs = sidecar(d, "head")
    print(f"cold: extractor + head {wall:.2f} s; head data stage {hs['timings']['data']:.2f} s "
          f"(of which parse and the upstream pass over {a.rows} rows)")
    hand = [by_hand(d) for _ in range(a.repeat)]
    print(f"by hand: onnxruntime over all rows from pyarrow.csv {med(hand)}")
    edit, data = [], []
    for k in range(a.repeat):
        edit_one_row(d, k)
        w, out = build(d)
        assert "head: built" in out and "extractor: up to date" in out, out
        edit.append(w)
        data.append(sidecar(d, "head")["timings"]["data"])
    print(f"one-row edit in a file only the head reads (extractor current): build "
          f"{med(edit)}; head data stage {med(data)}")
    cut = []
    for k in range(a.repeat):
        (d / "s2build.yaml").write_text(YAML.format(memory=f", memory: {8 + k}GB"))
        w, out = build(d)
        assert "early cutoff" in out, out
        cut.append(w)
    print(f"same-graph upstream rebuild (train.memory changed): build {med(cut)}, head up to "
          "date (early cutoff)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
