"""Edit latency on the digits example: the edit-compile-test loop of software 2.0.

    .venv/bin/python bench/edit_latency.py [--scenario arbitrary|fix|both] [--edits 5]
                                           [--relabel 10] [--no-fresh] [--json FILE]

On a private copy of examples/digits (one release build first) and a twin copy that gets the
same edits, for each scenario:

  arbitrary  images moved to a random other class folder: labels the data contradicts (a
             from-scratch build learns few of them; a dev build must learn them all)
  fix        wrong labels planted before the first build; each edit moves images back to their
             true class folder, i.e. fixing a behaviour by editing data

it measures, as medians over `--edits` rounds:

  1. warm process (the loop users live in): `s2build watch` (dev builds) on the copy and
     `s2build watch --release` (from-scratch builds) on the twin, both running, the edits
     interleaved (copy, twin, copy, ...), each edit relabelling `--relabel` images at once:
     build seconds (the `built in` line), seconds from the save to the `built in` line
     (debounce included) and to the specs' verdicts, holdout accuracy, and the share of
     relabelled images whose new label the artifact predicts; then `--edits` single-image
     edits: seconds from save to verified artifact and to the specs' verdicts;
  2. fresh processes (unless --no-fresh): `build --dev` vs `build --release`, each a new
     process that imports torch: the target's build seconds and the whole process's.

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
TRUE_CLASS = {}                 # image file name -> its class in the shipped example


def s2(args, cwd):
    p = subprocess.run([sys.executable, "-m", "s2build", *args], cwd=cwd, capture_output=True,
                       text=True, env=ENV)
    if p.returncode != 0:
        raise SystemExit(f"s2build {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def build_json(cwd, *flags):
    """{seconds, process, accuracy, fallback, line} of one `build --json` of the digits target."""
    clock = time.perf_counter()
    p = s2(["build", "--json", *flags], cwd)
    process = time.perf_counter() - clock
    doc = json.loads(p.stdout)
    t = doc["targets"][0]
    warn = " ".join(doc.get("warnings", []))
    return {"seconds": t["seconds"], "process": process,
            "accuracy": t["metrics"].get("accuracy", float("nan")),
            "fallback": "full build instead" in warn,
            "line": f"{t['outcome']} ({'; '.join(r['text'] for r in t['reasons'][:1])})"
                    + (f" {warn}" if warn else "")}


def training_images(project):
    """Relative paths of the images in the training split of the current build (those the
    specs name stay put)."""
    import numpy as np
    state = json.loads((project / ".s2build" / "state.json").read_text())
    key = state["targets"]["digits"]["key"]
    named = (project / "s2build.yaml").read_text()
    with np.load(project / ".s2build" / "cache" / key[:2] / key / "dynamics.npz") as z:
        return [o for o, h in zip(z["origins"].tolist(), z["holdout"].tolist())
                if not h and os.path.basename(o) not in named]


def move(project, rels, scenario, rnd):
    """Relabel each image by moving its file; return [(new rel, new class)]. `arbitrary`: a
    random other class; `fix`: its true class."""
    out = []
    for rel in rels:
        old = Path(rel).parent.name
        new = TRUE_CLASS[Path(rel).name] if scenario == "fix" else \
            rnd.choice([str(c) for c in range(10) if str(c) != old])
        dest = f"data/{new}/{Path(rel).name}"
        os.replace(project / rel, project / dest)
        out.append((dest, new))
    return out


def learned(project, moved):
    """Share of `moved` images whose new class the current artifact predicts."""
    import numpy as np

    from s2build.project import config
    from s2build.data import readers
    from s2build.compile.artifact import Artifact
    loader = config.load(str(project / "s2build.yaml")).targets["digits"].config["loader"]
    art = Artifact(str(project / "build" / "digits.onnx"))
    x = np.concatenate([readers.parse_image(rel, (project / rel).read_bytes(), loader)[0].x
                        for rel, _ in moved])
    pred = [art.classes[i] for i in art.outputs(x).argmax(axis=1)]
    return sum(p == c for p, (_, c) in zip(pred, moved)) / len(moved)


class Watch:
    """A `s2build watch` subprocess whose output lines are collected with arrival times."""

    def __init__(self, project, *flags):
        self.p = subprocess.Popen([sys.executable, "-m", "s2build", "watch", *flags],
                                  cwd=project, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, env=ENV)
        self.lines, self.cv = [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.at = self.wait_for("watching for changes", start=0)

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append((time.time(), line.rstrip()))
                self.cv.notify_all()

    def wait_for(self, *texts, start=None):
        start = self.at + 1 if start is None else start
        with self.cv:
            while True:
                for i in range(start, len(self.lines)):
                    if any(t in self.lines[i][1] for t in texts):
                        return i
                if self.p.poll() is not None:
                    raise SystemExit("watch ended:\n" + "\n".join(x for _, x in self.lines))
                self.cv.wait(0.5)

    def edit(self, do):
        """Run `do()` (the save); wait for the build and the specs after it. Returns (seconds
        from save to the `built in` line, seconds from save to the specs' verdicts, that line,
        the lines of this cycle, what `do()` returned)."""
        saved = time.time()
        result = do()
        j = self.wait_for("digits: built in", "digits: restored from cache")
        k = self.wait_for("watching for changes", start=j)
        cycle = [x for _, x in self.lines[self.at + 1:k + 1]]
        self.at = k
        return self.lines[j][0] - saved, self.lines[k][0] - saved, self.lines[j][1], cycle, result

    def stop(self):
        self.p.terminate()
        self.p.wait()


def built_seconds(line):
    m = re.search(r"built in ([0-9.]+)s", line)
    return float(m.group(1)) if m else float("nan")


def accuracy(line):
    m = re.search(r"accuracy=([0-9.]+)", line)
    return float(m.group(1)) if m else float("nan")


def warm_rounds(copies, batches, singles, scenario, seed):
    """Watch each project of `copies` [(project, watch flags)] at once; apply each batch of
    images, then each single image, to every copy in turn (interleaved, so that the machine's
    load falls on both alike). Returns, per copy, ([per-batch dict], [(save -> artifact,
    save -> specs done)] of the single edits)."""
    rnds = [random.Random(seed) for _ in copies]
    watches = []
    try:
        for project, flags in copies:
            watches.append(Watch(project, *flags))
        time.sleep(10)          # watch warms up after its first build; edits come later
        out = [([], []) for _ in copies]
        for picked in batches:
            for (project, _), w, rnd, (rounds, _) in zip(copies, watches, rnds, out):
                secs, done, line, cycle, moved = w.edit(
                    lambda: move(project, picked, scenario, rnd))
                rounds.append({"latency": secs, "done": done, "seconds": built_seconds(line),
                               "accuracy": accuracy(line), "learned": learned(project, moved),
                               "fallback": any("full build instead" in x for x in cycle),
                               "line": line})
        for rel in singles:
            for (project, flags), w, rnd, (_, lone) in zip(copies, watches, rnds, out):
                secs, done, line, _cycle, _ = w.edit(lambda: move(project, [rel], scenario, rnd))
                lone.append((secs, done))
                if "built in" not in line:
                    print(f"  note: {' '.join(flags) or 'dev'} single edit gave: {line}",
                          flush=True)
    finally:
        for w in watches:
            w.stop()
    return out


def med(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    xs = list(xs)
    return f"{med(xs):.2f}s ({min(xs):.2f}-{max(xs):.2f})" if xs else "n/a"


def run_scenario(scenario, args, work):
    rnd = random.Random(args.seed)
    project = work / f"digits-{scenario}"
    shutil.copytree(ROOT / "examples" / "digits", project,
                    ignore=shutil.ignore_patterns("build", ".s2build", "__pycache__"))
    # planted images: one more than the edits fix, or the last fix would restore the clean data
    need = args.edits * (args.relabel * (2 if args.fresh else 1) + 1) + 1
    if scenario == "fix":                       # wrong labels first; the edits fix them
        build_json(project, "--release")        # to learn which images are training rows
        pool = training_images(project)
        rnd.shuffle(pool)
        planted = [d for d, _ in move(project, pool[:need], "arbitrary", rnd)]
    first = build_json(project, "--release")
    print(f"[{scenario}] first release build: {first['seconds']:.1f}s "
          f"accuracy={first['accuracy']:.4f}", flush=True)
    train = set(training_images(project))
    pool = [p for p in planted if p in train] if scenario == "fix" else sorted(train)
    rnd.shuffle(pool)
    twin = work / f"digits-{scenario}-release"
    shutil.copytree(project, twin)

    batches = [[pool.pop() for _ in range(args.relabel)] for _ in range(args.edits)]
    singles = [pool.pop() for _ in range(args.edits)]
    (dev, dev_lone), (rel, rel_lone) = warm_rounds([(project, []), (twin, ["--release"])],
                                                   batches, singles, scenario, args.seed)
    for k, (d, r) in enumerate(zip(dev, rel)):
        print(f"[{scenario}] watch edit {k + 1}: dev {d['seconds']:.2f}s acc={d['accuracy']:.4f} "
              f"learned={d['learned']:.0%}{' (fell back)' if d['fallback'] else ''} | release "
              f"{r['seconds']:.2f}s acc={r['accuracy']:.4f} learned={r['learned']:.0%}", flush=True)

    fresh = []
    if args.fresh:
        for k in range(args.edits):
            picked = [pool.pop() for _ in range(args.relabel)]
            state = rnd.getstate()
            move(project, picked, scenario, rnd)
            rnd.setstate(state)
            move(twin, picked, scenario, rnd)
            d, r = build_json(project, "--dev"), build_json(twin, "--release")
            fresh.append((d, r))
            print(f"[{scenario}] fresh edit {k + 1}: dev {d['seconds']:.2f}s (process "
                  f"{d['process']:.2f}s){' (fell back)' if d['fallback'] else ''} | release "
                  f"{r['seconds']:.2f}s (process {r['process']:.2f}s) [{d['line']}]", flush=True)

    out = {
        "scenario": scenario, "edits": args.edits, "relabel": args.relabel,
        "warm": {
            "dev_seconds": med(d["seconds"] for d in dev),
            "release_seconds": med(r["seconds"] for r in rel),
            "ratio": med(d["seconds"] / r["seconds"] for d, r in zip(dev, rel)),
            "dev_latency": med(d["latency"] for d in dev),
            "release_latency": med(r["latency"] for r in rel),
            "dev_accuracy": med(d["accuracy"] for d in dev),
            "release_accuracy": med(r["accuracy"] for r in rel),
            "accuracy_gap": med(r["accuracy"] - d["accuracy"] for d, r in zip(dev, rel)),
            "dev_learned": med(d["learned"] for d in dev),
            "release_learned": med(r["learned"] for r in rel),
            "fallbacks": sum(d["fallback"] for d in dev),
            "dev_done": med(d["done"] for d in dev), "release_done": med(r["done"] for r in rel),
            "single_dev_latency": med(a for a, _ in dev_lone),
            "single_release_latency": med(a for a, _ in rel_lone),
            "single_dev_done": med(b for _, b in dev_lone),
            "single_release_done": med(b for _, b in rel_lone),
            "rounds": {"dev": dev, "release": rel},
        },
    }
    if fresh:
        out["fresh"] = {
            "dev_seconds": med(d["seconds"] for d, _ in fresh),
            "release_seconds": med(r["seconds"] for _, r in fresh),
            "ratio": med(d["seconds"] / r["seconds"] for d, r in fresh),
            "dev_process": med(d["process"] for d, _ in fresh),
            "release_process": med(r["process"] for _, r in fresh),
            "process_ratio": med(d["process"] / r["process"] for d, r in fresh),
            "fallbacks": sum(d["fallback"] for d, _ in fresh),
        }
    w = out["warm"]
    print(f"\n[{scenario}] medians over {args.edits} edits of {args.relabel} relabelled images "
          f"(digits, {os.cpu_count()} CPUs):")
    print(f"  warm process (watch): incremental build {spread(d['seconds'] for d in dev)}, "
          f"from scratch {spread(r['seconds'] for r in rel)}")
    print(f"    time ratio               {w['ratio']:.1%}   (aim: <= 20%); "
          f"{w['fallbacks']} of {args.edits} fell back to a full build")
    print(f"    save -> verified artifact {w['dev_latency']:.2f}s vs {w['release_latency']:.2f}s "
          f"({w['dev_latency'] / w['release_latency']:.1%}, debounce included); specs done "
          f"{w['dev_done']:.2f}s vs {w['release_done']:.2f}s")
    print(f"    holdout accuracy          incremental {w['dev_accuracy']:.4f}, from scratch "
          f"{w['release_accuracy']:.4f}, gap {w['accuracy_gap']:+.4f}   (aim: within 0.01)")
    print(f"    relabelled rows learned   incremental {w['dev_learned']:.0%}, from scratch "
          f"{w['release_learned']:.0%}   (aim: >= 95%)")
    print(f"    one image, save -> artifact {spread(a for a, _ in dev_lone)} vs "
          f"{spread(a for a, _ in rel_lone)}; specs done {spread(b for _, b in dev_lone)} vs "
          f"{spread(b for _, b in rel_lone)}")
    if fresh:
        f = out["fresh"]
        print(f"  fresh processes: build --dev {f['dev_seconds']:.2f}s vs --release "
              f"{f['release_seconds']:.2f}s: {f['ratio']:.1%}; whole process {f['dev_process']:.2f}s "
              f"vs {f['release_process']:.2f}s: {f['process_ratio']:.1%}; "
              f"{f['fallbacks']} fell back")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=("arbitrary", "fix", "both"), default="both")
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--relabel", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fresh", dest="fresh", action="store_false",
                    help="skip the fresh-process comparison")
    ap.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="s2-edit-"))
    work.mkdir(parents=True, exist_ok=True)
    for sub in work.iterdir():
        shutil.rmtree(sub)
    for folder in (ROOT / "examples" / "digits" / "data").iterdir():
        for f in folder.iterdir():
            TRUE_CLASS[f.name] = folder.name
    scenarios = ("arbitrary", "fix") if args.scenario == "both" else (args.scenario,)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = [run_scenario(s, args, work) for s in scenarios]
    if args.json:
        Path(args.json).write_text(json.dumps({"started": started, "cpus": os.cpu_count(),
                                               "load": os.getloadavg(), "results": results},
                                              indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
