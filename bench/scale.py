"""Real tables at real size: s2build on 1M rows x 32 features (see /work/shared/BENCHMARKS.md).

    .venv/bin/python bench/scale.py [--rows 1000000] [--features 32] [--files 10] [--repeat 5]
                                    [--edit-mb 100] [--big-rows 10000000] [--skip-big]
                                    [--tree DIR] [--workdir DIR] [--keep] [--json FILE]

Generates (seeded) ROWS rows of FEATURES float features (rounded to 4 decimals) with a 4-class
label from a fixed random linear teacher plus noise, written as FILES CSV files and the same rows
as FILES parquet files, and one s2build project per format (mlp hidden [64], 2 epochs, batch 512,
lr 0.001, holdout fraction 0.1, legacy exporter). Then, in the same run, REPEAT times each:

  read      the same files read into a float32 matrix by pyarrow.csv.read_csv, polars.read_csv,
            pyarrow.parquet.read_table (in this process, files in the page cache) and np.loadtxt
            on one CSV file (shown scaled to all files);
  cold      `s2build build` with no .s2build/ nor build/, a fresh process, its whole wall time,
            interleaved with bench/scale_script.py (the same network, optimizer and epochs, by
            hand, legacy ONNX export; as `make -r` would run it); the data stage from the
            sidecar (`timings.data`) against pyarrow's read of the same files;
  memory    the build's peak RSS (os.wait4 ru_maxrss of the child, started by a small launcher
            process so that it inherits nothing of this one) minus that of a bare child that
            imports torch and onnxruntime, against the size of the float32 feature matrix;
  disk      .s2build/ after the cold build against the sources' bytes plus the ONNX file;
  edit      a one-file project of about EDIT_MB MB of CSV: one row's label rewritten in the middle
            of the file (same length), then `s2build build` and `s2build build --dev`; the
            sidecar's parsed_files (and any parsed_* / *block* key), and the rebuild's wall time;
  big       (unless --skip-big) BIG_ROWS rows as parquet (10 files, row groups of 1M rows) with
            `train: {memory: 1GB}`, built once: wall time and peak RSS.

A build that stops with a config error (exit 3: `format: parquet` or `train.memory` unknown to
this s2build) is reported as "not supported by this s2build", so the benchmark runs on older
trees. The builds run `python -m s2build` (S2BUILD_NO_SERVER=1: every build a fresh process, as
in CI) with PYTHONPATH=TREE (default: this checkout) and
bytecode cached under a private PYTHONPYCACHEPREFIX. Scratch data goes under --workdir (default a
new folder in /tmp) and is deleted at the end unless --keep. Exits non-zero when a build that
should work fails.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
CLASSES = 4
NOISE = 0.5          # teacher logits + N(0, NOISE): a small MLP reaches about 0.85-0.9 accuracy
CONFIG = 3           # s2build's exit code for a config error (s2build/errors.py)

YAML = """\
version: 1
targets:
  {name}:
    description: bench/scale.py synthetic table ({fmt})
    sources: ["data/*.{fmt}"]
    loader:
      format: {fmt}
      label: label
      task: classification
      classes: {classes}
    model:
      type: mlp
      hidden: [64]
    train:
      epochs: 2
      batch_size: 512
      lr: 0.001
      seed: 0{extra}
    holdout:
      fraction: 0.1
      seed: 0
    export:
      exporter: legacy
    output: build/{name}.onnx
