"""What every user of a zram device shares: the device lock and the sysfs stat layout.

The oracle, the capture tests, ``validate locks`` and the benchmarks all reset and refill
``/dev/zram0``. Two of them at once would corrupt each other's numbers, so each holds one
advisory lock for as long as it uses the device. Keep it in this one place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

from ztrace.errors import CaptureError

LOCK_PATH = "/tmp/ztrace-zram0.lock"
PAGE = 4096
#: BLKDISCARD from <linux/fs.h>: _IO(0x12, 119)
BLKDISCARD = 0x1277

#: zram mm_stat columns (Documentation/admin-guide/blockdev/zram.rst); newer kernels add more
MM_STAT: tuple[str, ...] = (
    "orig_data_size",
    "compr_data_size",
    "mem_used_total",
    "mem_limit",
    "mem_used_max",
    "same_pages",
    "pages_compacted",
    "huge_pages",
    "huge_pages_since",
)


@contextlib.contextmanager
def zram_lock(timeout_s: float = 600.0, *, lock_path: str = LOCK_PATH) -> Iterator[None]:
    """Hold the shared zram device lock, waiting up to ``timeout_s``."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CaptureError(
                        f"{lock_path} is held by another user of /dev/zram0 "
                        f"(waited {timeout_s:.0f} s)"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing drops the flock
