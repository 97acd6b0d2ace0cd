"""One target's work: produce a build (train, export, verify, cache entry), record it, or
restore a cached one. The sequential runner (runner.py) and the `-j` scheduler (parallel.py)
both call these; `produce` also runs inside a `-j` worker process (worker.py), which writes
only content-addressed files (shards, graphs, the cache entry, each tmp + os.replace), while the
parent alone installs outputs and writes state.json.
"""

import json
import os
import time

from s2build import atomic
from s2build.engine import explain
from s2build.engine import fingerprint
from s2build.engine import locking
from s2build.engine import record as records
from s2build.errors import S2Error, VerificationError
from s2build.report.console import Result


class Replan(Exception):
    """A source changed while it was read: fingerprint again (runner.build does, up to 3 times)."""


class Built:
    """What `produce` hands back: rec (the shared record), facts (the sidecar's facts), artifact
    (the ONNX bytes), detail (timings in words), changed (inputs edited during the build),
    parsed (files parsed)."""

    def __init__(self, rec, facts, artifact, detail, changed, parsed):
        self.rec, self.facts, self.artifact, self.detail = rec, facts, artifact, detail
        self.changed, self.parsed = changed, parsed


def _install(target, artifact, sidecar, step):
    """Write the output file and its sidecar `NAME.onnx.json` atomically (the sidecar, unlike
    the shared artifact and cache entry, names the target, its selected metrics and its last
    builds: record.builds); return the output's stat tuple."""
    sidecar["builds"] = records.builds(target, step, sidecar)   # read before it is replaced
    atomic.remove_leftovers(os.path.dirname(target.output) or ".")
    atomic.write_bytes(target.output, artifact)
    atomic.write_text(target.output + ".json", json.dumps(sidecar, sort_keys=True, indent=1))
    return fingerprint.stat_key(os.stat(target.output))


def restore(step, state, cache, remote=None):
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
    rec = records.local(step.target, record, _install(step.target, artifact, sidecar, step))
    state.targets[step.target.name] = rec
    state.save()
    return rec


def produce(step, project, files, cache, reporter, cancel, threads=None):
    """Train, export and verify one target and put its cache entry (content-addressed, written
    atomically: harmless when nothing records it). Writes no state, output or sidecar, so a
    `-j` worker process (engine/worker.py) can run it while its parent alone records.
    `files`: the state's stat cache (read only). `threads`: a dev build's fine-tuning threads
    (None: incremental.dev_threads; a release build trains on one). `cancel` set: raises
    train.Cancelled between training steps, and before the cache entry is written. Returns a
    Built."""
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    t, inputs = step.target, step.inputs
    timings = {}
    clock = time.perf_counter()
    store = ShardStore(project.state_dir)
    chained = bool(t.config.get("upstream"))        # the upstream runs over every raw row
    try:
        ds = data.load_dataset(t, inputs, store, allow_stream=not chained, lean=not chained)
    finally:
        for w in store.warnings:                    # damaged shards or pack: parsed again
            reporter.warn(w)
    chain = None
    if chained:                                     # features or soft labels from its artifact
        from s2build.compile import upstream
        chain = upstream.prepare(t, ds, project, inputs)
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
                                         progress=progress, threads=threads)
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
    from s2build.compile import distributed       # train: {nproc: N}: torchrun + DDP
    if trained is None and streamed:
        from s2build.compile import stream
        if distributed.world_size(t) > 1:
            reporter.warn(f"{t.name}: train.nproc: a streamed table trains in one process")
        trained = stream.fit_stream(t, ds, cancel=cancel, progress=progress)
    elif trained is None and distributed.world_size(t) > 1:
        trained = distributed.train(t, ds, project.state_dir, cancel=cancel, progress=progress)
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
    wrapper = models.Exported(trained.module, ds.task, t.config["export"]["embedding"],
                              t.loc("export", "embedding")).eval()
    raw_rows = (rows if chained else np.arange(len(rows))) if not streamed else None
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
        metadata=dict(records.provenance(t, inputs, ds, trained.metrics),
                      **(chain.facts() if chain is not None else {})),
        # a dev artifact never ships: the 10x faster exporter
        exporter=records.exporter_used(t, inputs), opset=t.config["export"]["opset"],
        graphs_dir=relink.graphs_dir(project.state_dir), extra_key=inputs.user_code)
    composed = chain is not None and chain.use == "features"
    if composed:                                    # the upstream graph in front: one file
        artifact = chain.compose(artifact)
    elif ds.prep is not None:                       # tables: raw columns in, prep in the graph
        from s2build.compile import prepgraph
        artifact = prepgraph.prepend(ds.prep, artifact)
    timings["export"] = time.perf_counter() - clock

    clock = time.perf_counter()
    feeds = chain.feeds(raw_rows) if composed else \
        ds.prep.feeds(ds.raw, raw_rows) if ds.prep is not None else None
    try:
        vr = verify.verify_onnx(artifact, wrapper, x_verify, feeds=feeds)
    except VerificationError as e:
        if e.location is None:
            user = ":" in t.config["model"]["type"]
            e.location = t.loc("model", "type") if user else t.loc("output")
            e.hint = e.hint or ("the exported graph computes something else than forward(): "
                                "Python branches on tensor values, .item() or .numpy() calls "
                                "are traced as constants; keep forward() to tensor operations"
                                if user else None)
        raise
    verify.assert_no_leaks(artifact, [project.root, os.path.expanduser("~")])
    timings["verify"] = time.perf_counter() - clock

    # Inputs are fingerprinted again: an edit that landed during training is not attributed to
    # this build (the artifact is recorded under the key of the bytes it was trained on). Stat
    # first: an edit changes a file's stat tuple, and racily-clean files are hashed again.
    seen = dict(inputs.sources, **inputs.holdout)
    now, _ = fingerprint.digest_files(list(seen), t.root, dict(files))
    changed = sorted(p for p in seen if now.get(p) != seen[p])

    rec = records.shared(inputs, trained.metrics, artifact)
    from s2build.compile.upstream import graph_digest
    rec["graph_sha256"] = graph_digest(artifact)    # what a downstream target's key holds
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
    if getattr(trained, "holdout_curve", None):     # per epoch, for the report (curve.py)
        facts["holdout_history"] = trained.holdout_curve
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
    if cancel is not None and cancel.is_set():
        raise train.Cancelled()
    cache.put(inputs.key, artifact, dict(rec, facts=facts), extra)
    detail = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()) + \
        f"; parsed {len(ds.parsed_files)} of {len(inputs.sources) + len(inputs.holdout)} files" + \
        f"; parity max|diff| {vr.max_abs_diff:.2e}; {graph_note}"
    return Built(rec, facts, artifact, detail, changed, ds.parsed_files)


