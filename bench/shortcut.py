"""Shortcut detection (lint check `shortcut`): are planted shortcuts named, and is clean data
left alone?

    .venv/bin/python bench/shortcut.py [--plantings 10] [--clean 10] [--seed 100]
                                       [--kinds image,table,table-bc] [--no-examples] [--json FILE]

Every run is a fresh temporary project driven through the real CLI, one process per command
(S2BUILD_NO_SERVER=1): `s2build build`, then `s2build lint --json` timed with the build cached.
Each run draws its own holdout (a seeded share of the rows, written as `holdout.sources` files so
that planted rows cannot move into it).

- image: examples/digits (1,797 8x8 PNGs, cnn), 20% holdout. A planting draws a class, a k x k
  square (k = 2 or 3) at a random position, a brightness (0.6-1.0 of white), the share of the
  class's training images that carry it (0.6-0.95) and 5-20 training images of other classes
  that carry it too; no holdout image has it. Named: a `shortcut` warning for that class whose
  pixel box overlaps the planted square (the IoU of the two boxes is reported too: a square
  laid on the class's own strokes changes only some of its pixels, and only those can be
  seen).
- table: examples/wine (178 rows, 13 columns, mlp), 25% holdout, plus a column `batch` that is
  noise (N(0, 1)) everywhere except on a share (0.6-0.95) of one class's training rows, where
  it is mu + N(0, 0.25), mu drawn from 1.5-3.0. Named: a `shortcut` warning for that class
  naming column 'batch'.
- table-bc: the same planting on scikit-learn's breast cancer table (569 rows, 30 columns, 2
  classes), written as CSV, with the wine example's model: the holdout has 142 rows, not 44.
- clean: the same projects unmodified (no patch; no `batch` column), one holdout seed per run.
  A false finding: any `shortcut` diagnostic.
- examples: every shipped example (examples/*, as shipped) linted once: any `shortcut`
  diagnostic is a false finding.

Also reported: the carrier notes' precision and recall against the planted rows, and the
shortcut check's own time in-process on digits (the cached build's network and dataset).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
S2 = [sys.executable, "-m", "s2build"]
ENV = dict(os.environ, S2BUILD_NO_SERVER="1", PYTHONPATH=str(ROOT))
BOX = re.compile(r"class '([^']+)' relies on pixels rows? (\d+)(?:-(\d+))?, cols? (\d+)(?:-(\d+))?")
COLUMN = re.compile(r"class '([^']+)' relies on column '([^']+)'")


def s2(args, cwd):
    p = subprocess.run(S2 + args, cwd=cwd, capture_output=True, text=True, env=ENV)
    if p.returncode not in (0, 11):
        raise RuntimeError(f"s2build {' '.join(args)} in {cwd}: exit {p.returncode}\n{p.stderr}")
    return p


def lint(d):
    """(diagnostics of check shortcut, lint wall seconds with the build cached)."""
    s2(["build"], d)
    t0 = time.perf_counter()
    p = s2(["lint", "--json", "--fail-on", "never"], d)
    seconds = time.perf_counter() - t0
    return [x for x in json.loads(p.stdout)["diagnostics"] if x["check"] == "shortcut"], seconds


# --- images ----------------------------------------------------------------------------------

def read_digits():
    from PIL import Image
    paths = sorted((ROOT / "examples" / "digits" / "data").glob("*/*.png"))
    imgs = np.stack([np.asarray(Image.open(p), dtype=np.uint8) for p in paths])
    return imgs, np.asarray([p.parent.name for p in paths]), [p.name for p in paths]


def image_project(d, imgs, labels, names, holdout):
    from PIL import Image
    for img, lab, name, h in zip(imgs, labels, names, holdout):
        f = d / ("holdout" if h else "data") / lab / name
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(f)
    y = (ROOT / "examples" / "digits" / "s2build.yaml").read_text()
    y = y[:y.index("    output:")].replace("      fraction: 0.2\n      seed: 0\n",
                                               "      sources: [holdout/*/*.png]\n")
    (d / "s2build.yaml").write_text(y + "    export: {exporter: legacy}\n")


def image_run(d, base, seed, plant):
    imgs, labels, names = (a.copy() if hasattr(a, "copy") else a for a in base)
    rng = np.random.default_rng(seed)
    holdout = rng.random(len(imgs)) < 0.2
    truth = None
    if plant:
        classes = sorted(set(labels))
        c = classes[rng.integers(len(classes))]
        k = int(rng.choice([2, 3]))
        r0, c0 = int(rng.integers(0, 9 - k)), int(rng.integers(0, 9 - k))
        value = int(round(255 * rng.uniform(0.6, 1.0)))
        share = float(rng.uniform(0.6, 0.95))
        own = np.flatnonzero(~holdout & (labels == c))
        other = np.flatnonzero(~holdout & (labels != c))
        rows = np.concatenate([rng.choice(own, int(round(share * len(own))), replace=False),
                               rng.choice(other, int(rng.integers(5, 21)), replace=False)])
        imgs[rows, r0:r0 + k, c0:c0 + k] = value
        truth = {"class": c, "box": (r0, r0 + k - 1, c0, c0 + k - 1), "value": value,
                 "share": round(share, 3), "others": len(rows) - int(round(share * len(own))),
                 "carriers": {f"data/{labels[i]}/{names[i]}" for i in rows}}
    image_project(d, imgs, labels, names, holdout)
    found, seconds = lint(d)
    return score(found, truth, seconds, named_image)


def iou(a, b):
    r = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    c = max(0, min(a[3], b[3]) - max(a[2], b[2]) + 1)
    area = lambda x: (x[1] - x[0] + 1) * (x[3] - x[2] + 1)       # noqa: E731
    return r * c / (area(a) + area(b) - r * c)


def named_image(msg, truth):
    """IoU of the finding's pixel box with the planted square when it names the class, else 0."""
    m = BOX.search(msg)
    if not m or m.group(1) != truth["class"]:
        return 0.0
    r0, r1, c0, c1 = (int(g) if g is not None else None for g in m.groups()[1:])
    box = (r0, r1 if r1 is not None else r0, c0, c1 if c1 is not None else c0)
    return iou(box, truth["box"])


