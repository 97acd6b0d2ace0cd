"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Write to a temporary file in the destination's folder, fsync, then `os.replace`. Temporary names
start with `.s2tmp-` so that leftovers of a killed process are recognisable and removable.
"""

import os

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
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            for part in (data if isinstance(data, list) else [data]):
                f.write(part)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def remove_leftovers(folder):
    """Delete `.s2tmp-*` files a killed process left in `folder` (call only under the lock)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
