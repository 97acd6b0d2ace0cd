"""Plan and run builds: the make of s2build.

`plan(project, names, state, cache)` fingerprints each wanted target (dependencies first, which
is all a dependency does: its key is not in its dependents') and asks `plan.decide`, the one
place that decides, for one action per target and its reasons in words:

    up-to-date   the output is the artifact of the current build key
    restore      the key is cached, locally or remotely (store/remote.py): copy it out
    build        train, export, verify, then record (cache entry, output, state)
    incremental  (mode="dev": `build --dev`, `watch`) fine-tune the last build: its own key,
                 mode=incremental; when only source files changed a little

The cache entry and the ONNX file are shared by every target with the same key: they name no
target. The target's name, output and selected metrics are in state.json and the sidecar.

Rules (engine/rules.py, engine/rulerun.py) come first: `build` brings the rules the wanted
targets read up to date, so their outputs are final sources when the targets are planned;
`status` plans targets reading a stale rule's outputs as builds with an unknown key.

`build(...)` plans without the lock first: a no-op build never locks, never imports torch and
answers in milliseconds. Otherwise it takes `.s2build/lock`, plans again (another process may
have built meanwhile) and executes. A build is recorded only after verification: the cache
entry, then the output file and its sidecar `NAME.onnx.json`, then state.json, each written
atomically. A failure or Ctrl-C at any point leaves the previous artifact and cache intact.
"""

import json
import os
import time

from s2build import atomic
from s2build.engine import explain
from s2build.engine import fingerprint
from s2build.engine import locking
from s2build.engine import record as records
from s2build.project import graph
from s2build.store import remote as remote_store
from s2build.store.local import Cache
from s2build.errors import S2Error
from s2build.report.console import Result
from s2build.engine.state import State


class Step:
    """target: config.Target; inputs: fingerprint.Inputs; reasons: [explain.Reason] ([] when
    up to date); action: up-to-date | restore | build; remote: True when the restore comes
    from the remote cache (the local cache lacks the key)."""

    def __init__(self, target, inputs, reasons, action, remote=False):
        self.target, self.inputs, self.reasons, self.action = target, inputs, reasons, action
        self.remote = remote


def plan(project, names, state, cache, mode="release", remote=None, pending=None):
    """[Step] for `names` (default all) and their dependencies, dependencies first; each
    decided by `plan.decide`. Updates state's stat cache in place (and refreshes a current
    record's `metrics` selection) and sets `state.dirty` when it learned something. `remote`:
    a store.remote.Remote whose keys count as cached (Step.remote says which). `pending`:
    {name: Reason} of targets reading a stale rule's outputs (engine/rules.py): not
    fingerprinted, planned as builds with an unknown key."""
    from s2build.engine import plan as decide_mod
    graph.check(project)
    steps, cached = [], remote_store.Keys(cache, remote)
    for name in graph.order(project, names):
        t = project.targets[name]
        record = state.targets.get(name)
        if name in (pending or {}):
            steps.append(Step(t, fingerprint.Pending(), [pending[name]], "build"))
            continue
        inputs, hashed = fingerprint.target_inputs(t, state.files, record=record)
        before = record.get("output_stat") if record else None
        status = explain.output_status(t, record) if record else None
        kept = False
        if mode == "dev" and record and record.get("key") != inputs.key:
            from s2build.engine import incremental
            kept = incremental.kept_state(cache, record["key"])
        d = decide_mod.decide(inputs, record, cached, status, mode, kept,
                              output_path=t.config["output"])
        if d.parent is not None:
            from s2build.engine import incremental
            inputs = incremental.incremental_inputs(inputs, d.parent)
        if hashed or (record and record.get("output_stat") != before):
            state.dirty = True
        if d.action == "up-to-date" and records.reselect(t, record):
            state.dirty = True
        steps.append(Step(t, inputs, d.reasons, d.action,
                          remote=d.action == "restore" and not cache.has(d.key)))
    return steps


def _install(target, artifact, sidecar):
    """Write the output file and its sidecar `NAME.onnx.json` atomically (the sidecar, unlike
    the shared artifact and cache entry, names the target and its selected metrics); return the
    output's stat tuple."""
    atomic.remove_leftovers(os.path.dirname(target.output) or ".")
    atomic.write_bytes(target.output, artifact)
    atomic.write_text(target.output + ".json", json.dumps(sidecar, sort_keys=True, indent=1))
    return fingerprint.stat_key(os.stat(target.output))


