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

import time

from s2build import atomic
from s2build.engine import fingerprint
from s2build.engine import locking
from s2build.engine import buildone
from s2build.project import graph
from s2build.store import remote as remote_store
from s2build.store.local import Cache
from s2build.errors import S2Error
from s2build.report.console import Result
from s2build.engine.state import State
from s2build.engine import steps as steps_mod
from s2build.engine.steps import Step  # noqa: F401 (re-exported)


def plan(project, names, state, cache, mode="release", remote=None, pending=None):
    """[Step] for `names` (default all) and their dependencies, dependencies first; each
    decided by `plan.decide`. Updates state's stat cache in place (and refreshes a current
    record's `metrics` selection) and sets `state.dirty` when it learned something. `remote`:
    a store.remote.Remote whose keys count as cached (Step.remote says which). `pending`:
    {name: Reason} of targets reading a stale rule's outputs (engine/rules.py): not
    fingerprinted, planned as builds with an unknown key."""
    graph.check(project)
    steps, cached = [], remote_store.Keys(cache, remote)
    by_name = {}
    for name in graph.order(project, names):
        t = project.targets[name]
        if name in (pending or {}):
            step = Step(t, fingerprint.Pending(), [pending[name]], "build")
        else:
            step = steps_mod.plan_one(project, t, state, cache, cached, mode,
                                       steps_mod.upstream_digest(t, state, cache, by_name))
        by_name[name] = step
        steps.append(step)
    return steps


def build(project, names, reporter, wait=True, cancel=None, command="build", mode="release",
          jobs=None, fail_fast=False):
    """Bring `names` (default all) up to date. Returns [Result]; raises S2Error on failure
    (after reporting the failed target), train.Cancelled when `cancel` (a threading.Event) is
    set during training (nothing is recorded for that target). `jobs` > 1: independent targets
    train in up to that many worker processes (engine/parallel.py; a failure stops only its
    dependents unless `fail_fast`; their warm workers start before the lock is taken);
    otherwise one after the other in this process, stopping at the first failure. Rules named
    or needed run first (their outputs are sources)."""
    from s2build.engine import rulerun, rules
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

    pool = None
    if jobs and jobs > 1:       # warm workers: their imports overlap the lock and the plan
        from s2build.engine import parallel
        pool = parallel.start(project, steps, jobs)
    try:
        with locking.BuildLock(project.state_dir, f"s2build {command}", wait=wait,
                               on_wait=reporter.warn):
            cache.clean_tmp()
            atomic.sweep_leftovers(project.root, project.state_dir)
            for attempt in range(3):
                state = State.load(project.state_dir)
                if state.warning:
                    reporter.warn(state.warning)
                steps = plan(project, names, state, cache, mode, remote)
                try:
                    if jobs and jobs > 1:
                        return parallel.execute(steps, project, state, cache, reporter, jobs,
                                                fail_fast, remote, pool=pool,
                                                verbose=getattr(reporter, "verbose", False))
                    return _execute(steps, project, state, cache, reporter, cancel, remote)
                except _Replan:
                    reporter.warn("a source changed while it was read; fingerprinting again")
            raise S2Error("sources keep changing while being read; try again when edits settle")
    finally:
        if pool is not None:
            pool.close()


_Replan = buildone.Replan


def _current(step, state):
    """The Result of an up-to-date target, with the metrics its record selected."""
    rec = state.targets.get(step.target.name) or {}
    return Result(step.target.name, "up-to-date", output=step.target.config["output"],
                  key=step.inputs.key, metrics=rec.get("metrics") or {},
                  detail=getattr(step, "cutoff", ""))


def _execute(steps, project, state, cache, reporter, cancel, remote=None):
    from s2build.data.shards import SourcesChanged     # numpy only now that we build
    results = []
    for step in steps:
        step = steps_mod.settle(step, project, state, cache, remote)   # after the upstream it reads
        t = step.target
        clock = time.perf_counter()
        if step.action == "up-to-date":
            r = _current(step, state)
        else:
            r = buildone.restore_step(step, state, cache, reporter, remote)
            if r is None:
                reporter.start(t.name, "build", step.reasons)
                try:
                    built = buildone.produce(step, project, state.files, cache, reporter,
                                             cancel)
                except SourcesChanged:
                    raise _Replan() from None
                except Exception as e:
                    err = buildone.failed(step, e, reporter)
                    if err is e:
                        raise
                    raise err from e
                rec = buildone.record_built(step, built, state)
                if remote is not None:              # verified and recorded: share it
                    remote.push(step.inputs.key, cache)
                r = buildone.built_result(step, rec, built, time.perf_counter() - clock)
        locking.warn_discarded(cache, reporter)
        if state.dirty:
            state.save()
        reporter.done(r)
        results.append(r)
    if state.dirty:
        state.save()
    return results




def status(project, names, mode="release"):
    """([Step] for every wanted target, state), without writing anything (the remote, when
    configured, is asked only whether it holds a stale target's key). `mode`: as plan's."""
    from s2build.engine import rules
    state = State.load(project.state_dir)
    cache = Cache(project.state_dir)
    wanted_rules, names = rules.needed(project, names)
    state.rule_steps = rules.plan(project, wanted_rules, state, cache)   # `status` shows them
    steps = [] if names is None else plan(project, names, state, cache, mode,
                                          remote=remote_store.configured(project),
                                          pending=rules.pending(project, state.rule_steps))
    if cache.warnings:                              # a remote that failed: said, not fatal
        state.warning = "; ".join(filter(None, [state.warning, *cache.warnings]))
    return steps, state
