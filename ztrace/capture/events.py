"""The ring buffer record (``probes/zs_events.h``) as numpy, and batched reading of the ring.

Nothing here creates a Python object per event: the ring buffer's bytes are copied out in one
slice, viewed with ``np.frombuffer`` through a structured dtype, and turned into Arrow columns
with vectorised numpy.
"""

from __future__ import annotations

import mmap

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
#: the kernel's drop counters (probes/zs_events.h, ZT_DROP_*), in slot order
DROP_SLOTS = (
    "ringbuf_full",
    "inflight_full",
    "end_without_begin",
    "summary_map_full",
    "return_missed",
    "entry_missed",
    "spin_own_ring",
    "ring_refused",
    "stack_reused",
)

# The kernel's ring buffer: each record is an 8-byte header (u32 len | BUSY | DISCARD,
# u32 page offset) and the data, rounded up to 8 bytes (kernel/bpf/ringbuf.c). Our data is a
# batch: ``struct zs_batch_hdr`` (16 bytes, ``n`` first) and ``n`` events.
_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8
BATCH_HDR_BYTES = 16
BATCH_HDR_DTYPE = np.dtype([("n", "<u4"), ("cpu", "<u2"), ("busy", "<u2"), ("first_ts", "<u8")])
assert BATCH_HDR_DTYPE.itemsize == BATCH_HDR_BYTES


