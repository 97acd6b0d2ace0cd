"""The trainer: one seeded loop on in-memory tensors, driven by a schedule.

Release builds are deterministic: one training thread, `torch.manual_seed(seed)`, and a data
order drawn from a generator seeded with the same seed; on CUDA, deterministic kernels
(pick_device). Batches are index slices of tensors held in memory (no DataLoader workers).

`fit(target, ds, schedule, ...)` builds the network and the optimizer, lets the schedule warm
start them, then runs rounds of optimizer steps until the schedule stops. Each step: check
`cancel` (a threading.Event; raises Cancelled), forward a batch of training rows, the target's
loss (per row when built in, then the mean), backward, optimizer step. After each round: a
non-finite mean loss raises Diverged, then `progress(done, total, loss)`. At the end the network
is evaluated on the holdout rows. The schedules:

    Epochs      (here) `train.epochs` passes over the training rows in an order drawn from a
                generator seeded with `train.seed`: release builds, lint's folds, counterfactuals
    FineTune    (compile/finetune.py) a dev build: warm start from a parent build, batches of
                random rows plus replayed edits, convergence checks, a step budget

A schedule has `threads` and three methods: `start(run)` (warm start `run.net` / `run.opt`;
may raise), `batches(run, r)` (the index batches of round r, int64 positions in the training
rows, or None to stop before it) and `done(r)` ((done, total) for progress after round r).
It may name a `recorder` class (default Recorder; compile/ddp.py gathers every rank's rows).

Training dynamics are recorded as a by-product of an Epochs run (`Recorder`, `Dynamics`):
the mean per-row margin over the second half of the epochs (lint's label-error signal), taken
from the forward pass the step already made; final logits of every row; last-layer gradient
factors at a few checkpoints, sketched to a bounded width (compile/tracin.py). They feed `lint`,
`blame` and the seed report. A recorded run also keeps the holdout loss per epoch
(compile/curve.py), for the report.
"""

import os
import time

import numpy as np
import torch

from s2build.compile import distill, models, scoring, tracin
from s2build.compile.curve import HoldoutCurve
from s2build.compile.optim import make_optimizer
from s2build.errors import BuildError

from s2build.compile.diverge import Diverged, check_loss  # noqa: F401 (re-exported)
from s2build.compile.rows import TrainRows, evaluate, forward_all  # noqa: F401 (re-exported)

CHECKPOINTS = 3                  # gradient-factor checkpoints (evenly spaced epochs)
MAX_FACTOR_FLOATS = 60_000_000   # skip gradient factors beyond this many halves (~250k rows)
DYNAMICS_VERSION = 2             # dynamics.npz format (1: unversioned, full float32 factors)
ROW_CHUNK = 65536                # rows per step of the per-epoch dynamics (bounds temporaries)
MAX_STATS_ROWS = 200_000         # rows the input normalisation is computed from (evenly spaced)


class Cancelled(Exception):
    """The build was cancelled between two steps (watch mode saw a newer edit)."""


class Trained:
    """module: eval mode, CPU; history: mean training loss per round (an epoch; a fine-tune's
    CHECK_EVERY steps); metrics: holdout metrics; dynamics: Dynamics or None; optimizer_state:
    the optimizer's final state_dict (tensors on CPU), from which an incremental build resumes
    training; holdout_curve: a recorded run's per-epoch holdout loss and metric (curve.py)."""

    def __init__(self, module, history, metrics, seconds, device, dynamics=None,
                 optimizer_state=None, holdout_curve=None):
        self.module, self.history, self.metrics = module, history, metrics
        self.seconds, self.device, self.dynamics = seconds, device, dynamics
        self.optimizer_state, self.holdout_curve = optimizer_state, holdout_curve


