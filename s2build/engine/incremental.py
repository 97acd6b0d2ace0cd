"""Incremental (dev) builds: warm-start from the previous build's weights and fine-tune.

A warm start reads, from the parent's cache entry: `weights.pt` (the trained state_dict),
`optimizer.pt` (the optimizer's state_dict when training ended: Adam's moment estimates, SGD's
momentum), the row hashes and class names it was trained on (`dynamics.npz`, or `rows.npz` for an
incremental build, which records no dynamics) and its holdout metrics or baseline (`record.json`).

`choose(target, release, record, cache)` decides how a dev build proceeds (standard library
only; it runs on the planning path):

    restore or up to date   the release key of these inputs is cached, or the current
                            artifact is an incremental build of exactly these inputs
    incremental             the last build differs only in its source files and left weights:
                            Inputs with mode=incremental, `parent` = its key and key =
                            SHA-256 of (release key, mode, parent key); never equal to a
                            release key, so release builds and `ci` never reuse it
    full                    anything else (first build, config, holdout, user code,
                            dependency or toolchain changed): a release build, said in words

`finetune(...)` resumes the parent's training on the new data: its network and its optimizer
state, at RESUME_LR times the target's learning rate. (A fresh Adam would take lr-sized first
steps in every weight and knock the converged network off its minimum; the resumed moment
estimates keep the steps of weights the edit does not concern small.) It uses up to
MAX_THREADS threads: byte-for-byte reproducibility is what release builds promise, latency is
what dev builds are for. Each step is a random batch of training rows (so the rest is not
forgotten) plus the added or changed rows (replayed: all of them, drawn with repeats up to
REPLAY_SHARE of a batch when they are few, at most a batch), one mean loss over both.
Every CHECK_EVERY steps it checks that every changed row is predicted as labelled
(classification and multilabel; regression has no such test) and that the first holdout metric
is back within TOLERANCE of the baseline: the metrics of the last full build in the chain of
incremental builds (recorded as `baseline_metrics`), so drift cannot accumulate. It gives up,
for a full build, when the change is larger than MAX_CHANGED of the training rows or when it
has not converged after MAX_SHARE of a full build's steps.
"""

import os

from s2build.engine import fingerprint

MAX_CHANGED = 0.2      # larger changes (share of training rows) get a full build
MAX_SHARE = 0.75       # give up after this share of a full build's optimizer steps
CHECK_EVERY = 5        # steps between convergence checks
TOLERANCE = 0.01       # holdout metric may trail the last full build's by this much
REPLAY_SHARE = 0.2     # edited rows per step: all of them, at least this share of a batch
RESUME_LR = 2.0        # fine-tuning learning rate, as a multiple of train.lr
MAX_THREADS = 4        # a dev build's torch threads: latency first (a release build: one)
WEIGHTS = "weights.pt"
OPTIMIZER = "optimizer.pt"


