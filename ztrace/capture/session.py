"""The capture loop: ring buffer -> reorder window -> Arrow -> rotating Parquet files.

Memory is bounded: the ring buffer is fixed-size (``--ringbuf-pages``), and the reorder
buffer holds at most ``reorder_window`` of events (forced out early past ``max_pending``
rows). Records the kernel could not queue are counted in the kernel and end up in every
file's ``ztrace.lost_events`` and in the exit footer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ztrace.capture import attribute
from ztrace.capture import summary as summary_mod
from ztrace.capture.background import BackgroundWorker
from ztrace.capture.events import EVENT_DTYPE, RECORD_DTYPE
from ztrace.capture.features import Features, Kallsyms, detect, require_privileges
from ztrace.capture.loader import (
    DEFAULT_BATCH,
    DEFAULT_RINGBUF_PAGES,
    STACK_REWALK,
    Loaded,
    ProbeMisses,
    make_plan,
    pool_name,
)
from ztrace.format import TraceMeta, TraceWriter
from ztrace.format.events import (
    EV_FREE,
    EV_LOCK,
    EV_MALLOC,
    EV_MALLOC_FAIL,
    EV_MIGRATE,
    EV_READ,
    EV_SPIN,
    EV_WRITE,
    EV_ZSWAP_INVAL,
    EV_ZSWAP_LOAD,
    EV_ZSWAP_STORE,
    EV_ZSWAP_WB,
    EVENT_NAMES,
)
from ztrace.lockflags import LOCK_CONTENTION, SPIN_SLOWPATH, measured_waits

DEFAULT_PROBES = ("zsmalloc", "locks")
_READ_EVENTS = 1 << 16
#: flush (write what left the reorder window) once this many rows were read since the last
#: flush, not only every ``flush_interval_s``: at 1 M events/s the arrays then stay a few MiB
#: and cache-warm between the read and the write (benchmarks/README.md "capture")
_FLUSH_ROWS = 1 << 16
#: event column dictionary: code k (ZT_EV_*) is entry k - 1
_EVENT_DICT = [EVENT_NAMES[k] for k in sorted(EVENT_NAMES)]
assert sorted(EVENT_NAMES) == list(range(1, len(_EVENT_DICT) + 1))


@dataclass
class CaptureOptions:
    out: Path
    probes: list[str] = field(default_factory=lambda: list(DEFAULT_PROBES))
    duration_s: float | None = None
    pool: str | None = None
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    rotate_mb: float = 64.0
    rotate_s: float | None = None
    anonymize: bool = False
    command: list[str] | None = None
    target_tgid: int = 0
    reorder_window_ms: float = 500.0
    #: how long an event the kernel has begun and not yet emitted (a lock wait, a probed call)
    #: holds the writer back (:func:`reorder_watermark`); at least the reorder window
    inflight_max_ms: float = 10_000.0
    max_pending: int = 4_000_000
    #: seconds between writes; None = hold everything until the end (short experiments on
    #: a busy host: the consumer then only copies the ring, the cheapest way to lose nothing)
    flush_interval_s: float | None = 0.2
    poll_ms: int = 50
    #: always-on mode: aggregate in the kernel, write summary-NNNNN.parquet per interval
    summary: bool = False
    #: seconds between live lines (stderr) and, with ``summary``, between summary files
    interval_s: float | None = None
    #: only events on these CPUs (None: all)
    cpus: list[int] | None = None
    #: only tasks in this cgroup v2 directory or below it
    cgroup: str | None = None
    #: keep at most this many bytes / files of finished parts: the newest, as a ring
    max_size_bytes: int | None = None
    max_files: int | None = None
    #: ``each`` (walk every lock wait's stack) or ``per-lock`` (loader.LOCK_STACKS)
    lock_stacks: str = "each"
    #: zs_malloc/zs_free through fentry/fexit where zsmalloc is built in (else kprobes)
    fentry: bool = True


@dataclass
class CaptureSummary:
    events: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    late_dropped: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    modes: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    skipped_kprobes: list[str] = field(default_factory=list)
    #: functions probed through fentry/fexit; why fentry was refused where it was planned
    fentry: list[str] = field(default_factory=list)
    fentry_refused: str = ""
    command_rc: int | None = None
    stacks: dict[int, list[str]] = field(default_factory=dict)
    #: lock address -> size class index, read from the kernel (lock_classes.json)
    lock_classes: dict[int, int] = field(default_factory=dict)
    #: the probes' lock_class map was full (its capacity), so later class locks were not
    #: read from the kernel; 0 while it had room
    lock_class_map_full: int = 0
    consumer_cpu_s: float = 0.0
    #: CPU of the whole capture process (every thread: ring reads, Parquet writes, Arrow's
    #: pools) from the start of consuming to the close; a workload started by the capture
    #: is a child process and not in it
    process_cpu_s: float = 0.0
    mode: str = "events"
    ring_deleted_files: int = 0
    ring_deleted_rows: int = 0
    ring_limits: str = ""

    @property
    def lost_events(self) -> int:
        return lost_total(self.lost)

    def footer(self) -> str:
        """perf-style trust footer: what was written and what was lost."""
        lines = ["", "=== ztrace capture summary ==="]
        per = ", ".join(f"{k} {v}" for k, v in sorted(self.by_event.items())) or "none"
        if self.events == 0 and self.mode == "events":
            # an empty trace is still a trace: validate-trace and report accept it
            lines.append(
                f"events: 0 recorded in {self.seconds:.1f} s (none matched the probes and "
                "filters; the trace is valid and empty)"
            )
        else:
            lines.append(f"events: {self.events} in {self.seconds:.1f} s ({per})")
        lines.append(f"files: {len(self.files)} in {self.files[0].parent if self.files else '-'}")
        if self.ring_limits:
            lines.append(
                f"ring ({self.ring_limits}): kept the newest {len(self.files)} parts, deleted "
                f"the oldest {self.ring_deleted_files} ({self.ring_deleted_rows} events; "
                "not counted as lost)"
            )
        if self.events:
            lines.append(
                f"consumer CPU: {self.consumer_cpu_s:.2f} s "
                f"({1e6 * self.consumer_cpu_s / self.events:.2f} us/event)"
            )
        lines.append(
            f"capture process CPU: {self.process_cpu_s:.2f} s while consuming (all its threads)"
        )
        lines.append("probes: " + ", ".join(f"{k}={v}" for k, v in self.modes.items()))
        if self.mode == "summary":
            lines.append("mode: summary (aggregated in the kernel; no per-event rows)")
        for k, miss in self.missing.items():
            if miss:
                lines.append(f"not captured ({k}): " + "; ".join(miss))
        for s in self.skipped_kprobes:
            lines.append(f"skipped kprobe: {s}")
        if self.fentry:
            lines.append(f"fentry/fexit: {', '.join(self.fentry)} (kprobes for the rest)")
        if self.fentry_refused:
            lines.append(f"fentry refused, kprobes used instead: {self.fentry_refused}")
        bad = self.lost_events + self.late_dropped
        g = self.lost.get
        lines.append(
            f"lost: {bad}, total: {self.events + bad} "
            f"(ringbuf_full {g('ringbuf_full', 0)}, "
            f"ring_refused {g('ring_refused', 0)}, "
            f"inflight_full {g('inflight_full', 0)}, "
            f"probe_missed {g('probe_missed', 0)}, "
            f"late_for_reorder {self.late_dropped}; "
            f"end_without_begin {g('end_without_begin', 0)} not counted as lost)"
        )
        if any(
            g(k, 0) for k in ("probe_missed", "other_prog_skipped", "spin_reentry", "spin_own_ring")
        ):
            lines.append(
                "probe misses: "
                f"returns missed {g('return_missed', 0)}, entries missed {g('entry_missed', 0)}"
                f" (seen by the probes); kprobe nmissed {g('kprobe_nmissed', 0)}, programs "
                f"skipped {g('prog_skipped', 0)} (kernel counters); lock programs skipped "
                f"{g('lock_prog_skipped', 0)} (re-entries, not counted); other programs skipped "
                f"{g('other_prog_skipped', 0)}, spinlock slowpath re-entered "
                f"{g('spin_reentry', 0)}, entered in our own ring write "
                f"{g('spin_own_ring', 0)} (no event lost)"
            )
        if g("stack_reused", 0):
            lines.append(
                f"lock stacks: per-lock, {g('stack_reused', 0)} waits reused their lock's last "
                f"stack (walked on a lock's first wait and every {STACK_REWALK}th)"
            )
        if self.lock_classes:
            lines.append(
                f"class locks: {len(self.lock_classes)} named by the kernel's own size class "
                "(struct size_class, lock_classes.json)"
            )
        if self.lock_class_map_full:
            lines.append(
                f"class locks: the kernel-index map is full ({self.lock_class_map_full} "
                "locks); class locks past it are named from object sizes where the trace "
                "has them, else `class`"
            )
        if g("ring_malformed", 0):
            lines.append(
                f"ring records skipped: {g('ring_malformed', 0)} events in records whose count "
                "did not match their size (a probe bug: please report it)"
            )
        if self.lost.get("ringbuf_full", 0):
            lines.append("Consider increasing --ringbuf-pages.")
        if self.command_rc is not None:
            lines.append(f"command exit status: {self.command_rc}")
        return "\n".join(lines)


def lost_total(lost: dict[str, int]) -> int:
    """Events lost, from :meth:`Capture.lost_counts`: the ring and map drops, and
    ``probe_missed`` (kprobe pairs whose runs the kernel skipped)."""
    keys = (
        "ringbuf_full",
        "ring_refused",
        "ring_malformed",
        "inflight_full",
        "summary_map_full",
        "probe_missed",
    )
    return sum(lost.get(k, 0) for k in keys)


def start_with_selftest(opts: CaptureOptions) -> tuple[Capture, int]:
    """Start a capture whose BPF program also holds the synthetic producer ``zt_selftest``
    (probes/zs_capture.bpf.c, ZT_SELFTEST: 64 events through the probes' own emit path per
    run); return it and the producer's program fd, to run with BPF_PROG_TEST_RUN. For
    benchmarks/bench_capture.py and ztrace/checks/ringlock.py, never for a user's capture."""
    from bcc import BPF

    cap = Capture(opts)
    cap.plan.cflags.append("-DZT_SELFTEST")
    cap.start()
    assert cap.loaded is not None
    return cap, cap.loaded.bpf.load_func(b"zt_selftest", BPF.RAW_TRACEPOINT).fd


