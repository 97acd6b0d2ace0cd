"""s2build against its peers on one workload: edit, revert and no-op rebuilds (issue 12).

    .venv/bin/python bench/peers.py [--sizes 100,1000] [--runs 5] [--tree DIR]
                                    [--dvc-venv DIR] [--no-dvc] [--keep] [--json FILE]

For each N it generates (seeded, bench/scale.py's linear teacher) N CSV files of 100 rows of a
4-class table (16 float features f0..f15 and a `label` column) and wraps the same training job,
a 16-64-4 MLP (standardised inputs, ReLU), Adam lr 0.001, batch 128, 5 epochs, one thread,
holdout 0.1, legacy ONNX export, in each tool, every tool in its own copy of the project:

  s2build          `s2build build` (release: from scratch, seeded), the project's s2build.yaml;
                   if `s2build --help` or `s2build build --help` lists `--no-server`, two
                   columns instead: `s2build build` against a warm build server and
                   `s2build build --no-server`
  s2build --dev    `s2build build --dev` (fine-tunes the last build when the change is small)
  dvc repro        `dvc repro` of a dvc.yaml with one stage (`python train.py`, deps: data/ and
                   train.py, outs: model.onnx), `dvc init --no-scm`, analytics off; DVC is
                   pip-installed by this script into --dvc-venv (default
                   ~/.cache/s2build-bench/dvc-venv, reused when `dvc --version` works there);
                   if that fails the DVC column is skipped with a note
  make -r          /usr/bin/make -r of a Makefile: model.onnx depends on every CSV file and
                   train.py, recipe `python train.py`

train.py is written by this script: numpy.loadtxt of every CSV file, the same network, optimizer,
epochs, batch size and holdout fraction, torch training, `torch.onnx.export(dynamo=False)`.

After one untimed setup build per tool (and one untimed no-op), it times whole-process wall time
(perf_counter around the subprocess) of three scenarios, RUNS rounds each, interleaved: in every
round each tool runs once, in an order that rotates from round to round, so the machine's noise
falls on every tool alike:

  edit     rewrite the label cell of one row of one file (same length; a different cell and file
           every round, so no tool can restore it from a cache), rebuild
  revert   write that file's original bytes back, rebuild (s2build and DVC can restore the first
           build from their caches; make sees a new mtime and retrains)
  no-op    nothing changed (at least 2.5 s after the last write, past s2build's racy-mtime
           window), rebuild

Every child gets the same environment: the user's, with bytecode written and reused under a
private PYTHONPYCACHEPREFIX (as bench/noop.py does; PYTHONDONTWRITEBYTECODE dropped), and
s2build run as the venv's `s2build` script with PYTHONPATH=TREE (default: this checkout).
Prints per N a table of medians (min-max) with scenarios as rows and tools as columns, and the
ratio of each s2build column's median to `make -r`'s; then the same for CPU time (user + system
of the child and the children it waited for, from os.wait4), which a loaded machine disturbs
less than wall time; --json writes the same figures (per-run lists included). Exits
non-zero when a timed run failed (non-zero exit) or an s2build run printed an error.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noop                                     # noqa: E402  (bench/noop.py: RACY_S)
import scale                                    # noqa: E402  (bench/scale.py: data, machine)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
S2BUILD = os.path.join(os.path.dirname(PYTHON), "s2build")
MAKE = "/usr/bin/make"
DVC_VENV = os.path.join(os.path.expanduser("~"), ".cache", "s2build-bench", "dvc-venv")

FEATURES = 16
ROWS = 100
CLASSES = scale.CLASSES                         # 4
HIDDEN, EPOCHS, BATCH, LR, HOLDOUT = 64, 5, 128, 0.001, 0.1

YAML = f"""\
version: 1
targets:
  peers:
    description: bench/peers.py synthetic table
    sources: ["data/*.csv"]
    loader:
      format: csv
      label: label
      task: classification
      classes: {CLASSES}
    model:
      type: mlp
      hidden: [{HIDDEN}]
    train:
      epochs: {EPOCHS}
      batch_size: {BATCH}
      lr: {LR}
      seed: 0
    holdout:
      fraction: {HOLDOUT}
      seed: 0
    export:
      exporter: legacy
    output: build/peers.onnx
