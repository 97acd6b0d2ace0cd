"""The GPU path (issue 13 item 4): s2build's loop against a minimal loop on CUDA, and two release
builds on the GPU compared byte for byte.

    .venv/bin/python bench/gpu.py [--rows 200000] [--epochs 3] [--runs 5] [--json FILE]

Without a usable CUDA device it prints one "no GPU" line and exits 0 (nothing to measure).
On CUDA (a few minutes at most):

1. throughput: a synthetic table (ROWS x 64 float features, 4 classes) as one CSV project,
   loaded by s2build's own reader; then, interleaved RUNS times, `compile.train.train` (the
   release loop with `device: cuda`, dynamics recorded) and a minimal hand-written loop (the
   same network from `compile.models.build`, Adam, the same batch size, epochs, seeded
   randperm batches on the GPU). Samples/s medians and the ratio (aim: >= 0.95x).
2. reproducibility: the same project built twice as a release build on cuda, each in a fresh
   copy and process (`--no-server`); the two ONNX files' SHA-256 must be equal (exit 1 if not).
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
sys.path.insert(0, ROOT)

YAML = """version: 1
targets:
  synth:
    sources: [data/synth.csv]
    loader: {{format: csv, label: y, task: classification, classes: 4}}
    model: {{type: mlp, hidden: [256, 256]}}
    train: {{epochs: {epochs}, batch_size: 512, lr: 0.001, seed: 0, device: cuda}}
    export: {{exporter: legacy}}
    output: build/synth.onnx
"""


def make_project(d, rows, epochs):
    import numpy as np
    os.makedirs(os.path.join(d, "data"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 64)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) * 2 + (x[:, 1] > 0).astype(int)
    with open(os.path.join(d, "data", "synth.csv"), "w") as f:
        f.write(",".join([f"x{i}" for i in range(64)] + ["y"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(f"{v:.4f}" for v in row) + f",{label}\n")
    with open(os.path.join(d, "s2build.yaml"), "w") as f:
        f.write(YAML.format(epochs=epochs))


def load(d):
    from s2build.data import dataset
    from s2build.data.shards import ShardStore
    from s2build.engine import fingerprint
    from s2build.project import config
    project = config.load(os.path.join(d, "s2build.yaml"))
    t = project.targets["synth"]
    inputs, _ = fingerprint.target_inputs(t, {})
    return t, dataset.load_dataset(t, inputs, ShardStore(project.state_dir), lean=True)


def minimal(t, ds):
    """A minimal loop: the same network, optimizer, batches and epochs; seconds of training."""
    import numpy as np
    import torch
    from s2build.compile import models
    cfg = t.config["train"]
    torch.manual_seed(cfg["seed"])
    rows = np.flatnonzero(~ds.holdout)
    x = torch.from_numpy(ds.x[rows]).cuda()
    y = torch.from_numpy(ds.y[rows]).cuda()
    net = models.build(t, tuple(ds.x.shape[1:]), len(ds.classes), x[:200000].cpu()).cuda()
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    gen = torch.Generator(device="cuda").manual_seed(cfg["seed"])
    torch.cuda.synchronize()
    clock = time.perf_counter()
    for _ in range(cfg["epochs"]):
        order = torch.randperm(len(x), generator=gen, device="cuda")
        for i in range(0, len(order), cfg["batch_size"]):
            idx = order[i:i + cfg["batch_size"]]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    torch.cuda.synchronize()
    return time.perf_counter() - clock


def build_sha(src, base, i):
    d = os.path.join(base, f"release-{i}")
    shutil.copytree(src, d, ignore=shutil.ignore_patterns(".s2build", "build"))
    env = dict(os.environ, PYTHONPATH=ROOT, S2BUILD_NO_SERVER="1")
    p = subprocess.run([sys.executable, "-m", "s2build", "build", "--release"], cwd=d, env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"release build {i} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    with open(os.path.join(d, "build", "synth.onnx"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        print(f"no GPU: torch {torch.__version__} sees no CUDA device "
              f"(torch CUDA build: {torch.version.cuda or 'none'}); nothing measured")
        return 0
    from s2build.compile import train
    from s2build.engine import toolchain
    tc = toolchain.toolchain("cuda", 1)
    print(f"GPU: {tc['gpu']} (torch.cuda: {torch.cuda.get_device_name(0)}), CUDA {tc['cuda']}, "
          f"cuDNN {tc['cudnn']}, torch {torch.__version__}")
    base = tempfile.mkdtemp(prefix="s2bench-gpu-")
    try:
        src = os.path.join(base, "project")
        make_project(src, a.rows, a.epochs)
        t, ds = load(src)
        n = int((~ds.holdout).sum()) * a.epochs
        ours, mine = [], []
        minimal(t, ds)                                      # warm-up: CUDA context, kernels
        for _ in range(a.runs):
            trained = train.train(t, ds)
            ours.append(n / trained.seconds)
            mine.append(n / minimal(t, ds))
        mo, mm = statistics.median(ours), statistics.median(mine)
        print(f"throughput ({a.rows} x 64 rows, mlp [256, 256], batch 512, {a.epochs} epochs, "
              f"medians of {a.runs}): s2build {mo:,.0f} samples/s ({min(ours):,.0f}-"
              f"{max(ours):,.0f}), minimal {mm:,.0f} samples/s ({min(mine):,.0f}-"
              f"{max(mine):,.0f}): {mo / mm:.3f}x (aim >= 0.95x)")
        shas = [build_sha(src, base, i) for i in (1, 2)]
        same = shas[0] == shas[1]
        print(f"two release builds on cuda: {shas[0][:16]} / {shas[1][:16]}: "
              f"{'identical' if same else 'DIFFERENT'}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"gpu": tc["gpu"], "ours": ours, "minimal": mine,
                           "ratio": mo / mm, "release_sha256": shas, "identical": same}, f)
        return 0 if same else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
