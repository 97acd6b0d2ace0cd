"""The compiler: a plain, seeded training loop on in-memory tensors.

Release builds are deterministic: one training thread, `torch.manual_seed(seed)`, and a data
order drawn from a generator seeded with the same seed. Batches are index slices of tensors held
in memory (no DataLoader workers). The loop checks `cancel` (a threading.Event) between steps.

Result: the trained module (eval mode, on CPU), the loss per epoch, and the holdout metrics
computed on the trained module.
"""

import math
import time
from dataclasses import dataclass, field

import torch

from . import models, scoring
from .errors import BuildError


class Cancelled(Exception):
    """The build was cancelled between two steps (watch mode saw a newer edit)."""


@dataclass
class Trained:
    module: torch.nn.Module          # eval mode, CPU; maps [batch, features] -> [batch, outputs]
    history: list = field(default_factory=list)   # mean training loss per epoch
    metrics: dict = field(default_factory=dict)   # holdout metrics
    seconds: float = 0.0
    device: str = "cpu"


def pick_device(requested):
    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise BuildError("train.device is 'cuda' but no CUDA device is available",
                         hint="use device: auto or cpu")
    return "cpu"


def make_optimizer(params, t):
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"],
                               weight_decay=t["weight_decay"])
    cls = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    return cls(params, lr=t["lr"], weight_decay=t["weight_decay"])


def evaluate(module, x, y, metric_fns, batch=4096):
    """Holdout metrics of `module` on (x, y); {} when there are no rows."""
    if len(x) == 0:
        return {}
    module.eval()
    with torch.no_grad():
        out = torch.cat([module(x[i:i + batch]) for i in range(0, len(x), batch)])
    return {name: fn(out, y) for name, fn in metric_fns}


def train(target, ds, cancel=None, progress=None, threads=1):
    """Train `target`'s network on `ds` (a data.Dataset) from scratch."""
    t = target.config["train"]
    started = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(t["seed"])
    device = pick_device(t["device"])

    train_mask = torch.from_numpy(~ds.holdout)
    x_all = torch.from_numpy(ds.x)
    y_all = torch.from_numpy(ds.y)
    x_train, y_train = x_all[train_mask], y_all[train_mask]      # [n, f], [n]
    x_hold, y_hold = x_all[~train_mask], y_all[~train_mask]
    n_outputs = len(ds.classes) if ds.task == "classification" else 1

    net = models.build(target, x_train.shape[1], n_outputs, x_train).to(device)
    loss_fn = scoring.loss_fn(target)
    metric_fns = scoring.metric_fns(target)
    opt = make_optimizer(net.parameters(), t)
    gen = torch.Generator().manual_seed(t["seed"])
    xd, yd = x_train.to(device), y_train.to(device)
    n, bs = len(x_train), t["batch_size"]

    history = []
    for epoch in range(t["epochs"]):
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for i in range(0, n, bs):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            idx = order[i:i + bs]
            loss = loss_fn(net(xd[idx]), yd[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        epoch_loss = total.item() / n
        if not math.isfinite(epoch_loss):
            raise BuildError(f"training diverged: loss is {epoch_loss} at epoch {epoch + 1}",
                             target.loc("train", "lr"), "lower train.lr or check the data")
        history.append(epoch_loss)
        if progress:
            progress(epoch + 1, t["epochs"], epoch_loss)

    net = net.to("cpu").eval()
    metrics = evaluate(net, x_hold, y_hold, metric_fns)
    return Trained(module=net, history=history, metrics=metrics,
                   seconds=time.perf_counter() - started, device=device)
