"""The compiler: a plain, seeded training loop on in-memory tensors.

Release builds are deterministic: one training thread, `torch.manual_seed(seed)`, and a data
order drawn from a generator seeded with the same seed; on CUDA, deterministic kernels
(pick_device). Batches are index slices of tensors held
in memory (no DataLoader workers). The loop checks `cancel` (a threading.Event) between steps.

Training dynamics are recorded as a by-product (`Dynamics`): per-row loss and margin of every
epoch, taken from the forward pass the step already made; final logits and penultimate
embeddings of every row; last-layer gradient factors at a few checkpoints. They feed `lint`,
`blame` and the seed report.
"""

import math
import os
import time

import numpy as np
import torch

from s2build.compile import models
from s2build.compile import scoring
from s2build.errors import BuildError

CHECKPOINTS = 3                  # gradient-factor checkpoints (evenly spaced epochs)
MAX_FACTOR_FLOATS = 50_000_000   # skip gradient factors beyond this many stored floats


class Cancelled(Exception):
    """The build was cancelled between two steps (watch mode saw a newer edit)."""


class Trained:
    """module: eval mode, CPU; history: mean training loss per epoch; metrics: holdout
    metrics; dynamics: Dynamics or None; optimizer_state: the optimizer's final state_dict
    (tensors on CPU), from which an incremental build resumes training."""

    def __init__(self, module, history, metrics, seconds, device, dynamics=None,
                 optimizer_state=None):
        self.module, self.history, self.metrics = module, history, metrics
        self.seconds, self.device, self.dynamics = seconds, device, dynamics
        self.optimizer_state = optimizer_state


class Dynamics:
    """Per-row training dynamics. Arrays, saved as `dynamics.npz` beside the cache entry:

        train_rows  int64 [n_train]            dataset index of each training row
        loss        float16 [epochs, n_train]  per-row loss at its step in each epoch (NaN
                                               for user losses, which return only a scalar)
        margin      float16 [epochs, n_train]  per-row margin (negative: wrong)
        logits      float32 [n, k]             final outputs of every row: training rows at their
                                               step in the last epoch, holdout rows after it
        embedding   float32 [n, h]             input of the last linear layer, likewise
        ckpt_epoch  int64 [c]                  epochs of the gradient checkpoints
        ckpt_lr     float32 [c]                learning rate at each checkpoint
        grad_out    float32 [c, n, k]          dLoss/dlogits of every row at each checkpoint
        grad_in     float32 [c, n, h]          last-layer input of every row at each checkpoint
                                               (training rows' factors come from the step that
                                               used them, in train mode; holdout rows' from a
                                               pass after the epoch)
    """

    def __init__(self, train_rows, epochs):
        n = len(train_rows)
        self.train_rows = train_rows
        self.loss = torch.full((epochs, n), float("nan"))
        self.margin = torch.zeros((epochs, n))
        self.logits = self.embedding = None
        self.ckpt_epoch, self.ckpt_lr, self.grad_out, self.grad_in = [], [], [], []

    def arrays(self):
        out = {"train_rows": np.asarray(self.train_rows, dtype=np.int64),
               "loss": self.loss.numpy().astype(np.float16),
               "margin": self.margin.numpy().astype(np.float16),
               "ckpt_epoch": np.asarray(self.ckpt_epoch, dtype=np.int64),
               "ckpt_lr": np.asarray(self.ckpt_lr, dtype=np.float32)}
        if self.logits is not None:
            out["logits"] = self.logits.numpy()
        if self.embedding is not None:
            out["embedding"] = self.embedding.numpy()
        if self.grad_out:
            out["grad_out"] = torch.stack(self.grad_out).numpy()
            out["grad_in"] = torch.stack(self.grad_in).numpy()
        return out


