"""`-j N`: build independent targets in parallel worker processes, one writer of state.

`execute(steps, ...)` takes the runner's plan (dependencies first) and runs it as a DAG: a
target starts when every dependency in the plan is done. Up-to-date and cached targets are
handled here in the parent (restores are milliseconds); a target that must be trained runs in
a worker process (`python -m s2build.engine.worker`, engine/worker.py), at most N at once.
Workers are fresh interpreters, never forks: a fork of a process that loaded torch (the build
server) may deadlock in torch's thread pools. The parent holds `.s2build/lock` for the whole
run and alone writes state.json, outputs and sidecars (`buildone.record_built`) and pushes to
the remote; a worker writes only content-addressed files (shards, graphs, its cache entry).

Output: each worker line reaches the parent's stdout or stderr whole, prefixed `[TARGET] `;
the outcome lines (`wine: built in ...`) are the reporter's, as without -j.

Failures: a failing target does not stop independent ones; its dependents are `skipped`
(reported, with the dependency that failed). With `fail_fast`, the first failure stops the
running workers (SIGTERM; reported `cancelled`) and skips the rest. At the end, when anything
failed, `BuildsFailed` is raised with the worst (highest) exit code of the failures.

Interrupts: Ctrl-C or SIGTERM in the parent (or the build server's cancel, which is a SIGINT
to its main thread) sends SIGTERM to every worker, waits for them (then SIGKILL after
STOP_WAIT seconds), removes their result files and re-raises: nothing half-written is left (a
worker's cache entry is either whole or under the cache's tmp/, which the next build clears),
nothing is recorded for an unfinished target, and the lock dies with the parent's `with`.
"""

import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import s2build
from s2build import errors
from s2build.engine import buildone
from s2build.engine import locking
from s2build.errors import S2Error
from s2build.report.console import Result

STOP_WAIT = 10.0            # seconds a stopped worker gets before SIGKILL


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


class _Job:
    """One worker process: its target's step, the Popen, the result file, reader threads."""

    def __init__(self, step, proc, result_path, readers):
        self.step, self.proc, self.result_path, self.readers = step, proc, result_path, readers
        self.started = time.perf_counter()


def _pump(pipe, stream, tag, lock, finished=None, name=None):
    """Copy `pipe`'s lines to `stream`, whole and prefixed `[tag] `; then say `finished`."""
    try:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with lock:
                try:
                    stream.write(f"[{tag}] {line}\n")
                    stream.flush()
                except (OSError, ValueError):
                    pass
    finally:
        pipe.close()
        if finished is not None:
            finished.put(name)


def worker_env():
    """The parent's environment, with this s2build first on PYTHONPATH (the worker must run
    the code whose digest is in the key) and unbuffered output (lines arrive as written)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    here = os.path.dirname(os.path.dirname(os.path.abspath(s2build.__file__)))
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in parts if p != here])
    return env


def _start(step, project, state, tmpdir, lock, finished, verbose):
    name = step.target.name
    result_path = os.path.join(tmpdir, f"{name}.result")
    proc = subprocess.Popen([sys.executable, "-m", "s2build.engine.worker", result_path],
                            cwd=project.root, env=worker_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job = pickle.dumps({"project": project, "step": step, "files": dict(state.files),
                        "verbose": verbose}, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        proc.stdin.write(struct.pack(">Q", len(job)) + job)
        proc.stdin.flush()                      # kept open: its end tells the worker to stop
    except OSError:
        pass                                    # it died at start: its exit status says so
    done = queue.Queue()
    readers = [threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, name, lock, done),
                                daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, name, lock, done),
                                daemon=True)]
    for r in readers:
        r.start()
    # one message on `finished` once both pipes are drained (the worker exited or closed them)
    threading.Thread(target=lambda: (done.get(), done.get(), proc.wait(), finished.put(name)),
                     daemon=True).start()
    return _Job(step, proc, result_path, readers)


def _read_result(job):
    try:
        with open(job.result_path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    finally:
        try:
            os.unlink(job.result_path)
        except OSError:
            pass


def _stop(jobs):
    """SIGTERM every worker, wait (SIGKILL after STOP_WAIT), close their stdin."""
    for job in jobs:
        if job.proc.poll() is None:
            try:
                job.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + STOP_WAIT
    for job in jobs:
        try:
            job.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.proc.kill()
            job.proc.wait()
        for r in job.readers:
            r.join(1.0)
        try:
            job.proc.stdin.close()
        except OSError:
            pass
        try:
            os.unlink(job.result_path)
        except OSError:
            pass


def execute(steps, project, state, cache, reporter, jobs, fail_fast=False, remote=None,
            verbose=False):
    """Run `steps` (runner.Step, dependencies first) with up to `jobs` workers. Returns
    [Result] in plan order; raises BuildsFailed when a target failed, buildone.Replan when a
    source changed while a worker read it (after the running workers finished)."""
    in_plan = {s.target.name for s in steps}
    pending = list(steps)
    outcome, results, running = {}, {}, {}
    failures, skipped = [], []
    finished = queue.Queue()
    lock = threading.Lock()
    replan = stopping = False
    tmpdir = tempfile.mkdtemp(prefix="jobs-", dir=project.state_dir)

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

    try:
        while pending or running:
            before = len(pending)
            for step in list(pending):
                name = step.target.name
                deps = [d for d in step.target.config["deps"] if d in in_plan]
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
                if step.action == "up-to-date":
                    pending.remove(step)
                    finish(Result(name, "up-to-date", output=step.target.config["output"],
                                  key=step.inputs.key), "ok")
                    continue
                if any(j.step.inputs.key == step.inputs.key for j in running.values()):
                    continue            # the same recipe is being built: restore it after
                with lock:
                    r = buildone.restore_step(step, state, cache, reporter, remote)
                if r is not None:
                    pending.remove(step)
                    finish(r, "ok")
                    continue
                if len(running) >= jobs:
                    continue
                pending.remove(step)
                with lock:
                    reporter.start(name, "build", step.reasons)
                running[name] = _start(step, project, state, tmpdir, lock, finished, verbose)
            if not running:
                if replan:
                    break
                if pending and len(pending) == before:     # cannot happen in a valid plan
                    raise RuntimeError("parallel: no target can start: "
                                       + ", ".join(s.target.name for s in pending))
                continue
            try:
                name = finished.get(timeout=0.5)
            except queue.Empty:
                continue
            job = running.pop(name)
            for r in job.readers:
                r.join()
            job.proc.stdin.close()
            got = _read_result(job)
            rc = job.proc.returncode
            if got is None:
                code = errors.INTERRUPTED if rc in (-signal.SIGINT, errors.INTERRUPTED) else \
                    errors.TERMINATED if rc in (-signal.SIGTERM, errors.TERMINATED) else \
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
                _stop(list(running.values()))
    except BaseException:
        _stop(list(running.values()))
        running.clear()
        raise
    finally:
        _stop(list(running.values()))
        import shutil
        shutil.rmtree(tmpdir, ignore_errors=True)
    if state.dirty:
        state.save()
    if replan:
        raise buildone.Replan()
    if failures:
        raise BuildsFailed(failures, skipped, max(c for _n, c in failures))
    return [results[s.target.name] for s in steps if s.target.name in results]