def dev_threads():
    """Threads for a dev build: the CPUs this process may use, at most MAX_THREADS. A dev
    build is not reproducible byte for byte anyway; a release build trains on one thread."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, n))


def _same_recipe(release, record):
    """Words for what differs besides source files, or [] when only sources changed."""
    what = []
    for field, label in (("holdout", "holdout files"), ("config", "config"),
                         ("user_code", "user code"), ("deps", "dependencies"),
                         ("toolchain", "toolchain")):
        if record.get(field) != getattr(release, field):
            what.append(label)
    return what


def incremental_inputs(release, parent):
    """`release` Inputs re-keyed as an incremental build on top of build `parent`."""
    inc = fingerprint.Inputs(release.sources, release.holdout, release.config,
                             release.user_code, release.deps, release.toolchain,
                             mode="incremental")
    inc.key = fingerprint.canonical_digest({"inputs": release.key, "mode": "incremental",
                                            "parent": parent})
    inc.parent, inc.release = parent, release
    return inc


def choose(target, release, record, cache):
    """(inputs, note): the Inputs a dev build of `target` uses and, for a build, a note in
    words saying whether it is incremental or full and why."""
    if cache.has(release.key) or not record or record.get("key") == release.key:
        return release, "full build" if not record else None
    if record.get("mode") == "incremental" and record.get("inputs_key") == release.key:
        inc = incremental_inputs(release, record.get("parent"))
        return inc, None
    other = _same_recipe(release, record)
    if other:
        return release, "full build: " + ", ".join(other) + " changed"
    entry = cache.entry_dir(record["key"])
    if not all(os.path.isfile(os.path.join(entry, f)) for f in (WEIGHTS, OPTIMIZER)):
        return release, "full build: the last build kept no weights or optimizer state"
    inc = incremental_inputs(release, record["key"])
    return inc, f"incremental from {record['key'][:12]}"


# --- Training (torch) ----------------------------------------------------------------------

def load_parent(cache, key):
    """{"state_dict", "optimizer_state", "row_hash" (set of bytes), "classes", "metrics"} of
    cached build `key`, or None when its entry lacks what a warm start needs or is damaged
    (each file is checked against the SHA-256 its record holds: torch.load does not notice a
    flipped byte in a tensor; a damaged entry is dropped with a warning, see store/local.py)."""
    import io

    import numpy as np
    import torch
    record = cache.record(key)
    if record is None:
        return None
    blobs = {}
    for name in (WEIGHTS, OPTIMIZER, "dynamics.npz", "rows.npz"):
        blobs[name] = cache.read_file(key, name, record)
        if blobs[name] is None and name in (WEIGHTS, OPTIMIZER):
            return None
    try:
        state_dict = torch.load(io.BytesIO(blobs[WEIGHTS]), map_location="cpu", weights_only=True)
        opt_state = torch.load(io.BytesIO(blobs[OPTIMIZER]), map_location="cpu",
                               weights_only=True)
        rows = None
        for name in ("dynamics.npz", "rows.npz"):
            if blobs.get(name) is not None:
                with np.load(io.BytesIO(blobs[name]), allow_pickle=False) as z:
                    rows = {"row_hash": {bytes(h) for h in z["row_hash"].tolist()},
                            "classes": [str(c) for c in z["classes"].tolist()]}
                break
        metrics = record.get("baseline_metrics") or record.get("metrics") or {}
    except Exception:           # damaged past what the record can tell (an old entry): no parent
        return None
    if rows is None or not isinstance(state_dict, dict) or not isinstance(opt_state, dict) \
            or not isinstance(metrics, dict):
        return None
    return dict(rows, state_dict=state_dict, optimizer_state=opt_state, metrics=metrics)


def _main_metric(metrics):
    """(name, value, higher_is_better) of the first holdout metric, or None."""
    for name, v in metrics.items():
        return name, v, name not in ("mse", "mae") and not name.endswith("loss")
    return None


def finetune(target, ds, cache, parent_key, cancel=None, progress=None, threads=None):
    """(train.Trained, None) fine-tuned from build `parent_key`, or (None, why) when an
    incremental build does not apply or did not converge."""
    import time

    import numpy as np
    import torch

    from s2build.compile import models
    from s2build.compile import scoring
    from s2build.compile import train
    started = time.perf_counter()
    parent = load_parent(cache, parent_key)
    if parent is None:
        return None, "the last build's weights are unreadable"
    if ds.task == "classification" and list(parent["classes"]) != list(ds.classes):
        return None, "the classes changed"
    t = target.config["train"]
    torch.set_num_threads(threads or dev_threads())
    torch.manual_seed(t["seed"])
    device = train.pick_device(t["device"])

    train_rows = np.flatnonzero(~ds.holdout)
    old = parent["row_hash"]
    changed = np.asarray([i for i in train_rows if bytes(ds.row_hash[i]) not in old],
                         dtype=np.int64)                             # added or changed rows
    if len(changed) > MAX_CHANGED * len(train_rows):
        return None, f"{len(changed)} of {len(train_rows)} training rows changed"

    x_all, y_all = torch.from_numpy(ds.x), torch.from_numpy(ds.y)
    hold = torch.from_numpy(ds.holdout)
    n_outputs = len(ds.classes) if ds.task == "classification" else ds.y.shape[1]
    net = models.build(target, tuple(ds.x.shape[1:]), n_outputs, x_all[train_rows])
    try:
        net.load_state_dict(parent["state_dict"])
    except (RuntimeError, KeyError) as e:
        return None, f"the network's shape changed ({type(e).__name__})"
    net = net.to(device)
    loss_fn = scoring.loss_fn(target)
    metric_fns = scoring.metric_fns(target)
    opt = train.make_optimizer(net.parameters(), t)
    try:
        opt.load_state_dict(parent["optimizer_state"])
    except (ValueError, KeyError) as e:
        return None, f"the optimizer's state does not fit ({type(e).__name__})"
    for group in opt.param_groups:
        group["lr"] = t["lr"] * RESUME_LR
    gen = torch.Generator().manual_seed(t["seed"])
    xd, yd = x_all.to(device), y_all.to(device)
    bs = t["batch_size"]
    full_steps = t["epochs"] * -(-len(train_rows) // bs)
    max_steps = max(CHECK_EVERY, int(MAX_SHARE * full_steps))
    want = _main_metric(parent.get("metrics") or {})
    changed_t = torch.from_numpy(changed)
    x_hold, y_hold = x_all[hold], y_all[hold]             # the check's rows, copied once
    rest = torch.from_numpy(train_rows)

    def converged():
        net.eval()
        if len(changed):
            out, _ = train.forward_all(net, xd[changed_t.to(device)])
            yc = yd[changed_t.to(device)]
            if ds.task == "classification":
                if not bool((out.argmax(1) == yc).all()):
                    return False
            elif ds.task == "multilabel":
                if not bool(((out > 0).float() == yc).all()):
                    return False
        if want is not None:
            name, before, higher = want
            got = train.evaluate(net.cpu(), x_hold, y_hold, [m for m in metric_fns if m[0] == name])
            net.to(device)
            now = got.get(name)
            if now is None:
                return True
            return now >= before - TOLERANCE if higher else now <= before + TOLERANCE * max(1, abs(before))
        return True

    history, step = [], 0
    while True:
        if converged():
            break
        if step >= max_steps:
            return None, f"not converged after {step} fine-tuning steps"
        net.train()
        for _ in range(CHECK_EVERY):
            if cancel is not None and cancel.is_set():
                raise train.Cancelled()
            idx = rest[torch.randint(len(rest), (bs,), generator=gen)]   # keep what was learned
            if len(changed):                                                # replay the edits
                k = min(bs, max(len(changed), int(REPLAY_SHARE * bs)))
                idx = torch.cat([idx, changed_t if k == len(changed) else
                                 changed_t[torch.randint(len(changed), (k,), generator=gen)]])
            idx = idx.to(device)
            loss = loss_fn(net(xd[idx]), yd[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.item()))
            step += 1
        if not np.isfinite(history[-1]):
            return None, "fine-tuning diverged"
        if progress:
            progress(min(step, max_steps), max_steps, history[-1])
    net = net.to("cpu").eval()
    metrics = train.evaluate(net, x_hold, y_hold, metric_fns)
    trained = train.Trained(module=net, history=history, metrics=metrics,
                            seconds=time.perf_counter() - started, device=device, dynamics=None,
                            optimizer_state=train.cpu_state(opt))
    trained.baseline = parent["metrics"]
    return trained, None
