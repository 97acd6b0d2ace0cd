"""No-op and mtime-only rebuild benchmark (see /work/shared/BENCHMARKS.md).

    .venv/bin/python bench/noop.py [--sizes 100,1000,10000] [--runs 7] [--rows 100] [--json FILE]
                                   [--baseline DIR]

For each N it makes a temporary project with N small CSV files and one tiny target, runs one
real `s2build build` to set it up, then times whole-process wall time (subprocess, perf_counter
around it) of:

    noop        `s2build build` with nothing changed
    mtime-only  touch every data file to a new mtime (os.utime, "now"), then `s2build build`;
                the first rebuild after each touch is timed; it must train nothing

and, in the same run, the interpreter baselines `python -c pass` and `python -c "import yaml"`,
so the ratio of s2build's no-op to bare interpreter start is measured on the same noisy machine.

With `--baseline DIR` (a checkout of another commit, e.g. `git worktree add /tmp/old fe5d0ce`), each
N gets a second, identical project built and timed with DIR's code (`python -m s2build` with
PYTHONPATH=DIR for both trees), the runs of the two trees interleaved, so old and new are compared
in the same run under the same load; the table then has a `ratio` column (this tree / baseline).
Exits non-zero if a timed build printed anything other than "NAME: up to date" lines.
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
S2BUILD = os.path.join(BIN, "s2build")
PYTHON = sys.executable

YAML = """\
version: 1
targets:
  bench:
    description: no-op benchmark target
    sources: [data/part-*.csv]
    loader:
      format: csv
      label: label
      task: classification
      classes: 2
    model:
      type: mlp
      hidden: [8]
    train:
      epochs: 1
      batch_size: 1024
      seed: 0
    holdout:
      fraction: 0.2
      seed: 0
    export:
      exporter: legacy
    output: build/bench.onnx
