"""One lock wait of a chosen length, in the real kernel, amid a stream of short ones.

A writer blocks inside ``pipe_write()`` while it holds ``pipe->mutex``: its source buffer is
a page registered with userfaultfd, so the copy from user space faults and waits for us
(fs/pipe.c: pipe_write takes ``__pipe_lock`` before ``copy_page_from_iter``). A second
writer to the same pipe then waits on the mutex (one ``lock:contention_begin/end`` pair)
until we close the userfaultfd, which lets the fault complete. Meanwhile four threads map
and unmap memory and contend on the process's mmap_lock, so many short waits begin and end
while the long one is still running.

    python -m tests.support.long_wait HOLD_S STORM_S

prints ``waited <seconds>`` (the second writer's own wall-clock wait).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import sys
import threading
import time

_SYS_USERFAULTFD = 323  # x86_64
_UFFD_API = 0xAA
_UFFDIO_API = 0xC018AA3F  # _IOWR(0xAA, 0x3F, struct uffdio_api)
_UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
_UFFDIO_REGISTER_MODE_MISSING = 1
_UFFD_MSG_SIZE = 32  # sizeof(struct uffd_msg)
_PAGE = mmap.PAGESIZE


def _userfault_page() -> tuple[int, mmap.mmap]:
    """A fresh anonymous page whose first touch waits on the returned userfaultfd."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(_SYS_USERFAULTFD, os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"userfaultfd: {os.strerror(err)}")
    fcntl.ioctl(fd, _UFFDIO_API, bytearray(struct.pack("QQQ", _UFFD_API, 0, 0)))
    page = mmap.mmap(-1, _PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    reg = struct.pack("QQQQ", addr, _PAGE, _UFFDIO_REGISTER_MODE_MISSING, 0)
    fcntl.ioctl(fd, _UFFDIO_REGISTER, bytearray(reg))
    return fd, page


def _storm(until: float) -> None:
    while time.monotonic() < until:
        m = mmap.mmap(-1, 1 << 16)
        m[0:1] = b"x"
        m.close()


def main(hold_s: float, storm_s: float) -> float:
    """Run the storm for ``storm_s`` and, once the holder is parked, one mutex wait of
    about ``hold_s``; return the waiter's measured wait in seconds."""
    uffd, page = _userfault_page()
    r, w = os.pipe()
    waited: list[float] = []

    def holder() -> None:
        os.write(w, memoryview(page)[:_PAGE])  # faults inside pipe_write, mutex held

    def waiter() -> None:
        t = time.monotonic()
        os.write(w, b"x")
        waited.append(time.monotonic() - t)

    until = time.monotonic() + storm_s
    storm = [threading.Thread(target=_storm, args=(until,)) for _ in range(4)]
    threads = [threading.Thread(target=holder), *storm]
    for t in threads:
        t.start()
    # the fault's message: the holder is parked in pipe_write with the mutex held (however
    # loaded the machine), so the waiter started now waits for it
    os.read(uffd, _UFFD_MSG_SIZE)
    threads.append(threading.Thread(target=waiter))
    threads[-1].start()
    time.sleep(hold_s)
    os.close(uffd)  # the fault completes, the holder copies and unlocks, the waiter gets it
    for t in threads:
        t.join()
    os.close(r)
    os.close(w)
    return waited[0]


if __name__ == "__main__":
    print(f"waited {main(float(sys.argv[1]), float(sys.argv[2])):.3f}", flush=True)