def record_built(step, built, state):
    """Install a produced build (output, sidecar) and record it in state.json (the one writer:
    the process that holds the build lock). Returns the state record."""
    t = step.target
    sidecar = dict(built.facts, target=t.name, restored_from_cache=False,
                   metrics=records.selected_metrics(t, built.rec["metrics"]))
    rec = records.local(t, built.rec, _install(t, built.artifact, sidecar, step))
    state.targets[t.name] = rec
    state.save()
    return rec


def restore_step(step, state, cache, reporter, remote=None):
    """Restore `step` when its key is cached (a target with the same recipe built earlier in
    this run counts): its Result, or None when it must be built."""
    clock = time.perf_counter()
    restorable = step.action == "restore" or (step.action == "build"
                                              and cache.has(step.inputs.key))
    pulled = restorable and remote is not None and not cache.has(step.inputs.key)
    rec = restore(step, state, cache, remote) if restorable else None
    locking.warn_discarded(cache, reporter)
    if rec is None:
        return None
    t = step.target
    return Result(t.name, "restored", reasons=step.reasons, output=t.config["output"],
                  metrics=rec.get("metrics", {}), key=step.inputs.key,
                  seconds=time.perf_counter() - clock,
                  detail=f"remote cache {remote.url}" if pulled else "")


def built_result(step, rec, built, seconds):
    t = step.target
    r = Result(t.name, "built", reasons=step.reasons, output=t.config["output"],
               metrics=rec["metrics"], key=step.inputs.key, detail=built.detail,
               seconds=seconds, stale_after_build=built.changed)
    r.parsed_files = built.parsed
    return r


def failed(step, e, reporter):
    """The error to raise for a failed build, reported once as the target's result: an S2Error
    as it is; an exception raised in the target's user code (a forward, a loss) as a BuildError
    at that file:line; anything else, s2build's own bug, unchanged and unreported."""
    err = attribute(step, e)
    if err is None:
        return e
    reporter.done(Result(step.target.name, "failed", reasons=step.reasons, detail=str(err)))
    err.reported = True
    return err


def attribute(step, e):
    """`e` as an S2Error (user code's exceptions at their file:line), or None: s2build's bug."""
    if isinstance(e, S2Error):
        return e
    from s2build.compile import usercode
    return usercode.attribute(step.target, e)
