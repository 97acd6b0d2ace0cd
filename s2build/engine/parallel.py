"""`-j N`: build independent targets in parallel on warm lanes, one writer of state.

`execute(steps, ..., pool)` takes the runner's plan (dependencies first) and runs it as a DAG:
a target starts when every dependency in the plan is done. Up-to-date and cached targets are
handled here in the parent (restores are milliseconds); a target that must be trained goes to
an idle, ready lane of `pool` (engine/pool.py): a warm worker process that imported torch once
and builds job after job (engine/worker.py), or, when the parent has torch imported already
(`parent_lane`: the build server), the parent itself in a thread. `start(project, steps,
jobs)` makes the pool with `width(steps)` lanes at most (the most builds the plan can run at
once; one lane: the parent alone); runner.build calls it before taking the lock, so the
workers import while the parent waits for the lock and plans again. A job waits for a ready
lane rather than queueing behind a worker's imports; a worker that dies is replaced while
work remains. The parent holds `.s2build/lock` for the whole run and alone writes
state.json, outputs and sidecars (`buildone.record_built`) and pushes to the remote; a lane
writes only content-addressed files (shards, graphs, its cache entry).

Output: each lane's line reaches the parent's stdout or stderr whole, prefixed `[TARGET] `;
the outcome lines (`wine: built in ...`) are the reporter's, as without -j; under -v a built
target's detail ends with the lane that built it (`built by worker 4242 (2nd target)`).

Failures: a failing target does not stop independent ones; its dependents are `skipped`
(reported, with the dependency that failed); a worker that dies fails its target (exit 70).
With `fail_fast`, the first failure stops the busy lanes (SIGTERM; the parent lane between
two steps; reported `cancelled`) and skips the rest. At the end, when anything failed,
`BuildsFailed` is raised with the worst (highest) exit code of the failures.

Interrupts: Ctrl-C or SIGTERM in the parent (or the build server's cancel, which is a SIGINT
to its main thread) stops every busy lane, waits for them (SIGKILL after STOP_WAIT seconds)
and re-raises; the pool's close removes the result files: nothing half-written is left (a
cache entry is either whole or under the cache's tmp/, which the next build clears), nothing
is recorded for an unfinished target, and the lock dies with the parent's `with`.
"""

import signal
import sys
import time

from s2build import errors
from s2build.engine import buildone
from s2build.engine import locking
from s2build.engine import pool as pool_mod
from s2build.errors import S2Error
from s2build.project import graph
from s2build.report.console import Result


class BuildsFailed(S2Error):
    """Some targets of a `-j` build failed (each already reported); exit_code is the worst."""

    def __init__(self, failed, skipped, code):
        text = ", ".join(f"{n} (exit {c})" for n, c in failed)
        msg = f"{len(failed)} target{'s' if len(failed) != 1 else ''} failed: {text}"
        if skipped:
            msg += f"; skipped: {', '.join(skipped)}"
        super().__init__(msg)
        self.exit_code = code
        self.reported = True


def width(steps):
    """How many of `steps` can train at once, at most: the largest number of builds at one
    depth of the plan's graph of builds (a build's depth: 1 + its deepest build dependency)."""
    by_name = {s.target.name: s for s in steps}
    depth = {}
    for s in steps:                                 # dependencies first
        if s.action in ("build", "incremental"):
            depth[s.target.name] = 1 + max([depth.get(d, 0) for d in s.target.config["deps"]
                                            if d in by_name] or [0])
    keys = {}
    for name, d in depth.items():
        keys.setdefault(d, set()).add(by_name[name].inputs.key or name)
    return max((len(k) for k in keys.values()), default=0)


def parent_lane():
    """Whether the parent builds too: when torch is imported already (the build server, a
    notebook); a fresh CLI process would pay the import in its own lane as a worker does."""
    return "torch" in sys.modules


def start(project, steps, jobs):
    """The Pool for `steps` under `-j jobs`: width(steps) lanes at most; when only one target
    can train at a time, the parent alone (as `-j 1` would, with `-j`'s failure rules)."""
    n = max(1, min(jobs, width(steps)))
    return pool_mod.Pool(project, n, n == 1 or parent_lane())


def _who(got):
    w = got.get("worker") or {}
    if w.get("parent"):
        return f"built in the parent process ({_nth(w.get('job', 1))} target)"
    return f"built by worker {w.get('pid')} ({_nth(w.get('job', 1))} target)"


def _nth(n):
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def execute(steps, project, state, cache, reporter, jobs, fail_fast=False, remote=None,
            verbose=False, pool=None):
    """Run `steps` (runner.Step, dependencies first) on up to `jobs` lanes of `pool` (one is
    started, and closed at the end, when None). Returns [Result] in plan order; raises
    BuildsFailed when a target failed, buildone.Replan when a source changed while a worker
    read it (after the running builds finished)."""
    own = pool is None
    if own:
        pool = start(project, steps, jobs)
    try:
        return _run(steps, state, cache, reporter, jobs, fail_fast, remote, verbose, pool)
    except BaseException:
        _stop(pool)
        raise
    finally:
        if own:
            pool.close()


def _stop(pool):
    """Stop every busy lane and wait until each has ended (SIGKILL after STOP_WAIT)."""
    for lane in pool.busy():
        lane.stop()
    deadline = time.monotonic() + pool_mod.STOP_WAIT
    for lane in pool.busy():
        if isinstance(lane, pool_mod.Worker):
            try:
                lane.proc.wait(max(0.0, deadline - time.monotonic()))
            except Exception:
                lane.kill()
                lane.proc.wait()
        else:
            lane.thread.join()
        lane.job = None