#: one event as 80 opaque bytes, for copies (numpy copies structured arrays field by field)
RECORD_DTYPE = np.dtype((np.void, EVENT_DTYPE.itemsize))


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

    def __init__(self, map_fd: int, size_bytes: int, batch: int = 64) -> None:
        if size_bytes & (size_bytes - 1):
            raise ValueError(f"ring buffer size {size_bytes} is not a power of two")
        #: a full record (``batch`` events): its ring header word and its stride in the ring
        self._batch = batch
        self._full_len = BATCH_HDR_BYTES + batch * EVENT_DTYPE.itemsize
        self._full_stride = record_bytes(batch)
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
        # The two positions, each as one aligned u64 that numpy loads and stores with one
        # 8-byte move (libbpf: smp_load_acquire / smp_store_release; on x86 plain moves are
        # both). Never struct.pack_into: CPython zero-fills the target before writing it
        # (_struct.c s_pack_internal), so the kernel could read consumer_pos == 0, find the
        # ring "full" and refuse a batch (6.18 host: 64 events in about one 4-writer run of
        # four, with the ring at most 13 of 256 MiB full; bpf_ringbuf_query at the refusal
        # read AVAIL_DATA == producer_pos). struct.unpack_from reads byte by byte (_struct.c
        # lu_ulonglong), which may tear a producer_pos the kernel is moving.
        self._cons_pos = np.ndarray((1,), np.uint64, buffer=self._cons)
        self._prod_pos = np.ndarray((1,), np.uint64, buffer=self._data)
        self._words = self._view.cast("I")
        self.records = 0
        self.bytes = 0
        #: records skipped because their count does not match their size, and the events
        #: their size holds (counted as lost: ``ring_malformed``)
        self.malformed_records = 0
        self.malformed_events = 0

    def pending_bytes(self) -> int:
        cons, prod = int(self._cons_pos[0]), int(self._prod_pos[0])
        return prod - cons

    def read(self, max_events: int = 1 << 20) -> np.ndarray:
        """Committed events not yet consumed (about ``max_events`` at most), as ``EVENT_DTYPE``."""
        cons, prod = int(self._cons_pos[0]), int(self._prod_pos[0])
        if prod <= cons:
            return np.empty(0, EVENT_DTYPE)
        page, mask = self._page, self._mask
        view, words = self._view, self._words  # words: the ring as u32, for the headers
        itemsize = EVENT_DTYPE.itemsize
        chunks: list[np.ndarray] = []  # copies out of the ring, in ring order
        views: list[memoryview] = []  # records read one by one, not yet copied

        def copy_views() -> None:
            # one copy for many records (bytes.join is a memcpy per record; a structured
            # np.concatenate of thousands of views costs ~100x more in dtype promotion)
            if views:
                chunks.append(np.frombuffer(b"".join(views), EVENT_DTYPE))
                for v in views:
                    v.release()
                views.clear()

        pos, nev, nrec = cons, 0, 0
        while pos < prod and nev < max_events:
            k = self._full_records(pos, prod, max_events - nev)
            if k:
                copy_views()
                chunks.append(self._copy_full(pos, k))
                pos += k * self._full_stride
                nev += k * self._batch
                nrec += k
                continue
            off = page + (pos & mask)
            # ring header (u32 len | flags, u32 pg_off), then the batch's u32 n; records are
            # 8-byte aligned. Indexing a u32 memoryview costs half a struct.unpack_from.
            ln, n = words[off >> 2], words[(off >> 2) + 2]
            if ln & _BUSY:
                break  # still being written: stop here, keep order
            size = ln & ~(_BUSY | _DISCARD)
            if ln & _DISCARD:
                pass  # the program gave the record up: nothing in it
            elif size != BATCH_HDR_BYTES + n * itemsize:
                # Every record the program writes is a batch whose count matches its size;
                # one that does not cannot be parsed, but its length (the kernel's) still
                # finds the next record. Skip it and count the events its size holds as lost
                # (``ring_malformed``), rather than end the capture and lose everything it
                # had not written yet (session 12, before zs_capture.bpf.c zt_claim: a whole
                # 58-s guest capture, with "96 bytes is not a batch of 0 events").
                self.malformed_records += 1
                self.malformed_events += max(size - BATCH_HDR_BYTES, 0) // itemsize
            else:
                start = off + _HDR + BATCH_HDR_BYTES
                views.append(view[start : start + n * itemsize])
                nev += n
                nrec += 1
            pos += (_HDR + size + 7) & ~7
        copy_views()
        if len(chunks) == 1:
            out = chunks[0]
        elif chunks:  # as opaque 80-byte records: a structured concatenate copies per field
            out = np.concatenate([c.view(RECORD_DTYPE) for c in chunks]).view(EVENT_DTYPE)
        else:
            out = np.empty(0, EVENT_DTYPE)
        # release the space to the kernel (libbpf: smp_store_release(consumer_pos))
        self._cons_pos[0] = pos
        self.records += nrec
        self.bytes += pos - cons
        if self.malformed_records >= 64 and self.malformed_records > self.records:
            # not a rare bad record but a program whose records this reader cannot parse
            # (its event layout is not EVENT_DTYPE): refuse rather than report all as lost
            raise RuntimeError(
                f"{self.malformed_records} of {self.malformed_records + self.records} ring "
                f"records do not hold whole {itemsize}-byte events: the BPF program and "
                "ztrace.capture.events disagree on the event layout"
            )
        return out

    def _full_records(self, pos: int, prod: int, room: int) -> int:
        """How many records from ``pos`` on are committed, full batches (the common case at a
        high rate), found with one vectorised look at their headers instead of a Python
        step per record (~1 µs each: a fifth of the consumer's CPU at 1 M events/s)."""
        stride = self._full_stride
        # a run spans at most the ring's size: the kernel maps the data area twice in a
        # row, so such a run is contiguous in our mapping wherever it starts
        k = min((prod - pos) // stride, room // self._batch, self.size // stride)
        if k < 2:
            return 0
        words = np.frombuffer(self._data, np.uint32)
        offs = (self._page + ((pos + stride * np.arange(k, dtype=np.int64)) & self._mask)) >> 2
        ok = (words[offs] == self._full_len) & (words[offs + 2] == self._batch)
        return k if ok.all() else int(np.argmin(ok))

    def _copy_full(self, pos: int, k: int) -> np.ndarray:
        """The events of ``k`` full records from ``pos`` on, in one strided copy."""
        stride, start = self._full_stride, self._page + (pos & self._mask)
        region = np.frombuffer(self._data, np.uint8, count=k * stride, offset=start)
        body = region.reshape(k, stride)[:, _HDR + BATCH_HDR_BYTES : self._full_len + _HDR]
        return np.ascontiguousarray(body).view(EVENT_DTYPE).reshape(-1)

    def close(self) -> None:
        del self._cons_pos, self._prod_pos  # exports of the maps: close() refuses otherwise
        self._words.release()
        self._view.release()
        self._cons.close()
        self._data.close()
