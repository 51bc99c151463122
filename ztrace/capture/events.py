"""The ring buffer record (``probes/zs_events.h``) as numpy, and batch reading of the ring.

Nothing here creates a Python object per event: the ring buffer's bytes are copied out in one
slice, viewed with ``np.frombuffer`` through a structured dtype, and turned into Arrow columns
with vectorised numpy.
"""

from __future__ import annotations

import mmap
import struct

import numpy as np

#: Mirrors ``struct zs_event`` (80 bytes); tests/test_capture.py checks it against the header.
EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<u8"),
        ("pool", "<u8"),
        ("handle", "<u8"),
        ("duration_ns", "<u8"),
        ("aux", "<u8"),
        ("size", "<u4"),
        ("tid", "<u4"),
        ("pid", "<u4"),
        ("stack_id", "<i4"),
        ("ret", "<i4"),
        ("cpu", "<u2"),
        ("type", "u1"),
        ("src", "u1"),
        ("comm", "S16"),
    ]
)
assert EVENT_DTYPE.itemsize == 80

# event type codes (ZT_EV_*) and their trace-format names
EV_MALLOC, EV_FREE, EV_COMPACT, EV_MIGRATE, EV_LOCK = 1, 2, 3, 4, 5
EV_ZSWAP_STORE, EV_ZSWAP_LOAD, EV_ZSWAP_WB, EV_ZSWAP_INVAL = 6, 7, 8, 9
EV_READ, EV_WRITE, EV_MALLOC_FAIL = 10, 11, 12  # EV_MALLOC_FAIL: user space, from ret
EV_SPIN = 13  # queued_spin_lock_slowpath kprobe: every contended spinlock (ZT_SPIN_SLOWPATH)
EVENT_NAMES: dict[int, str] = {
    EV_MALLOC: "zs_malloc",
    EV_FREE: "zs_free",
    EV_COMPACT: "zs_compact",
    EV_MIGRATE: "zs_migrate",
    EV_LOCK: "lock_contention",
    EV_ZSWAP_STORE: "zswap_store",
    EV_ZSWAP_LOAD: "zswap_load",
    EV_ZSWAP_WB: "zswap_writeback",
    EV_ZSWAP_INVAL: "zswap_invalidate",
    EV_READ: "zs_read",
    EV_WRITE: "zs_write",
    EV_MALLOC_FAIL: "zs_malloc_failed",
    EV_SPIN: "spin_slowpath",
}
SRC_KPROBE, SRC_KMEM_TP, SRC_LOCK_TP = 1, 2, 3
DROP_SLOTS = ("ringbuf_full", "inflight_full", "end_without_begin")

# The kernel's ring buffer: each record is an 8-byte header (u32 len | BUSY | DISCARD,
# u32 page offset) and the data, rounded up to 8 bytes (kernel/bpf/ringbuf.c).
_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8
RECORD_BYTES = _HDR + ((EVENT_DTYPE.itemsize + 7) & ~7)
RECORD_DTYPE = np.dtype([("len", "<u4"), ("pg_off", "<u4"), ("ev", EVENT_DTYPE)])
assert RECORD_DTYPE.itemsize == RECORD_BYTES


class RingReader:
    """Consume a BPF ring buffer map directly through mmap, a batch at a time.

    BCC's ``open_ring_buffer`` calls back into Python once per record, which caps the consumer
    at a few hundred thousand events per second. The map is mmapped as libbpf does it: the
    consumer position page read-write, the producer page plus the data area (mapped twice in
    a row by the kernel, so a record never wraps) read-only.
    """

    def __init__(self, map_fd: int, size_bytes: int) -> None:
        if size_bytes & (size_bytes - 1):
            raise ValueError(f"ring buffer size {size_bytes} is not a power of two")
        self._page = mmap.PAGESIZE
        self.size = size_bytes
        self._mask = size_bytes - 1
        self._cons = mmap.mmap(
            map_fd, self._page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
        )
        self._data = mmap.mmap(
            map_fd,
            self._page + 2 * size_bytes,
            mmap.MAP_SHARED,
            mmap.PROT_READ,
            offset=self._page,
        )
        self.records = 0
        self.bytes = 0

    def pending_bytes(self) -> int:
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        (prod,) = struct.unpack_from("<Q", self._data, 0)
        return prod - cons

    def read(self, max_records: int = 1 << 16) -> np.ndarray:
        """Committed records not yet consumed (up to ``max_records``), as ``EVENT_DTYPE``."""
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        (prod,) = struct.unpack_from("<Q", self._data, 0)
        avail = prod - cons
        if avail <= 0:
            return np.empty(0, EVENT_DTYPE)
        n = min(avail // RECORD_BYTES, max_records)
        start = self._page + (cons & self._mask)
        raw = self._data[start : start + n * RECORD_BYTES]  # one copy out of the ring
        recs = np.frombuffer(raw, dtype=RECORD_DTYPE)
        lens = recs["len"]
        busy = np.flatnonzero(lens & _BUSY)
        k = int(busy[0]) if len(busy) else n  # stop at the first record still being written
        if k and np.any((lens[:k] & ~np.uint32(_DISCARD)) != EVENT_DTYPE.itemsize):
            # Every record this program writes has one size; anything else means the ring
            # holds something we do not understand. Refuse rather than misparse.
            raise RuntimeError("ring buffer holds a record of unexpected size")
        out = recs["ev"][:k]
        if k and np.any(lens[:k] & _DISCARD):
            out = out[(lens[:k] & _DISCARD) == 0]
        out = out.copy()
        # release the space to the kernel (libbpf: smp_store_release(consumer_pos))
        struct.pack_into("<Q", self._cons, 0, cons + k * RECORD_BYTES)
        self.records += len(out)
        self.bytes += k * RECORD_BYTES
        return out

    def close(self) -> None:
        self._cons.close()
        self._data.close()
