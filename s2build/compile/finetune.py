"""Fine-tuning: a dev build's schedule of the trainer (the torch side of engine/incremental.py).

`finetune(target, ds, cache, parent_key)` runs `train.fit` with the FineTune schedule:

    warm start  the parent's network and optimizer state (`load_parent`), at RESUME_LR times
                `train.lr`. (A fresh Adam would take lr-sized first steps in every weight and
                knock the converged network off its minimum; the resumed moment estimates keep
                the steps of weights the edit does not concern small.) Up to MAX_THREADS
                threads: byte-for-byte reproducibility is what release builds promise, latency is
                what dev builds are for.
    batches     each step: `train.batch_size` random training rows (so the rest is not
                forgotten) plus the added or changed rows, replayed (all of them, drawn with
                repeats up to REPLAY_SHARE of a batch when they are few, at most a batch); one
                mean loss over both.
    stop        every CHECK_EVERY steps, once the minimum budget is spent: every added or changed
                row is predicted as labelled (classification and multilabel; regression has no
                such test) and the first holdout metric is back within TOLERANCE of the
                baseline (the metrics of the last full build in the chain, recorded as
                `baseline_metrics`, so drift cannot accumulate). Not converged after MAX_SHARE
                of a full build's steps: a full build instead.

The change is a multiset difference of row hashes (content and label) between the parent's
training rows and the new ones: `added` rows are new or changed, `removed` parent rows are gone
(a changed row counts in both: its new version is added, its old one removed). Its size is
max(added, removed): exact for edits in place, pure additions and pure removals, at least half
the true count when additions and removals mix. Larger than MAX_CHANGED of the training rows:
a full build.

Why a minimum budget for removals: a removed row has nothing to replay and no check to pass (the
parent already fits the remaining rows, so the checks hold at step 0 and the artifact would be
the parent's weights: the deleted rows still in it). An edited row's old version is unlearned by
replaying its new one; a row removed without replacement (removed - added of them) took part in
`train.epochs` steps of the parent's training, one row-gradient each. The fine-tune gives the
remaining rows at least as many row-gradients: ceil(unpaired * epochs / batch_size) steps of
random batches (rounded up to CHECK_EVERY), so the removed rows' pull is outweighed by the
remaining data's. It costs a single removed row about epochs / batch_size steps.
"""

import collections
import io
import math

import numpy as np
import torch

from s2build.compile import train
from s2build.project import registry
from s2build.engine.incremental import (CHECK_EVERY, MAX_CHANGED, MAX_SHARE, OPTIMIZER,
                                        REPLAY_SHARE, RESUME_LR, TOLERANCE, WEIGHTS,
                                        _main_metric, dev_threads)


class NotApplicable(Exception):
    """The parent cannot be fine-tuned, or did not converge: the message says why."""


def load_parent(cache, key):
    """{"state_dict", "optimizer_state", "row_hash" (Counter of the training rows' hashes, bytes),
    "classes", "metrics"} of cached build `key`, or None when its entry lacks what a warm start
    needs or is damaged (each file is checked against the SHA-256 its record holds: torch.load
    does not notice a flipped byte in a tensor; a damaged entry is dropped with a warning, see
    store/local.py). Training rows: `holdout` of `dynamics.npz` or `rows.npz` says which; an
    older `rows.npz` without it holds every row ("holdout" False: the caller drops the
    holdout's hashes)."""
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
                    hashes = z["row_hash"]
                    split = "holdout" in z.files
                    if split:
                        hashes = hashes[~z["holdout"].astype(bool)]
                    rows = {"row_hash": collections.Counter(bytes(h) for h in hashes.tolist()),
                            "holdout": split, "classes": [str(c) for c in z["classes"].tolist()]}
                break
        metrics = record.get("baseline_metrics") or record.get("metrics") or {}
    except Exception:           # damaged past what the record can tell (an old entry): no parent
        return None
    if rows is None or not isinstance(state_dict, dict) or not isinstance(opt_state, dict) \
            or not isinstance(metrics, dict):
        return None
    return dict(rows, state_dict=state_dict, optimizer_state=opt_state, metrics=metrics)


def row_change(parent, ds):
    """(added, removed, n_parent): positions in the training rows of rows the parent did not
    train on (int64), how many of the parent's training rows are gone, its training rows."""
    left = collections.Counter(parent["row_hash"])
    if not parent.get("holdout", True):
        left.subtract(bytes(h) for h in ds.row_hash[ds.holdout].tolist())
        left = +left
    n_parent = sum(left.values())
    added = []
    for pos, h in enumerate(ds.row_hash[~ds.holdout].tolist()):
        h = bytes(h)
        if left[h] > 0:
            left[h] -= 1
        else:
            added.append(pos)
    return np.asarray(added, dtype=np.int64), sum(left.values()), n_parent


