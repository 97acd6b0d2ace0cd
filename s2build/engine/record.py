"""What a build writes down about itself, in four places:

    shared(inputs, metrics, artifact)   the cache entry's record.json: the facts that identify
                                        the build, shared by every target with the same key
                                        (no target name, no output path)
    local(target, shared, output_stat)  state.json's per-target record: the shared facts plus
                                        the target's name, output, its stat and the metrics
                                        its `metrics:` list selects
    provenance(target, inputs, ds, m)   the ONNX file's metadata_props: no timestamps, no
                                        absolute paths, no target name
    builds(target, step, sidecar)       the sidecar's `builds`: this target's last MAX_BUILDS
                                        builds and restores, oldest first, carried over from
                                        the sidecar it replaces (never in the key, the
                                        artifact or the cache entry)

Standard library only (the no-op path re-selects metrics through `reselect`).
"""

import hashlib
import json

from s2build.engine import fingerprint

MAX_BUILDS = 50            # entries of the sidecar's `builds` history
MAX_CHANGES = 10           # reasons kept per entry (then "+N more")


def selected_metrics(target, metrics):
    """The metrics `target`'s `metrics:` list selects from all that its artifact records
    (user metrics `file.py:fn` are named `fn`), in the list's order."""
    from s2build.project import registry
    names = [use.name for use in registry.metrics_of(target.config)]
    return {n: metrics[n] for n in names if n in metrics}


def reselect(target, record):
    """Refresh a current record's reported metrics after the `metrics:` list changed (no
    retraining: the artifact records every built-in metric). True when it changed."""
    every = record.get("artifact_metrics")
    if not isinstance(every, dict):
        return False
    chosen = selected_metrics(target, every)
    if chosen == record.get("metrics"):
        return False
    record["metrics"] = chosen
    return True


def shared(inputs, metrics, artifact):
    """The facts that identify a build, shared by every target with the same key (the cache
    entry's record.json): no target name, no output path. `metrics`: all the artifact records."""
    return {"key": inputs.key, "mode": inputs.mode,
            "sources": inputs.sources, "holdout": inputs.holdout, "user_code": inputs.user_code,
            "config": inputs.config, "toolchain": inputs.toolchain,
            "metrics": metrics, "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
            "artifact_size": len(artifact), **fingerprint.user_record(inputs),
            **({"parent": inputs.parent, "inputs_key": inputs.release.key}
               if getattr(inputs, "parent", None) else {})}


def local(target, shared, output_stat):
    """state.json's record of `target`: the shared record plus its name, output and the
    metrics its `metrics:` list selects (`artifact_metrics`: all the artifact records)."""
    rec = {k: v for k, v in shared.items() if k != "facts"}
    every = rec.get("metrics") or {}
    rec.update(target=target.name, output=target.config["output"], output_stat=output_stat,
               artifact_metrics=every, metrics=selected_metrics(target, every))
    return rec


def provenance(target, inputs, ds, metrics):
    """ONNX metadata_props: identify the build; no timestamps, no absolute paths, and nothing
    the build key does not cover: no target name (targets with the same recipe share the
    artifact; the name is in state.json and the sidecar), no dependency keys. `metrics`: every
    built-in metric of the task and the user metrics (so the `metrics:` list cannot change
    the bytes)."""
    compact = lambda o: json.dumps(o, sort_keys=True, separators=(",", ":"))  # noqa: E731
    return {
        "s2build.build_key": inputs.key,
        "s2build.mode": inputs.mode,
        "s2build.sources": compact(inputs.sources),
        "s2build.holdout_sources": compact(inputs.holdout),
        "s2build.user_code": compact(inputs.user_code),
        "s2build.config": compact(inputs.config),
        "s2build.config_digest": fingerprint.canonical_digest(inputs.config),
        "s2build.exporter": exporter_used(target, inputs),
        "s2build.toolchain": compact(inputs.toolchain),
        "s2build.metrics": compact({k: float(f"{v:.6g}") for k, v in metrics.items()}),
        "s2build.task": ds.task,
        "s2build.classes": compact(ds.classes),
        **(_table_facts(ds, compact) if ds.prep is not None else {
            "s2build.features": compact(ds.features),
            "s2build.input_shape": compact(list(ds.x.shape[1:]))}),
        "s2build.loader": compact(target.config["loader"]),
        "s2build.rows": compact({"train": ds.n_train, "holdout": ds.n_holdout}),
        **({"s2build.parent": inputs.parent} if getattr(inputs, "parent", None) else {}),
    }


def _table_facts(ds, compact):
    """A table artifact takes raw columns: its features are the columns (one graph input
    each), and the fitted preprocessing (vocabularies, statistics) is recorded with them."""
    return {"s2build.features": compact(ds.raw.names),
            "s2build.columns": compact(dict(zip(ds.raw.names, ds.raw.kinds))),
            "s2build.input_shape": compact([len(ds.raw.names)]),
            "s2build.prep": compact(ds.prep.to_json())}


def exporter_used(target, inputs):
    """The exporter a build of `inputs` uses: a dev artifact never ships, so an incremental
    build takes the 10x faster legacy exporter whatever `export.exporter` says."""
    return "legacy" if inputs.mode == "incremental" else target.config["export"]["exporter"]


def builds(target, step, sidecar):
    """The `builds` list of the sidecar about to replace `target`'s: the previous sidecar's
    entries (when it is JSON naming this target; anything else starts the history over) and
    one for this build, the last MAX_BUILDS. An entry:

        {"at": time, "key": build key (12 hex), "mode": "release" | "incremental",
         "restored": bool (from the cache, not trained), "metrics": {the selected metrics},
         "changes": [the planner's reasons in words, at most MAX_CHANGES, then "+N more"]}
    """
    try:
        with open(target.output + ".json", "rb") as f:
            old = json.loads(f.read())
        past = old.get("builds") if old.get("target") == target.name else None
        past = [b for b in past if isinstance(b, dict)] if isinstance(past, list) else []
    except (OSError, ValueError, AttributeError, RecursionError):
        past = []
    why = [r.text for r in step.reasons]
    if len(why) > MAX_CHANGES:
        why = why[:MAX_CHANGES - 1] + [f"+{len(why) - MAX_CHANGES + 1} more"]
    restored = bool(sidecar.get("restored_from_cache"))
    entry = {"at": sidecar.get("restored_at" if restored else "built_at"),
             "key": str(sidecar.get("build_key") or step.inputs.key)[:12],
             "mode": sidecar.get("mode"), "restored": restored,
             "metrics": sidecar.get("metrics") or {}, "changes": why}
    return (past + [entry])[-MAX_BUILDS:]