"""

RACY_S = 2.5     # s2build distrusts stat entries of files modified < 2 s before it looked


def fail(msg):
    print(f"bench/noop.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def make_project(root, n, rows):
    data = os.path.join(root, "data")
    os.makedirs(data)
    rng = random.Random(n)
    for i in range(n):
        lines = ["f0,f1,f2,f3,label"]
        for _ in range(rows):
            f = [rng.gauss(0, 1) for _ in range(4)]
            lines.append("%.4f,%.4f,%.4f,%.4f,%d" % (*f, int(f[0] + f[1] > 0)))
        with open(os.path.join(data, "part-%05d.csv" % i), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "s2build.yaml"), "w") as fh:
        fh.write(YAML)
    return [os.path.join(data, "part-%05d.csv" % i) for i in range(n)]


ENV = dict(os.environ)


def set_bytecode(mode, tmp):
    """'cached': bytecode is written and reused, under a private PYTHONPYCACHEPREFIX (nothing is
    written into the source tree), as for any pip-installed tool. 'env': the environment as it
    is; with PYTHONDONTWRITEBYTECODE=1 (set in some sandboxes) every run compiles s2build's
    modules from source, which costs tens of ms."""
    if mode == "cached":
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")


def run(cmd, cwd, tree=None):
    """(seconds, returncode, stdout+stderr) of one whole process; `tree`: the code tree put
    first on PYTHONPATH (None: the installed s2build)."""
    env = ENV if tree is None else dict(ENV, PYTHONPATH=tree)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=env)
    dt = time.perf_counter() - t0
    return dt, p.returncode, p.stdout.decode(errors="replace")


def check_noop(out, rc, what):
    lines = [l for l in out.splitlines() if l.strip()]
    if rc != 0 or not lines or any(not l.rstrip().endswith(": up to date") for l in lines):
        fail(f"{what}: expected only 'up to date' lines (exit 0), got exit {rc}:\n{out}")


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}


def bench_size(n, rows, runs, keep, trees):
    """Figures for N files, one project per code tree in `trees` ({label: dir or None}), the
    timed runs of the trees interleaved."""
    tmp = tempfile.mkdtemp(prefix=f"s2build-noop-{n}-")
    try:
        projects = {}
        for label, tree in trees.items():
            proj = os.path.join(tmp, label)
            os.makedirs(proj)
            files = make_project(proj, n, rows)
            projects[label] = (proj, files, tree)
        res = {"n_files": n, "rows_per_file": rows}
        for label, (proj, files, tree) in projects.items():
            setup_s, rc, out = run(cmd_for(tree), proj, tree)
            if rc != 0:
                fail(f"{label}: setup build for N={n} failed (exit {rc}):\n{out}")
            res.setdefault("setup_build_s", {})[label] = setup_s
        # Let the data files age past the "racy" window, then one untimed no-op so the stat
        # cache holds trusted entries (the setup build stored racy files with mtime 0).
        last = max(os.stat(files[-1]).st_mtime for _p, files, _t in projects.values())
        time.sleep(max(0.0, RACY_S - (time.time() - last)))
        for label, (proj, files, tree) in projects.items():
            _, rc, out = run(cmd_for(tree), proj, tree)
            check_noop(out, rc, f"{label}: N={n} warm-up no-op")

        noop = {label: [] for label in projects}
        for i in range(runs):
            for label, (proj, files, tree) in projects.items():
                dt, rc, out = run(cmd_for(tree), proj, tree)
                check_noop(out, rc, f"{label}: N={n} no-op run {i + 1}")
                noop[label].append(dt)
        res["noop"] = {label: stats(xs) for label, xs in noop.items()}

        touched = {label: [] for label in projects}
        for i in range(runs):
            for label, (proj, files, tree) in projects.items():
                now = time.time_ns()        # a new mtime each round, as `touch` would set
                for p in files:
                    os.utime(p, ns=(now, now))
                dt, rc, out = run(cmd_for(tree), proj, tree)
                check_noop(out, rc, f"{label}: N={n} mtime-only rebuild {i + 1}")
                touched[label].append(dt)
        res["mtime_only"] = {label: stats(xs) for label, xs in touched.items()}
        # The rebuild after a touch stored "racy" entries; the next no-op re-hashes once more.
        time.sleep(RACY_S)
        for label, (proj, files, tree) in projects.items():
            dt, rc, out = run(cmd_for(tree), proj, tree)
            check_noop(out, rc, f"{label}: N={n} no-op after touches")
            res.setdefault("noop_after_touch_first_s", {})[label] = dt
            st = os.path.join(proj, ".s2build", "state.json")
            res.setdefault("state_json_bytes", {})[label] = \
                os.path.getsize(st) if os.path.exists(st) else None
        return res
    finally:
        if keep:
            print(f"  (kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def cmd_for(tree):
    """The build command: the installed `s2build` script, or `python -m s2build` for a tree."""
    return [S2BUILD, "build"] if tree is None else [PYTHON, "-m", "s2build", "build"]


def baselines(runs):
    out = {}
    for name, cmd in (("python -c pass", [PYTHON, "-c", "pass"]),
                      ("python -c 'import yaml'", [PYTHON, "-c", "import yaml"])):
        run(cmd, ROOT)                                  # warm the page cache
        xs = []
        for _ in range(runs):
            dt, rc, o = run(cmd, ROOT)
            if rc != 0:
                fail(f"{name} failed:\n{o}")
            xs.append(dt)
        out[name] = stats(xs)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="comma-separated file counts")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per figure (>= 5 advised)")
    ap.add_argument("--rows", type=int, default=100,
                    help="rows per file (default 100, as in BENCHMARKS.md; the one setup build "
                         "at 10,000 x 100 rows takes about 16 s on the 2-core machine)")
    ap.add_argument("--bytecode", choices=("cached", "env"), default="cached",
                    help="cached (default): .pyc written and reused under a private "
                         "PYTHONPYCACHEPREFIX, as for an installed tool; env: the environment "
                         "as is (PYTHONDONTWRITEBYTECODE=1 means compiling every run)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary projects")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also time a checkout of another commit in the same run, interleaved")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not os.path.exists(S2BUILD):
        fail(f"{S2BUILD} not found; run with the venv's python (.venv/bin/python bench/noop.py)")

    m = machine()
    pyc_tmp = tempfile.mkdtemp(prefix="s2build-noop-pyc-")
    set_bytecode(args.bytecode, pyc_tmp)
    m["bytecode"] = args.bytecode
    m["PYTHONDONTWRITEBYTECODE_in_env"] = os.environ.get("PYTHONDONTWRITEBYTECODE")
    print(f"machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, {m['platform']}")
    print(f"date:    {m['date']}")
    print(f"s2build: {S2BUILD}; {args.runs} timed runs per figure; whole-process wall time")
    print(f"bytecode: {args.bytecode}" + (" (.pyc under a private PYTHONPYCACHEPREFIX)"
          if args.bytecode == "cached" else
          f" (PYTHONDONTWRITEBYTECODE={ENV.get('PYTHONDONTWRITEBYTECODE')})") + "\n")

    try:
        run_all(args, sizes, m)
    finally:
        shutil.rmtree(pyc_tmp, ignore_errors=True)


def run_all(args, sizes, m):
    results = []
    trees = {"this": None}
    if args.baseline:
        trees = {"this": ROOT, "baseline": os.path.abspath(args.baseline)}
        print(f"baseline: {trees['baseline']} (git {git_head(trees['baseline'])}); this tree: "
              f"{ROOT} (git {git_head(ROOT)}); both run as `python -m s2build`\n")
    base_before = baselines(args.runs)
    for n in sizes:
        rows = args.rows
        print(f"N={n}: {rows} rows per file; setting up ...", flush=True)
        r = bench_size(n, rows, args.runs, args.keep, trees)
        for label in trees:
            print(f"  {label}: setup build {r['setup_build_s'][label]:.1f} s; no-op median "
                  f"{r['noop'][label]['median'] * 1000:.1f} ms; mtime-only median "
                  f"{r['mtime_only'][label]['median'] * 1000:.1f} ms", flush=True)
        results.append(r)
    base_after = baselines(args.runs)
    # Baselines measured before and after the builds, pooled: the machine is shared and noisy.
    base = {k: stats(base_before[k]["runs"] + base_after[k]["runs"]) for k in base_before}
    py = base["python -c pass"]["median"]
    yml = base["python -c 'import yaml'"]["median"]

    print()
    hdr = f"{'N files':>8} {'rows':>5} {'scenario':<24} {'median':>9} {'min':>9} {'max':>9} " \
          f"{'x python':>9} {'x +yaml':>8}" + (f" {'ratio':>7}" if args.baseline else "")
    print(hdr)
    print("-" * len(hdr))
    for k, s in base.items():
        print(f"{'-':>8} {'-':>5} {k:<24} {s['median'] * 1000:>7.1f}ms "
              f"{s['min'] * 1000:>7.1f}ms {s['max'] * 1000:>7.1f}ms "
              f"{s['median'] / py:>8.1f}x {s['median'] / yml:>7.2f}x")
    for r in results:
        for name, key in (("no-op", "noop"), ("mtime-only", "mtime_only")):
            for label in trees:
                s = r[key][label]
                shown = name if not args.baseline else f"{name} ({label})"
                ratio = ""
                if args.baseline and label == "this":
                    ratio = f" {s['median'] / r[key]['baseline']['median']:>6.2f}x"
                print(f"{r['n_files']:>8} {r['rows_per_file']:>5} {shown:<24} "
                      f"{s['median'] * 1000:>7.1f}ms {s['min'] * 1000:>7.1f}ms "
                      f"{s['max'] * 1000:>7.1f}ms {s['median'] / py:>8.1f}x "
                      f"{s['median'] / yml:>7.2f}x{ratio}")
    print("\n(x python / x +yaml: median divided by the median of `python -c pass` / "
          "`python -c 'import yaml'`, same run; baselines pooled from before and after"
          + ("; ratio: this tree's median / the baseline's" if args.baseline else "") + ")")
    for r in results:
        for label in trees:
            print(f"N={r['n_files']} ({label}): setup build {r['setup_build_s'][label]:.1f} s, "
                  f"first no-op after the touches (re-hashes racy entries) "
                  f"{r['noop_after_touch_first_s'][label] * 1000:.1f} ms, "
                  f"state.json {r['state_json_bytes'][label]} bytes")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": m, "runs": args.runs, "baselines": base, "results": results},
                      f, indent=1)
        print(f"\nwrote {args.json}")


def git_head(tree):
    p = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                       text=True)
    return p.stdout.strip() or "?"


if __name__ == "__main__":
    main()
