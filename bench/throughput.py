"""Training throughput benchmark (see /work/shared/BENCHMARKS.md, "training throughput").

    .venv/bin/python bench/throughput.py [--runs 5] [--cases digits,wine,synthetic]
                                          [--workers 2] [--json FILE]

Samples per second (training rows x epochs / seconds) of four loops on the same target, the same
in-memory tensors, in one process, interleaved, the order rotated each round so that no loop
always follows the same one (A B C D, B C D A, C D A B, ...):

    s2build      s2build.compile.train.train(target, ds, threads=1, record=False): the whole call
    minimal      a hand-written loop: torch.manual_seed(seed), models.build (the same
                 architecture), the same optimizer / lr / batch size / epochs, randperm index
                 batches from a generator seeded with the seed, forward, loss, zero_grad,
                 backward, step. No loss tracking, no cancel check, no holdout evaluation.
    dataloader   the same loop, batches from DataLoader(TensorDataset(x, y), shuffle=True,
                 batch_size=..., num_workers=0)
    dl-workersN  the same with num_workers=N and persistent_workers=True (workers start once per
                 run, not once per epoch: the DataLoader's best case; skipped with a note if
                 workers fail here)

Every timed loop does the same one-off work inside its timing: seed, build the model, make the
optimizer, train. The s2build call also does what a real build pays for and the others do not:
splitting train/holdout rows out of the dataset (one copy of x) and evaluating the holdout rows
once at the end; both are small next to training. Process-wide one-time costs (importing torch,
the first torch.optim.Adam(), which imports torch._dynamo, kernel warm-up) are excluded for all
loops alike by running every loop once, untimed, before the timed rounds. torch.set_num_threads(1)
throughout (s2build's release setting).

Cases: the digits example (CNN, 8x8 PNGs), the wine example (MLP, 178 rows) and a synthetic
tabular case written to a temporary folder (50,000 rows x 32 features, 4 classes, mlp [64, 64],
3 epochs, batch 32). Datasets load through s2build's own path (config.load, target_inputs,
load_dataset) with a temporary shard store, so nothing is written under examples/.
"""

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from s2build.project import config  # noqa: E402
from s2build.engine import fingerprint
from s2build.compile import models
from s2build.compile import scoring
from s2build.compile import train as s2train  # noqa: E402
from s2build.data.dataset import load_dataset
from s2build.data.shards import ShardStore  # noqa: E402

SYNTH_ROWS, SYNTH_FEATURES, SYNTH_CLASSES = 50_000, 32, 4

SYNTH_YAML = """\
version: 1
targets:
  synthetic:
    description: synthetic tabular throughput case
    sources: [data.npy]
    loader:
      format: npy
      label_column: -1
      task: classification
      classes: {classes}
    model:
      type: mlp
      hidden: [64, 64]
    train:
      epochs: 3
      batch_size: 32
      lr: 0.001
      seed: 0
    holdout:
      fraction: 0.2
      seed: 0
    output: build/synthetic.onnx
"""


# --- Cases ---------------------------------------------------------------------------------

class Case:
    """A target and its dataset, plus the tensors the hand-written loops train on."""

    def __init__(self, name, target, ds, note):
        self.name, self.target, self.ds, self.note = name, target, ds, note
        train_rows = np.flatnonzero(~ds.holdout)
        self.x = torch.from_numpy(ds.x)[train_rows].contiguous()
        self.y = torch.from_numpy(ds.y)[train_rows].contiguous()
        self.n_outputs = len(ds.classes) if ds.task == "classification" else ds.y.shape[1]
        self.t = target.config["train"]
        self.samples = len(self.x) * self.t["epochs"]

    def describe(self):
        t = self.t
        return (f"{self.name}: {self.note}; {len(self.x)} training rows x {t['epochs']} epochs, "
                f"batch {t['batch_size']}, {t['optimizer']} lr {t['lr']}")


def load_case(yaml_path, tmp, name=None, note=""):
    project = config.load(yaml_path)
    target = project.targets[name] if name else next(iter(project.targets.values()))
    inputs, _ = fingerprint.target_inputs(target, {}, {})
    store = ShardStore(os.path.join(tmp, "state-" + target.name))
    ds = load_dataset(target, inputs, store)
    return Case(target.name, target, ds, note)


def synthetic_case(tmp):
    folder = os.path.join(tmp, "synthetic")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SYNTH_ROWS, SYNTH_FEATURES)).astype(np.float32)
    w = rng.normal(size=(SYNTH_FEATURES, SYNTH_CLASSES)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.normal(size=(SYNTH_ROWS, SYNTH_CLASSES)), axis=1)
    np.save(os.path.join(folder, "data.npy"),
            np.concatenate([x, y[:, None].astype(np.float32)], axis=1))
    with open(os.path.join(folder, "s2build.yaml"), "w") as f:
        f.write(SYNTH_YAML.format(classes=SYNTH_CLASSES))
    return load_case(os.path.join(folder, "s2build.yaml"), tmp,
                     note=f"synthetic {SYNTH_ROWS} x {SYNTH_FEATURES}, mlp [64, 64]")


def load_cases(names, tmp):
    out = []
    for name in names:
        if name == "digits":
            out.append(load_case(os.path.join(ROOT, "examples/digits/s2build.yaml"), tmp,
                                 note="examples/digits, cnn [16, 32]"))
        elif name == "wine":
            out.append(load_case(os.path.join(ROOT, "examples/wine/s2build.yaml"), tmp,
                                 note="examples/wine, mlp [32, 32]"))
        elif name == "synthetic":
            out.append(synthetic_case(tmp))
        else:
            raise SystemExit(f"unknown case {name!r} (digits, wine, synthetic)")
    return out


