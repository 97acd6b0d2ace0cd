"""`build -j 1` against `build -j 2` on a project of 4 independent targets (issue 13 item 2).

    .venv/bin/python bench/parallel.py [--runs 5] [--epochs 60] [--json FILE]

The project: the wine example's data, 4 targets that differ only in their seed (mlp [32, 32],
legacy export), so they are independent and none restores another. Each run copies a fresh
project, then times one whole `python -m s2build build -j N --no-server` process (every target
trained from scratch); the runs of -j 1 and -j 2 alternate, so both see the same load. Prints
medians (min-max) and the ratio, and checks that both give the same artifact bytes per target
(exit 1 otherwise).
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("t1", "t2", "t3", "t4")
YAML = """version: 1
x-t: &t
  sources: [data/wine-*.csv]
  loader: {{format: csv, label: cultivar, task: classification, classes: 3}}
  model: {{type: mlp, hidden: [32, 32]}}
  export: {{exporter: legacy}}
targets:
""" + "".join(f"  {n}: {{{{<<: *t, train: {{{{epochs: {{epochs}}, seed: {i}}}}}, "
              f"output: build/{n}.onnx}}}}\n" for i, n in enumerate(NAMES))


def make(d, epochs):
    os.makedirs(d)
    shutil.copytree(os.path.join(ROOT, "examples", "wine", "data"), os.path.join(d, "data"))
    with open(os.path.join(d, "s2build.yaml"), "w") as f:
        f.write(YAML.format(epochs=epochs))


def once(base, jobs, epochs, i):
    d = os.path.join(base, f"j{jobs}-{i}")
    make(d, epochs)
    env = dict(os.environ, PYTHONPATH=ROOT, S2BUILD_NO_SERVER="1")
    clock = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "s2build", "build", "-j", str(jobs)], cwd=d,
                       env=env, capture_output=True, text=True)
    secs = time.perf_counter() - clock
    if p.returncode != 0:
        sys.exit(f"-j {jobs} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    digests = {}
    for n in NAMES:
        with open(os.path.join(d, "build", f"{n}.onnx"), "rb") as f:
            digests[n] = hashlib.sha256(f.read()).hexdigest()
    shutil.rmtree(d)
    return secs, digests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="s2bench-parallel-")
    times, digests = {1: [], 2: []}, {1: set(), 2: set()}
    try:
        for i in range(a.runs):
            for jobs in (1, 2):
                secs, d = once(base, jobs, a.epochs, i)
                times[jobs].append(secs)
                digests[jobs].add(json.dumps(d, sort_keys=True))
                print(f"run {i + 1}: -j {jobs} {secs:.2f}s", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    same = len(digests[1] | digests[2]) == 1
    med = {j: statistics.median(t) for j, t in times.items()}
    print(f"4 independent targets (wine data, mlp [32, 32], {a.epochs} epochs), "
          f"whole process, medians of {a.runs}")
    for j in (1, 2):
        print(f"  -j {j}: {med[j]:.2f} s ({min(times[j]):.2f}-{max(times[j]):.2f})")
    print(f"  -j 2 / -j 1: {med[2] / med[1]:.2f}x; identical artifacts: {'yes' if same else 'NO'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"times": times, "median": med, "identical": same}, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