def _run(steps, state, cache, reporter, jobs, fail_fast, remote, verbose, pool):
    in_plan = {s.target.name for s in steps}
    pending = list(steps)
    outcome, results = {}, {}
    failures, skipped = [], []
    lock = pool.lock
    replan = stopping = False

    def finish(r, status):
        outcome[r.name] = status
        results[r.name] = r
        with lock:
            reporter.done(r)

    def fail(step, err, rc):
        if err is not None:
            with lock:
                print(f"[{step.target.name}] " + (str(err) if err.location
                      else f"s2build: error: {err}"), file=sys.stderr, flush=True)
        finish(Result(step.target.name, "failed", reasons=step.reasons,
                      detail=str(err) if err is not None else f"worker exited {rc}"), "failed")
        failures.append((step.target.name, rc))

    while pending or pool.busy():
        before = len(pending)
        for step in list(pending):
            name = step.target.name
            deps = [d for d, _p in graph.needs(step.target) if d in in_plan]
            bad = [d for d in deps if outcome.get(d) in ("failed", "skipped")]
            if bad or stopping:
                pending.remove(step)
                why = f"dependency {bad[0]} failed" if bad and outcome[bad[0]] == "failed" \
                    else f"dependency {bad[0]} was skipped" if bad else \
                    "stopped: another target failed (--fail-fast)"
                finish(Result(name, "skipped", reasons=step.reasons, detail=why), "skipped")
                skipped.append(name)
                continue
            if replan or not all(d in outcome for d in deps):
                continue
            if step.inputs.key is None:             # its upstream is done: plan it now
                from s2build.engine import steps as steps_mod
                pending[pending.index(step)] = step = steps_mod.settle(step, pool.project, state,
                                                                       cache, remote)
            if step.action == "up-to-date":
                pending.remove(step)
                finish(Result(name, "up-to-date", output=step.target.config["output"],
                              key=step.inputs.key, detail=step.cutoff), "ok")
                continue
            if any(x.job.step.inputs.key == step.inputs.key for x in pool.busy()):
                continue            # the same recipe is being built: restore it after
            with lock:
                r = buildone.restore_step(step, state, cache, reporter, remote)
            if r is not None:
                pending.remove(step)
                finish(r, "ok")
                continue
            lane = pool.idle()
            if lane is None:
                if pool.wants_worker(jobs):
                    pool.spawn()
                continue
            pending.remove(step)
            with lock:
                reporter.start(name, "build", step.reasons)
            lane.send(pool.job(step), dict(state.files), verbose)
        if not pool.busy():
            if replan:
                break
            if pending and len(pending) == before and \
                    all(x.ready or not x.alive for x in pool.lanes):
                raise RuntimeError("parallel: no target can start: "      # not in a valid plan
                                   + ", ".join(s.target.name for s in pending))
        if stopping:                # --fail-fast: a stopped worker gets STOP_WAIT seconds
            for lane in pool.busy():
                if lane.stopped and time.monotonic() - lane.stopped > pool_mod.STOP_WAIT:
                    lane.kill()
        try:
            event = pool.events.get(timeout=0.1)
        except Exception:           # queue.Empty
            continue
        kind, lane = event[0], event[1]
        if kind == "ready":
            lane.ready = True
            continue
        if kind == "exited":
            lane.alive = False
            pool.lanes.remove(lane)
            if lane.job is None:
                if not lane.ready and pending:
                    raise S2Error(f"a -j worker exited with status {lane.proc.returncode} "
                                  "before it could build (its lines above say why)")
                continue
            job, got, rc = lane.job, None, lane.proc.returncode
        else:
            job, rc = lane.job, None
            got = lane.result()
        lane.job = None
        name = job.step.target.name
        if got is None or got.get("cancelled"):
            code = errors.INTERRUPTED if rc in (-signal.SIGINT, errors.INTERRUPTED) else \
                errors.TERMINATED if rc in (-signal.SIGTERM, errors.TERMINATED) or got else \
                errors.INTERNAL
            if stopping and code != errors.INTERNAL:
                finish(Result(name, "cancelled", reasons=job.step.reasons,
                              detail="stopped (--fail-fast)"), "skipped")
                skipped.append(name)
                continue
            fail(job.step, S2Error(f"the worker building {name} exited with status {rc} "
                                   "and no result"), code)
        elif got.get("replan"):
            replan = True
        elif got.get("ok"):
            step, built = got["step"], got["built"]
            rec = buildone.record_built(step, built, state)
            if remote is not None:
                remote.push(step.inputs.key, cache)
            locking.warn_discarded(cache, reporter)
            built.detail += f"; {_who(got)}"
            finish(buildone.built_result(step, rec, built,
                                         time.perf_counter() - job.started), "ok")
        else:
            e = got["error"]
            err = S2Error(e["message"], e["location"], e["hint"])
            if e.get("traceback"):
                with lock:
                    for line in e["traceback"].splitlines():
                        print(f"[{name}] {line}", file=sys.stderr)
            fail(job.step, err, e["exit_code"])
        if failures and fail_fast and not stopping:
            stopping = True
            for x in pool.busy():
                x.stop()
    if state.dirty:
        state.save()
    if replan:
        raise buildone.Replan()
    if failures:
        raise BuildsFailed(failures, skipped, max(c for _n, c in failures))
    return [results[s.target.name] for s in steps if s.target.name in results]
