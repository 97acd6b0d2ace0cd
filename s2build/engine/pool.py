"""The lanes a `-j` run builds on: warm worker processes and, optionally, the parent itself.

`Pool(project, lanes, parent)` starts its workers at once (`python -m s2build.engine.worker`,
fresh interpreters, never forks: a fork of a process that loaded torch, such as the build
server, may deadlock in torch's thread pools), so that their imports overlap the parent's
planning and each other. runner.build starts it after the unlocked plan found work (a no-op
never starts one) and closes it when the run ends; a worker builds job after job meanwhile.
With `parent`, one lane is the parent process: a thread that runs buildone.produce in-process,
for a parent that has torch imported already (the build server, a notebook); then workers
start only once a job is waiting and the parent lane has been busy for DEFER seconds
(`wants_worker`): small builds stay in the warm parent, as `-j 1` would.

A lane has `ready` (a worker: its imports are done, it said `ready`), `job` (the Job it is
building, or None) and `alive`. The pool's `events` queue receives ("ready", lane),
("done", lane, seq) once every line of that job has been printed and its result is readable
through `lane.result()`, and ("exited", lane) when a worker's pipes closed and it exited (a
crash when `lane.job` is set). Lines are printed whole, under `pool.lock`, prefixed with the
lane's current target (`[wine] wine: epoch 3/40 ...`; `[worker 2]` before its first job).

Thread budget: `budget(lanes)` = the CPUs this process may use divided among the lanes (at
least 1): each worker's torch intra-op threads, its data-stage parse threads and, through
OMP_NUM_THREADS in its environment, OpenMP and OpenBLAS; a dev build's fine-tuning threads
(the parent lane's too). Release training is on one thread in every lane (the key's threads=1),
so the budget changes no release artifact.

`close()` ends the run: idle workers see end of file and exit 0; busy ones (an interrupt, a
failure) and those still importing get SIGTERM, SIGKILL after STOP_WAIT seconds; the parent lane is cancelled between
two training steps and joined. The result files (`.s2build/.s2tmp-PID-jobs-*/`) are removed, also when a second
interrupt arrives meanwhile; a killed run's are swept by the next build (atomic.sweep_leftovers).
"""

import os
import pickle
import queue
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import s2build
from s2build import atomic

STOP_WAIT = 10.0            # seconds a stopped worker gets before SIGKILL
DEFER = 1.0                 # seconds the parent lane builds alone before a worker starts


def cpus():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