def pick_device(requested, deterministic=True):
    """The device to train on: toolchain.resolve_device, the resolution the build key uses.
    'cuda' without a usable CUDA device is a BuildError. On cuda with `deterministic` (release
    builds), the determinism switches are set: CUBLAS_WORKSPACE_CONFIG (before CUDA starts),
    torch.use_deterministic_algorithms, cuDNN deterministic and no cuDNN benchmarking."""
    from s2build.engine import toolchain
    device = toolchain.resolve_device(requested)
    if device != "cuda":
        return "cpu"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not torch.cuda.is_available():
        forced = requested == "auto" and os.environ.get(toolchain.DEVICE_ENV)
        raise BuildError("train.device resolves to 'cuda' but no CUDA device is available"
                         + (f" ({toolchain.DEVICE_ENV}={forced})" if forced else ""),
                         hint=f"unset {toolchain.DEVICE_ENV}" if forced
                         else "use device: auto or cpu")
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return "cuda"


def make_optimizer(params, t):
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"],
                               weight_decay=t["weight_decay"])
    cls = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    return cls(params, lr=t["lr"], weight_decay=t["weight_decay"])


def forward_all(module, x, batch=2048, capture=None):
    """Outputs of `module` on every row of `x` (no grad); with `capture` (a module), also the
    inputs it received: returns (outputs, captured or None)."""
    seen = []
    hook = capture.register_forward_hook(lambda m, i, o: seen.append(i[0].detach())) \
        if capture is not None else None
    try:
        with torch.no_grad():
            out = torch.cat([module(x[i:i + batch]) for i in range(0, len(x), batch)]) \
                if len(x) else torch.zeros(0)
    finally:
        if hook:
            hook.remove()
    return out, (torch.cat(seen).reshape(len(x), -1) if seen else None)


def evaluate(module, x, y, metric_fns):
    """Holdout metrics of `module` on (x, y); {} when there are no rows."""
    if len(x) == 0:
        return {}
    module.eval()
    out, _ = forward_all(module, x)
    return {name: fn(out, y) for name, fn in metric_fns}


def _grad_out(row_loss, loss_fn, out, y):
    """dLoss/dlogits per row: [n, k]. Per-row losses give exact rows; a user loss (a batch
    mean) is scaled by n, exact when it is a mean of per-row terms."""
    z = out.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        total = row_loss(z, y).sum() if row_loss else loss_fn(z, y) * len(z)
        total.backward()
    return z.grad.detach()


