"""`build -j 1` against `build -j 2` on a project of 4 independent targets (issue 13 item 2).

    .venv/bin/python bench/parallel.py [--runs 5] [--epochs 60] [--server] [--json FILE]

The project: the wine example's data, 4 targets that differ only in their seed (mlp [32, 32],
legacy export), so they are independent and none restores another. Each run copies a fresh
project, then times one whole `python -m s2build build -j N` process without the build server
(every target trained from scratch); the runs of -j 1 and -j 2 alternate, so both see the same
load. With --server, each fresh project's build server is started and warmed first (an
untimed build of a fifth target of another shape, so no graph is cached for the four), then
`build -j N t1 t2 t3 t4` is timed through it, and the server shut down. Prints the load
average before and after, medians (min-max) and the ratio, and checks that every run gives
the same artifact bytes per target (exit 1 otherwise).
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
WARM = ("  warm: {<<: *t, model: {type: mlp, hidden: [8]}, train: {epochs: 2, seed: 9}, "
        "output: build/warm.onnx}\n")


def make(d, epochs, server=False):
    os.makedirs(d)
    shutil.copytree(os.path.join(ROOT, "examples", "wine", "data"), os.path.join(d, "data"))
    with open(os.path.join(d, "s2build.yaml"), "w") as f:
        f.write(YAML.format(epochs=epochs) + (WARM if server else ""))


def _s2build(args, d, env):
    p = subprocess.run([sys.executable, "-m", "s2build", *args], cwd=d, env=env,
                       capture_output=True, text=True)
    if p.returncode != 0 or "unavailable" in p.stderr:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


def once(base, jobs, epochs, i, server=False):
    d = os.path.join(base, f"j{jobs}-{i}")
    make(d, epochs, server)
    env = dict(os.environ, PYTHONPATH=ROOT, S2BUILD_NO_SERVER="1")
    if server:
        env.pop("S2BUILD_NO_SERVER")
        env.update(S2BUILD_SERVER="1", S2BUILD_SERVER_IDLE="120")
        _s2build(["build", "warm"], d, env)             # started, warmed up, not timed
    clock = time.perf_counter()
    try:
        _s2build(["build", "-j", str(jobs), *NAMES], d, env)
        secs = time.perf_counter() - clock
    finally:
        if server:
            subprocess.run([sys.executable, "-m", "s2build", "shutdown"], cwd=d, env=env,
                           capture_output=True)
    digests = {}
    for n in NAMES:
        with open(os.path.join(d, "build", f"{n}.onnx"), "rb") as f:
            digests[n] = hashlib.sha256(f.read()).hexdigest()
    shutil.rmtree(d)
    return secs, digests


def _loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them ('?' elsewhere)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--server", action="store_true", help="time builds through a warm server")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    load = [_loadavg()]
    base = tempfile.mkdtemp(prefix="s2bench-parallel-")
    times, digests = {1: [], 2: []}, {1: set(), 2: set()}
    try:
        for i in range(a.runs):
            for jobs in (1, 2):
                secs, d = once(base, jobs, a.epochs, i, a.server)
                times[jobs].append(secs)
                digests[jobs].add(json.dumps(d, sort_keys=True))
                print(f"run {i + 1}: -j {jobs} {secs:.2f}s", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load.append(_loadavg())
    same = len(digests[1] | digests[2]) == 1
    med = {j: statistics.median(t) for j, t in times.items()}
    how = "through a warm build server" if a.server else "whole process, no server"
    print(f"4 independent targets (wine data, mlp [32, 32], {a.epochs} epochs), "
          f"{how}, medians of {a.runs}; load average {load[0]} before, {load[1]} after")
    for j in (1, 2):
        print(f"  -j {j}: {med[j]:.2f} s ({min(times[j]):.2f}-{max(times[j]):.2f})")
    print(f"  -j 2 / -j 1: {med[2] / med[1]:.2f}x; identical artifacts: {'yes' if same else 'NO'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"times": times, "median": med, "identical": same, "load": load,
                       "server": a.server, "epochs": a.epochs}, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
