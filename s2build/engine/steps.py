"""A planned step, and planning one target: what `runner.plan` does per target, and what
`settle` does again for a target whose key waited for its upstream (engine/parallel.py calls
it too).

A target that reads another target's artifact (`upstream`) has the upstream's graph digest in
its key (compile/upstream.py). When the upstream is up to date or restorable from the local
cache, the digest is known from its record; otherwise the target is planned as a build with an
unknown key (fingerprint.Pending) and `settle` plans it again once the upstream is recorded: a
rebuilt upstream with the same graph leaves it up to date (early cutoff, said in `cutoff`).
"""

from s2build.engine import explain
from s2build.engine import fingerprint
from s2build.engine import record as records
from s2build.project import graph
from s2build.project import paths
from s2build.store import remote as remote_store


class Step:
    """target: config.Target; inputs: fingerprint.Inputs; reasons: [explain.Reason] ([] when
    up to date); action: up-to-date | restore | build; remote: True when the restore comes
    from the remote cache (the local cache lacks the key)."""

    def __init__(self, target, inputs, reasons, action, remote=False):
        self.target, self.inputs, self.reasons, self.action = target, inputs, reasons, action
        self.remote = remote
        self.cutoff = ""        # why an upstream rebuild left this target up to date


def upstream_digest(t, state, cache, by_name):
    """The graph digest of the artifact `t` reads (upstream.target; compile/upstream.py) as it
    will be when `t` builds,
    or None when `t` has no upstream; fingerprint.UNKNOWN when the upstream is still to be
    built (or restored from the remote): `t`'s key is known only after it."""
    up = graph.upstream(t)
    if up is None:
        return None
    step = by_name.get(up)
    if step is None or step.inputs.key is None:
        return fingerprint.UNKNOWN
    if step.action == "up-to-date":
        return (state.targets.get(up) or {}).get("graph_sha256") or fingerprint.UNKNOWN
    if step.action == "restore" and cache.has(step.inputs.key):
        return (cache.record(step.inputs.key) or {}).get("graph_sha256") or fingerprint.UNKNOWN
    return fingerprint.UNKNOWN


def plan_one(project, t, state, cache, cached, mode, upstream=None):
    """The Step of target `t` (see plan). `upstream`: the digest of the artifact it reads, or
    fingerprint.UNKNOWN (planned as a build whose key is known once the upstream is done)."""
    from s2build.engine import plan as decide_mod
    name = t.name
    record = state.targets.get(name)
    if upstream is fingerprint.UNKNOWN:
        why = explain.Reason("upstream-first", f"upstream '{graph.upstream(t)}' builds first; "
                                               "this target rebuilds if its graph changed")
        return Step(t, fingerprint.Pending(mode), [why], "build")
    inputs, hashed = fingerprint.target_inputs(t, state.files, record=record, mode="release",
                                               upstream=upstream)
    before = record.get("output_stat") if record else None
    status = explain.output_status(t, record) if record else None
    kept = False
    if mode == "dev" and record and record.get("key") != inputs.key:
        from s2build.engine import incremental
        kept = incremental.kept_state(cache, record["key"])
    d = decide_mod.decide(inputs, record, cached, status, mode, kept,
                          output_path=t.config["output"])
    if d.action != "up-to-date":
        paths.check_not_foreign(t, record)
    if d.parent is not None:
        from s2build.engine import incremental
        inputs = incremental.incremental_inputs(inputs, d.parent)
    if hashed or (record and record.get("output_stat") != before):
        state.dirty = True
    if d.action == "up-to-date" and records.reselect(t, record):
        state.dirty = True
    return Step(t, inputs, d.reasons, d.action,
                remote=d.action == "restore" and not cache.has(d.key))


def settle(step, project, state, cache, remote=None):
    """`step` with its key known, once the upstream it waited for is done (its artifact is
    recorded in state): planned again, so a byte-identical upstream artifact leaves this
    target up to date (early cutoff). Any other step is returned as it is."""
    if step.inputs.key is not None or not graph.upstream(step.target):
        return step
    rec = state.targets.get(graph.upstream(step.target)) or {}
    up = rec.get("graph_sha256")
    if up is None and rec.get("key"):               # a record from before graph digests
        from s2build.compile.upstream import graph_digest
        try:
            with open(project.targets[graph.upstream(step.target)].output, "rb") as f:
                up = graph_digest(f.read())
        except OSError:
            up = None
    if up is None:                                  # the upstream failed: nothing to settle
        return step
    new = plan_one(project, step.target, state, cache, remote_store.Keys(cache, remote),
                    getattr(step.inputs, "plan_mode", "release"), up)
    if new.action == "up-to-date":
        new.cutoff = f"upstream '{graph.upstream(step.target)}' was rebuilt with the same " \
            "graph: early cutoff"
    return new