def train(target, ds, cancel=None, progress=None, threads=1, record=True, exclude=None):
    """Train `target`'s network on `ds` (a data.Dataset) from scratch.

    `exclude` (bool [n], counterfactual retraining: "what if these rows were not there") skips
    rows while keeping every other row's place in the seeded data order, so the difference to
    the full build is the rows and not a reshuffle. Not combined with `record`."""
    t = target.config["train"]
    started = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(t["seed"])
    device = pick_device(t["device"])

    train_rows = np.flatnonzero(~ds.holdout)
    x_all = torch.from_numpy(ds.x)                     # [n, *shape]
    y_all = torch.from_numpy(ds.y)                     # [n] classes or [n, k] values
    x_train, y_train = x_all[train_rows], y_all[train_rows]
    keep = None
    if exclude is not None:
        record = False
        keep = torch.from_numpy(~exclude[train_rows])           # [n_train]
    hold = torch.from_numpy(ds.holdout)
    x_hold, y_hold = x_all[hold], y_all[hold]
    n_outputs = len(ds.classes) if ds.task == "classification" else ds.y.shape[1]

    net = models.build(target, tuple(ds.x.shape[1:]), n_outputs,
                       x_train if keep is None else x_train[keep]).to(device)
    loss_fn = scoring.loss_fn(target)
    row_loss = scoring.ROW_LOSSES.get(target.config["loss"])
    metric_fns = scoring.metric_fns(target)
    opt = make_optimizer(net.parameters(), t)
    gen = torch.Generator().manual_seed(t["seed"])
    xd, yd = x_train.to(device), y_train.to(device)
    n, bs, epochs = len(x_train), t["batch_size"], t["epochs"]

    dyn = Dynamics(train_rows, epochs) if record else None
    head = models.last_linear(net)
    ckpts = {min(epochs, max(1, round(epochs * (i + 1) / CHECKPOINTS))) for i in range(CHECKPOINTS)}
    if head is None or len(ckpts) * len(ds.x) * (head.in_features + n_outputs) > MAX_FACTOR_FLOATS:
        ckpts = set()

    history, final = [], None
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        if keep is not None:
            order = order[keep[order]]
        losses = []                                           # batch losses; summed per epoch
        outs, rows = [], []                                   # this epoch's per-row outputs
        # Checkpoint epochs (and the last) take training rows' factors and outputs from the
        # step that used each row (TracIn's gradient at that step); holdout rows get one pass.
        capture = dyn is not None and (epoch + 1 in ckpts or epoch + 1 == epochs)
        if capture and head is not None:
            seen = []
            hook = head.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
        for i in range(0, len(order), bs):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            idx = order[i:i + bs]
            out = net(xd[idx.to(device)])                         # [b, k]
            yb = yd[idx.to(device)]
            if row_loss is not None:
                per_row = row_loss(out, yb)                        # [b]
                loss = per_row.mean()
            else:
                per_row, loss = None, loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach() * idx.shape[0])       # no host sync per step
            if dyn is not None:                               # recorded once per epoch below
                outs.append(out.detach())
                if per_row is not None:
                    rows.append(per_row.detach())
        if dyn is not None and n:
            if rows:
                dyn.loss[epoch, order] = torch.cat(rows).float().cpu()
            dyn.margin[epoch, order] = scoring.margin(torch.cat(outs), yd[order.to(device)]).float().cpu()
        epoch_loss = torch.stack(losses).sum().item() / len(order) if losses else 0.0
        if not math.isfinite(epoch_loss):
            raise BuildError(f"training diverged: loss is {epoch_loss} at epoch {epoch + 1}",
                             target.loc("train", "lr"), "lower train.lr or check the data")
        history.append(epoch_loss)
        if capture:
            if head is not None:
                hook.remove()
            net.eval()
            pos = torch.from_numpy(train_rows)[order]         # dataset index of each step's row
            out_h, emb_h = forward_all(net, x_hold.to(device), capture=head)
            logits = torch.zeros((len(ds.x), n_outputs))
            logits[pos] = torch.cat(outs).float().cpu()
            if len(x_hold):
                logits[hold] = out_h.float().cpu()
            emb = None
            if head is not None:
                emb = torch.zeros((len(ds.x), head.in_features))
                emb[pos] = torch.cat([a.reshape(len(a), -1) for a in seen]).float().cpu()
                if len(x_hold):
                    emb[hold] = emb_h.float().cpu()
            if epoch + 1 in ckpts:
                dyn.ckpt_epoch.append(epoch + 1)
                dyn.ckpt_lr.append(opt.param_groups[0]["lr"])
                dyn.grad_out.append(_grad_out(row_loss, loss_fn, logits, y_all))
                dyn.grad_in.append(emb)
            if epoch + 1 == epochs:
                final = (logits, emb, out_h)
        if progress:
            progress(epoch + 1, epochs, epoch_loss)

    net = net.to("cpu").eval()
    if final is not None:                 # the last epoch saw every row already
        dyn.logits, dyn.embedding, out_h = final
        metrics = {name: fn(out_h.cpu(), y_hold) for name, fn in metric_fns} if len(x_hold) else {}
    else:
        metrics = evaluate(net, x_hold, y_hold, metric_fns)
        if dyn is not None:
            dyn.logits, dyn.embedding = forward_all(net, x_all, capture=head)
    return Trained(module=net, history=history, metrics=metrics,
                   seconds=time.perf_counter() - started, device=device, dynamics=dyn,
                   optimizer_state=cpu_state(opt))


def cpu_state(opt):
    """`opt.state_dict()` with every tensor copied to the CPU."""
    def cpu(v):
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu", copy=True)
        if isinstance(v, dict):
            return {k: cpu(x) for k, x in v.items()}
        return v
    return cpu(opt.state_dict())