"""


def fail(msg):
    print(f"bench/scale.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def machine(tree):
    import importlib.metadata as md
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    vers = {}
    for p in ("torch", "onnx", "onnxruntime", "numpy", "pyarrow", "polars"):
        try:
            vers[p] = md.version(p)
        except md.PackageNotFoundError:
            vers[p] = None
    git = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "tree": tree, "git": git, "versions": vers,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}


# --- data -----------------------------------------------------------------------------------

def rows_of(rng, teacher, n):
    """(x float32 [n, k] rounded to 4 decimals, y int64 [n]) from the linear teacher."""
    x = np.round(rng.standard_normal((n, teacher.shape[0]), dtype=np.float32), 4)
    logits = x @ teacher + NOISE * rng.standard_normal((n, CLASSES), dtype=np.float32)
    return x, logits.argmax(axis=1).astype(np.int64)


def table(x, y):
    import pyarrow as pa
    cols = {f"f{j}": x[:, j] for j in range(x.shape[1])}
    cols["label"] = y
    return pa.table(cols)


def write_csv(path, x, y):
    import pyarrow.csv as pcsv
    names = [f"f{j}" for j in range(x.shape[1])] + ["label"]
    with open(path, "wb") as f:
        f.write((",".join(names) + "\n").encode())
        pcsv.write_csv(table(x, y), f, pcsv.WriteOptions(include_header=False))


def generate(work, rows, features, files, edit_mb, big_rows, seed=0):
    """Write the CSV, parquet, edit and big projects' data; returns their file lists."""
    import pyarrow.parquet as pq
    teacher = np.random.default_rng(seed).standard_normal((features, CLASSES), dtype=np.float32)
    out = {"csv": [], "parquet": []}
    for fmt in out:
        os.makedirs(os.path.join(work, fmt, "data"))
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for i in range(files):
        x, y = rows_of(np.random.default_rng([seed, i]), teacher, int(bounds[i + 1] - bounds[i]))
        p = os.path.join(work, "csv", "data", f"part-{i:03d}.csv")
        write_csv(p, x, y)
        out["csv"].append(p)
        p = os.path.join(work, "parquet", "data", f"part-{i:03d}.parquet")
        pq.write_table(table(x, y), p)
        out["parquet"].append(p)
    # The edit project: one CSV file of about edit_mb MB (row size measured on file 0).
    per_row = os.path.getsize(out["csv"][0]) / max(1, bounds[1])
    n_edit = max(1000, int(edit_mb * 1e6 / per_row))
    os.makedirs(os.path.join(work, "edit", "data"))
    x, y = rows_of(np.random.default_rng([seed, 1000]), teacher, n_edit)
    out["edit"] = [os.path.join(work, "edit", "data", "big.csv")]
    write_csv(out["edit"][0], x, y)
    out["edit_rows"] = n_edit
    if big_rows:
        os.makedirs(os.path.join(work, "big", "data"))
        out["big"] = []
        per_file = 1_000_000
        for i in range(0, big_rows, per_file):
            x, y = rows_of(np.random.default_rng([seed, 2000, i]), teacher,
                           min(per_file, big_rows - i))
            p = os.path.join(work, "big", "data", f"part-{i // per_file:03d}.parquet")
            pq.write_table(table(x, y), p, row_group_size=per_file)
            out["big"].append(p)
    return out


def write_yaml(proj, name, fmt, extra=""):
    with open(os.path.join(proj, "s2build.yaml"), "w") as f:
        f.write(YAML.format(name=name, fmt=fmt, classes=CLASSES, extra=extra))


# --- running --------------------------------------------------------------------------------

ENV = dict(os.environ)


# Children are started by a small launcher process, itself started before any data is
# generated: a child's ru_maxrss counts what it inherited between fork and exec, so a child
# forked from this process (which holds the generated tables) would report this process's size.
LAUNCHER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["log"], "wb") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(job["cmd"], cwd=job["cwd"], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=job["env"])
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
    print(json.dumps([dt, os.waitstatus_to_exitcode(status), ru.ru_maxrss * 1024]), flush=True)