def change_words(added, removed, n):
    """'3 of 60 training rows changed, 2 removed': edits in place first (as many as both
    counts allow), then pure additions or removals."""
    changed = min(added, removed)
    parts = [f"{k} {w}" for k, w in ((changed, "changed"), (added - changed, "added"),
                                      (removed - changed, "removed")) if k]
    if not parts:
        return f"0 of {n} training rows changed"
    count, word = parts[0].split(" ", 1)
    return f"{count} of {n} training rows {word}" + "".join(", " + p for p in parts[1:])


class FineTune:
    """The dev builds' schedule (see the module docstring). After a run: `steps` taken."""

    def __init__(self, target, ds, parent, added, removed, threads):
        t = target.config["train"]
        self.task, self.parent, self.threads = ds.task, parent, threads
        self.bs = t["batch_size"]
        self.lr = t["lr"] * RESUME_LR
        self.gen = torch.Generator().manual_seed(t["seed"])
        self.n_train = int((~ds.holdout).sum())
        full_steps = t["epochs"] * -(-self.n_train // self.bs)
        self.max_steps = max(CHECK_EVERY, int(MAX_SHARE * full_steps))
        unpaired = max(0, removed - len(added))
        self.min_steps = min(self.max_steps, CHECK_EVERY * math.ceil(
            math.ceil(unpaired * t["epochs"] / self.bs) / CHECK_EVERY))
        self.added = torch.from_numpy(added)
        recorded = parent.get("metrics") or {}      # all that the parent's artifact records
        chosen = [use.name for use in registry.metrics_of(target.config)]
        self.want = _main_metric(target, {n: recorded[n] for n in chosen if n in recorded}
                                 or recorded)
        self.steps = 0

    def start(self, run):
        try:
            run.net.load_state_dict(self.parent["state_dict"])
        except (RuntimeError, KeyError) as e:
            raise NotApplicable(f"the network's shape changed ({type(e).__name__})") from None
        try:
            run.opt.load_state_dict(self.parent["optimizer_state"])
        except (ValueError, KeyError) as e:
            raise NotApplicable(f"the optimizer's state does not fit ({type(e).__name__})") \
                from None
        for group in run.opt.param_groups:
            group["lr"] = self.lr

    def batches(self, run, r):
        self.steps = r * CHECK_EVERY
        if self.steps >= self.min_steps and self.converged(run):
            return None
        if self.steps >= self.max_steps:
            raise NotApplicable(f"not converged after {self.steps} fine-tuning steps")
        out, added = [], self.added
        for _ in range(CHECK_EVERY):
            idx = torch.randint(self.n_train, (self.bs,), generator=self.gen)  # keep the rest
            if len(added):                                                     # replay edits
                k = min(self.bs, max(len(added), int(REPLAY_SHARE * self.bs)))
                idx = torch.cat([idx, added if k == len(added) else
                                 added[torch.randint(len(added), (k,), generator=self.gen)]])
            out.append(idx)
        return out

    def done(self, r):
        return min((r + 1) * CHECK_EVERY, self.max_steps), self.max_steps

    def converged(self, run):
        net, device = run.net, run.device
        net.eval()
        if len(self.added):
            on = self.added.to(device)
            out, _ = train.forward_all(net, run.xd[on])
            yc = run.yd[on]
            if self.task == "classification" and not bool((out.argmax(1) == yc).all()):
                return False
            if self.task == "multilabel" and not bool(((out > 0).float() == yc).all()):
                return False
        if self.want is None:
            return True
        name, before, higher = self.want
        got = train.evaluate(net.cpu(), run.x_hold, run.y_hold,
                             [m for m in run.metric_fns if m[0] == name])
        net.to(device)
        now = got.get(name)
        if now is None:
            return True
        return now >= before - TOLERANCE if higher else \
            now <= before + TOLERANCE * max(1, abs(before))


def finetune(target, ds, cache, parent_key, cancel=None, progress=None, threads=None):
    """(train.Trained, None) fine-tuned from build `parent_key`, or (None, why) when an
    incremental build does not apply or did not converge. The Trained also has `baseline` (the
    metrics a later fine-tune compares with) and `change` (words: the rows that changed and the
    steps taken, for the built line)."""
    parent = load_parent(cache, parent_key)
    if parent is None:
        return None, "the last build's weights are unreadable"
    if ds.task == "classification" and list(parent["classes"]) != list(ds.classes):
        return None, "the classes changed"
    added, removed, n_parent = row_change(parent, ds)
    n = max(n_parent, int((~ds.holdout).sum()))
    words = change_words(len(added), removed, n)
    if max(len(added), removed) > MAX_CHANGED * n:
        return None, words
    schedule = FineTune(target, ds, parent, added, removed, threads or dev_threads())
    try:
        trained = train.fit(target, ds, schedule, cancel, progress)
    except NotApplicable as e:
        return None, str(e)
    except train.Diverged:
        return None, "fine-tuning diverged"
    trained.baseline = parent["metrics"]
    trained.change = f"{words}, {schedule.steps} steps"
    return trained, None
