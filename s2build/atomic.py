"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Write to a temporary file in the destination's folder, fsync, then `os.replace`. Temporary names
start with `.s2tmp-PID-` (tmp_prefix()) so that leftovers of a killed process are recognisable
and removable, and a live process's file in flight is not: `remove_leftovers` removes a temp
file only when the process that named it is gone (a name without a pid counts as gone).
"""

import errno
import os
import shutil

from s2build.errors import S2Error, BUILD

TMP_PREFIX = ".s2tmp-"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()        # what open() would give; mkstemp alone gives 0600


def write_bytes(path, data, durable=True):
    """Atomically replace `path` with `data` (bytes, or a list of bytes-like parts written in
    order, so a caller need not join them into a second copy). durable=False skips the
    fsync: for caches whose readers check a checksum (a file emptied by a power loss reads as
    a miss)."""
    import tempfile
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(), dir=folder)
    except OSError as e:
        raise WriteFailed.of(path, e) from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            for part in (data if isinstance(data, list) else [data]):
                f.write(part)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteFailed.of(path, e) from None
        raise


class WriteFailed(S2Error):
    """The file system refused a write (read-only mount, no permission, disk full, a name too
    long): exit 5 (BUILD), naming the path and the errno in words. Nothing was replaced."""

    exit_code = BUILD

    @classmethod
    def of(cls, path, e):
        name = errno.errorcode.get(e.errno, "") if e.errno else ""
        hint = {errno.EACCES: "give yourself write permission on that folder",
                errno.EPERM: "give yourself write permission on that folder",
                errno.EROFS: "the file system is mounted read-only: write the output elsewhere",
                errno.ENOSPC: "the disk is full: free space (or run `s2build gc`)",
                errno.EDQUOT: "the disk quota is exceeded: free space",
                errno.ENAMETOOLONG: "use a shorter output path",
                errno.EFBIG: "a file size limit (ulimit -f) stopped the write"}.get(e.errno)
        shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
        return cls(f"cannot write: {e.strerror or e}" + (f" ({name})" if name else ""),
                   shown, hint)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def tmp_prefix(what=""):
    """The start of a temp name this process makes: `.s2tmp-PID-` (+ `what-`)."""
    return f"{TMP_PREFIX}{os.getpid()}-" + (f"{what}-" if what else "")


def _owner_alive(name):
    pid = name[len(TMP_PREFIX):].split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:                     # alive, someone else's
        pass
    return True


def remove_leftovers(folder):
    """Delete the `.s2tmp-*` files and folders in `folder` whose process is gone (a killed
    one's)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX) and not _owner_alive(name):
            path = os.path.join(folder, name)
            try:
                os.unlink(path)
            except IsADirectoryError:   # a -j run's result folder (engine/pool.py)
                shutil.rmtree(path, ignore_errors=True)
            except OSError:             # gone already
                pass


def sweep_leftovers(root, state_dir):
    """remove_leftovers in the project folder `root` (a first build's clock probe) and in every
    folder under `state_dir` but cache/ (entries hold no temp files) and tmp/ (the cache's,
    emptied by Cache.clean_tmp). For a build, under the lock: a kill at any write leaves
    nothing that outlives the next build."""
    remove_leftovers(root)
    for dirpath, dirs, _files in os.walk(state_dir):
        if dirpath == state_dir:
            dirs[:] = [d for d in dirs if d not in ("cache", "tmp")]
        remove_leftovers(dirpath)
