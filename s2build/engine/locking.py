"""The inter-process build lock: `.s2build/lock` (an OS file lock) and `.s2build/lock.owner`.

The OS releases the lock when its holder dies, even by SIGKILL, so a crash never leaves a held
lock behind. `lock.owner` says who holds it (pid, command, start time), for the message a second
process prints while it waits; it is informational only. Uses the `filelock` library
(cross-platform, well kept), imported lazily because the no-op path never locks.
"""

import os
import time

from s2build import atomic
from s2build.errors import LockedError


class BuildLock:
    def __init__(self, state_dir, command, wait=True, on_wait=None):
        self.path = os.path.join(state_dir, "lock")
        self.owner_path = self.path + ".owner"
        self.command = command
        self.wait = wait
        self.on_wait = on_wait
        self._lock = None

    def owner(self):
        try:
            with open(self.owner_path, encoding="utf-8", errors="replace") as f:   # may be damaged
                return f.read().strip() or "another s2build process"
        except OSError:
            return "another s2build process"

    def __enter__(self):
        from filelock import FileLock, Timeout
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._lock = FileLock(self.path)
            self._lock.acquire(timeout=0)
        except Timeout:                 # (a TimeoutError, so an OSError: caught first)
            holder = self.owner()
            if not self.wait:
                raise LockedError(f"{os.path.relpath(self.path)} is held by {holder}",
                                  hint="wait for it to finish, or run without --no-wait") from None
            if self.on_wait:
                self.on_wait(f"waiting for {os.path.relpath(self.path)}, held by {holder}")
            self._lock.acquire()
        except OSError as e:            # a read-only or full file system, no permission
            raise atomic.WriteFailed.of(self.path, e) from None
        atomic.write_text(self.owner_path, f"pid {os.getpid()} ({self.command}, since "
                                           f"{time.strftime('%H:%M:%S')})")
        return self

    def __exit__(self, *exc):
        try:
            os.unlink(self.owner_path)
        except OSError:
            pass
        self._lock.release()
        return False


def warn_discarded(cache, reporter):
    """Say which damaged cache entries were discarded (they are built again)."""
    for w in cache.warnings:
        reporter.warn(w)
    cache.warnings.clear()


def save_if_free(project, state):
    """Persist a refreshed stat cache, but only if no build holds the lock right now. Stat
    entries validate themselves (size, mtime, ctime, inode), so merging them into the newest
    state is safe; refreshed output stats and metric selections apply only to records with the
    same build key."""
    from s2build.engine.state import State
    try:
        with BuildLock(project.state_dir, "s2build (stat cache)", wait=False):
            fresh = State.load(project.state_dir)
            if fresh.warning:
                return
            fresh.files.update(state.files)
            for name, rec in state.targets.items():
                cur = fresh.targets.get(name)
                if cur and cur.get("key") == rec.get("key"):
                    cur["output_stat"] = rec.get("output_stat")
                    cur["metrics"] = rec.get("metrics", cur.get("metrics"))
            fresh.save()
    except LockedError:
        pass
