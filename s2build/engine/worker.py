"""A `-j` worker process: import once, then produce target after target for its parent.

    python -m s2build.engine.worker TOKEN THREADS         (started by engine/pool.py)

A worker is started at the start of a run (before the parent plans under the lock), imports
torch, onnx, onnxruntime and the compiler while its parent plans, then builds the jobs its
parent sends until the run ends. THREADS is its share of the CPUs (pool.budget): torch's
intra-op threads and the data stage's parse threads (the parent also sets OMP_NUM_THREADS in
its environment). Release training is on one thread whatever the share (the key says
threads=1); a dev build fine-tunes on THREADS threads instead of up to 4.

Protocol. On stdin, jobs: each an 8-byte big-endian length and a pickle of
{"project", "step", "files", "verbose", "result", "seq"} (the parent's own objects: the
worker plans nothing, so it builds exactly the key the parent decided). Once the imports are
done the worker writes the line `\\0TOKEN ready` on stdout. For each job it runs
buildone.produce (train, export, verify, the content-addressed cache entry), writes a pickle
to job["result"] (tmp + os.replace), one of

    {"ok": True, "step": step, "built": buildone.Built, "worker": {...}}  the parent records it
    {"ok": False, "error": {message, location, hint, exit_code, kind, traceback}, "worker": ..}
    {"replan": True, "worker": {...}}                  a source changed while it was read

where "worker" is {"pid": its pid, "job": how many jobs it has run, this one included}; then
the line `\\0TOKEN done SEQ` on stdout and on stderr, so the parent knows both streams have
delivered every line of that job. TOKEN is the parent's random per-run word: no line a build
prints can be taken for a marker.

It writes nothing else: no state.json, no output, no sidecar, no lock (the parent holds
`.s2build/lock` for the whole run and is the one writer of state). Its stdout and stderr are
pipes the parent reads line by line and prints tagged `[TARGET] ...`. End of file on stdin
while idle: the run is over, exit 0. End of file while a job is queued or running: the parent
is gone, and the worker stops as if sent SIGTERM (exit 143, no result: nothing to record);
130 on SIGINT.
"""

import os
import pickle
import queue
import signal
import struct
import sys
import threading

from s2build import atomic
from s2build import errors


def _on_sigterm(signum, frame):
    raise errors.Interrupted(errors.TERMINATED)


def _read_jobs(stream, jobs, busy):
    """Put each job read from `stream` on `jobs`; at end of file (or a cut frame) put None,
    after stopping this process when a job is still queued or running (the parent is gone)."""
    while True:
        try:
            head = stream.read(8)
            data = stream.read(struct.unpack(">Q", head)[0]) if len(head) == 8 else b""
            job = pickle.loads(data) if data else None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, struct.error):
            job = None
        with busy["lock"]:
            if job is None:
                if busy["n"]:
                    os.kill(os.getpid(), signal.SIGTERM)
                jobs.put(None)
                return
            busy["n"] += 1
        jobs.put(job)


def warm(threads):
    """Import what produce imports, and hold torch and the parse to `threads` threads."""
    import torch
    torch.set_num_threads(threads)
    import onnx                 # noqa: F401
    import onnxruntime          # noqa: F401

    from s2build.compile import models, relink, train, verify   # noqa: F401
    from s2build.data import dataset
    dataset.PARSE_THREADS = max(1, min(dataset.PARSE_THREADS, threads))


def _say(token, text, streams):
    for s in streams:
        s.write(f"\0{token} {text}\n")
        s.flush()


def _error(step, e, verbose):
    """The result of a failed build: a user error (its location and fix) or s2build's bug."""
    from s2build.engine import buildone
    err = buildone.attribute(step, e)
    if err is not None:
        return {"message": err.message, "location": err.location, "hint": err.hint,
                "exit_code": err.exit_code, "kind": type(err).__name__, "traceback": None}
    import traceback
    return {"message": f"internal error: {type(e).__name__}: {e} (run with -v for a traceback, "
                       "and please report it)", "location": None, "hint": None,
            "exit_code": errors.INTERNAL, "kind": "internal",
            "traceback": traceback.format_exc() if verbose else None}


def build(job, threads, reporter=None):
    """Produce `job`'s step: the result dict (without "worker")."""
    from s2build.data.shards import SourcesChanged
    from s2build.engine import buildone
    from s2build.report.console import Console
    from s2build.store.local import Cache
    step, verbose, project = job["step"], job["verbose"], job["project"]
    try:
        built = buildone.produce(step, project, job["files"], Cache(project.state_dir),
                                 reporter or Console(verbose=verbose), job.get("cancel"),
                                 threads=threads)
        return {"ok": True, "step": step, "built": built}
    except SourcesChanged:
        return {"replan": True}
    except Exception as e:
        train = sys.modules.get("s2build.compile.train")
        if train is not None and isinstance(e, train.Cancelled):
            return {"cancelled": True}
        return {"ok": False, "error": _error(step, e, verbose)}


def main(argv):
    token, threads = argv[0], max(1, int(argv[1]))
    signal.signal(signal.SIGTERM, _on_sigterm)
    jobs, busy = queue.Queue(), {"lock": threading.Lock(), "n": 0}
    threading.Thread(target=_read_jobs, args=(sys.stdin.buffer, jobs, busy),
                     daemon=True).start()
    warm(threads)
    _say(token, "ready", [sys.stdout])
    count = 0
    while True:
        job = jobs.get()
        if job is None:
            return errors.OK
        count += 1
        out = build(job, threads)
        out["worker"] = {"pid": os.getpid(), "job": count}
        atomic.write_bytes(job["result"], pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
        with busy["lock"]:
            busy["n"] -= 1
        _say(token, f"done {job['seq']}", [sys.stdout, sys.stderr])


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = errors.INTERRUPTED
    except errors.Interrupted as e:
        code = e.code
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)          # as cli.main.run: no interpreter teardown after torch