"""

TRAIN_PY = f'''\
"""Hand-written baseline of bench/peers.py: train the 16-64-4 MLP on data/*.csv -> model.onnx."""
import glob

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)
torch.manual_seed(0)
parts = [np.loadtxt(p, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
         for p in sorted(glob.glob("data/*.csv"))]
table = np.concatenate(parts)                                   # [n, 16 features + label]
x, y = table[:, :-1], table[:, -1].astype(np.int64)
hold = np.random.default_rng(0).random(len(x)) < {HOLDOUT}
xt, yt = torch.from_numpy(x[~hold]), torch.from_numpy(y[~hold])
xh, yh = torch.from_numpy(x[hold]), torch.from_numpy(y[hold])


class Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, v):
        return (v - self.mean) / self.std


std = xt.std(dim=0, unbiased=False)
std = torch.where(std > 1e-8, std, torch.ones_like(std))
net = nn.Sequential(Standardize(xt.mean(dim=0), std), nn.Linear(x.shape[1], {HIDDEN}), nn.ReLU(),
                    nn.Linear({HIDDEN}, {CLASSES}))
opt = torch.optim.Adam(net.parameters(), lr={LR})
loss_fn = nn.CrossEntropyLoss()
gen = torch.Generator().manual_seed(0)
for epoch in range({EPOCHS}):
    order = torch.randperm(len(xt), generator=gen)
    for i in range(0, len(order), {BATCH}):
        idx = order[i:i + {BATCH}]
        loss = loss_fn(net(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
net.eval()
with torch.no_grad():
    acc = (net(xh).argmax(dim=1) == yh).float().mean().item()
torch.onnx.export(net, (torch.zeros(2, x.shape[1]),), "model.onnx", dynamo=False,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={{"input": {{0: "batch"}}, "logits": {{0: "batch"}}}})
print(f"rows={{len(x)}} holdout accuracy={{acc:.4f}} -> model.onnx")
'''

MAKEFILE = """\
CSV := $(wildcard data/*.csv)

model.onnx: $(CSV) train.py
\t{python} train.py
"""

DVC_YAML = """\
stages:
  train:
    cmd: {python} train.py
    deps:
      - data
      - train.py
    outs:
      - model.onnx
"""


def fail(msg):
    print(f"bench/peers.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


# --- the environment every child gets ---------------------------------------------------------

ENV = dict(os.environ)
ENV.pop("PYTHONDONTWRITEBYTECODE", None)        # bytecode cached, as for an installed tool


def run(cmd, cwd, env=None):
    """(wall seconds, exit code, stdout+stderr) of one whole child process."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=env or ENV)
    return time.perf_counter() - t0, p.returncode, p.stdout.decode(errors="replace")


def run_timed(cmd, cwd, env):
    """(wall seconds, CPU seconds, exit code, stdout+stderr) of one child; CPU is user + system
    time from os.wait4, which on Linux includes the descendants it waited for (make's and DVC's
    `python train.py`): less disturbed by other load than wall time."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        log.seek(0)
        out = log.read().decode(errors="replace")
    return wall, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status), out


def ensure_dvc(venv):
    """Path of a working `dvc` in `venv` (created and `pip install dvc`-ed if needed), or None
    with the reason printed."""
    dvc = os.path.join(venv, "bin", "dvc")
    if os.path.exists(dvc) and run([dvc, "--version"], "/")[1] == 0:
        return dvc
    print(f"installing DVC into {venv} (python -m venv; pip install dvc) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    env = dict(ENV)
    env.pop("PYTHONPATH", None)
    for cmd in ([PYTHON, "-m", "venv", venv],
                [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "dvc"],
                [dvc, "--version"]):
        try:
            dt, rc, out = run(cmd, "/", env)
        except OSError as e:
            rc, out = 1, str(e)
        if rc != 0:
            tail = "\n".join(out.strip().splitlines()[-5:])
            print(f"DVC: install failed ({' '.join(cmd[-3:])}: exit {rc}); skipping the DVC "
                  f"column.\n{tail}", flush=True)
            return None
    return dvc


# --- projects ---------------------------------------------------------------------------------

def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def generate(data, n, seed=0):
    """N CSV files of ROWS rows in `data` (scale.py's teacher, FEATURES features)."""
    os.makedirs(data)
    teacher = np.random.default_rng(seed).standard_normal((FEATURES, CLASSES), dtype=np.float32)
    for i in range(n):
        x, y = scale.rows_of(np.random.default_rng([seed, i]), teacher, ROWS)
        scale.write_csv(os.path.join(data, f"part-{i:05d}.csv"), x, y)
    return sorted(os.path.join(data, f) for f in os.listdir(data))


class Tool:
    """One column: a command run in its own copy of the project."""

    def __init__(self, name, cmd, kind, proj, env=None):
        self.name, self.cmd, self.kind, self.proj = name, cmd, kind, proj
        self.env = env or ENV
        self.files = sorted(os.path.join(proj, "data", f)
                            for f in os.listdir(os.path.join(proj, "data")))
        self.last_write = 0.0

    def build(self):
        return run_timed(self.cmd, self.proj, self.env)


def make_tools(tmp, n, tree, dvc, server):
    """The tools for N files, each with its own project under tmp (one generated data set,
    copied)."""
    src = os.path.join(tmp, "src")
    generate(os.path.join(src, "data"), n)
    s2env = dict(ENV, PYTHONPATH=tree)
    specs = []
    if server:
        specs += [("s2build (server)", [S2BUILD, "build"], "s2build"),
                  ("s2build --no-server", [S2BUILD, "build", "--no-server"], "s2build")]
    else:
        specs += [("s2build", [S2BUILD, "build"], "s2build")]
    specs += [("s2build --dev", [S2BUILD, "build", "--dev"], "s2build")]
    if dvc:
        specs += [("dvc repro", [dvc, "repro"], "dvc")]
    specs += [("make -r", [MAKE, "-r"], "make")]
    tools = []
    for i, (name, cmd, kind) in enumerate(specs):
        proj = os.path.join(tmp, f"tool{i}")
        shutil.copytree(src, proj)
        if kind == "s2build":
            write(os.path.join(proj, "s2build.yaml"), YAML)
        else:
            write(os.path.join(proj, "train.py"), TRAIN_PY)
            write(os.path.join(proj, "Makefile" if kind == "make" else "dvc.yaml"),
                  (MAKEFILE if kind == "make" else DVC_YAML).format(python=PYTHON))
        if kind == "dvc":
            for c in ([dvc, "init", "--no-scm", "-q"],
                      [dvc, "config", "core.analytics", "false"],
                      [dvc, "config", "core.check_update", "false"]):
                _, rc, out = run(c, proj)
                if rc != 0 and "check_update" not in c:
                    fail(f"{' '.join(c[1:])} failed (exit {rc}):\n{out}")
        tools.append(Tool(name, cmd, kind, proj, s2env if kind == "s2build" else ENV))
    shutil.rmtree(src)
    return tools


# --- edits ------------------------------------------------------------------------------------

def edit_cell(path, row):
    """Rewrite the label (last cell, one digit) of data row `row` of `path`, same length;
    returns the file's original bytes."""
    with open(path, "rb") as f:
        original = f.read()
    lines = original.split(b"\n")
    line = lines[1 + row]
    if not line[-1:].isdigit():
        fail(f"cannot edit row {row} of {path}: {line!r}")
    lines[1 + row] = line[:-1] + b"%d" % ((int(line[-1:]) + 1) % CLASSES)
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))
    return original


BOILERPLATE = ("Use `dvc push`", "Updating lock file", "To track the changes with git")


def summary(out):
    """The last line of a tool's output that says what it did (DVC's advice lines skipped)."""
    lines = [l for l in out.strip().splitlines() if l.strip() and not l.startswith(BOILERPLATE)]
    return lines[-1] if lines else ""


def s2build_error(out):
    return any("error:" in line.lower() or line.startswith("Traceback")
               for line in out.splitlines())


# --- measurement ------------------------------------------------------------------------------

SCENARIOS = ("edit", "revert", "no-op")


def bench_size(n, runs, tree, dvc, server, keep, failures):
    tmp = tempfile.mkdtemp(prefix=f"s2build-peers-{n}-")
    try:
        t0 = time.perf_counter()
        tools = make_tools(tmp, n, tree, dvc, server)
        print(f"N={n}: {n} files x {ROWS} rows generated for {len(tools)} tools in "
              f"{time.perf_counter() - t0:.1f} s; setup builds ...", flush=True)
        res = {"n_files": n, "rows_per_file": ROWS, "tools": [t.name for t in tools],
               "setup_s": {}, "times": {s: {t.name: [] for t in tools} for s in SCENARIOS},
               "cpu": {s: {t.name: [] for t in tools} for s in SCENARIOS},
               "last_output": {s: {} for s in SCENARIOS}}
        for t in tools:
            dt, _cpu, rc, out = t.build()
            if rc != 0:
                fail(f"{t.name}: setup build for N={n} failed (exit {rc}):\n{out}")
            res["setup_s"][t.name] = dt
            print(f"  {t.name}: setup build {dt:.1f} s", flush=True)
        time.sleep(noop.RACY_S)
        for t in tools:                     # untimed no-op: warm caches, trusted stat entries
            dt, _cpu, rc, out = t.build()
            if rc != 0:
                fail(f"{t.name}: warm-up no-op for N={n} failed (exit {rc}):\n{out}")
        for r in range(runs):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            path = tools[0].files[(n // 2 + r) % n]
            name, row = os.path.basename(path), (7 * r + 3) % ROWS
            originals = {}
            for scenario in SCENARIOS:
                for t in order:
                    p = os.path.join(t.proj, "data", name)
                    if scenario == "edit":
                        originals[t.name] = edit_cell(p, row)
                        t.last_write = time.time()
                    elif scenario == "revert":
                        with open(p, "wb") as f:
                            f.write(originals[t.name])
                        t.last_write = time.time()
                    else:
                        time.sleep(max(0.0, noop.RACY_S - (time.time() - t.last_write)))
                    dt, cpu, rc, out = t.build()
                    bad = rc != 0 or (t.kind == "s2build" and s2build_error(out))
                    if bad:
                        failures.append(f"N={n} round {r + 1} {scenario} {t.name}: exit {rc}:\n"
                                        f"{out.strip()}")
                        print(f"  FAILED: {t.name} {scenario} (exit {rc}):\n{out}", flush=True)
                    else:
                        res["times"][scenario][t.name].append(dt)
                        res["cpu"][scenario][t.name].append(cpu)
                    res["last_output"][scenario][t.name] = summary(out)
            print(f"  round {r + 1}/{runs}: " + "; ".join(
                f"{t.name} " + "/".join(f"{res['times'][s][t.name][-1]:.2f}"
                                        if res['times'][s][t.name] else "x" for s in SCENARIOS)
                for t in tools) + " s (edit/revert/no-op)", flush=True)
        for key in ("times", "cpu"):
            res[key + "_stats"] = {s: {name: scale.stats(xs) if xs else None
                                       for name, xs in d.items()} for s, d in res[key].items()}
        return res
    finally:
        if keep:
            print(f"  (kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def cell(s):
    if s is None:
        return "failed"
    return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def table(res, key, what):
    """One table: scenarios as rows, tools as columns, then each s2build column / make -r."""
    names = res["tools"]
    s2 = [x for x in names if x.startswith("s2build")]
    cols = names + ([f"{x} / make" for x in s2] if "make -r" in names else [])
    rows = []
    for sc in SCENARIOS:
        st = res[key][sc]
        row = [sc] + [cell(st[x]) for x in names]
        if "make -r" in names:
            m = st["make -r"]
            row += [f"{st[x]['median'] / m['median']:.2f}x" if st[x] and m and m["median"] > 0
                    else "-" for x in s2]
        rows.append(row)
    hdr = ["scenario (s)"] + cols
    w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    fmt = lambda r: "  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i]) for i, v in enumerate(r))
    print(f"\nN={res['n_files']} files x {res['rows_per_file']} rows: {what}, "
          "median (min-max) in seconds")
    print(fmt(hdr) + "\n" + "-" * len(fmt(hdr)))
    for r in rows:
        print(fmt(r))


def report(res):
    table(res, "times_stats", "whole-process wall time")
    table(res, "cpu_stats", "CPU time (user + system, with waited-for children)")
    print("setup build: " + ", ".join(f"{k} {v:.1f} s" for k, v in res["setup_s"].items()))
    print("what each tool said in the last round (its last line):")
    for sc in SCENARIOS:
        for name, line in res["last_output"][sc].items():
            print(f"  {sc:<6} {name:<14} {line[:150]}")


def has_server_flag(tree):
    env = dict(ENV, PYTHONPATH=tree)
    return any("--no-server" in run([S2BUILD, *a, "--help"], ROOT, env)[2]
               for a in ((), ("build",)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000", help="comma-separated file counts")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds per scenario (>= 5 advised)")
    ap.add_argument("--tree", default=ROOT, help="the s2build code tree to time")
    ap.add_argument("--dvc-venv", default=DVC_VENV, help="where DVC is (or gets) installed")
    ap.add_argument("--no-dvc", action="store_true", help="skip the DVC column")
    ap.add_argument("--keep", action="store_true", help="keep the scratch projects")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    a = ap.parse_args()
    started = time.perf_counter()
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    tree = os.path.abspath(a.tree)
    for p in (S2BUILD, MAKE):
        if not os.path.exists(p):
            fail(f"{p} not found (run with the venv's python: .venv/bin/python bench/peers.py)")
    dvc = None if a.no_dvc else ensure_dvc(a.dvc_venv)
    dvc_version = run([dvc, "--version"], "/")[2].strip() if dvc else None
    make_version = run([MAKE, "--version"], "/")[2].splitlines()[0]
    server = has_server_flag(tree)
    m = scale.machine(tree)
    m.update(dvc=dvc_version, make=make_version, server_flag=server)
    print(f"machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, {m['platform']}")
    print(f"date:    {m['date']}\ntree:    {tree} (git {m['git']})")
    print(f"tools:   {make_version}; DVC {dvc_version or 'skipped'}; s2build "
          f"{'with' if server else 'without'} --no-server")
    print(f"job:     {FEATURES}-{HIDDEN}-{CLASSES} MLP, {EPOCHS} epochs, batch {BATCH}, lr {LR}, "
          f"legacy ONNX export; {a.runs} interleaved rounds per scenario\n", flush=True)
    failures, results = [], []
    pyc = tempfile.mkdtemp(prefix="s2build-peers-pyc-")    # one per run: torch compiles once
    ENV["PYTHONPYCACHEPREFIX"] = pyc
    try:
        for n in sizes:
            results.append(bench_size(n, a.runs, tree, dvc, server, a.keep, failures))
    finally:
        shutil.rmtree(pyc, ignore_errors=True)
    for res in results:
        report(res)
    total = time.perf_counter() - started
    print(f"\ntotal: {total:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": m, "args": vars(a), "job": {
                "features": FEATURES, "hidden": [HIDDEN], "classes": CLASSES, "epochs": EPOCHS,
                "batch_size": BATCH, "lr": LR, "holdout": HOLDOUT, "rows_per_file": ROWS},
                "results": results, "failures": failures, "total_s": total}, f, indent=1)
        print(f"wrote {a.json}")
    if failures:
        fail(f"{len(failures)} timed run(s) failed:\n" + "\n\n".join(failures))


if __name__ == "__main__":
    main()