def _restore(step, state, cache, remote=None):
    if remote is not None:      # pull a missing entry (verified), share a local one it lacks
        (remote.share if cache.has(step.inputs.key) else remote.pull)(step.inputs.key, cache)
    got = cache.get(step.inputs.key)
    if got is None:
        return None
    artifact, record = got
    facts = record.get("facts", {})
    sidecar = dict(facts, target=step.target.name, restored_from_cache=True,
                   metrics=records.selected_metrics(step.target, facts.get("metrics") or {}),
                   restored_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    rec = records.local(step.target, record, _install(step.target, artifact, sidecar))
    state.targets[step.target.name] = rec
    state.save()
    return rec


def _build_one(step, project, state, cache, reporter, cancel):
    """Train, export, verify and record one target. Returns (record, detail, changed_during)."""
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    t, inputs = step.target, step.inputs
    timings = {}
    clock = time.perf_counter()
    store = ShardStore(project.state_dir)
    try:
        ds = data.load_dataset(t, inputs, store, allow_stream=True, lean=True)
    finally:
        for w in store.warnings:                    # damaged shards or pack: parsed again
            reporter.warn(w)
    timings["data"] = time.perf_counter() - clock
    # then torch and the exporter (1-1.5 s in a fresh process, none in the server or watch).
    # Not imported beside the parse: its import holds the GIL the parse threads need, which
    # made a 1M-row parquet data stage 2x slower and the build 0.8 s slower (CSV: no gain).
    clock = time.perf_counter()
    from s2build.compile import models
    from s2build.compile import relink
    from s2build.compile import train
    from s2build.compile import verify
    timings["import"] = time.perf_counter() - clock
    for w in (ds.prep.warnings if ds.prep is not None else ()):
        reporter.warn(f"{t.name}: {w}")

    progress = lambda e, n, loss: reporter.progress(t.name, e, n, loss)   # noqa: E731
    trained = None
    if getattr(inputs, "parent", None):             # dev: fine-tune the last build's network
        from s2build.compile import finetune
        trained, why = finetune.finetune(t, ds, cache, inputs.parent, cancel=cancel,
                                         progress=progress)
        if trained is not None:                     # say what the fine-tune did
            step.reasons = [explain.Reason(r.kind, f"{r.text}: {trained.change}")
                            if r.kind == "incremental" else r for r in step.reasons]
        else:
            reporter.warn(f"{t.name}: {why}; full build instead")
            step.inputs = inputs = inputs.release
            step.reasons = [explain.Reason("full-build", f"full build: {why}")] + \
                [r for r in step.reasons if r.kind != "incremental"]
    streamed = ds.x is None                         # larger than train.memory: data/stream.py
    import numpy as np
    if not streamed:                                # the rows verification runs (tables:
        rows = data.verification_rows(ds.holdout)   # ds.raw holds only those (lean)
    if trained is None and streamed:
        from s2build.compile import stream
        trained = stream.fit_stream(t, ds, cancel=cancel, progress=progress)
    elif trained is None:
        from s2build.data import heap
        with heap.training():                       # per-epoch arrays go back when freed
            trained = train.train(t, ds, cancel=cancel, progress=progress)
    timings["train"] = trained.seconds
    from s2build.compile import usercode
    missed = fingerprint.note_runtime_deps(inputs, usercode.imported_files(t))
    if missed:
        reporter.warn(f"{t.name}: user code imported {', '.join(missed)} at run time, which the "
                      "import scan did not find; the next build includes it in the key")

    import torch
    from s2build.compile.measure import artifact_metrics
    trained.metrics = artifact_metrics(t, ds, trained)
    clock = time.perf_counter()
    wrapper = models.Exported(trained.module, ds.task).eval()
    raw_rows = np.arange(len(rows)) if not streamed else None
    if streamed:                                    # the verification rows the stream kept
        rows = raw_rows = np.arange(len(ds.raw))
        x = torch.from_numpy(ds.prep.transform(ds.raw))
        x_verify = x
    else:
        # copies of the rows export and verification read; the matrix itself, the largest
        # array of a big build, is freed: nothing reads it past the metrics (the peak RSS of a
        # 1M-row build was while the cache entry was written, with the matrix still held)
        x = torch.from_numpy(ds.x[: max(2, min(4, len(ds.x)))].copy())
        x_verify = torch.from_numpy(ds.x[rows])
        ds.x = np.empty((0,) + ds.x.shape[1:], dtype=ds.x.dtype)
    example = x[: max(2, min(4, len(x)))]
    if len(example) < 2:
        example = torch.cat([example, example])
    artifact, graph_note = relink.export_onnx(      # export.export_onnx's bytes, relinked
        wrapper, example, output_names=wrapper.output_names,
        metadata=records.provenance(t, inputs, ds, trained.metrics),
        # a dev artifact never ships: the 10x faster exporter
        exporter=records.exporter_used(t, inputs), opset=t.config["export"]["opset"],
        graphs_dir=relink.graphs_dir(project.state_dir), extra_key=inputs.user_code)
    if ds.prep is not None:                         # tables: raw columns in, prep in the graph
        from s2build.compile import prepgraph
        artifact = prepgraph.prepend(ds.prep, artifact)
    timings["export"] = time.perf_counter() - clock

    clock = time.perf_counter()
    feeds = ds.prep.feeds(ds.raw, raw_rows) if ds.prep is not None else None
    vr = verify.verify_onnx(artifact, wrapper, x_verify, feeds=feeds)
    verify.assert_no_leaks(artifact, [project.root, os.path.expanduser("~")])
    timings["verify"] = time.perf_counter() - clock

    # Inputs are fingerprinted again: an edit that landed during training is not attributed to
    # this build (the artifact is recorded under the key of the bytes it was trained on). Stat
    # first: an edit changes a file's stat tuple, and racily-clean files are hashed again.
    seen = dict(inputs.sources, **inputs.holdout)
    now, _ = fingerprint.digest_files(list(seen), t.root, dict(state.files))
    changed = sorted(p for p in seen if now.get(p) != seen[p])

    rec = records.shared(inputs, trained.metrics, artifact)
    if getattr(trained, "baseline", None):          # incremental: the full build's metrics
        rec["baseline_metrics"] = trained.baseline
    facts = {"build_key": inputs.key, "artifact_sha256": rec["artifact_sha256"],
             "mode": inputs.mode, "metrics": trained.metrics, "history": trained.history,
             "timings": {k: round(v, 4) for k, v in timings.items()},
             "rows": {"train": ds.n_train, "holdout": ds.n_holdout},
             "parsed_files": len(ds.parsed_files),
             "parsed_blocks": ds.blocks.get("parsed", 0),
             "reused_blocks": ds.blocks.get("reused", 0),
             "verification": {"max_abs_diff": vr.max_abs_diff, "tolerance": vr.tolerance,
                              "argmax_agreement": vr.argmax_agreement, "rows": vr.n_rows},
             "host": os.uname().nodename, "device": trained.device,
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    import io
    extra = {}
    if trained.dynamics is not None:
        buf = io.BytesIO()
        # uncompressed: float dynamics shrink only ~25% under zlib, which took 0.6 s of a 2.6 s
        # digits build; np.savez takes 0.02 s
        origins = ds.origins.arrays() if hasattr(ds.origins, "arrays") else \
            {"origins": np.asarray(list(ds.origins), dtype=np.str_)}
        np.savez(buf, **origins,
                 row_hash=ds.row_hash, holdout=ds.holdout, y=ds.y,
                 classes=np.asarray(ds.classes, dtype=np.str_), **trained.dynamics.arrays())
        extra["dynamics.npz"] = buf.getbuffer()       # no second copy (62 MB at 1M rows)
    elif not streamed:          # incremental builds: the rows a later warm start compares with
        buf = io.BytesIO()
        np.savez_compressed(buf, row_hash=ds.row_hash, holdout=ds.holdout,
                            classes=np.asarray(ds.classes, dtype=np.str_))
        extra["rows.npz"] = buf.getvalue()
    weights = io.BytesIO()
    torch.save(trained.module.state_dict(), weights)
    extra["weights.pt"] = weights.getvalue()      # the trained network, for blame and warm starts
    if trained.optimizer_state is not None:       # where an incremental build resumes training
        buf = io.BytesIO()
        torch.save(trained.optimizer_state, buf)
        extra["optimizer.pt"] = buf.getvalue()
    cache.put(inputs.key, artifact, dict(rec, facts=facts), extra)
    sidecar = dict(facts, target=t.name, restored_from_cache=False,
                   metrics=records.selected_metrics(t, trained.metrics))
    rec = records.local(t, rec, _install(t, artifact, sidecar))
    state.targets[t.name] = rec
    state.save()
    detail = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()) + \
        f"; parsed {len(ds.parsed_files)} of {len(inputs.sources) + len(inputs.holdout)} files" + \
        f"; parity max|diff| {vr.max_abs_diff:.2e}; {graph_note}"
    return rec, detail, changed, ds.parsed_files


def build(project, names, reporter, wait=True, cancel=None, command="build", mode="release"):
    """Bring `names` (default all) up to date. Returns [Result]; raises S2Error on failure
    (after reporting the failed target), train.Cancelled when `cancel` (a threading.Event) is
    set during training (nothing is recorded for that target)."""
    from s2build.engine import rulerun, rules       # rules first: their outputs are sources
    wanted_rules, names = rules.needed(project, names)
    ran = rulerun.bring_up_to_date(project, wanted_rules, reporter, wait, command)
    if names is None:                               # only rules were named
        return ran
    state = State.load(project.state_dir)
    cache = Cache(project.state_dir)
    remote = remote_store.configured(project)       # None, or a Remote (fsspec when asked)
    steps = plan(project, names, state, cache, mode, remote)
    if all(s.action == "up-to-date" for s in steps):
        if state.dirty:
            locking.save_if_free(project, state)
        for w in [state.warning] if state.warning else []:
            reporter.warn(w)
        results = [_current(s, state) for s in steps]
        for r in results:
            reporter.done(r)
        return results

    with locking.BuildLock(project.state_dir, f"s2build {command}", wait=wait, on_wait=reporter.warn):
        cache.clean_tmp()
        for attempt in range(3):
            state = State.load(project.state_dir)
            if state.warning:
                reporter.warn(state.warning)
            steps = plan(project, names, state, cache, mode, remote)
            try:
                return _execute(steps, project, state, cache, reporter, cancel, remote)
            except _Replan:
                reporter.warn("a source changed while it was read; fingerprinting again")
        raise S2Error("sources keep changing while being read; try again when edits settle")


class _Replan(Exception):
    pass


def _current(step, state):
    """The Result of an up-to-date target, with the metrics its record selected."""
    rec = state.targets.get(step.target.name) or {}
    return Result(step.target.name, "up-to-date", output=step.target.config["output"],
                  key=step.inputs.key, metrics=rec.get("metrics") or {})


def _execute(steps, project, state, cache, reporter, cancel, remote=None):
    from s2build.data.shards import SourcesChanged     # numpy only now that we build
    results = []
    for step in steps:
        t = step.target
        clock = time.perf_counter()
        if step.action == "up-to-date":
            r = _current(step, state)
        else:
            # a target with the same recipe built earlier in this run made it restorable
            restorable = step.action == "restore" or (step.action == "build"
                                                      and cache.has(step.inputs.key))
            pulled = restorable and remote is not None and not cache.has(step.inputs.key)
            rec = _restore(step, state, cache, remote) if restorable else None
            locking.warn_discarded(cache, reporter)
            if rec is not None:
                r = Result(t.name, "restored", reasons=step.reasons, output=t.config["output"],
                           metrics=rec.get("metrics", {}), key=step.inputs.key,
                           seconds=time.perf_counter() - clock,
                           detail=f"remote cache {remote.url}" if pulled else "")
            else:
                reporter.start(t.name, "build", step.reasons)
                try:
                    rec, detail, changed, parsed = _build_one(step, project, state, cache,
                                                              reporter, cancel)
                except SourcesChanged:
                    raise _Replan() from None
                except Exception as e:
                    err = _failed(step, e, reporter)
                    if err is e:
                        raise
                    raise err from e
                if remote is not None:              # verified and recorded: share it
                    remote.push(step.inputs.key, cache)
                r = Result(t.name, "built", reasons=step.reasons, output=t.config["output"],
                           metrics=rec["metrics"], key=step.inputs.key, detail=detail,
                           seconds=time.perf_counter() - clock, stale_after_build=changed)
                r.parsed_files = parsed
        locking.warn_discarded(cache, reporter)
        if state.dirty:
            state.save()
        reporter.done(r)
        results.append(r)
    if state.dirty:
        state.save()
    return results


def _failed(step, e, reporter):
    """The error to raise for a failed build, reported once as the target's result: an S2Error
    as it is; an exception raised in the target's user code (a forward, a loss) as a BuildError
    at that file:line; anything else, s2build's own bug, unchanged and unreported."""
    err = e
    if not isinstance(e, S2Error):
        from s2build.compile import usercode
        err = usercode.attribute(step.target, e)
        if err is None:
            return e
    reporter.done(Result(step.target.name, "failed", reasons=step.reasons, detail=str(err)))
    err.reported = True
    return err


def status(project, names):
    """([Step] for every wanted target, state), without writing anything (the remote, when
    configured, is asked only whether it holds a stale target's key)."""
    from s2build.engine import rules
    state = State.load(project.state_dir)
    cache = Cache(project.state_dir)
    wanted_rules, names = rules.needed(project, names)
    state.rule_steps = rules.plan(project, wanted_rules, state, cache)   # `status` shows them
    steps = [] if names is None else plan(project, names, state, cache,
                                          remote=remote_store.configured(project),
                                          pending=rules.pending(project, state.rule_steps))
    if cache.warnings:                              # a remote that failed: said, not fatal
        state.warning = "; ".join(filter(None, [state.warning, *cache.warnings]))
    return steps, state
