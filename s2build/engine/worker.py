"""A `-j` worker process: produce one target's build and hand the result back to its parent.

    python -m s2build.engine.worker RESULT_PATH       (started by engine/parallel.py)

Protocol. On stdin the parent writes an 8-byte big-endian length and a pickle of
{"project", "step", "files", "verbose"} (the parent's own objects: the worker plans nothing, so
it builds exactly the key the parent decided), then keeps stdin open: end of file means the
parent is gone, and the worker stops as if sent SIGTERM. The worker runs buildone.produce (train,
export, verify, the content-addressed cache entry) and writes a pickle to RESULT_PATH (tmp +
os.replace), one of

    {"ok": True, "step": step, "built": buildone.Built}     the parent records it
    {"ok": False, "error": {message, location, hint, exit_code, kind, traceback}}
    {"replan": True}                                         a source changed while it was read

It writes nothing else: no state.json, no output, no sidecar, no lock (the parent holds
`.s2build/lock` for the whole run and is the one writer of state). Its stdout and stderr are
pipes the parent reads line by line and prints tagged `[TARGET] ...`. Exit status 0 once a
result is written, 130 / 143 on SIGINT / SIGTERM (no result: nothing to record).
"""

import os
import pickle
import signal
import struct
import sys
import threading

from s2build import atomic
from s2build import errors


def _watch_parent(stream):
    """Stop this process (as SIGTERM does) when the parent closes our stdin or dies."""
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigterm(signum, frame):
    raise errors.Interrupted(errors.TERMINATED)


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


def main(argv):
    result_path = argv[0]
    signal.signal(signal.SIGTERM, _on_sigterm)
    stdin = sys.stdin.buffer
    (size,) = struct.unpack(">Q", stdin.read(8))
    job = pickle.loads(stdin.read(size))
    threading.Thread(target=_watch_parent, args=(stdin,), daemon=True).start()

    from s2build.data.shards import SourcesChanged
    from s2build.engine import buildone
    from s2build.report.console import Console
    step, verbose = job["step"], job["verbose"]
    reporter = Console(verbose=verbose)
    try:
        built = buildone.produce(step, job["project"], job["files"],
                                 _cache(job["project"]), reporter, None)
        out = {"ok": True, "step": step, "built": built}
    except SourcesChanged:
        out = {"replan": True}
    except Exception as e:
        out = {"ok": False, "error": _error(step, e, verbose)}
    atomic.write_bytes(result_path, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    return errors.OK


def _cache(project):
    from s2build.store.local import Cache
    return Cache(project.state_dir)


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