"""
_launcher = None


def start_launcher():
    """Start the launcher (call first, while this process is small)."""
    global _launcher
    _launcher = subprocess.Popen([PYTHON, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)


def run(cmd, cwd):
    """(wall seconds, exit code, output, peak RSS bytes) of one fresh child process."""
    if _launcher is None:
        start_launcher()
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        _launcher.stdin.write(json.dumps({"cmd": cmd, "cwd": cwd, "env": ENV,
                                          "log": log.name}) + "\n")
        _launcher.stdin.flush()
        answer = _launcher.stdout.readline()
        if not answer:
            fail("the bench's launcher process died")
        dt, rc, rss = json.loads(answer)
        out = open(log.name, "rb").read().decode(errors="replace")
    return dt, rc, out, rss                                    # ru_maxrss was KiB on Linux


def build(proj, name, args=(), cold=True):
    """One `s2build build` of `proj` (cold: no .s2build/ nor build/ first); returns a dict with
    wall, rc, out, rss and the sidecar (None when it failed)."""
    if cold:
        for d in (".s2build", "build"):
            shutil.rmtree(os.path.join(proj, d), ignore_errors=True)
    wall, rc, out, rss = run([PYTHON, "-m", "s2build", "build", *args], proj)
    side = None
    if rc == 0:
        with open(os.path.join(proj, "build", f"{name}.onnx.json")) as f:
            side = json.load(f)
    return {"wall": wall, "rc": rc, "out": out, "rss": rss, "sidecar": side}


def script(proj, fmt):
    cmd = [PYTHON, os.path.join(ROOT, "bench", "scale_script.py"), "--data",
           os.path.join(proj, "data"), "--format", fmt, "--out",
           os.path.join(proj, "script", "model.onnx"), "--classes", str(CLASSES)]
    wall, rc, out, rss = run(cmd, proj)
    if rc != 0:
        fail(f"bench/scale_script.py ({fmt}) failed (exit {rc}):\n{out}")
    return {"wall": wall, "rss": rss, "out": out.strip().splitlines()[-1]}


def du(path):
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def parse_keys(side):
    """The sidecar's re-parse figures: parsed_files and any parsed_* / *block* key."""
    return {k: v for k, v in sorted(side.items())
            if k.startswith("parsed") or "block" in k} if side else {}


# --- measurements ---------------------------------------------------------------------------

def read_figures(files, repeat, loadtxt):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import polars as pl

    def matrix(t):                                    # pyarrow table -> float32 [n, k]
        names = [c for c in t.column_names if c != "label"]
        x = np.empty((t.num_rows, len(names)), dtype=np.float32)
        for j, c in enumerate(names):
            x[:, j] = t.column(c).to_numpy()
        return x

    readers = {
        "pyarrow.csv.read_csv": lambda: matrix(pa.concat_tables(
            [pcsv.read_csv(p) for p in files["csv"]])),
        "polars.read_csv": lambda: np.concatenate(
            [pl.read_csv(p).drop("label").to_numpy().astype(np.float32) for p in files["csv"]]),
        "pyarrow.parquet.read_table": lambda: matrix(pa.concat_tables(
            [pq.read_table(p) for p in files["parquet"]])),
    }
    if loadtxt:
        n = len(files["csv"])
        readers[f"np.loadtxt (1 file x {n})"] = lambda: n and np.loadtxt(
            files["csv"][0], delimiter=",", skiprows=1, dtype=np.float32)
    res = {}
    for name, fn in readers.items():
        fn()                                          # warm: imports, page cache, thread pools
        xs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            xs.append(time.perf_counter() - t0)
        if name.startswith("np.loadtxt"):
            xs = [v * len(files["csv"]) for v in xs]
        res[name] = stats(xs)
    return res


def bare_rss(repeat):
    xs = [run([PYTHON, "-c", "import torch, onnxruntime"], ROOT) for _ in range(repeat)]
    if any(r[1] for r in xs):
        fail(f"bare child failed:\n{xs[0][2]}")
    return statistics.median(r[3] for r in xs)