# --- tables ----------------------------------------------------------------------------------

def read_wine():
    """(header, rows, yaml) of examples/wine: 178 rows, 3 classes."""
    files = sorted((ROOT / "examples" / "wine" / "data").glob("wine-*.csv"))
    header = files[0].read_text().splitlines()[0]
    rows = [line for f in files for line in f.read_text().splitlines()[1:] if line.strip()]
    y = (ROOT / "examples" / "wine" / "s2build.yaml").read_text()
    y = y[:y.index("    output:")].replace("    sources: [data/wine-*.csv]",
                                               "    sources: [data/train.csv]")
    y = y.replace("      fraction: 0.25\n      seed: 0\n", "      sources: [data/holdout.csv]\n")
    return header, rows, y


def read_breast_cancer():
    """(header, rows, yaml) of scikit-learn's breast cancer table: 569 rows, 2 classes, 30
    columns; the wine example's model and training settings."""
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    rows = [",".join(f"{v:g}" for v in r) + f",{t}" for r, t in zip(data.data, data.target)]
    _h, _r, y = read_wine()
    y = y.replace("label: cultivar", "label: diagnosis").replace("classes: 3", "classes: 2")
    return ",".join(names + ["diagnosis"]), rows, y


def table_project(d, header, rows, holdout, yaml):
    (d / "data").mkdir(parents=True)
    for name, part in (("train", [r for r, h in zip(rows, holdout) if not h]),
                       ("holdout", [r for r, h in zip(rows, holdout) if h])):
        (d / "data" / f"{name}.csv").write_text("\n".join([header] + part) + "\n")
    (d / "s2build.yaml").write_text(yaml + "    export: {exporter: legacy}\n")


def table_run(d, base, seed, plant):
    header, rows, yaml = base
    rng = np.random.default_rng(seed)
    holdout = rng.random(len(rows)) < 0.25
    truth = None
    if plant:
        labels = np.asarray([r.rsplit(",", 1)[1] for r in rows])
        classes = sorted(set(labels.tolist()))
        c = classes[rng.integers(len(classes))]
        share, mu = float(rng.uniform(0.6, 0.95)), float(rng.uniform(1.5, 3.0))
        batch = rng.normal(0, 1, len(rows))
        own = np.flatnonzero(~holdout & (labels == c))
        carriers = rng.choice(own, int(round(share * len(own))), replace=False)
        batch[carriers] = mu + rng.normal(0, 0.25, len(carriers))
        cut = header.rindex(",")
        header = header[:cut] + ",batch" + header[cut:]
        rows = [r[:r.rindex(",")] + f",{b:.3f}" + r[r.rindex(","):] for r, b in zip(rows, batch)]
        line = {i: n for n, i in enumerate(np.flatnonzero(~holdout), 2)}
        truth = {"class": c, "column": "batch", "share": round(share, 3), "mu": round(mu, 3),
                 "carriers": {f"data/train.csv:{line[i]}" for i in carriers}}
    table_project(d, header, rows, holdout, yaml)
    found, seconds = lint(d)
    return score(found, truth, seconds, named_table)


def named_table(msg, truth):
    """1 when the finding names the class and the planted column, else 0."""
    m = COLUMN.search(msg)
    return float(bool(m) and m.group(1) == truth["class"] and m.group(2) == truth["column"])


# --- scoring ---------------------------------------------------------------------------------

