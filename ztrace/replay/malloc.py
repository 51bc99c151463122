"""glibc's malloc policy for a replay: large temporaries go back to the OS when freed.

glibc serves an allocation at or above the mmap threshold with its own mapping, unmapped on
free. The threshold starts at 128 KiB, but each free of such a mapping raises it to that size
(up to 32 MiB on 64-bit: ``DEFAULT_MMAP_THRESHOLD_MAX``, glibc malloc/malloc.c). After the
replay's first freed batch array, every later per-batch array (numpy columns, ingest outputs,
ops: 0.5-2 MiB each) comes from the heap and the worker threads' arenas instead, between the
model's long-lived, growing arrays; the freed space fragments and stays resident. Measured on
a 30 M-event replay (benchmarks/README.md, issue 15): 56 MB of peak RSS; more on a longer one.

Setting the threshold with ``mallopt(M_MMAP_THRESHOLD)`` fixes it (mallopt(3): the dynamic
adjustment is then disabled), so each large array is its own mapping again. Only where memory
comes from changes, never a result. Elsewhere (not glibc) this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

#: mallopt parameter number (glibc malloc.h)
M_MMAP_THRESHOLD = -3
#: glibc's own starting value, kept from now on
MMAP_THRESHOLD = 128 * 1024

_fixed = False


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (once per process); whether it is."""
    global _fixed
    if _fixed or not sys.platform.startswith("linux"):
        return _fixed
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols, or no mallopt (not glibc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _fixed = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return _fixed
