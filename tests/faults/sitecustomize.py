"""Fault injection at a process's filesystem write points, for tests/test_faults.py only.

Python imports `sitecustomize` at startup from the path; tests/test_faults.py puts this folder
on the PYTHONPATH of the s2build CLI subprocess it starts (never of pytest itself). Without
S2BUILD_FAULT in the environment this module does nothing.

    S2BUILD_FAULT=KIND:N       at the N-th write point (1-based) of this process:
        count                  nothing (only the log below)
        kill                   SIGKILL this process, before the write happens
        sigint                 SIGINT to this process (Ctrl-C), then the write goes on
        stop                   SIGSTOP this process before the write (the test edits
                               sources while it is stopped, then sends SIGCONT)
        enospc, erofs, eacces  raise OSError(ENOSPC / EROFS / EACCES) instead of writing
                               (ENOSPC: not on unlink or rmdir, which free space)
      KIND:N+                  the errno kinds: every write point from the N-th on fails
                               (a disk that stays full, a mount that stays read-only)
    S2BUILD_FAULT_UNDER=DIR    count only write points whose path is under DIR (a read-only
                               or full mount there: `erofs:1+` with DIR the output folder)
    S2BUILD_FAULT_LOG=PATH     append one line per write point: `N OP PATH` (the log is
                               written with the unwrapped functions and flushed per line, so
                               it survives SIGKILL and os._exit)

A write point is a call that changes the file system: open()/io.open() of a path in a write,
append, create or update mode (an fd handed to open() or os.fdopen is not: the os.open that
made it was), os.open with a write or create flag, os.replace, os.rename, os.mkdir (and so
os.makedirs and tempfile.mkdtemp), os.unlink/os.remove, os.rmdir (and so shutil.rmtree),
os.fsync (where a full disk reports delayed writes), shutil.copyfile (and copy, copy2). Writes
made by C or C++ code without these Python functions (torch.save to a path, pyarrow) are not
seen; tests/test_faults.py checks with strace that s2build's build makes none.
"""

import os

_SPEC = os.environ.get("S2BUILD_FAULT")


def _install(spec):
    import builtins
    import errno
    import io
    import shutil
    import signal

    kind, _, at = spec.partition(":")
    onward = at.endswith("+")
    at = int(at.rstrip("+") or 0)
    codes = {"enospc": errno.ENOSPC, "erofs": errno.EROFS, "eacces": errno.EACCES}
    if kind not in ("count", "kill", "sigint", "stop", *codes):
        raise SystemExit(f"sitecustomize: S2BUILD_FAULT={spec}: unknown kind {kind!r}")

    real = {"open": builtins.open, "os.open": os.open, "os.replace": os.replace,
            "os.rename": os.rename, "os.mkdir": os.mkdir, "os.unlink": os.unlink,
            "os.remove": os.remove, "os.rmdir": os.rmdir, "os.fsync": os.fsync,
            "shutil.copyfile": shutil.copyfile}
    under = os.environ.get("S2BUILD_FAULT_UNDER")
    under = os.path.join(os.path.abspath(under), "") if under else None
    log_path = os.environ.get("S2BUILD_FAULT_LOG")
    log = real["open"](log_path, "a", buffering=1) if log_path else None
    seen = [0]
    import threading
    lock = threading.Lock()                         # a number and its log line, together
    frees = ("os.unlink", "os.remove", "os.rmdir")  # they free space: never ENOSPC (POSIX)

    def point(op, path):
        with lock:
            _point(op, path)

    def _point(op, path):
        """One write point: log it, and fault it when it is the chosen one."""
        if isinstance(path, int):                   # os.fsync(fd): log the file's path
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                pass
        if under is not None and (isinstance(path, int)
                                  or not os.path.abspath(os.fsdecode(path)).startswith(under)):
            return
        seen[0] += 1
        n = seen[0]
        if log is not None:
            log.write(f"{n} {op} {os.fsdecode(path) if not isinstance(path, int) else path}\n")
        if n == at or (onward and n > at and kind in codes):
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif kind == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            elif kind == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
            elif kind in codes and not (kind == "enospc" and op in frees):
                raise OSError(codes[kind], os.strerror(codes[kind]) + " (injected)", path)

    def open_(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and any(c in mode for c in "wax+"):
            point("open", file)
        return real["open"](file, mode, *args, **kwargs)

    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def os_open(path, flags, *args, **kwargs):
        if flags & writing:
            point("os.open", path)
        return real["os.open"](path, flags, *args, **kwargs)

    def wrap(name, arg=0):
        fn = real[name]

        def wrapped(*args, **kwargs):
            point(name, args[arg] if len(args) > arg else kwargs.get("path", "?"))
            return fn(*args, **kwargs)
        wrapped.__name__ = fn.__name__
        wrapped.__wrapped__ = fn
        return wrapped

    builtins.open = io.open = open_
    new = {"os.open": os_open}
    for name in ("os.replace", "os.rename", "os.mkdir", "os.unlink", "os.remove", "os.rmdir",
                 "os.fsync"):
        new[name] = wrap(name)
    for name, fn in new.items():
        setattr(os, name[3:], fn)
        # shutil.rmtree and friends choose their fd-based code by these sets: keep them true
        for group in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks,
                      os.supports_effective_ids):
            if real[name] in group:
                group.add(fn)
    shutil.copyfile = wrap("shutil.copyfile", 1)


if _SPEC:
    _install(_SPEC)