class Dynamics:
    """Per-row training dynamics. Arrays, saved as `dynamics.npz` beside the cache entry:

        version      int64 []                 DYNAMICS_VERSION
        train_rows   int64 [n_train]          dataset index of each training row
        margin_late  float16 [n_train]        per-row margin (negative: wrong) at its step,
                                              mean over epochs epochs//2 .. epochs-1
        logits       float32 [n, k]           final outputs of every row: training rows at their
                                              step in the last epoch, holdout rows after it
        ckpt_epoch   int64 [c]                epochs of the gradient checkpoints
        ckpt_lr      float32 [c]              learning rate at each checkpoint
        grad_z       float16 [c, n, dz]       dLoss/dlogits @ grad_z_basis (compile/tracin.py)
        grad_z_scale float32 [c]              value = stored * scale (tracin.encode)
        grad_z_basis float16 [c, k, dz]       the projection (training rows' principal axes)
        grad_a       float16 [c, n, da]       last-layer input @ grad_a_basis
        grad_a_scale float32 [c]              grad_a_basis float16 [c, h, da]
                                              (training rows' factors: from the step that used
                                              them; holdout rows': a pass after the epoch)
    Bytes per row: 4k + 2c(dz + da), + 10 per training row (dz <= tracin.D_OUT, da <= D_IN).
    """

    def __init__(self, train_rows, epochs):
        n = len(train_rows)
        self.train_rows, self.late, self.n_late = train_rows, epochs // 2, epochs - epochs // 2
        self.margin = torch.zeros(n, dtype=torch.float64)   # sum over epochs late .. epochs-1
        self.logits = None
        self.ckpt_epoch, self.ckpt_lr, self.grad_z, self.grad_a = [], [], [], []

    def arrays(self):
        late = np.clip((self.margin / max(self.n_late, 1)).numpy(), -65504, 65504)
        out = {"version": np.asarray(DYNAMICS_VERSION, dtype=np.int64),
               "train_rows": np.asarray(self.train_rows, dtype=np.int64),
               "margin_late": late.astype(np.float16),
               "ckpt_epoch": np.asarray(self.ckpt_epoch, dtype=np.int64),
               "ckpt_lr": np.asarray(self.ckpt_lr, dtype=np.float32)}
        if self.logits is not None:
            out["logits"] = self.logits.numpy()
        if self.grad_z:
            for name, side in (("grad_z", self.grad_z), ("grad_a", self.grad_a)):
                out[name] = np.concatenate([g for g, _s, _b in side])
                out[name + "_scale"] = np.concatenate([sc for _g, sc, _b in side])
                out[name + "_basis"] = np.stack([b for _g, _s, b in side]).astype(np.float16)
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
    switches = toolchain.determinism(device, deterministic, os.environ)
    if switches:
        os.environ.update(switches["env"])
    if not torch.cuda.is_available():
        forced = requested == "auto" and os.environ.get(toolchain.DEVICE_ENV)
        raise BuildError("train.device resolves to 'cuda' but no CUDA device is available"
                         + (f" ({toolchain.DEVICE_ENV}={forced})" if forced else ""),
                         hint=f"unset {toolchain.DEVICE_ENV}" if forced
                         else "use device: auto or cpu")
    if switches:
        torch.use_deterministic_algorithms(switches["deterministic_algorithms"])
        torch.backends.cudnn.deterministic = switches["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = switches["cudnn_benchmark"]
    return "cuda"


def _grad_out(row_loss, loss_fn, out, y):
    """dLoss/dlogits per row: [n, k]. Per-row losses give exact rows; a user loss (a batch
    mean) is scaled by n, exact when it is a mean of per-row terms."""
    z = out.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        total = row_loss(z, y).sum() if row_loss else loss_fn(z, y) * len(z)
        total.backward()
    return z.grad.detach()


class Run:
    """What a schedule sees of a run: x_all / y_all every row (CPU); xd / yd the training rows
    on `device` (batches index these); x_hold / y_hold the holdout rows; train_rows [n_train]."""

    def __init__(self, target, ds, device, keep):
        self.target, self.ds, self.device = target, ds, device
        self.train_rows = np.flatnonzero(~ds.holdout)
        self.x_all = torch.from_numpy(ds.x)                     # [n, *shape]
        self.y_all = torch.from_numpy(ds.y)                     # [n] classes or [n, k] values
        y_train = self.y_all[self.train_rows]
        self.hold = torch.from_numpy(ds.holdout)
        hold_pos = torch.from_numpy(np.flatnonzero(ds.holdout))
        self.x_hold = TrainRows(self.x_all, hold_pos)           # gathered per batch, no copy
        self.y_hold = self.y_all[self.hold]
        self.n_outputs = len(ds.classes) if ds.task == "classification" else ds.y.shape[1]
        stats_rows = self.train_rows if keep is None else self.train_rows[keep.numpy()]
        if len(stats_rows) > MAX_STATS_ROWS:            # normalisation from an even sample
            stats_rows = stats_rows[::-(-len(stats_rows) // MAX_STATS_ROWS)]
        self.net = models.build(target, tuple(ds.x.shape[1:]), self.n_outputs,
                                self.x_all[stats_rows], self.y_all[stats_rows]).to(device)
        scale = models.target_scale(self.net)
        self.loss_fn = scoring.loss_fn(target, scale)
        self.row_loss = scoring.row_loss(target, scale)
        self.distill = distill.row_loss(target, ds, self.train_rows, self.row_loss, device)
        self.metric_fns = scoring.metric_fns(target)
        self.opt = make_optimizer(self.net.parameters(), target.config["train"])
        pos = torch.from_numpy(self.train_rows)       # CPU: batches gather from x_all, no copy
        self.xd = TrainRows(self.x_all, pos) if device == "cpu" else self.x_all[pos].to(device)
        self.yd = y_train.to(device)


class Epochs:
    """`train.epochs` passes over the training rows (or the `keep` ones: bool [n_train]) in
    batches of `train.batch_size`, each pass in an order drawn from a generator seeded with
    `train.seed`. Excluded rows keep every other row's place in that order."""

    def __init__(self, t, n, keep=None, threads=1):
        self.epochs, self.bs, self.n, self.keep, self.threads = \
            t["epochs"], t["batch_size"], n, keep, threads
        self.gen = torch.Generator().manual_seed(t["seed"])

    def start(self, run):
        pass                                                     # from scratch

    def batches(self, run, r):
        if r >= self.epochs:
            return None
        order = torch.randperm(self.n, generator=self.gen)
        if self.keep is not None:
            order = order[self.keep[order]]
        return [order[i:i + self.bs] for i in range(0, len(order), self.bs)]

    def done(self, r):
        return r + 1, self.epochs


def fit(target, ds, schedule, cancel=None, progress=None, record=False, keep=None):
    """Train `target`'s network on `ds` (a data.Dataset) as `schedule` says; returns Trained.
    `keep` (bool [n_train]): the rows the input normalisation is computed from (default all);
    `record`: record Dynamics (an Epochs schedule only)."""
    t = target.config["train"]
    started = time.perf_counter()
    torch.set_num_threads(schedule.threads)
    torch.manual_seed(t["seed"])
    device = pick_device(t["device"])
    run = Run(target, ds, device, keep)
    schedule.start(run)
    net, opt, xd, yd = run.net, run.opt, run.xd, run.yd
    rec = getattr(schedule, "recorder", Recorder)(run, schedule.epochs) if record else None

    history, r = [], 0
    while True:
        batches = schedule.batches(run, r)
        if batches is None:
            break
        net.train()
        if rec is not None:
            rec.begin(r)
        losses = []                                           # batch losses; summed per round
        for idx in batches:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            on = idx.to(device)
            out = net(xd[on])                                     # [b, k]
            yb = yd.index_select(0, on)
            if run.distill is not None:                           # soft labels: [b]
                per_row = run.distill(out, yb, on)
                loss = per_row.mean()
            elif run.row_loss is not None:
                per_row = run.row_loss(out, yb)                   # [b]
                loss = per_row.mean()
            else:
                per_row, loss = None, run.loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach() * idx.shape[0])       # no host sync per step
            if rec is not None:
                rec.step(out, per_row)
        rows = sum(len(b) for b in batches)
        round_loss = torch.stack(losses).sum().item() / rows if losses else 0.0
        check_loss(target, round_loss, history, f"epoch {r + 1}")
        history.append(round_loss)
        if rec is not None:
            rec.end(r, torch.cat(batches) if batches else torch.zeros(0, dtype=torch.int64))
        if progress:
            progress(*schedule.done(r), round_loss)
        r += 1

    net = net.to("cpu").eval()
    metrics = rec.finish(net) if rec is not None else None
    if metrics is None:
        metrics = evaluate(net, run.x_hold, run.y_hold, run.metric_fns)
    return Trained(module=net, history=history, metrics=metrics,
                   seconds=time.perf_counter() - started, device=device,
                   dynamics=rec.dyn if rec is not None else None,
                   optimizer_state=cpu_state(opt),
                   holdout_curve=rec.curve.facts() if rec is not None else None)


def train(target, ds, cancel=None, progress=None, threads=1, record=True, exclude=None):
    """Train `target`'s network on `ds` from scratch: the Epochs schedule.

    `exclude` (bool [n], counterfactual retraining: "what if these rows were not there") skips
    rows while keeping every other row's place in the seeded data order, so the difference to
    the full build is the rows and not a reshuffle. Not combined with `record`."""
    train_rows = np.flatnonzero(~ds.holdout)
    keep = None
    if exclude is not None:
        record = False
        keep = torch.from_numpy(~exclude[train_rows])           # [n_train]
    schedule = Epochs(target.config["train"], len(train_rows), keep, threads)
    return fit(target, ds, schedule, cancel, progress, record=record, keep=keep)


class Recorder:
    """Records Dynamics from the forward passes of an Epochs run. Checkpoint epochs (and the
    last) take training rows' factors and outputs from the step that used each row (TracIn's
    gradient at that step); holdout rows get one pass after the epoch."""

    def __init__(self, run, epochs):
        self.run, self.epochs = run, epochs
        self.dyn = Dynamics(run.train_rows, epochs)
        self.head = head = models.last_linear(run.net)
        ckpts = {min(epochs, max(1, round(epochs * (i + 1) / CHECKPOINTS)))
                 for i in range(CHECKPOINTS)}
        if head is None or len(ckpts) * len(run.x_all) * (min(head.in_features, tracin.D_IN)
                                                          + min(run.n_outputs, tracin.D_OUT)) \
                > MAX_FACTOR_FLOATS:
            ckpts = set()
        self.ckpts, self.final = ckpts, None
        self.curve = HoldoutCurve(run)               # the report's per-epoch holdout curve

    def begin(self, epoch):
        self.seen, self.hook = [], None
        self.capture = epoch + 1 in self.ckpts or epoch + 1 == self.epochs
        # this epoch's outputs, in step order, in one buffer (a list of per-batch tensors and
        # their concatenation took 3x the memory at 1M rows); only epochs that read them
        self.want = self.capture or epoch >= self.dyn.late
        self.outs, self.filled = None, 0
        if epoch + 1 in self.ckpts and self.head is not None:       # factors: checkpoints only
            self.hook = self.head.register_forward_hook(
                lambda m, i, o: self.seen.append(i[0].detach()))

    def step(self, out, per_row):
        if not self.want:
            return
        out = out.detach()
        if self.outs is None:
            self.outs = out.new_empty((len(self.run.train_rows),) + tuple(out.shape[1:]))
        self.outs[self.filled:self.filled + len(out)] = out
        self.filled += len(out)

    def _outs(self):
        if self.outs is None:
            return torch.zeros((0, self.run.n_outputs))
        return self.outs[:self.filled]

    def end(self, epoch, order):
        """`order`: the training-row positions of this epoch's steps, in step order."""
        run, dyn, device = self.run, self.dyn, self.run.device
        outs = self._outs()
        if len(order) and epoch >= dyn.late:               # in chunks: bounded temporaries
            for i in range(0, len(order), ROW_CHUNK):
                o = order[i:i + ROW_CHUNK]
                dyn.margin[o] += scoring.margin(outs[i:i + ROW_CHUNK],
                                                run.yd[o.to(device)]).double().cpu()
        if not self.capture:
            self.curve.add()
            return
        head, hold = self.head, run.hold
        if self.hook is not None:
            self.hook.remove()
        run.net.eval()
        ckpt = epoch + 1 in self.ckpts
        pos = torch.from_numpy(run.train_rows)[order]       # dataset index of each step's row
        out_h, emb_h = forward_all(run.net, run.x_hold.to(device),
                                   capture=head if ckpt else None)
        self.curve.add(out_h if len(run.x_hold) else None)
        logits = torch.zeros((len(run.x_all), run.n_outputs))
        for i in range(0, len(pos), ROW_CHUNK):
            logits[pos[i:i + ROW_CHUNK]] = outs[i:i + ROW_CHUNK].float().cpu()
        if len(run.x_hold):
            logits[hold] = out_h.float().cpu()
        emb = None
        if head is not None and ckpt:
            emb = torch.zeros((len(run.x_all), head.in_features))
            emb[pos] = torch.cat([a.reshape(len(a), -1) for a in self.seen]).float().cpu()
            if len(run.x_hold):
                emb[hold] = emb_h.float().cpu()
        if ckpt:
            dyn.ckpt_epoch.append(epoch + 1)
            dyn.ckpt_lr.append(run.opt.param_groups[0]["lr"])
            dz = _grad_out(run.row_loss, run.loss_fn, logits, run.y_all)
            for side, x, width in ((dyn.grad_z, dz.numpy(), tracin.D_OUT),
                                   (dyn.grad_a, emb.numpy(), tracin.D_IN)):
                b = tracin.basis(x[run.train_rows], width)
                side.append(tracin.encode(tracin.sketch(x, b)[None]) + (b,))   # float16 now
        if epoch + 1 == self.epochs:
            self.final = (logits, emb, out_h)

    def finish(self, net):
        """Holdout metrics from the last epoch's pass (None: evaluate afresh)."""
        run, dyn = self.run, self.dyn
        if self.final is None:
            dyn.logits, _emb = forward_all(net, run.x_all)
            return None
        dyn.logits, _emb, out_h = self.final                 # the last epoch saw every row
        if not len(run.x_hold):
            return {}
        return {name: fn(out_h.cpu(), run.y_hold) for name, fn in run.metric_fns}


def cpu_state(opt):
    """`opt.state_dict()` with every tensor copied to the CPU."""
    def cpu(v):
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu", copy=True)
        if isinstance(v, dict):
            return {k: cpu(x) for k, x in v.items()}
        return v
    return cpu(opt.state_dict())