def cold_figures(work, files, repeat):
    """Interleaved cold builds and scripts, per format; unsupported formats are noted."""
    res = {}
    for fmt in ("csv", "parquet"):
        proj = os.path.join(work, fmt)
        write_yaml(proj, f"scale_{fmt}", fmt)
        first = build(proj, f"scale_{fmt}")
        if first["rc"] == CONFIG:
            res[fmt] = {"supported": False, "message": first["out"].strip()}
            print(f"  {fmt}: not supported by this s2build: {first['out'].strip()}", flush=True)
            continue
        if first["rc"] != 0:
            fail(f"cold build ({fmt}) failed (exit {first['rc']}):\n{first['out']}")
        script(proj, fmt)                                       # warm-up, untimed
        builds, scripts = [], []
        for i in range(repeat):
            b = build(proj, f"scale_{fmt}")
            if b["rc"] != 0:
                fail(f"cold build ({fmt}) run {i + 1} failed (exit {b['rc']}):\n{b['out']}")
            builds.append(b)
            scripts.append(script(proj, fmt))
            print(f"  {fmt} run {i + 1}: s2build {b['wall']:.1f} s (data "
                  f"{b['sidecar']['timings'].get('data', float('nan')):.2f} s), script "
                  f"{scripts[-1]['wall']:.1f} s", flush=True)
        side = builds[-1]["sidecar"]
        src = sum(os.path.getsize(p) for p in files[fmt])
        onnx = os.path.getsize(os.path.join(proj, "build", f"scale_{fmt}.onnx"))
        res[fmt] = {
            "supported": True,
            "build_wall": stats([b["wall"] for b in builds]),
            "script_wall": stats([s["wall"] for s in scripts]),
            "data_stage": stats([b["sidecar"]["timings"]["data"] for b in builds]),
            "timings": {k: statistics.median(b["sidecar"]["timings"][k] for b in builds)
                        for k in side["timings"]},
            "build_rss": stats([b["rss"] for b in builds]),
            "script_rss": stats([s["rss"] for s in scripts]),
            "metrics": side["metrics"], "script_out": scripts[-1]["out"],
            "s2build_dir_bytes": du(os.path.join(proj, ".s2build")),
            "source_bytes": src, "onnx_bytes": onnx, "parse": parse_keys(side),
        }
    return res


