"""The hand-written baseline of bench/scale.py: what a user would put behind `make -r`.

    python bench/scale_script.py --data DIR --format csv|parquet --out model.onnx
                                 [--label label] [--classes 4] [--hidden 64] [--epochs 2]
                                 [--batch-size 512] [--lr 0.001] [--holdout 0.1] [--seed 0]

Reads every `*.csv` / `*.parquet` file of DIR (sorted) with pyarrow into one float32 feature
matrix and an int64 label vector, holds out a seeded random `--holdout` fraction of the rows,
and trains the network s2build's `mlp` model builds (s2build/compile/models.py: standardisation
with the training rows' mean and population std frozen as buffers, then Linear -> ReLU per hidden
width -> Linear), with the optimizer s2build's trainer uses (s2build/compile/train.py: Adam, lr,
no weight decay, one thread, `torch.manual_seed(seed)`, each epoch a `randperm` order from a
generator seeded with `seed`, index-slice batches of in-memory tensors, mean cross-entropy).
Then prints the holdout accuracy and exports (logits, probabilities) with the legacy
(TorchScript) ONNX exporter, `torch.onnx.export(dynamo=False)`, dynamic batch axis. No
verification, no cache, no provenance: the floor a build tool's own work is measured against.
Standard library + numpy + pyarrow + torch only; nothing from s2build.
"""

import argparse
import glob
import os
import time

import numpy as np


def read(data, fmt, label):
    """(x float32 [n, k], y int64 [n]) of every file of `data` in the format, in name order."""
    import pyarrow as pa
    if fmt == "csv":
        import pyarrow.csv as pcsv
        tables = [pcsv.read_csv(p) for p in sorted(glob.glob(os.path.join(data, "*.csv")))]
    else:
        import pyarrow.parquet as pq
        tables = [pq.read_table(p) for p in sorted(glob.glob(os.path.join(data, "*.parquet")))]
    t = pa.concat_tables(tables)
    names = [c for c in t.column_names if c != label]
    x = np.empty((t.num_rows, len(names)), dtype=np.float32)       # [n, k]
    for j, c in enumerate(names):
        x[:, j] = t.column(c).to_numpy()
    return x, t.column(label).to_numpy().astype(np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder of the data files")
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--out", required=True, help="the ONNX file to write")
    ap.add_argument("--label", default="label")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--hidden", default="64", help="comma-separated hidden widths")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    x, y = read(a.data, a.format, a.label)
    t_data = time.perf_counter() - t0

    import torch
    from torch import nn
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    hold = np.random.default_rng(a.seed).random(len(x)) < a.holdout       # bool [n]
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
    layers, width = [Standardize(xt.mean(dim=0), std)], x.shape[1]
    for h in [int(v) for v in a.hidden.split(",") if v]:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    net = nn.Sequential(*layers, nn.Linear(width, a.classes))
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(a.seed)
    t1 = time.perf_counter()
    for epoch in range(a.epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), a.batch_size):
            idx = order[i:i + a.batch_size]
            loss = loss_fn(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    t_train = time.perf_counter() - t1
    net.eval()
    with torch.no_grad():
        acc = (net(xh).argmax(dim=1) == yh).float().mean().item() if len(xh) else float("nan")

    class Exported(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            out = self.inner(v)
            return out, torch.softmax(out, dim=-1)

    t2 = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.onnx.export(Exported(net), (torch.zeros(1, x.shape[1]),), a.out, dynamo=False,
                      input_names=["input"], output_names=["logits", "probabilities"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"},
                                    "probabilities": {0: "batch"}})
    print(f"rows={len(x)} data={t_data:.2f}s train={t_train:.2f}s "
          f"export={time.perf_counter() - t2:.2f}s accuracy={acc:.4f} -> {a.out}")


if __name__ == "__main__":
    main()
