"""The C heap of a build process (glibc; a no-op on other C libraries).

glibc keeps freed memory for reuse instead of giving it back, and the RSS a build reports
is what it kept: 200 MB after cutting 1M rows, 20 MB after joining them, and during
training the per-epoch arrays (an order, its concatenation, outputs: 7-16 MB each at 1M
rows) are carved from the heap, because glibc raises its mmap threshold to the size of the
largest block freed (up to 32 MiB), and the heap does not shrink behind what training keeps.

    one_arena()        M_ARENA_MAX 1: the parse threads' frees go where trim() sees them
    trim()             malloc_trim(0): give freed heap pages back
    training(): ...    while training, blocks of 1 MiB or more are mmapped (returned to the
                       OS when freed); after it, the threshold is 32 MiB (glibc's dynamic
                       maximum), so the next parse (server, watch) is as fast as before
"""

import contextlib

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
TRAINING_MMAP_THRESHOLD = 1 << 20
AFTER_MMAP_THRESHOLD = 32 << 20


def _libc(name, *args):
    try:
        import ctypes
        getattr(ctypes.CDLL("libc.so.6"), name)(*args)
    except (OSError, AttributeError):
        pass


def one_arena():
    _libc("mallopt", M_ARENA_MAX, 1)


def trim():
    _libc("malloc_trim", 0)


@contextlib.contextmanager
def training():
    trim()
    _libc("mallopt", M_MMAP_THRESHOLD, TRAINING_MMAP_THRESHOLD)
    try:
        yield
    finally:
        _libc("mallopt", M_MMAP_THRESHOLD, AFTER_MMAP_THRESHOLD)
