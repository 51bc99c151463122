"""The ring buffer record (``probes/zs_events.h``) as numpy, and batched reading of the ring.

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

SRC_KPROBE, SRC_KMEM_TP, SRC_LOCK_TP = 1, 2, 3
DROP_SLOTS = ("ringbuf_full", "inflight_full", "end_without_begin", "summary_map_full")

# The kernel's ring buffer: each record is an 8-byte header (u32 len | BUSY | DISCARD,
# u32 page offset) and the data, rounded up to 8 bytes (kernel/bpf/ringbuf.c). Our data is a
# batch: ``struct zs_batch_hdr`` (16 bytes, ``n`` first) and ``n`` events.
_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8
BATCH_HDR_BYTES = 16
BATCH_HDR_DTYPE = np.dtype([("n", "<u4"), ("cpu", "<u2"), ("busy", "<u2"), ("first_ts", "<u8")])
assert BATCH_HDR_DTYPE.itemsize == BATCH_HDR_BYTES


def record_bytes(n_events: int) -> int:
    """Ring bytes one record of ``n_events`` takes (header + batch header + events)."""
    return _HDR + ((BATCH_HDR_BYTES + n_events * EVENT_DTYPE.itemsize + 7) & ~7)


class RingReader:
    """Consume a BPF ring buffer map directly through mmap, many records at a time.

    BCC's ``open_ring_buffer`` calls back into Python once per record, which caps the consumer
    at a few hundred thousand events per second. The map is mmapped as libbpf does it: the
    consumer position page read-write, the producer page plus the data area (mapped twice in
    a row by the kernel, so a record never wraps) read-only. Each record is a batch of up to
    ``ZT_BATCH`` events; only the record headers are walked in Python (one per batch), the
    events are viewed in place through the structured dtype and copied out by one
    ``np.concatenate``.
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
        self._view = memoryview(self._data)
        self._words = self._view.cast("I")
        self.records = 0
        self.bytes = 0

    def pending_bytes(self) -> int:
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        (prod,) = struct.unpack_from("<Q", self._data, 0)
        return prod - cons

    def read(self, max_events: int = 1 << 20) -> np.ndarray:
        """Committed events not yet consumed (about ``max_events`` at most), as ``EVENT_DTYPE``."""
        (cons,) = struct.unpack_from("<Q", self._cons, 0)
        (prod,) = struct.unpack_from("<Q", self._data, 0)
        if prod <= cons:
            return np.empty(0, EVENT_DTYPE)
        page, mask = self._page, self._mask
        view, words = self._view, self._words  # words: the ring as u32, for the headers
        itemsize = EVENT_DTYPE.itemsize
        parts: list[memoryview] = []
        pos, nev, nrec = cons, 0, 0
        while pos < prod and nev < max_events:
            off = page + (pos & mask)
            # ring header (u32 len | flags, u32 pg_off), then the batch's u32 n; records are
            # 8-byte aligned. Indexing a u32 memoryview costs half a struct.unpack_from.
            ln, n = words[off >> 2], words[(off >> 2) + 2]
            if ln & _BUSY:
                break  # still being written: stop here, keep order
            size = ln & ~(_BUSY | _DISCARD)
            if not ln & _DISCARD:
                if size != BATCH_HDR_BYTES + n * itemsize:
                    # Every record this program writes is a batch; anything else means the
                    # ring holds something we do not understand. Refuse rather than misparse.
                    raise RuntimeError(
                        f"ring buffer record of {size} bytes is not a batch of {n} events"
                    )
                start = off + _HDR + BATCH_HDR_BYTES
                parts.append(view[start : start + n * itemsize])
                nev += n
                nrec += 1
            pos += (_HDR + size + 7) & ~7
        # one copy out of the ring (bytes.join is a memcpy per record; a structured
        # np.concatenate of thousands of views costs ~100x more in dtype promotion)
        out = np.frombuffer(b"".join(parts), EVENT_DTYPE) if parts else np.empty(0, EVENT_DTYPE)
        for v in parts:
            v.release()
        # release the space to the kernel (libbpf: smp_store_release(consumer_pos))
        struct.pack_into("<Q", self._cons, 0, pos)
        self.records += nrec
        self.bytes += pos - cons
        return out

    def close(self) -> None:
        self._words.release()
        self._view.release()
        self._cons.close()
        self._data.close()
