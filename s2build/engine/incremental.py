"""Incremental (dev) builds: warm-start from the previous build's weights and fine-tune.

A warm start reads, from the parent's cache entry: `weights.pt` (the trained state_dict),
`optimizer.pt` (the optimizer's state_dict when training ended: Adam's moment estimates, SGD's
momentum), the row hashes, holdout mask and class names of its rows (`dynamics.npz`, or `rows.npz` for
an incremental build, which records no dynamics) and its holdout metrics or baseline (`record.json`).

`choose(target, release, record, cache)` says how a dev build proceeds; the decision is
`plan.decide`'s (standard library only; it runs on the planning path):

    restore or up to date   the release key of these inputs is cached, or the current
                            artifact is an incremental build of exactly these inputs
    incremental             the last build differs only in its source files and left weights:
                            Inputs with mode=incremental, `parent` = its key and key =
                            SHA-256 of (release key, mode, parent key); never equal to a
                            release key, so release builds and `ci` never reuse it
    full                    anything else (first build, config, holdout, user code or
                            toolchain changed): a release build, said in words

The fine-tune itself (warm start, batches, convergence checks, the minimum budget for removed
rows) is a schedule of the trainer: `s2build.compile.finetune` (torch); the constants that
govern it live here, beside the decision it follows.
"""

import os

from s2build.engine import fingerprint
from s2build.engine import plan

MAX_CHANGED = 0.2      # larger changes (rows added, changed or removed) get a full build
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


def incremental_inputs(release, parent):
    """`release` Inputs re-keyed as an incremental build on top of build `parent`
    (key: plan.incremental_key)."""
    inc = fingerprint.Inputs(release.sources, release.holdout, release.config,
                             release.user_code, release.toolchain, mode="incremental")
    inc.key = plan.incremental_key(release.key, parent)
    inc.parent, inc.release = parent, release
    return inc


def kept_state(cache, key):
    """True when cached build `key` kept what a warm start needs (weights, optimizer state)."""
    entry = cache.entry_dir(key)
    return all(os.path.isfile(os.path.join(entry, f)) for f in (WEIGHTS, OPTIMIZER))


def choose(target, release, record, cache):
    """(inputs, note): the Inputs a dev build of `target` uses and, for a build, a note in
    words saying whether it is incremental or full and why. The decision is plan.decide's."""
    kept = bool(record) and record.get("key") != release.key and kept_state(cache, record["key"])
    d = plan.decide(release, record, _Has(cache), None, "dev", kept)
    inputs = incremental_inputs(release, d.parent) if d.parent is not None else release
    note = next((r.text for r in d.reasons if r.kind in ("full-build", "incremental")), None)
    return inputs, note if d.action in ("build", "incremental") else None


class _Has:
    def __init__(self, cache):
        self.cache = cache

    def __contains__(self, key):
        return self.cache.has(key)


def _main_metric(target, metrics):
    """(name, value, higher_is_better) of the first holdout metric in `metrics` (the parent's),
    or None; the direction is the registry's (a user metric's is declared in the yaml)."""
    from s2build.project import registry
    for name, v in metrics.items():
        up = registry.higher_is_better(target.config, name)
        return (name, v, up) if up is not None else None
    return None