class _Anonymizer:
    """Dense ids for pids/tids and salted hashes for comms, stable within one capture."""

    def __init__(self) -> None:
        self._salt = os.urandom(16)
        self._ids: dict[int, int] = {}
        self._comms: dict[bytes, str] = {}

    def ids(self, a: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(a, return_inverse=True)
        mapped = np.array([self._ids.setdefault(int(u), len(self._ids) + 1) for u in uniq])
        return mapped[inv].astype(np.uint32) if len(a) else a.astype(np.uint32)

    def comm(self, c: bytes) -> str:
        s = self._comms.get(c)
        if s is None:
            s = "task-" + hashlib.blake2s(c, key=self._salt, digest_size=4).hexdigest()
            self._comms[c] = s
        return s


def ring_over(files: list[Path], max_files: int | None, max_size_bytes: int | None) -> bool:
    """Whether the finished ``files`` (oldest first) exceed --max-files / --max-size, so the
    oldest must go; never with one file left (the newest carries the final lost count)."""
    if len(files) <= 1:
        return False
    if max_files is not None and len(files) > max_files:
        return True
    size = sum(f.stat().st_size for f in files)
    return max_size_bytes is not None and size > max_size_bytes


class _CaptureWriter(TraceWriter):
    """TraceWriter that dictionary-encodes only the dictionary columns.

    Parquet's default tries a dictionary for every column; on random 64-bit handles and
    addresses that is wasted work and made writing 3x slower than reading the ring.

    Tables the capture builds already have the writer's exact schema: they skip
    ``format.conform()``, whose per-column copy was the consumer's costliest step (~250 ns
    per event on a loaded host).
    """

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if not (isinstance(table, pa.Table) and table.schema.equals(self.schema)):
            super().write(table)
            return
        if table.num_rows == 0:
            return
        # A part holds at most --rotate-mb of rows: a flush larger than what is left of the
        # part is split across parts. Written whole, one burst made one part of any size, so
        # --max-size could be exceeded by a whole flush, and a ring of small parts could hold
        # a single part (CI, stop 37: a guest's 12,000-event burst arrived in one flush).
        nbytes, rows = max(1, table.nbytes), table.num_rows
        while table.num_rows:
            if self._writer is None:
                self._open()
            assert self._writer is not None
            room = self.rotate_bytes - self._bytes
            take = min(table.num_rows, max(1, room * rows // nbytes))
            self._writer.write_table(table.slice(0, take))
            table = table.slice(take)
            self._bytes += take * nbytes // rows
            self.rows_written += take
            age = time.monotonic() - self._opened_at
            if self._bytes >= self.rotate_bytes or age >= (self.rotate_seconds or float("inf")):
                self.rotate()

    #: --max-size / --max-files: the ring of newest finished parts (None: keep all)
    max_size_bytes: int | None = None
    max_files: int | None = None
    ring_deleted_files = 0
    ring_deleted_rows = 0

    def rotate(self, lost_events: int | None = None) -> None:
        """Finish the current part, then drop the oldest parts beyond the ring's bounds
        (never the newest: it carries the final lost count)."""
        super().rotate(lost_events)
        import pyarrow.parquet as pq

        while ring_over(self.files, self.max_files, self.max_size_bytes):
            old = self.files.pop(0)
            self.ring_deleted_rows += pq.ParquetFile(old).metadata.num_rows
            old.unlink()
            self.ring_deleted_files += 1

    def _parquet_options(self) -> dict[str, Any]:
        # Dictionary-encode only the dictionary columns (see the class docstring). ts_ns is
        # sorted: delta encoding makes it small before zstd sees it. Min/max statistics only
        # where a reader uses them (TraceFiles.column_max: the replay's prescan) -- computing
        # them for random handles and addresses was a fifth of write_table's time. Together
        # ~40 % less CPU per written row (benchmarks/README.md "capture").
        stats = [c for c in ("ts_ns", "duration_ns", "size_bytes") if c in self.schema.names]
        return {
            "use_dictionary": [f.name for f in self.schema if pa.types.is_dictionary(f.type)],
            "write_statistics": stats,
            "column_encoding": {"ts_ns": "DELTA_BINARY_PACKED"},
        }


def reorder_watermark(drained_at_ns: int, window_ns: int, inflight_ns: list[int | None]) -> int:
    """The newest begin time the writer may write up to: every event still to come began
    after it. An event is emitted at its wait's end or its call's return with its begin
    time, so the watermark is the read's start less the reorder window (what the ring and
    the per-CPU batches may still hold), and before the oldest event still in flight in the
    kernel (``inflight_ns``: the oldest begin seen by this read's and the previous read's
    look at the in-flight maps, None where there was none). The previous read's counts too:
    an event that ended between the two looks may still sit in a CPU's batch.

    >>> reorder_watermark(10_000, 500, [None, None])
    9500
    >>> reorder_watermark(10_000, 500, [7_000, None])  # a wait that began at 7,000 is running
    6999
    >>> reorder_watermark(10_000, 500, [9_800, 9_900])  # young in-flight events: the window rules
    9500
    """
    mark = drained_at_ns - window_ns
    for ts in inflight_ns:
        if ts is not None:
            mark = min(mark, ts - 1)
    return mark


#: the record with comm seen as two u64 words, to hash it without copying strings
_COMM_WORDS = np.dtype(
    {
        "names": ["tid", "c0", "c1"],
        "formats": ["<u4", "<u8", "<u8"],
        "offsets": [
            EVENT_DTYPE.fields["tid"][1],
            EVENT_DTYPE.fields["comm"][1],
            EVENT_DTYPE.fields["comm"][1] + 8,
        ],
        "itemsize": EVENT_DTYPE.itemsize,
    }
)


class _CommCache:
    """comm column as dictionary indices, via a small tid-indexed cache.

    np.unique over every event's 16-byte comm sorts the whole batch and was the consumer's
    most expensive step. A task's comm rarely changes, so the cache maps tid (mod 64 Ki) to
    (comm hash, dictionary index); only events whose entry is missing or stale (another tid
    in the slot, an exec) take the slow path.
    """

    SLOTS = 1 << 16

    def __init__(self) -> None:
        self.names: list[str] = []
        self._by_key: dict[int, int] = {}
        self._by_name: dict[str, int] = {}
        self._tid = np.full(self.SLOTS, -1, np.int64)
        self._key = np.zeros(self.SLOTS, np.uint64)
        self._idx = np.zeros(self.SLOTS, np.int32)

    def encode(self, ev: np.ndarray, anon: _Anonymizer | None) -> pa.Array:
        w = ev.view(_COMM_WORDS)
        tid = w["tid"].astype(np.int64)
        key = w["c0"] ^ (w["c1"] * np.uint64(0x9E3779B97F4A7C15))
        slot = tid & (self.SLOTS - 1)
        ok = (self._tid[slot] == tid) & (self._key[slot] == key)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            uk, first = np.unique(key[bad], return_index=True)
            for k, f in zip(uk.tolist(), first.tolist(), strict=True):
                if k not in self._by_key:
                    # the name ends at its first NUL: on 6.1 bpf_get_current_comm() copies
                    # with strscpy() (6.12: strscpy_pad), so the bytes after it are a
                    # previous event's, left in the reused batch slot ("fio\0ker/u4:1")
                    raw = bytes(ev["comm"][bad[f]]).split(b"\0", 1)[0]
                    name = anon.comm(raw) if anon else raw.decode(errors="replace")
                    i = self._by_name.get(name)
                    if i is None:
                        i = self._by_name[name] = len(self.names)
                        self.names.append(name)
                    self._by_key[k] = i
            idx_of_uk = np.array([self._by_key[k] for k in uk.tolist()], np.int32)
            bslot = slot[bad]
            self._tid[bslot] = tid[bad]
            self._key[bslot] = key[bad]
            self._idx[bslot] = idx_of_uk[np.searchsorted(uk, key[bad])]
            idx = self._idx[slot]
            # two tids sharing a slot in one batch: the later write won; fix the others
            wrong = bad[self._key[bslot] != key[bad]]
            if len(wrong):
                idx[wrong] = idx_of_uk[np.searchsorted(uk, key[wrong])]
        else:
            idx = self._idx[slot]
        return _dict_column(idx, self.names)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass
class _LiveLine:
    """State of the ``-i/--interval`` line: differences since the previous line."""

    events: int = 0
    lost: int = 0
    contended: int = 0
    bytes: int = 0
    stacks_written: int = -1
    _prev: tuple[int, int, int] = (0, 0, 0)
    _header: bool = False

    def line(self, t: float, events: int, lost: int, contended: int, mb: float) -> str:
        pe, pl, pc = self._prev
        self._prev = (events, lost, contended)
        row = f"{t:8.1f} {events - pe:>10} {lost - pl:>8} {contended - pc:>10} {mb:>10.1f}"
        if not self._header:
            self._header = True
            head = f"{'time_s':>8} {'events':>10} {'lost':>8} {'contended':>10} {'MB_total':>10}"
            return head + "\n" + row
        return row


def _keep_freed_memory() -> None:
    """Make the allocators reuse freed memory instead of returning it to the kernel.

    The consumer allocates and frees arrays of a few MiB per ring read. By default glibc
    serves those with fresh mmaps and trims its heap after frees, and Arrow's jemalloc
    purges freed pages after a second: every batch then pays a page fault per 4 KiB, which
    on a VM whose freed pages go back to the host (balloon free-page reporting) cost more
    than the copies themselves (take() of 64 Ki events: 6 ns/event warm, ~200 ns with the
    faults). Memory stays bounded by the ring size and the reorder window.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum on 64-bit
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass  # not glibc: keep its defaults
    with contextlib.suppress(NotImplementedError, AttributeError, pa.ArrowNotImplementedError):
        pa.jemalloc_set_decay_ms(60_000)
    # numpy madvises MADV_HUGEPAGE on arrays of 4 MiB and more: with THP in `madvise` mode
    # every such fresh array then faults in whole 2 MiB pages that the kernel zeroes first
    # (clear_page_erms under folio_zero_user: half the consumer's samples at 1 M events/s in
    # `perf record`, benchmarks/README.md "capture"). The consumer's arrays live for one
    # read; 4 KiB pages are cheaper for them.
    with contextlib.suppress(ImportError, AttributeError):
        from numpy._core import multiarray

        multiarray._set_madvise_hugepage(False)  # type: ignore[attr-defined]


@dataclass
class _Run:
    """One ring read waiting in the reorder window: the events as read (``ev``), the order
    that sorts them by time (``order``; None when they already are) and their timestamps in
    that order (``ts``). A flush takes a prefix of ``ts`` (:meth:`head`) and keeps the rest."""

    ev: np.ndarray
    order: np.ndarray | None
    ts: np.ndarray

    def head(self, k: int) -> _Run:
        return _Run(self.ev, None if self.order is None else self.order[:k], self.ts[:k])

    def tail(self, k: int) -> _Run:
        if self.order is None:
            return _Run(self.ev[k:], None, self.ts[k:])
        return _Run(self.ev, self.order[k:], self.ts[k:])

    def rows(self) -> np.ndarray:
        """The events of this run in ts order, as opaque :data:`RECORD_DTYPE` records (a
        view when no reordering is needed). numpy copies a *structured* array field by
        field: a slice assignment, np.concatenate or take(out=) of 64 Ki events cost 3-6 ms,
        against 0.13-0.2 ms for the same bytes as void records (numpy 2 on the project
        host), so every record copy in the consumer goes through this view."""
        ev = self.ev.view(RECORD_DTYPE)
        if self.order is None:
            return ev[: len(self.ts)]
        return ev.take(self.order)


def _gather(parts: list[_Run]) -> tuple[np.ndarray, np.ndarray]:
    """The events of several sorted runs merged in ts order, and their timestamps: each
    run's rows in order, concatenated, then (if the runs overlap in time) one take in the
    merged order (the stable argsort of sorted runs is a merge)."""
    if len(parts) == 1:
        return parts[0].rows().view(EVENT_DTYPE), parts[0].ts
    ts = np.concatenate([r.ts for r in parts])
    buf = np.concatenate([r.rows() for r in parts])
    if np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        buf, ts = buf.take(order), ts[order]
    return buf.view(EVENT_DTYPE), ts


def _distinct(a: np.ndarray) -> list[int]:
    """The distinct values of an array holding a few (pools): one pass per value, no sort."""
    out: list[int] = []
    while len(a):
        v = a[0]
        out.append(int(v))
        a = a[a != v]
    return out


def _dict_column(codes: np.ndarray, names: list[str], mask: np.ndarray | None = None) -> pa.Array:
    idx = pa.array(codes.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, pa.array(names, pa.string()))


class Capture:
    """One capture: load probes, consume, write. Use :meth:`run` (blocking) or start/stop."""

    def __init__(self, opts: CaptureOptions, *, feats: Features | None = None) -> None:
        require_privileges()
        self.opts = opts
        self.feats = feats or detect()
        self.ksyms = Kallsyms()
        self.plan = make_plan(
            self.feats,
            opts.probes,
            pool=opts.pool,
            ringbuf_pages=opts.ringbuf_pages,
            target_tgid=opts.target_tgid,
            ksyms=self.ksyms,
            # --summary: no event stream, so a one-page ring and no batching timer
            batch=1 if opts.summary else DEFAULT_BATCH,
            cpus=opts.cpus,
            cgroup=opts.cgroup,
            lock_stacks=opts.lock_stacks,
            fentry=opts.fentry,
        )
        if opts.summary:  # no records: no off-CPU time to carry either
            self.plan.cflags.append("-DZT_SUMMARY")
            self.plan.cflags = [f for f in self.plan.cflags if f != "-DZT_OFFCPU"]
        self.summary = CaptureSummary(
            modes=dict(self.plan.modes),
            missing=self.plan.missing,
            mode="summary" if opts.summary else "events",
        )
        self.columns = ["pid", "comm"]
        if "locks" in opts.probes:
            lock_cols = ["lock_addr", "lock_kind", "wait_ns", "lock_flags", "stack_id"]
            self.columns = [*lock_cols, *self.columns]
        if "zswap" in opts.probes:
            self.columns = [*self.columns, "swap_entry", "outcome", "compressed_bytes"]
            # the folio's memcg (probes/zs_capture.bpf.c: zt_zswap_memcg; folio probes only)
            if not opts.summary and not self._frontswap():
                self.columns = [*self.columns, "memcg_id"]
        self._memcg_task_rows = 0
        self._misses: ProbeMisses | None = None
        self._misses_at = 0.0
        #: encodes and writes each flush's rows beside the ring-draining thread (events mode)
        self._bg: BackgroundWorker[tuple[np.ndarray, TraceMeta]] | None = None
        #: the metadata the next written rows carry (the worker sets it on the writer)
        self._meta: TraceMeta | None = None
        if self.plan.modes.get("zsmalloc") == "kprobe":
            self.columns = ["class_idx", *self.columns]  # zs_migrate's class
            if "-DZT_OFFCPU" in self.plan.cflags:
                self.columns = [*self.columns, "offcpu_ns"]
        if any(f.startswith("-DZT_MM_OFF=") for f in self.plan.cflags):
            self.columns = [*self.columns, "mm_switch_ns"]
        self._anon = _Anonymizer() if opts.anonymize else None
        self._comms = _CommCache()
        self._pools: dict[int, str] = {}
        #: one run per ring read: its events in ring order and its sorted timestamps
        self._pending: list[_Run] = []
        self._pending_rows = 0
        self._last_written = 0
        #: the oldest in-flight begin time at the previous and at the last read (reorder_watermark)
        self._inflight: list[int | None] = [None, None]
        self._stop = threading.Event()
        self.loaded: Loaded | None = None
        self.writer: TraceWriter | None = None
        self.capture_id = uuid.uuid4().hex
        self._extra: dict[str, str] = {}
        self._sum_state = summary_mod.SummaryState()
        self._sum_index = 0
        self._sum_t0 = 0
        self._live = _LiveLine()
        self.attrib: attribute.StackAttributor | None = None
        self._lock_kinds = list(attribute.KINDS)
        self._t0 = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        _keep_freed_memory()
        self.loaded = Loaded(self.plan)
        self.summary.skipped_kprobes = self.loaded.skipped
        self.summary.fentry = list(self.plan.fentry)
        self.summary.fentry_refused = self.plan.fentry_refused
        self.attrib = attribute.StackAttributor(
            self.loaded.walk_stack, self.ksyms.resolve, self.feats.version
        )
        extra = {
            "probes": ",".join(f"{k}:{v}" for k, v in self.plan.modes.items()),
            "pool_id": "first 8 bytes of the pool name, little-endian (names: extra.pools)"
            if self.plan.modes.get("zsmalloc") == "kmem-tracepoint"
            else "struct zs_pool address (names: extra.pools)",
            "not_captured": "; ".join(m for ms in self.plan.missing.values() for m in ms),
            "anonymized": str(self.opts.anonymize).lower(),
            "host": "" if self.opts.anonymize else platform.node(),
            "boot_id": _boot_id(),
            "capture_id": self.capture_id,
            "attached": ",".join(self.loaded.attached),
            "batch": str(self.plan.batch),
            "fentry": ",".join(self.plan.fentry),
            "mode": "summary" if self.opts.summary else "events",
        }
        if "locks" in self.plan.modes:
            extra["lock_stacks"] = (
                f"per-lock:{STACK_REWALK}" if self.opts.lock_stacks == "per-lock" else "each"
            )
        self._extra = extra
        self._t0 = time.monotonic()
        self._cpu0 = time.thread_time()
        self._pcpu0 = time.process_time()
        if self.opts.summary:
            Path(self.opts.out).mkdir(parents=True, exist_ok=True)
            self._sum_t0 = time.monotonic_ns()
            return
        meta = TraceMeta(
            kernel_release=self.feats.release,
            page_size=os.sysconf("SC_PAGE_SIZE"),
            nr_cpus=os.cpu_count() or 1,
            source="capture",
            capture_start_ns=time.monotonic_ns(),
            schema_version=2 if "zswap" in self.opts.probes else 1,
            extra=extra,
        )
        self.writer = _CaptureWriter(
            self.opts.out,
            meta,
            columns=self._all_columns(),
            rotate_bytes=self._rotate_bytes(),
            rotate_seconds=self.opts.rotate_s,
        )
        self.writer.max_size_bytes = self.opts.max_size_bytes
        self.writer.max_files = self.opts.max_files
        self._meta = meta
        self._bg = BackgroundWorker(self._write_out, name="ztrace-writer")

    def _rotate_bytes(self) -> int:
        """Part size: --rotate-mb, but at most a quarter of --max-size so the ring holds
        several parts (the limit counts finished parts; the one being written is extra)."""
        rot = int(self.opts.rotate_mb * (1 << 20))
        if self.opts.max_size_bytes is not None:
            rot = max(1 << 16, min(rot, self.opts.max_size_bytes // 4))
        return rot

    def _all_columns(self) -> list[str]:
        from ztrace.format import REQUIRED_COLUMNS

        return [*REQUIRED_COLUMNS, *self.columns]

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until: Callable[[], bool] | None = None) -> CaptureSummary:
        """Consume until stopped, the duration passes, or ``until()`` is true; then flush."""
        if self.loaded is None:
            self.start()
        assert self.loaded is not None
        self._cpu0 = time.thread_time()  # finish() runs in this thread too
        self._pcpu0 = time.process_time()
        deadline = self._t0 + self.opts.duration_s if self.opts.duration_s else None
        last_flush = last_line = time.monotonic()
        drained = 0  # rows read since the last flush
        interval = self.opts.interval_s
        try:
            while not self._stop.is_set():
                # the probes submit without wakeups (see zs_capture.bpf.c): poll on a timer
                self._stop.wait(self.opts.poll_ms / 1000)
                now = time.monotonic()
                if interval and now - last_line >= interval:
                    last_line = now
                    if self.opts.summary:
                        self._write_interval()
                    self._live_line()
                if self.opts.summary:
                    if (deadline and now >= deadline) or (until is not None and until()):
                        break
                    continue
                # the reorder watermark is taken *before* reading the ring: on a starved
                # host the thread may sleep between the read and the write, and events that
                # reach the ring meanwhile must still count as inside the window
                drained_at = time.monotonic_ns()
                # the in-flight maps are read before the ring: an event that ended before this
                # look is in the ring or a CPU's batch by now, one still running is in the map
                self._inflight = [self._inflight[-1], self._oldest_inflight(drained_at)]
                before = self._pending_rows
                self._drain()
                drained += self._pending_rows - before
                now = time.monotonic()
                due = self.opts.flush_interval_s is not None and (
                    now - last_flush >= self.opts.flush_interval_s or drained >= _FLUSH_ROWS
                )
                if due or self._pending_rows >= self.opts.max_pending:
                    self._flush(final=False, drained_at_ns=drained_at)
                    last_flush, drained = now, 0
                if deadline and now >= deadline:
                    break
                if until is not None and until():
                    break
        finally:
            self.finish()
        return self.summary

    def finish(self) -> None:
        """Drain what is left, write it all, close the last file with the final lost count."""
        if self.loaded is None:
            return
        if self.opts.summary:
            self._write_interval()
            self.summary.lost = self.lost_counts(fresh=True)
            self.summary.consumer_cpu_s = time.thread_time() - self._cpu0
            self.summary.process_cpu_s = time.process_time() - self._pcpu0
            self.summary.seconds = time.monotonic() - self._t0
            self.summary.ring_deleted_files = self._sum_deleted_files
            self.summary.ring_deleted_rows = self._sum_deleted_rows
            self.summary.ring_limits = self._ring_limits()
            self._write_stacks()
            self.loaded.close()
            self.loaded = None
            return
        if self.writer is None:
            return
        # A last read that fails (a flush syscall refused, a reader error) must not take with
        # it everything read before: write and close what was read, then raise. (Session 12:
        # a reader error here left a 58-s guest capture with an empty directory.)
        failure: Exception | None = None
        try:
            self.loaded.final_flush()
            self._drain()
        except Exception as exc:
            failure = exc
        self._flush(final=True)
        worker_cpu = 0.0
        if self._bg is not None:
            self._bg.close()
            worker_cpu = self._bg.cpu_s
        self.summary.lost = self.lost_counts(fresh=True)
        # CPU of the consumer's own threads (the workload may share the process in tests)
        self.summary.consumer_cpu_s = time.thread_time() - self._cpu0 + worker_cpu
        self.summary.process_cpu_s = time.process_time() - self._pcpu0
        extra = dict(self.writer.meta.extra)
        extra["consumer_cpu_s"] = f"{self.summary.consumer_cpu_s:.3f}"
        extra["capture_process_cpu_s"] = f"{self.summary.process_cpu_s:.3f}"
        # the same snapshot as the footer: the programs still run until loaded.close(), so a
        # second read could count one more (session 16: footer 7618 reused, metadata 7619)
        extra.update(self._lost_extra(self.summary.lost))
        self.writer.meta = self.writer.meta.replace(extra=extra)
        self.writer.close(lost_events=self.summary.lost_events + self.summary.late_dropped)
        self.summary.files = list(self.writer.files)
        if self.opts.max_size_bytes is not None or self.opts.max_files is not None:
            w = self.writer
            assert isinstance(w, _CaptureWriter)
            self.summary.ring_deleted_files = w.ring_deleted_files
            self.summary.ring_deleted_rows = w.ring_deleted_rows
            self.summary.ring_limits = self._ring_limits()
        self.summary.seconds = time.monotonic() - self._t0
        self._write_stacks()
        self.loaded.close()
        self.loaded = None
        if failure is not None:
            raise failure

    def _ring_limits(self) -> str:
        """The footer's name for the disk bounds given ("" when none)."""
        lim = []
        if self.opts.max_size_bytes is not None:
            lim.append(f"--max-size {self.opts.max_size_bytes / 1e6:.1f} MB")
        if self.opts.max_files is not None:
            lim.append(f"--max-files {self.opts.max_files}")
        return ", ".join(lim)

    # ------------------------------------------------------------------ summary mode
    _sum_deleted_files = 0
    _sum_deleted_rows = 0

    def _summary_ring(self) -> None:
        """--max-size / --max-files for summary intervals: drop the oldest interval files
        beyond the bounds, never the newest, as the event mode's ring does with its parts
        (_CaptureWriter.rotate). An interval holds what the aggregates gained in it, so the
        files kept are the newest window of the capture, and report sums that window."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        files = [f for f in self.summary.files if f.name.startswith("summary-")]
        while ring_over(files, self.opts.max_files, self.opts.max_size_bytes):
            old = files.pop(0)
            counts = pq.read_table(old, columns=["count"]).column("count")
            self._sum_deleted_rows += int(pc.sum(counts).as_py() or 0)
            old.unlink()
            self.summary.files.remove(old)
            self._sum_deleted_files += 1

    def _write_interval(self) -> None:
        """One summary file: what the in-kernel aggregates gained since the last one."""
        assert self.loaded is not None
        t1 = time.monotonic_ns()
        bpf = self.loaded.bpf
        table = summary_mod.interval_rows(
            self._sum_state,
            bpf.get_table("lock_agg"),
            bpf.get_table("op_agg"),
            self.attrib,
            self._sum_t0,
            t1,
        )
        lost = self.lost_counts()
        meta = {
            "summary_version": summary_mod.SUMMARY_VERSION,
            "kernel_release": self.feats.release,
            "nr_cpus": str(os.cpu_count() or 1),
            "page_size": str(os.sysconf("SC_PAGE_SIZE")),
            "lost_events": str(lost_total({**lost, "ringbuf_full": 0})),
            "interval_index": str(self._sum_index),
            **{f"extra.{k}": v for k, v in self._extra.items()},
        }
        path = Path(self.opts.out) / f"summary-{self._sum_index:05d}.parquet"
        summary_mod.write_summary(table, path, meta)
        self.summary.files.append(path)
        self._summary_ring()
        self._sum_index += 1
        self._sum_t0 = t1
        counts = table.column("count").to_numpy()
        event = np.array(table.column("event").to_pylist(), dtype=object)
        flags = table.column("lock_flags").fill_null(0).to_numpy()
        self.summary.events += int(counts.sum())
        # each wait once, as report counts them (a kprobe kernel's spinlock wait can be a
        # slowpath row and a tracepoint row both): where the slowpath pair is attached, every
        # spinlock wait is one of its rows
        has_slowpath = "-DZT_SPIN_SLOWPATH" in self.plan.cflags
        waits = measured_waits(
            event == SPIN_SLOWPATH, event == LOCK_CONTENTION, flags, has_slowpath
        )
        self._live.contended += int(counts[waits].sum()) if len(counts) else 0
        self._live.bytes += path.stat().st_size
        names = [op or ev for op, ev in zip(table.column("op").to_pylist(), event, strict=True)]
        for name, c in zip(names, counts.tolist(), strict=True):
            if name:
                self.summary.by_event[name] = self.summary.by_event.get(name, 0) + int(c)
        if self._write_stacks_due():
            self._write_stacks()
        else:
            self._write_lock_classes()

    def _write_stacks_due(self) -> bool:
        return self.attrib is not None and len(self.attrib.frames) != self._live.stacks_written

    def _live_line(self) -> None:
        """bcc-style one line per interval on stderr: events, lost, contended, MB written."""
        assert self.loaded is not None
        lost_n = lost_total(self.lost_counts()) + self.summary.late_dropped
        written = self.writer.rows_written if self.writer is not None else self.summary.events
        mb = (
            sum(f.stat().st_size for f in self.writer.files if f.exists()) / 1e6
            if self.writer is not None
            else self._live.bytes / 1e6
        )
        if self.writer is not None:
            self._live.contended = self.summary.by_event.get("lock_contention", 0)
        print(
            self._live.line(time.monotonic() - self._t0, written, lost_n, self._live.contended, mb),
            file=sys.stderr,
            flush=True,
        )

    # ------------------------------------------------------------------ data path
    def _drain(self) -> None:
        assert self.loaded is not None
        while True:
            # reads of <= 64 Ki events (5 MiB): arrays small enough for malloc to recycle,
            # instead of fresh mmaps whose page faults cost more than the copy
            batch = self.loaded.read(_READ_EVENTS)
            if not len(batch):
                return
            # sort each read's timestamps on arrival (small, cache-warm arrays); flushes then
            # merge the runs' old ends instead of re-sorting everything pending. The records
            # themselves stay where the read put them until a flush gathers them in order
            # (_gather: void-record copies, ~3 ns per event each, instead of structured
            # copies at ~45 ns).
            ts = np.ascontiguousarray(batch["ts_ns"])  # argsort on a strided field: 10x slower
            order = None
            if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
                order = np.argsort(ts, kind="stable")
                ts = ts[order]
            self._pending.append(_Run(batch, order, ts))
            self._pending_rows += len(batch)
            if len(batch) < _READ_EVENTS:
                return

    def _oldest_inflight(self, now_ns: int) -> int | None:
        """The oldest begin time still in flight in the kernel, within ``inflight_max_ms``
        of ``now_ns`` (older entries are events that will never come: see
        :meth:`Loaded.oldest_inflight_ns`); None if there is none."""
        assert self.loaded is not None
        hold = int(max(self.opts.inflight_max_ms, self.opts.reorder_window_ms) * 1e6)
        return self.loaded.oldest_inflight_ns(max(self.loaded.armed_ns, now_ns - hold))

    def _flush(self, *, final: bool, drained_at_ns: int | None = None) -> None:
        """Write pending events, in ts order, up to the watermark: older than the reorder
        window and than every event still in flight in the kernel (:func:`reorder_watermark`);
        with ``final``, all of them."""
        assert self.writer is not None and self.loaded is not None
        if not self._pending:
            return
        if final:
            watermark = None
        else:
            now_ns = drained_at_ns if drained_at_ns is not None else time.monotonic_ns()
            window = int(self.opts.reorder_window_ms * 1e6)
            watermark = reorder_watermark(now_ns, window, self._inflight)
            if self._pending_rows > self.opts.max_pending:
                # bound memory: give up some order slack, write the older half
                all_ts = np.concatenate([r.ts for r in self._pending])
                watermark = max(watermark, int(np.median(all_ts)))
        # each run is sorted: its part up to the watermark is a prefix
        parts, keep = [], []
        for run in self._pending:
            ts = run.ts
            k = len(ts) if watermark is None else int(np.searchsorted(ts, watermark, "right"))
            if k:
                parts.append(run.head(k))
            if k < len(ts):
                keep.append(run.tail(k))
        self._pending = keep
        self._pending_rows = sum(len(r.ts) for r in keep)
        if not parts:
            return
        out, ts = _gather(parts)
        # rows that arrived after later rows were written are a prefix (ts is sorted): the
        # format needs ts order, so drop them
        late = int(np.searchsorted(ts, self._last_written, "left"))
        if late:
            self.summary.late_dropped += late
            out = out[late:]
        if not len(out):
            return
        self._last_written = int(ts[-1])
        lost_now = lost_total(self.lost_counts())
        extra = {**self._pool_extra(out), **self._lost_extra()}
        assert self._meta is not None
        self._meta = self._meta.replace(
            lost_events=lost_now + self.summary.late_dropped, extra=extra
        )
        if self._bg is not None:
            self._bg.submit((out, self._meta))
        else:
            self._write_out((out, self._meta))
        self.summary.events += len(out)
        counts = np.bincount(out["type"], minlength=256)
        for t in np.flatnonzero(counts).tolist():
            name = EVENT_NAMES.get(int(t), f"type{t}")
            self.summary.by_event[name] = self.summary.by_event.get(name, 0) + int(counts[t])

    def _write_out(self, item: tuple[np.ndarray, TraceMeta]) -> None:
        """Encode and write one flush's rows (on the worker thread: :mod:`.background`).
        Everything it touches past this point (comm and lock-kind dictionaries, the writer)
        is used by this thread alone until :meth:`finish` has closed the worker."""
        ev, meta = item
        assert self.writer is not None
        self.writer.meta = meta
        self.writer.write(self._table(ev))

    def lost_counts(self, *, fresh: bool = False) -> dict[str, int]:
        """The kernel's drop counters and the probes' misses, with ``probe_missed`` (events
        lost because a probe or its program did not run): the larger of what the probe pairs
        saw (``return_missed`` + ``entry_missed``: exact, but blind to a missed return whose
        thread never calls again) and what the kernel counted (``kprobe_nmissed`` +
        ``prog_skipped``: every miss, but with --pid/--cgroup also those of filtered tasks),
        The kernel counters are read at most once a
        second (a few syscalls per program) unless ``fresh``."""
        assert self.loaded is not None
        lost = self.loaded.drops()
        now = time.monotonic()
        if fresh or self._misses is None or now - self._misses_at >= 1.0:
            any_seen = bool(lost.get("return_missed", 0) or lost.get("entry_missed", 0))
            self._misses, self._misses_at = self.loaded.probe_misses(pair_seen=any_seen), now
        m = self._misses
        lost["kprobe_nmissed"] = m.pair_nmissed
        lost["prog_skipped"] = m.pair_lost - lost["kprobe_nmissed"]
        lost["spin_reentry"] = m.spin_reentry
        lost["lock_prog_skipped"] = m.lock_lost
        lost["other_prog_skipped"] = m.other_skipped
        seen = lost.get("return_missed", 0) + lost.get("entry_missed", 0)
        # lock programs' skipped runs are reported, not counted: like the spinlock
        # slowpath's misses they are mostly a contended lock taken inside our own programs
        # (a map bucket's, the stack map's), re-entering the contention tracepoint
        lost["probe_missed"] = max(seen, m.pair_lost)
        return lost

    def _lost_extra(self, lost: dict[str, int] | None = None) -> dict[str, str]:
        """Trace metadata: every loss counter by name (``lost``, or read now), and the
        probes that missed."""
        assert self.loaded is not None
        if lost is None:
            lost = self.lost_counts()
        out = {"lost_detail": ",".join(f"{k}={v}" for k, v in sorted(lost.items()))}
        out["lost_detail"] += f",late_for_reorder={self.summary.late_dropped}"
        if self._misses is not None and self._misses.describe():
            out["probe_misses"] = self._misses.describe()
        out["kretprobe_maxactive"] = str(self.loaded.maxactive)
        if self._misses is not None:  # our probes found in kprobe_profile (misses visible)
            out["kprobe_profile_probes"] = str(len(self._misses.nmissed))
        return out

    def _pool_extra(self, ev: np.ndarray) -> dict[str, str]:
        """Metadata ``pools`` = "pool column value=name;..." for the pools seen so far."""
        assert self.loaded is not None and self.writer is not None
        if self.plan.modes.get("zsmalloc") == "kmem-tracepoint":
            for pid in _distinct(ev["pool"][ev["type"] <= EV_FREE]):
                if pid:
                    self._pools[pid] = pool_name(pid)
        else:
            self._pools.update(self.loaded.pool_names())
        assert self._meta is not None
        extra = dict(self._meta.extra)
        if "memcg_id" in self.columns:
            swap = (ev["type"] == EV_ZSWAP_STORE) | (ev["type"] == EV_ZSWAP_LOAD)
            self._memcg_task_rows += int(
                np.count_nonzero(swap & (ev["pool"] >> np.uint64(63) != 0))
            )
            extra["memcg_id"] = (
                "cgroup id (kernfs id, = stat -c %i of the cgroup dir) of the folio's memcg at "
                "zswap_store/zswap_load; the task's cgroup where the folio had none"
            )
            extra["memcg_id_task_rows"] = str(self._memcg_task_rows)
        if self._pools:
            extra["pools"] = ";".join(f"{k:#x}={v}" for k, v in sorted(self._pools.items()))
        return extra

    def _table(self, ev: np.ndarray) -> pa.Table:
        """Arrow columns straight from the record fields, typed exactly as the schema wants
        (so the writer needs no cast). Lock columns share one validity bitmap."""
        n = len(ev)
        # A zs_malloc that returned an error allocated nothing: its own event, so replays that
        # count zs_malloc rows never replay it (issue 10).
        typ = np.where((ev["type"] == EV_MALLOC) & (ev["ret"] != 0), EV_MALLOC_FAIL, ev["type"])
        is_mig = typ == EV_MIGRATE
        cols: dict[str, pa.Array] = {
            "ts_ns": pa.array(np.ascontiguousarray(ev["ts_ns"])),
            "cpu": pa.array(np.ascontiguousarray(ev["cpu"])),
            "tid": pa.array(self._anon.ids(ev["tid"]) if self._anon else ev["tid"]),
            "event": _dict_column(typ.astype(np.int32) - 1, _EVENT_DICT),
            "pool": pa.array(np.ascontiguousarray(ev["pool"])),
            "size_bytes": pa.array(np.where(is_mig, 0, ev["size"]).astype(np.uint32)),
            "handle": pa.array(np.where((typ == EV_LOCK) | (typ == EV_SPIN), 0, ev["handle"])),
            "duration_ns": pa.array(np.ascontiguousarray(ev["duration_ns"])),
        }
        is_lock = (typ == EV_LOCK) | (typ == EV_SPIN)  # both carry lock columns
        if "lock_addr" in self.columns:
            nlock = int(np.count_nonzero(is_lock))
            valid = pa.py_buffer(np.packbits(is_lock, bitorder="little"))

            def masked(values: np.ndarray, typ_: pa.DataType) -> pa.Array:
                data = pa.py_buffer(np.ascontiguousarray(values))
                return pa.Array.from_buffers(typ_, n, [valid, data], null_count=n - nlock)

            cols["lock_addr"] = masked(ev["handle"], pa.uint64())
            cols["wait_ns"] = masked(ev["duration_ns"], pa.uint64())
            cols["lock_flags"] = masked(ev["ret"].astype(np.uint32), pa.uint32())
            cols["stack_id"] = masked(ev["stack_id"], pa.int32())
            kinds = np.zeros(n, np.int32)
            if nlock:
                assert self.attrib is not None
                # one int64 key per (stack id, flags): unique on ints, not on rows
                key = (ev["stack_id"][is_lock].astype(np.int64) << 32) | ev["ret"][is_lock].astype(
                    np.int64
                ) & 0xFFFFFFFF
                uniq, inv = np.unique(key, return_inverse=True)
                kmap = np.array(
                    [
                        self._lock_kinds.index(
                            self.attrib.kind(int(k >> 32), int(k & 0xFFFFFFFF))[0]
                        )
                        for k in uniq.tolist()
                    ],
                    np.int32,
                )
                kinds[is_lock] = kmap[inv.reshape(-1)]
            idx = pa.Array.from_buffers(
                pa.int32(), n, [valid, pa.py_buffer(kinds)], null_count=n - nlock
            )
            cols["lock_kind"] = pa.DictionaryArray.from_arrays(
                idx, pa.array(self._lock_kinds, pa.string())
            )
        if "offcpu_ns" in self.columns:  # ZT_OFFCPU: switched-out time inside the call
            has_off = (typ == EV_MALLOC) | (typ == EV_MALLOC_FAIL) | (typ == EV_FREE)
            has_off |= (typ == EV_READ) | (typ == EV_WRITE)
            cols["offcpu_ns"] = pa.array(ev["aux"], mask=~has_off)
        if "mm_switch_ns" in self.columns:  # ZT_MM_OFF: slowpath rows, ~0 = no switch seen
            has_mm = (typ == EV_SPIN) & (ev["aux"] != np.uint64(0xFFFFFFFFFFFFFFFF))
            cols["mm_switch_ns"] = pa.array(ev["aux"], mask=~has_mm)
        if "class_idx" in self.columns:  # zt_migrate_entry puts the class in `size`
            ok = is_mig & (ev["size"] < 0x1FF)
            cols["class_idx"] = pa.array(ev["size"].astype(np.int16), mask=~ok)
        if "swap_entry" in self.columns:
            is_swap = (typ >= EV_ZSWAP_STORE) & (typ <= EV_ZSWAP_INVAL)
            cols["swap_entry"] = pa.array(ev["aux"], mask=~is_swap)
            cols["outcome"] = self._outcomes(ev, is_swap)
            is_store = typ == EV_ZSWAP_STORE
            cols["compressed_bytes"] = pa.array(ev["size"], mask=~(is_store & (ev["size"] > 0)))
        if "memcg_id" in self.columns:  # zt_zswap_memcg: the memcg in the pool slot
            has = ((typ == EV_ZSWAP_STORE) | (typ == EV_ZSWAP_LOAD)) & (ev["pool"] != 0)
            mc = ev["pool"] & np.uint64((1 << 63) - 1)
            cols["memcg_id"] = pa.array(mc, mask=~has)
            cols["pool"] = pa.array(np.where(has, np.uint64(0), ev["pool"]))
        pid = ev["pid"]
        cols["pid"] = pa.array(self._anon.ids(pid) if self._anon else pid)
        cols["comm"] = self._comms.encode(ev, self._anon)
        assert self.writer is not None
        return pa.Table.from_arrays(
            [cols[k] for k in self._all_columns()], schema=self.writer.schema
        )

    def _frontswap(self) -> bool:
        """≤6.4 zswap_frontswap_* probes: no folio, so no memcg id."""
        return any(fn.startswith("zswap_frontswap") for fn, _, _ in self.plan.kprobes)

    def _outcomes(self, ev: np.ndarray, is_swap: np.ndarray) -> pa.Array:
        """Return codes -> LRU-engineer outcome names (docs/capture.md has the table)."""
        labels = [
            "stored",
            "reject_pool_limit",
            "reject_compress",
            "reject_alloc",
            "reject_other",
            "hit",
            "miss",
            "written",
            "failed",
            "invalidated",
        ]
        typ, ret = ev["type"], ev["ret"]
        out = np.full(len(ev), labels.index("reject_other"), np.int32)
        frontswap = self._frontswap()
        st = typ == EV_ZSWAP_STORE
        if frontswap:  # int: 0 stored, -ENOMEM pool limit, -EINVAL compress, -ENOSPC poor
            out[st & (ret == 0)] = labels.index("stored")
            out[st & (ret == -12)] = labels.index("reject_pool_limit")
            out[st & ((ret == -22) | (ret == -28))] = labels.index("reject_compress")
        else:  # bool: true stored
            out[st & (ret & 0xFF != 0)] = labels.index("stored")
        ld = typ == EV_ZSWAP_LOAD
        load_int = self.feats.version >= (6, 16) or frontswap
        hit = (ret == 0) if load_int else (ret & 0xFF != 0)
        out[ld & hit] = labels.index("hit")
        out[ld & ~hit] = labels.index("miss")
        wb = typ == EV_ZSWAP_WB
        out[wb & (ret == 0)] = labels.index("written")
        out[wb & (ret != 0)] = labels.index("failed")
        out[typ == EV_ZSWAP_INVAL] = labels.index("invalidated")
        return _dict_column(out, labels, mask=~is_swap)

    def _write_stacks(self) -> None:
        """stacks.json beside the parts: stack_id -> symbolised frames (for lock reports);
        and lock_classes.json: each class lock's size class as the kernel stores it."""
        self._write_lock_classes()
        if self.attrib is None or not self.attrib.frames:
            return
        self.summary.stacks = dict(self.attrib.frames)
        self._live.stacks_written = len(self.attrib.frames)
        summary_mod.write_stacks(Path(self.opts.out), self.attrib.frames)

    def _write_lock_classes(self) -> None:
        table = self.loaded.lock_class_table() if self.loaded is not None else None
        if table is None:
            return
        read = summary_mod.read_lock_class_map(table)
        if len(read) >= table.max_entries:
            # zt_note_lock's insert fails silently once the map is full: say so, once
            self.summary.lock_class_map_full = int(table.max_entries)
        classes = summary_mod.class_pairs(read, os.sysconf("SC_PAGE_SIZE"))
        if classes and classes != self.summary.lock_classes:
            self.summary.lock_classes = classes
            summary_mod.write_lock_classes(Path(self.opts.out), classes)


def capture(opts: CaptureOptions, *, quiet: bool = False) -> CaptureSummary:
    """Run a whole capture as the CLI does: signals, optional command, footer on stderr."""
    cap = Capture(opts)
    proc: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, frame: object) -> None:
        cap.stop()

    # installed before the (slow) compile: a signal then ends the capture with an empty
    # but valid trace instead of killing the process half-way
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cap.start()
        if opts.command and not cap._stop.is_set():
            try:
                proc = subprocess.Popen(opts.command)
            except OSError as exc:
                cap.finish()
                from ztrace.errors import CaptureError

                raise CaptureError(f"cannot run `{opts.command[0]}` ({exc.strerror})") from None
        if not quiet:
            print(
                f"ztrace: capturing {','.join(opts.probes)} to {opts.out}"
                + (" until the command exits" if proc else "")
                + ("" if proc or opts.duration_s else "; Ctrl-C to stop"),
                file=sys.stderr,
            )
        summary = cap.run(until=(lambda: proc.poll() is not None) if proc else None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    if proc is not None:
        summary.command_rc = proc.returncode
    if not quiet:
        print(summary.footer(), file=sys.stderr)
    return summary
