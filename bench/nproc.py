"""`train: {nproc: 1}` against `{nproc: 2}` (torchrun, gloo, DDP on the CPU; issue 13 item 3).

    .venv/bin/python bench/nproc.py [--runs 3] [--json FILE]

Two projects: the wine example (178 rows, mlp [32, 32], 40 epochs of batch 16) and a
generated table (4,000 rows of 6 features, 3 classes by linear scores, rows near a boundary
left out; mlp [32, 32], 20 epochs of batch 64, as tests/test_nproc.py). Each run copies a fresh
project and times one whole `python -m s2build build --no-server` process; nproc 1 and 2
alternate, so both see the same load. Prints, per project and nproc: the median (min-max)
wall time, the sidecar's training time (for nproc 2: torchrun's start, the ranks' imports and
rendezvous included), the holdout accuracy, and whether every run gave the same bytes (exit 1
otherwise).
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = """version: 1
targets:
  t:
    sources: [data/*.csv]
    loader: {{format: csv, label: label, task: classification, classes: 3}}
    model: {{type: mlp, hidden: [32, 32]}}
    train: {{epochs: 20, batch_size: 64, lr: 0.003, seed: 0, nproc: {nproc}}}
    holdout: {{fraction: 0.25, seed: 0}}
    export: {{exporter: legacy}}
    output: build/t.onnx
"""
WINE = """version: 1
targets:
  t:
    sources: [data/wine-*.csv]
    loader: {{format: csv, label: cultivar, task: classification, classes: 3}}
    model: {{type: mlp, hidden: [32, 32]}}
    train: {{epochs: 40, batch_size: 16, lr: 0.003, seed: 0, nproc: {nproc}}}
    holdout: {{fraction: 0.25, seed: 0}}
    export: {{exporter: legacy}}
    output: build/t.onnx
"""


def table_rows(n, seed, gap=0.05):
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        x = [round(rnd.uniform(-1, 1), 3) for _ in range(6)]
        s = [x[0] + x[1] - 0.5 * x[2], x[2] - x[1] + 0.3 * x[3], 0.8 * x[3] - x[0] + 0.2 * x[4]]
        if sorted(s)[2] - sorted(s)[1] >= gap:
            out.append(",".join(map(str, x)) + f",{max(range(3), key=lambda k: s[k])}")
    return out


def make(d, project, nproc):
    os.makedirs(os.path.join(d, "data"))
    if project == "wine":
        for name in os.listdir(os.path.join(ROOT, "examples", "wine", "data")):
            shutil.copy(os.path.join(ROOT, "examples", "wine", "data", name),
                        os.path.join(d, "data", name))
    else:
        for i in range(3):
            with open(os.path.join(d, "data", f"part{i}.csv"), "w") as f:
                f.write("\n".join(["a,b,c,d,e,f,label", *table_rows(4000 // 3, i)]) + "\n")
    with open(os.path.join(d, "s2build.yaml"), "w") as f:
        f.write((WINE if project == "wine" else TABLE).format(nproc=nproc))


def once(base, project, nproc, i):
    d = os.path.join(base, f"{project}-{nproc}-{i}")
    make(d, project, nproc)
    env = dict(os.environ, PYTHONPATH=ROOT, S2BUILD_NO_SERVER="1")
    clock = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "s2build", "build"], cwd=d, env=env,
                       capture_output=True, text=True)
    secs = time.perf_counter() - clock
    if p.returncode != 0:
        sys.exit(f"{project} nproc {nproc} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    with open(os.path.join(d, "build", "t.onnx.json")) as f:
        side = json.load(f)
    with open(os.path.join(d, "build", "t.onnx"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    shutil.rmtree(d)
    return {"wall": secs, "train": side["timings"]["train"],
            "accuracy": side["metrics"]["accuracy"], "sha256": digest}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="s2build-bench-nproc-")
    got = {}
    try:
        for i in range(args.runs):
            for project in ("wine", "table"):
                for nproc in (1, 2):
                    got.setdefault((project, nproc), []).append(once(base, project, nproc, i))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ok = True
    print(f"{'project':8} {'nproc':>5} {'build (whole process)':>26} {'train':>22} "
          f"{'accuracy':>9} same bytes")
    for (project, nproc), rs in got.items():
        w, t = [r["wall"] for r in rs], [r["train"] for r in rs]
        same = len({r["sha256"] for r in rs}) == 1
        ok = ok and same
        print(f"{project:8} {nproc:>5} {statistics.median(w):>9.2f} s ({min(w):.2f}-{max(w):.2f})"
              f" {statistics.median(t):>9.2f} s ({min(t):.2f}-{max(t):.2f})"
              f" {rs[0]['accuracy']:>9.4f} {'yes' if same else 'NO'}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{p} nproc {n}": rs for (p, n), rs in got.items()}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
