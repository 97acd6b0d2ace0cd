"""Edit latency on the digits example: the edit-compile-test loop of software 2.0.

    .venv/bin/python bench/edit_latency.py [--edits 5] [--relabel 10] [--keep DIR]

On a private copy of examples/digits (one release build first), it prints medians over
`--edits` rounds of (scenario `arbitrary`: images moved to a random other class, labels the data
contradicts; scenario `fix`: wrong labels planted before the first build, each edit moves images
back to their true class, i.e. fixing a behaviour by editing data):

  1. relabelling `--relabel` training images (moving each file to another class folder), then
     an incremental build (`build --dev`) and a from-scratch build of the same data
     (`build --release`): build seconds, their ratio, holdout accuracy of each, and the share of
     relabelled images whose new label each artifact predicts;
  2. under `s2build watch` (dev builds), seconds from saving one relabelled image (the rename)
     to the `built in` line, i.e. a verified artifact installed; and the same under
     `s2build watch --release`, a from-scratch build in the same warm process.

Aims (issue 4): incremental at most 20% of the from-scratch time, holdout within 1 point of it,
at least 95% of edited rows learned.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def s2(args, cwd):
    p = subprocess.run([sys.executable, "-m", "s2build", *args], cwd=cwd, capture_output=True,
                       text=True, env=ENV)
    if p.returncode != 0:
        raise SystemExit(f"s2build {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def build_json(cwd, *flags):
    """(seconds, training seconds, metrics, line) of one `build --json` of the digits target."""
    p = s2(["build", "--json", *flags], cwd)
    t = json.loads(p.stdout)["targets"][0]
    why = "; ".join(r["text"] for r in t["reasons"][:2])
    m = re.search(r"train ([0-9.]+)s", t["detail"])
    warn = " ".join(json.loads(p.stdout).get("warnings", []))
    return t["seconds"], float(m.group(1)) if m else float("nan"), t["metrics"], \
        f"{t['outcome']} ({why}){' ' + warn if warn else ''}"


def training_images(project):
    """Relative paths of the images in the training split of the current build."""
    import numpy as np
    state = json.loads((project / ".s2build" / "state.json").read_text())
    key = state["targets"]["digits"]["key"]
    named = (project / "s2build.yaml").read_text()      # images the specs name stay put
    with np.load(project / ".s2build" / "cache" / key[:2] / key / "dynamics.npz") as z:
        return [o for o, h in zip(z["origins"].tolist(), z["holdout"].tolist())
                if not h and os.path.basename(o) not in named]


def relabel(project, rels, rnd):
    """Move each image to another class folder; return [(new rel, new class)]."""
    out = []
    for rel in rels:
        old = Path(rel).parent.name
        new = rnd.choice([str(c) for c in range(10) if str(c) != old])
        dest = f"data/{new}/{Path(rel).name}"
        os.replace(project / rel, project / dest)
        out.append((dest, new))
    return out


def fix(project, rels, rnd):
    """Move each planted image back to its true class folder; return [(new rel, class)]."""
    out = []
    for rel in rels:
        true = TRUE_CLASS[Path(rel).name]
        dest = f"data/{true}/{Path(rel).name}"
        os.replace(project / rel, project / dest)
        out.append((dest, true))
    return out


TRUE_CLASS = {}                 # image file name -> its class in the shipped example


def learned(project, moved):
    """Share of `moved` images whose new class the current artifact predicts."""
    from s2build import config, data
    from s2build.specs import Artifact
    import numpy as np
    loader = config.load(str(project / "s2build.yaml")).targets["digits"].config["loader"]
    art = Artifact(str(project / "build" / "digits.onnx"))
    x = np.concatenate([data.parse_image(rel, (project / rel).read_bytes(), loader)[0].x
                        for rel, _ in moved])
    pred = [art.classes[i] for i in art.outputs(x).argmax(axis=1)]
    return sum(p == c for p, (_, c) in zip(pred, moved)) / len(moved)


def watch_latency(project, edits, rnd, pool, move, release=False):
    extra = ["--release"] if release else []
    p = subprocess.Popen([sys.executable, "-m", "s2build", "watch", *extra], cwd=project, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    lines, cv = [], threading.Condition()

    def read():
        for line in p.stdout:
            with cv:
                lines.append((time.time(), line.rstrip()))
                cv.notify_all()
    threading.Thread(target=read, daemon=True).start()

    def wait_for(text, start, also=None):
        with cv:
            while True:
                for i in range(start, len(lines)):
                    if text in lines[i][1] or (also and also in lines[i][1]):
                        return i
                if p.poll() is not None:
                    raise SystemExit("watch ended:\n" + "\n".join(x for _, x in lines))
                cv.wait(0.5)

    out = []
    try:
        i = wait_for("watching for changes", 0)
        for _ in range(edits):
            rel = pool.pop()
            saved = time.time()
            move(project, [rel], rnd)
            j = wait_for("digits: built in", i + 1, also="digits: restored from cache")
            out.append((lines[j][0] - saved, lines[j][1]))
            i = wait_for("watching for changes", j)
    finally:
        p.terminate()
        p.wait()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--relabel", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    ap.add_argument("--scenario", choices=("arbitrary", "fix"), default="arbitrary",
                    help="arbitrary: move images to a random other class (labels the data "
                         "contradicts); fix: plant wrong labels before the first build, then "
                         "each edit moves images back to their true class (fixing a behaviour)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="s2-edit-"))
    project = work / "digits"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(ROOT / "examples" / "digits", project,
                    ignore=shutil.ignore_patterns("build", ".s2build", "__pycache__"))
    rnd = random.Random(args.seed)
    for folder in (project / "data").iterdir():
        for f in folder.iterdir():
            TRUE_CLASS[f.name] = folder.name
    planted = []
    if args.scenario == "fix":                  # wrong labels first; the edits fix them
        build_json(project, "--release")        # to learn which images are training rows
        pool = training_images(project)
        rnd.shuffle(pool)
        planted = [dest for dest, _c in relabel(project, pool[:args.edits * (args.relabel + 1)], rnd)]
    move = relabel if args.scenario == "arbitrary" else fix
    secs, _train, metrics, line = build_json(project, "--release")
    print(f"first release build: {secs:.1f}s accuracy={metrics.get('accuracy', 0):.4f}")
    if args.scenario == "fix":
        pool = [p for p in planted if p in set(training_images(project))]
        rnd.shuffle(pool)
    else:
        pool = training_images(project)
        rnd.shuffle(pool)

    # the from-scratch twin: the same edits, release builds only (never a cache hit)
    twin = work / "digits-release"
    if twin.exists():
        shutil.rmtree(twin)
    shutil.copytree(project, twin)
    rows = []
    for k in range(args.edits):
        picked = [pool.pop() for _ in range(args.relabel)]
        state = rnd.getstate()
        moved = move(project, picked, rnd)
        rnd.setstate(state)
        move(twin, picked, rnd)
        inc_s, inc_t, inc_m, inc_line = build_json(project, "--dev")
        inc_learned = learned(project, moved)
        full_s, full_t, full_m, _ = build_json(twin, "--release")
        full_learned = learned(twin, moved)
        rows.append((inc_s, full_s, inc_m.get("accuracy", 0), full_m.get("accuracy", 0),
                     inc_learned, full_learned, inc_t, full_t))
        print(f"edit {k + 1}: dev {inc_s:.2f}s (train {inc_t:.2f}s) [{inc_line}] "
              f"acc={inc_m.get('accuracy', 0):.4f} learned={inc_learned:.0%} | release "
              f"{full_s:.2f}s (train {full_t:.2f}s) acc={full_m.get('accuracy', 0):.4f} "
              f"learned={full_learned:.0%}")

    lat = watch_latency(project, args.edits, random.Random(args.seed), list(pool), move)
    for s, line in lat:
        print(f"watch: {s:.2f}s  {line}")
    lat_release = watch_latency(twin, args.edits, random.Random(args.seed), list(pool), move,
                                release=True)
    for s, line in lat_release:
        print(f"watch --release: {s:.2f}s  {line}")

    med = lambda i: statistics.median(r[i] for r in rows)      # noqa: E731
    print()
    print(f"medians over {args.edits} edits of {args.relabel} relabelled images (digits, "
          f"{os.cpu_count()} CPUs):")
    print(f"  incremental build          {med(0):.2f}s")
    print(f"  from-scratch build         {med(1):.2f}s")
    print(f"  time ratio                 {statistics.median(r[0] / r[1] for r in rows):.1%}"
          "   (aim: <= 20%; whole build: data, train, export, verify)")
    print(f"  training time ratio        {statistics.median(r[6] / r[7] for r in rows):.1%}"
          f"   ({med(6):.2f}s vs {med(7):.2f}s)")
    print(f"  holdout accuracy           incremental {med(2):.4f}, from scratch {med(3):.4f}"
          "   (aim: within 0.01)")
    print(f"  relabelled rows learned    incremental {med(4):.0%}, from scratch {med(5):.0%}"
          "   (aim: >= 95%)")
    print(f"  save -> verified artifact  {statistics.median(s for s, _ in lat):.2f}s under watch "
          f"(one image; scenario {args.scenario})")
    if lat_release:
        w_dev = statistics.median(s for s, _ in lat)
        w_rel = statistics.median(s for s, _ in lat_release)
        print(f"  same, watch --release      {w_rel:.2f}s: warm-process ratio {w_dev / w_rel:.1%}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
