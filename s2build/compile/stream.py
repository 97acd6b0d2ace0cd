"""Training on data larger than memory: the same loop as train.py over a data.stream.Stream.

Each epoch visits the blocks in an order drawn from a torch generator seeded with `train.seed`;
within a block, its training rows in a permutation from the same generator, in batches of
`train.batch_size` (a block's last short batch is kept). One block is in memory at a time: read
from its shard, preprocessed (the fitted TablePrep) and dropped. Holdout metrics are computed
block by block over the holdout rows' outputs. No per-row training dynamics are recorded (lint,
blame and seeds need the table in memory); the artifact is exported and verified as usual.
"""

import time

import numpy as np
import torch

from s2build.compile import models, scoring
from s2build.compile.diverge import check_loss
from s2build.compile.optim import make_optimizer
from s2build.compile.train import Cancelled, Trained, cpu_state, forward_all, pick_device


def _block_xy(st, i):
    b, hold = st.block(i)
    raw = st.raw_of(b, st.vocab)
    return st.prep.transform(raw), st.labels(b, st.refs[i][1]), hold


def fit_stream(target, st, cancel=None, progress=None, threads=1):
    """Train `target`'s network on Stream `st`; returns Trained (dynamics None)."""
    t = target.config["train"]
    started = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(t["seed"])
    device = pick_device(t["device"])
    n_out = len(st.classes) if st.task == "classification" else None
    first_x, first_y, first_hold = _block_xy(st, 0)
    if n_out is None:
        n_out = first_y.shape[1]
    sample = torch.from_numpy(first_x[~first_hold][:65536])
    y_sample = torch.from_numpy(np.asarray(first_y)[~first_hold][:65536])
    net = models.build(target, tuple(first_x.shape[1:]), n_out, sample, y_sample).to(device)
    del first_x, first_y, first_hold, sample, y_sample   # one block in memory at a time
    scale = models.target_scale(net)
    loss_fn, row_loss = scoring.loss_fn(target, scale), scoring.row_loss(target, scale)
    opt = make_optimizer(net.parameters(), t)
    gen = torch.Generator().manual_seed(t["seed"])
    history = []
    for epoch in range(t["epochs"]):
        net.train()
        total, rows = torch.zeros(()), 0
        for i in torch.randperm(len(st.refs), generator=gen).tolist():
            x, y, hold = _block_xy(st, i)
            train = torch.from_numpy(np.flatnonzero(~hold))     # no copy of the train rows
            xb, yb = torch.from_numpy(x), torch.from_numpy(y)
            del x, y
            order = torch.randperm(len(train), generator=gen)
            for lo in range(0, len(order), t["batch_size"]):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                idx = train.index_select(0, order[lo:lo + t["batch_size"]])
                out = net(xb.index_select(0, idx).to(device))
                target_b = yb.index_select(0, idx).to(device)
                loss = row_loss(out, target_b).mean() if row_loss is not None \
                    else loss_fn(out, target_b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach().cpu() * len(idx)
                rows += len(idx)
        mean = total.item() / max(rows, 1)
        check_loss(target, mean, history, f"epoch {epoch + 1}")
        history.append(mean)
        if progress:
            progress(epoch + 1, t["epochs"], mean)
    net = net.to("cpu").eval()
    return Trained(module=net, history=history, metrics={},
                   seconds=time.perf_counter() - started, device=device, dynamics=None,
                   optimizer_state=cpu_state(opt))


def holdout_outputs(module, st):
    """(outputs, labels) of every holdout row, block by block (numpy)."""
    outs, ys = [], []
    for i in range(len(st.refs)):
        x, y, hold = _block_xy(st, i)
        if not hold.any():
            continue
        out, _ = forward_all(module, torch.from_numpy(x[hold]))
        outs.append(out.numpy())
        ys.append(y[hold])
    if not outs:
        return None, None
    return np.concatenate(outs), np.concatenate(ys)


def metrics(module, st, fns):
    """{name: value} of `fns` [(name, fn(out, y))] on the holdout rows."""
    out, y = holdout_outputs(module, st)
    if out is None:
        return {}
    return {name: fn(torch.from_numpy(out), torch.from_numpy(y)) for name, fn in fns}