def edit_row(path, k, step=100_003):
    """Rewrite the label (the last cell, one digit) of the row holding byte middle + k*step,
    in place, same length; returns that row's byte offset."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 + k * step)
        f.readline()                                  # to the start of the next row
        start = f.tell()
        row = f.readline()
        if not row.endswith(b"\n") or not row[-2:-1].isdigit():
            fail(f"cannot edit row at byte {start} of {path}: {row[-20:]!r}")
        f.seek(start + len(row) - 2)
        f.write(b"%d" % ((int(row[-2:-1]) + 1) % CLASSES))
    return start


def edit_figures(work, files, repeat):
    proj = os.path.join(work, "edit")
    write_yaml(proj, "scale_edit", "csv")
    cold = build(proj, "scale_edit")
    if cold["rc"] != 0:
        fail(f"edit project: cold build failed (exit {cold['rc']}):\n{cold['out']}")
    res = {"rows": files["edit_rows"], "bytes": os.path.getsize(files["edit"][0]),
           "cold_wall": cold["wall"], "cold_parse": parse_keys(cold["sidecar"])}
    for mode, args in (("release", ()), ("dev", ("--dev",))):
        runs = []
        for i in range(repeat):
            k = 2 * i + (mode == "dev")
            edit_row(files["edit"][0], k)
            b = build(proj, "scale_edit", args, cold=False)
            if b["rc"] != 0:
                fail(f"edit rebuild ({mode}) failed (exit {b['rc']}):\n{b['out']}")
            runs.append(b)
            print(f"  edit {mode} run {i + 1}: {b['wall']:.1f} s, {parse_keys(b['sidecar'])}, "
                  f"mode {b['sidecar'].get('mode')}", flush=True)
        res[mode] = {"wall": stats([b["wall"] for b in runs]),
                     "parse": [parse_keys(b["sidecar"]) for b in runs],
                     "mode": [b["sidecar"].get("mode") for b in runs],
                     "data_stage": stats([b["sidecar"]["timings"]["data"] for b in runs])}
    return res


def big_figures(work, files, base_rss, features):
    proj = os.path.join(work, "big")
    write_yaml(proj, "scale_big", "parquet", extra="\n      memory: 1GB")
    b = build(proj, "scale_big")
    if b["rc"] == CONFIG:
        return {"supported": False, "message": b["out"].strip()}
    if b["rc"] != 0:
        fail(f"big build failed (exit {b['rc']}):\n{b['out']}")
    n = sum(int(v) for v in b["sidecar"]["rows"].values())
    return {"supported": True, "rows": n, "wall": b["wall"], "rss": b["rss"],
            "rss_over_bare": b["rss"] - base_rss, "matrix_bytes": n * features * 4,
            "timings": b["sidecar"]["timings"], "parse": parse_keys(b["sidecar"])}


# --- report ---------------------------------------------------------------------------------

def mb(v):
    return f"{v / 1e6:,.1f} MB"


def report(r, a):
    rows = []                                  # (figure, median, min, max, against, ratio, aim)

    def t(name, s, vs="", ratio="", aim=""):
        rows.append((name, f"{s['median']:.2f} s", f"{s['min']:.2f}", f"{s['max']:.2f}", vs,
                     ratio, aim))
    for name, s in r["read"].items():
        t(f"read {name}", s)
    for fmt, c in r["cold"].items():
        if not c["supported"]:
            rows.append((f"{fmt}: s2build", "not supported by this s2build", "", "", "", "", ""))
            continue
        ref = "pyarrow.csv.read_csv" if fmt == "csv" else "pyarrow.parquet.read_table"
        t(f"{fmt}: s2build data stage", c["data_stage"], ref,
          f"{c['data_stage']['median'] / r['read'][ref]['median']:.2f}x", "<= 2x")
        t(f"{fmt}: cold build (wall)", c["build_wall"], "scale_script.py",
          f"{c['build_wall']['median'] / c['script_wall']['median']:.2f}x", "<= 1.0x")
        t(f"{fmt}: scale_script.py (wall)", c["script_wall"])
        over = c["build_rss"]["median"] - r["bare_rss"]
        rows.append((f"{fmt}: build peak RSS - bare", mb(over), mb(c["build_rss"]["min"] -
                     r["bare_rss"]), mb(c["build_rss"]["max"] - r["bare_rss"]),
                     f"matrix {mb(r['matrix_bytes'])}", f"{over / r['matrix_bytes']:.2f}x",
                     "<= 3x"))
        rows.append((f"{fmt}: .s2build/ size", mb(c["s2build_dir_bytes"]), "", "",
                     f"src+onnx {mb(c['source_bytes'] + c['onnx_bytes'])}",
                     f"{c['s2build_dir_bytes'] / (c['source_bytes'] + c['onnx_bytes']):.2f}x",
                     "<= 1.5x"))
    e = r["edit"]
    for mode in ("release", "dev"):
        t(f"edit 1 row of {mb(e['bytes'])}: {mode}", e[mode]["wall"],
          f"cold {e['cold_wall']:.1f} s", f"{e[mode]['wall']['median'] / e['cold_wall']:.2f}x")
    b = r.get("big")
    if b is not None:
        if b["supported"]:
            rows.append((f"big {b['rows']:,} rows parquet, memory 1GB", f"{b['wall']:.1f} s",
                         "", "", f"peak RSS {mb(b['rss'])}",
                         f"{b['rss_over_bare'] / b['matrix_bytes']:.2f}x matrix", ""))
        else:
            rows.append(("big parquet, train.memory", "not supported yet", "", "", "", "", ""))
    w = [max(len(str(x[i])) for x in rows + [HDR]) for i in range(7)]
    line = lambda x: "  ".join(str(v).ljust(w[i]) if i in (0, 4) else str(v).rjust(w[i])
                               for i, v in enumerate(x))
    print("\n" + line(HDR) + "\n" + "-" * len(line(HDR)))
    for x in rows:
        print(line(x))
    print(f"\n(bare child `import torch, onnxruntime`: peak RSS {mb(r['bare_rss'])}; "
          f"float32 feature matrix {r['rows']:,} x {a.features} = {mb(r['matrix_bytes'])})")
    for fmt, c in r["cold"].items():
        if c["supported"]:
            print(f"{fmt}: sidecar timings (median) {c['timings']}; metrics {c['metrics']}; "
                  f"script: {c['script_out']}")
    print(f"edit: cold parse {e['cold_parse']}; release {e['release']['parse']}; "
          f"dev {e['dev']['parse']} (modes {e['dev']['mode']})")
    for fmt, c in r["cold"].items():
        if not c["supported"]:
            print(f"{fmt}: not supported by this s2build: {c['message']}")
    if b is not None and not b["supported"]:
        print(f"big: not supported yet: {b['message']}")


HDR = ("figure", "median", "min", "max", "against", "ratio", "aim")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (>= 5 advised)")
    ap.add_argument("--edit-mb", type=float, default=100, help="size of the edit project's file")
    ap.add_argument("--big-rows", type=int, default=10_000_000)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--no-loadtxt", action="store_true", help="skip the np.loadtxt reader")
    ap.add_argument("--tree", default=ROOT, help="the s2build code tree to build with")
    ap.add_argument("--workdir", help="scratch folder (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch data")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    a = ap.parse_args()
    tree = os.path.abspath(a.tree)
    big = 0 if a.skip_big else a.big_rows
    work = tempfile.mkdtemp(prefix="s2build-scale-", dir=a.workdir)
    need = a.rows * 1400 + a.edit_mb * 3e6 + big * 400 + 3e8   # data, .s2build/ caches, margin
    free = shutil.disk_usage(work).free
    if free < need:
        shutil.rmtree(work, ignore_errors=True)
        fail(f"{work}: {mb(free)} free, about {mb(need)} needed (use --workdir, fewer --rows)")
    ENV["PYTHONPATH"] = tree
    ENV["S2BUILD_NO_SERVER"] = "1"      # fresh processes: the figures are a cold CLI's, not a warm server's
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    m = machine(tree)
    print(f"machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, {m['platform']}")
    print(f"date:    {m['date']}\ntree:    {tree} (git {m['git']})\nversions: " +
          ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print(f"scratch: {work} ({mb(free)} free); {a.repeat} runs per figure\n", flush=True)
    try:
        start_launcher()                        # before the tables exist in this process
        t0 = time.perf_counter()
        files = generate(work, a.rows, a.features, a.files, a.edit_mb, big)
        src = {k: sum(os.path.getsize(p) for p in files[k]) for k in ("csv", "parquet", "edit")}
        print(f"generated {a.rows:,} rows x {a.features} in {a.files} csv ({mb(src['csv'])}) "
              f"and parquet ({mb(src['parquet'])}) files, edit file {files['edit_rows']:,} rows "
              f"({mb(src['edit'])})" + (f", big {big:,} rows" if big else "") +
              f" in {time.perf_counter() - t0:.0f} s", flush=True)
        r = {"machine": m, "args": vars(a), "rows": a.rows, "source_bytes": src,
             "matrix_bytes": a.rows * a.features * 4}
        print("reading ...", flush=True)
        r["read"] = read_figures(files, a.repeat, not a.no_loadtxt)
        r["bare_rss"] = bare_rss(a.repeat)
        print("cold builds ...", flush=True)
        r["cold"] = cold_figures(work, files, a.repeat)
        print("one-row edits ...", flush=True)
        r["edit"] = edit_figures(work, files, a.repeat)
        if big:
            print("big build ...", flush=True)
            r["big"] = big_figures(work, files, r["bare_rss"], a.features)
        report(r, a)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=1)
            print(f"\nwrote {a.json}")
    finally:
        if a.keep:
            print(f"(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