# --- The loops -----------------------------------------------------------------------------

def _setup(case):
    """Seeded model, optimizer and per-batch loss, as s2build sets them up."""
    torch.set_num_threads(1)
    torch.manual_seed(case.t["seed"])
    net = models.build(case.target, tuple(case.ds.x.shape[1:]), case.n_outputs, case.x)
    opt = s2train.make_optimizer(net.parameters(), case.t)
    return net, opt, scoring.loss_fn(case.target)


def loop_s2build(case):
    s2train.train(case.target, case.ds, threads=1, record=False)


def loop_minimal(case):
    net, opt, loss_fn = _setup(case)
    x, y = case.x, case.y
    n, bs = len(x), case.t["batch_size"]
    gen = torch.Generator().manual_seed(case.t["seed"])
    net.train()
    for _epoch in range(case.t["epochs"]):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def make_loop_dataloader(workers):
    def loop_dataloader(case):
        net, opt, loss_fn = _setup(case)
        gen = torch.Generator().manual_seed(case.t["seed"])
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(case.x, case.y), batch_size=case.t["batch_size"],
            shuffle=True, num_workers=workers, generator=gen,
            persistent_workers=workers > 0)
        net.train()
        for _epoch in range(case.t["epochs"]):
            for xb, yb in loader:
                loss = loss_fn(net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return loop_dataloader


def timed(fn, case):
    """(wall seconds, CPU seconds of this process) of one call."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    fn(case)
    return time.perf_counter() - start, time.process_time() - cpu


# --- Reporting -----------------------------------------------------------------------------

def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": list(values)}


def fmt_rate(s):
    return f"{s['median']:>9,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def machine():
    return {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default="digits,wine,synthetic")
    ap.add_argument("--workers", type=int, default=2,
                    help="also time DataLoader with this many workers (0: skip)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    torch.set_num_threads(1)
    results = {"benchmark": "throughput", "machine": machine(), "runs": args.runs, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="s2b-throughput-") as tmp:
        cases = load_cases(args.cases.split(","), tmp)
        for case in cases:
            loops = [("s2build", loop_s2build), ("minimal", loop_minimal),
                     ("dataloader", make_loop_dataloader(0))]
            notes = []
            if args.workers > 0:
                name = f"dl-workers{args.workers}"
                fn = make_loop_dataloader(args.workers)
                try:
                    fn(case)                                   # warm-up doubles as the probe
                    loops.append((name, fn))
                except Exception as e:                         # noqa: BLE001
                    notes.append(f"{name} skipped: {type(e).__name__}: {e}")
            for name, fn in loops:                             # warm-up: one-time costs
                if not name.startswith("dl-workers"):          # (already run by the probe)
                    fn(case)
            times = {name: [] for name, _ in loops}
            cpu = {name: [] for name, _ in loops}
            for r in range(args.runs):
                k = r % len(loops)                             # rotate the order each round
                for name, fn in loops[k:] + loops[:k]:
                    wall, c = timed(fn, case)
                    times[name].append(wall)
                    cpu[name].append(c)
            rates = {name: summary([case.samples / s for s in ts]) for name, ts in times.items()}
            secs = {name: summary(ts) for name, ts in times.items()}
            base = times["minimal"]
            ratios = {f"{name}/minimal": statistics.median(base) / statistics.median(ts)
                      for name, ts in times.items() if name != "minimal"}
            paired = {f"{name}/minimal": statistics.median(b / t for b, t in zip(base, ts))
                      for name, ts in times.items() if name != "minimal"}
            # CPU time of this process: excludes DataLoader worker processes, so not given there
            cpu_base = statistics.median(cpu["minimal"])
            cpu_ratios = {f"{name}/minimal": cpu_base / statistics.median(c)
                          for name, c in cpu.items()
                          if name != "minimal" and not name.startswith("dl-workers")}
            if any(name.startswith("dl-workers") for name in times):
                notes.append("dl-workers: persistent_workers=True (started once per run, "
                             "not once per epoch)")
            results["cases"][case.name] = {
                "description": case.describe(), "samples_per_run": case.samples,
                "samples_per_s": rates, "seconds": secs, "cpu_seconds": {
                    name: summary(c) for name, c in cpu.items()},
                "throughput_ratio": ratios, "paired_ratio": paired, "cpu_ratio": cpu_ratios,
                "notes": notes}

    print(f"training throughput, samples/s: median (min-max) of {args.runs} interleaved runs; "
          f"1 thread; {results['machine']['date']}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}")
    for name, r in results["cases"].items():
        print()
        print(r["description"])
        print(f"  {'loop':<12} {'samples/s median (min-max)':>28} {'s median':>9} "
              f"{'vs minimal':>11} {'paired':>8} {'cpu':>8}")
        for loop, s in r["samples_per_s"].items():
            key = f"{loop}/minimal"
            ratio = r["throughput_ratio"].get(key, 1.0)
            paired = r["paired_ratio"].get(key, 1.0)
            c = r["cpu_ratio"].get(key, 1.0 if loop == "minimal" else None)
            cs = f"{c:>7.3f}x" if c is not None else f"{'-':>8}"
            print(f"  {loop:<12} {fmt_rate(s):>28} {r['seconds'][loop]['median']:>9.3f} "
                  f"{ratio:>10.3f}x {paired:>7.3f}x {cs}")
        for note in r["notes"]:
            print("  note: " + note)
    print()
    print("vs minimal = minimal's median wall time / the loop's (>1: faster than minimal); "
          "paired = median over runs of the same round's ratio; cpu = the same with this "
          "process's CPU time. Aim: s2build >= 0.95x.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