def score(found, truth, seconds, named):
    warnings = [f for f in found if f["severity"] == "warning"]
    out = {"findings": len(warnings), "notes": len(found) - len(warnings),
           "lint_seconds": seconds, "messages": [f["message"] for f in warnings]}
    if truth is not None:
        overlap = max([named(f["message"], truth) for f in warnings], default=0.0)
        out["named"], out["iou"] = overlap > 0, overlap
        notes = {f["origin"] for f in found if f["severity"] == "note"}
        carriers = truth.pop("carriers")
        out["carrier_precision"] = len(notes & carriers) / len(notes) if notes else None
        out["carrier_recall"] = len(notes & carriers) / len(carriers)
        out["planted"] = {k: list(v) if isinstance(v, tuple) else v for k, v in truth.items()}
    return out


def check_time(d, runs):
    """The shortcut check alone, in-process, on a built project `d` (seconds per run)."""
    sys.path.insert(0, str(ROOT))
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    from s2build.debug import shortcut
    from s2build.engine import runner
    from s2build.project import config
    project = config.load(str(d / "s2build.yaml"))
    (step,), _ = runner.status(project, list(project.targets))
    ds = data.load_dataset(step.target, step.inputs, ShardStore(project.state_dir))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        shortcut.for_build(project, step.target, step.inputs.key, ds, "s2build.yaml")
        times.append(time.perf_counter() - t0)
    return times


def med(xs):
    xs = [x for x in xs if x is not None]
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})" if xs else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plantings", type=int, default=10)
    ap.add_argument("--clean", type=int, default=10)
    ap.add_argument("--kinds", default="image,table,table-bc")
    ap.add_argument("--no-examples", action="store_true")
    ap.add_argument("--seed", type=int, default=100,
                    help="run i of each kind draws its planting and holdout from seed SEED + i")
    ap.add_argument("--only", type=int, metavar="I", help="run only run I of each kind")
    ap.add_argument("--keep", action="store_true", help="keep the projects (prints where)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="s2bench-shortcut-"))
    report = {}
    try:
        kinds = {"image": (image_run, read_digits), "table": (table_run, read_wine),
                 "table-bc": (table_run, read_breast_cancer)}
        for kind in args.kinds.split(","):
            run, read = kinds[kind]
            base = read()
            rows = []
            for i in range(args.plantings + args.clean):
                if args.only is not None and i != args.only:
                    continue
                plant = i < args.plantings
                d = work / f"{kind}-{i}"
                r = run(d, base, args.seed + i, plant)
                r["planted_run"] = plant
                rows.append(r)
                what = (f"planted {r['planted']}: named {r['named']}" if plant else "clean") + \
                    f", {r['findings']} findings, lint {r['lint_seconds']:.2f} s"
                print(f"  {kind} {i}: {what}", flush=True)
                for m in r["messages"]:
                    print(f"    {m}", flush=True)
                if kind == "image" and i == 0:
                    report["check_seconds_digits"] = check_time(d, 5)
                if not args.keep:
                    shutil.rmtree(d, ignore_errors=True)
            report[kind] = rows
        if not args.no_examples:
            report["examples"] = {}
            for ex in sorted(p for p in (ROOT / "examples").iterdir()
                             if (p / "s2build.yaml").exists()):
                d = work / "examples" / ex.name
                shutil.copytree(ex, d, ignore=shutil.ignore_patterns("build", ".s2build"))
                found, seconds = lint(d)
                report["examples"][ex.name] = {"shortcut": len(found), "lint_seconds": seconds}
                print(f"  example {ex.name}: {len(found)} shortcut diagnostics, lint "
                      f"{seconds:.2f} s", flush=True)
        print("\n| kind | named (class and region) | region IoU | false findings on clean data "
              "| lint, build cached (s) | carrier notes: precision, recall |\n"
              "|---|---|---|---|---|---|")
        for kind in args.kinds.split(","):
            rows = report[kind]
            p = [r for r in rows if r["planted_run"]]
            c = [r for r in rows if not r["planted_run"]]
            print(f"| {kind} | {sum(r['named'] for r in p)} of {len(p)} | "
                  f"{med([r['iou'] for r in p])} | "
                  f"{sum(r['findings'] > 0 or r['notes'] > 0 for r in c)} of {len(c)} | "
                  f"{med([r['lint_seconds'] for r in rows])} | "
                  f"{med([r['carrier_precision'] for r in p])}, "
                  f"{med([r['carrier_recall'] for r in p])} |")
        if "examples" in report:
            bad = {k: v["shortcut"] for k, v in report["examples"].items() if v["shortcut"]}
            print(f"shipped examples: {len(report['examples'])} linted, shortcut diagnostics: "
                  f"{bad or 'none'}")
        if "check_seconds_digits" in report:
            print(f"shortcut check alone on digits (in-process, build cached): "
                  f"{med(report['check_seconds_digits'])} s")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    finally:
        if args.keep:
            print(f"projects kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