def budget(lanes, ncpu=None):
    """Threads per lane: `ncpu` (default: cpus()) shared by `lanes`, at least one each."""
    return max(1, (ncpu or cpus()) // max(1, lanes))


def worker_env(threads):
    """The parent's environment, with this s2build first on PYTHONPATH (the worker must run
    the code whose digest is in the key), unbuffered output (lines arrive as written) and
    OMP_NUM_THREADS at most `threads`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    here = os.path.dirname(os.path.dirname(os.path.abspath(s2build.__file__)))
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in parts if p != here])
    try:
        omp = min(int(env.get("OMP_NUM_THREADS", threads)), threads)
    except ValueError:
        omp = threads
    env["OMP_NUM_THREADS"] = str(max(1, omp))
    return env


class Job:
    """One target's build on a lane: its step, sequence number, result file, start time."""

    def __init__(self, step, seq, result_path):
        self.step, self.seq, self.result_path = step, seq, result_path
        self.started = time.perf_counter()


def _print(pool, name, tag, line):
    with pool.lock:
        try:
            stream = getattr(sys, name)
            stream.write(f"[{tag}] {line}\n")
            stream.flush()
        except (OSError, ValueError):
            pass


class Worker:
    """A warm worker process (engine/worker.py)."""

    def __init__(self, pool, index):
        self.pool, self.index = pool, index
        self.ready, self.job, self.alive, self.stopped = False, None, True, None
        self.tag = f"worker {index}"
        self._marks, self._closed, self._guard = {}, 0, threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s2build.engine.worker", pool.token, str(pool.threads)],
            cwd=pool.project.root, env=worker_env(pool.threads), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.readers = [threading.Thread(target=self._pump, args=(pipe, name), daemon=True)
                        for pipe, name in ((self.proc.stdout, "stdout"),
                                           (self.proc.stderr, "stderr"))]
        for r in self.readers:
            r.start()

    def _pump(self, pipe, name):
        """Copy `pipe`'s lines to sys.`name`, whole and tagged; act on the worker's markers."""
        mark = f"\0{self.pool.token} "
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                at = line.find(mark)
                if at < 0:
                    _print(self.pool, name, self.tag, line)
                    continue
                if at:                      # a line the build left without its newline
                    _print(self.pool, name, self.tag, line[:at])
                self._mark(line[at + len(mark):])
        finally:
            pipe.close()
            with self._guard:
                self._closed += 1
                last = self._closed == 2
            if last:
                self.proc.wait()
                self.pool.events.put(("exited", self))

    def _mark(self, word):
        if word == "ready":
            self.pool.events.put(("ready", self))
        elif word.startswith("done "):
            seq = int(word.split()[1])
            with self._guard:
                n = self._marks[seq] = self._marks.get(seq, 0) + 1
            if n == 2:                      # both streams have delivered every line
                del self._marks[seq]
                self.pool.events.put(("done", self, seq))

    def send(self, job, files, verbose):
        self.job, self.tag = job, job.step.target.name
        data = pickle.dumps({"project": self.pool.project, "step": job.step, "files": files,
                             "verbose": verbose, "result": job.result_path, "seq": job.seq},
                            protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(struct.pack(">Q", len(data)) + data)
            self.proc.stdin.flush()
        except OSError:
            pass                            # it died: its exit event says so

    def result(self):
        try:
            with open(self.job.result_path, "rb") as f:
                return pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None
        finally:
            try:
                os.unlink(self.job.result_path)
            except OSError:
                pass

    def stop(self):
        """SIGTERM (the job is abandoned; the exit event follows)."""
        if self.stopped is None:
            self.stopped = time.monotonic()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass


class _Lines:
    """A text stream that prints whole lines tagged with the parent lane's target."""

    def __init__(self, lane, name):
        self.lane, self.name, self.part = lane, name, ""

    def write(self, text):
        self.part += text
        *lines, self.part = self.part.split("\n")
        for line in lines:
            _print(self.lane.pool, self.name, self.lane.tag, line)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


class InProcess:
    """The parent as a lane: produce in a thread of this process (torch already warm)."""

    def __init__(self, pool):
        self.pool, self.ready, self.job, self.alive, self.stopped = pool, True, None, True, None
        self.tag, self.count, self.out, self.thread = "parent", 0, None, None
        self.cancel = threading.Event()

    def send(self, job, files, verbose):
        from s2build.engine import worker
        from s2build.report.console import Console
        self.job, self.tag, self.count = job, job.step.target.name, self.count + 1
        reporter = Console(verbose=verbose, stream=_Lines(self, "stdout"),
                           err=_Lines(self, "stderr"))
        work = {"project": self.pool.project, "step": job.step, "files": files,
                "verbose": verbose, "cancel": self.cancel}

        def run():
            try:
                out = worker.build(work, self.pool.threads, reporter)
            except BaseException as e:      # noqa: BLE001 (reported as the target's failure)
                out = {"ok": False, "error": {
                    "message": f"internal error: {type(e).__name__}: {e}", "location": None,
                    "hint": None, "exit_code": 70, "kind": "internal", "traceback": None}}
            out["worker"] = {"pid": os.getpid(), "job": self.count, "parent": True}
            self.out = out
            self.pool.events.put(("done", self, job.seq))
        self.thread = threading.Thread(target=run, daemon=True, name=f"s2build-{self.tag}")
        self.thread.start()

    def result(self):
        out, self.out = self.out, None
        return out

    def stop(self):
        if self.stopped is None:
            self.stopped = time.monotonic()
        self.cancel.set()

    def kill(self):
        pass                                # a thread cannot be killed: it stops between steps

    def close_stdin(self):
        self.stop()
        if self.thread is not None:
            self.thread.join()


class Pool:
    """The lanes of one `-j` run (see the module docstring)."""

    def __init__(self, project, lanes, parent=False):
        self.project, self.token = project, secrets.token_hex(8)
        self.events, self.lock = queue.Queue(), threading.Lock()
        os.makedirs(project.state_dir, exist_ok=True)
        self.tmpdir = tempfile.mkdtemp(prefix=atomic.tmp_prefix("jobs"), dir=project.state_dir)
        self.threads, self.seq, self.started = budget(lanes), 0, 0
        self.lanes = [InProcess(self)] if parent else []
        self._parse = None
        if parent:                          # the parent lane's data stage: its share too
            from s2build.data import dataset
            self._parse = dataset.PARSE_THREADS
            dataset.PARSE_THREADS = max(1, min(self._parse, self.threads))
        while not parent and len(self.lanes) < lanes:
            self.spawn()

    def wants_worker(self, jobs):
        """Whether a job that finds no idle lane should start a worker: fewer than `jobs`
        lanes alive, none of them still starting, and, beside a parent lane, that lane busy
        for DEFER seconds (a build the warm parent finishes sooner gains nothing from a
        worker that would import for longer, and its import would slow the parent's)."""
        alive = [x for x in self.lanes if x.alive]
        if len(alive) >= jobs or any(not x.ready for x in alive):
            return False
        mine = next((x for x in alive if isinstance(x, InProcess)), None)
        return mine is None or (mine.job is not None and
                                time.perf_counter() - mine.job.started >= DEFER)

    def spawn(self):
        self.started += 1
        w = Worker(self, self.started)
        self.lanes.append(w)
        return w

    def idle(self):
        """A lane that is ready and has no job, or None."""
        return next((x for x in self.lanes if x.alive and x.ready and x.job is None), None)

    def busy(self):
        return [x for x in self.lanes if x.job is not None]

    def job(self, step):
        self.seq += 1
        return Job(step, self.seq, os.path.join(self.tmpdir, f"{self.seq}.result"))

    def close(self):
        """End the run: idle workers exit, busy ones are stopped (see the module docstring)."""
        try:
            for lane in self.lanes:
                if lane.job is not None or not lane.ready:
                    lane.stop()             # not ready: no need to wait for its imports
                lane.close_stdin()
            deadline = time.monotonic() + STOP_WAIT
            for lane in self.lanes:
                if isinstance(lane, Worker):
                    try:
                        lane.proc.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        lane.kill()
                        lane.proc.wait()
                    for r in lane.readers:
                        r.join(1.0)
            self.lanes = []
        finally:                            # a second Ctrl-C while stopping: still no leftovers
            if self._parse is not None:
                from s2build.data import dataset
                dataset.PARSE_THREADS, self._parse = self._parse, None
            shutil.rmtree(self.tmpdir, ignore_errors=True)
