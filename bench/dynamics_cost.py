"""Cost of recording training dynamics (see /work/shared/BENCHMARKS.md and s2build/compile/train.py).

    .venv/bin/python bench/dynamics_cost.py [--runs 5] [--cases digits,wine,synthetic] [--json FILE]

Times s2build.compile.train.train(target, ds, threads=1) with record=True (per-row loss and margin every
step, gradient factors at the checkpoints, final logits and embeddings of every row) against
record=False, in one process, interleaved (off on, on off, off on, ...) after one untimed
warm-up of each, on the same cases as bench/throughput.py: the digits example (CNN), the wine
example (MLP) and a synthetic 50,000 x 32 tabular case (mlp [64, 64], 3 epochs). Prints medians
(min-max) and the overhead: median(record=True) / median(record=False) - 1, plus the median of
the per-round paired ratios and the same with CPU time. Aim: at most 10%.
"""

import argparse
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import throughput as tp  # noqa: E402  (bench/throughput.py: cases, timing, machine facts)
from s2build.compile import train as s2train  # noqa: E402


def record_off(case):
    s2train.train(case.target, case.ds, threads=1, record=False)


def record_on(case):
    s2train.train(case.target, case.ds, threads=1, record=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default="digits,wine,synthetic")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    torch.set_num_threads(1)
    loops = [("record=False", record_off), ("record=True", record_on)]
    results = {"benchmark": "dynamics_cost", "machine": tp.machine(), "runs": args.runs,
               "cases": {}}
    with tempfile.TemporaryDirectory(prefix="s2b-dynamics-") as tmp:
        for case in tp.load_cases(args.cases.split(","), tmp):
            for _name, fn in loops:
                fn(case)                                     # warm-up
            wall = {name: [] for name, _ in loops}
            cpu = {name: [] for name, _ in loops}
            for r in range(args.runs):
                for name, fn in (loops if r % 2 == 0 else loops[::-1]):   # alternate the order
                    w, c = tp.timed(fn, case)
                    wall[name].append(w)
                    cpu[name].append(c)
            off, on = wall["record=False"], wall["record=True"]
            results["cases"][case.name] = {
                "description": case.describe(),
                "seconds": {name: tp.summary(v) for name, v in wall.items()},
                "cpu_seconds": {name: tp.summary(v) for name, v in cpu.items()},
                "overhead": statistics.median(on) / statistics.median(off) - 1,
                "paired_overhead": statistics.median(a / b for a, b in zip(on, off)) - 1,
                "cpu_overhead": statistics.median(cpu["record=True"])
                / statistics.median(cpu["record=False"]) - 1,
            }

    print(f"dynamics recording cost: train() seconds, median (min-max) of {args.runs} interleaved "
          f"runs; 1 thread; {results['machine']['date']}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}")
    print(f"  {'case':<10} {'record=False':>24} {'record=True':>24} {'overhead':>9} "
          f"{'paired':>8} {'cpu':>8}")
    for name, r in results["cases"].items():
        cols = []
        for loop in ("record=False", "record=True"):
            s = r["seconds"][loop]
            cols.append(f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})")
        print(f"  {name:<10} {cols[0]:>24} {cols[1]:>24} {r['overhead']:>+8.1%} "
              f"{r['paired_overhead']:>+8.1%} {r['cpu_overhead']:>+8.1%}")
    print()
    for name, r in results["cases"].items():
        print("  " + r["description"])
    print("overhead = median(record=True) / median(record=False) - 1 (wall); paired = median of "
          "the same round's ratios; cpu = with this process's CPU time. Aim: at most +10%.")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
