"""Stopped time: silences in which no CPU recorded anything while a measured call was running.

A qemu TCG guest on a loaded host stops for milliseconds at a time (its vCPU threads are
not scheduled). Guest time keeps running, so every call in flight across a stop gets the
stop in its ``duration_ns``. The bundled 6.1 zsstress capture shows it: 4 kthreads on 2
vCPUs keep both CPUs busy, yet 3.18 s of its 3.58 s span are silences longer than 1 ms in
which *no* CPU started or ended any probed call; 211 of 16,850 zs_malloc calls (> 20 µs)
hold 2.23 s of the 2.28 s of zs_malloc duration; the median is 2.7 µs. Replayed as lock
holds, those stops put the pool lock out of reach for seconds: 47 k predicted contended
acquisitions against 404 measured.

A silence carries no evidence of a lock hold: nothing started, so nothing could request
the lock (a waiter already spinning keeps spinning; its own wait contains the stop). This
module removes the part of every such silence beyond ``gap_ns`` from the replay clock: a
time warp ``W(t)``. Arrivals become ``W(ts)`` and a measured duration ``W(ts + d) - W(ts)``.
The warp keeps the order of every recorded boundary (call entries and returns), so an op
that arrived after the stop still finds the same calls before and after it; what shrinks is
the hold of a call across the stop and the wait of an op queued across it. Only silences
that a measured call spans are removed: idle time with nothing in flight is left alone (it
cannot change a wait), and a trace without durations is not touched.

``gap_ns`` (``CostModel.stop_gap_ns``, default 200 µs, 0 = off) is the longest silence
kept: two orders of magnitude above a zs op under TCG (median 2.7 µs), and far above the
gaps between boundaries while the guest runs (p99 11 µs on the 6.1 sample). The removed
total barely depends on it (6.1 sample: 1,061 ms at 50 µs, 1,030 ms at 200 µs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

from ztrace.format import open_trace
from ztrace.replay.ingest import N_EV, event_codes
from ztrace.replay.locks._sim import HIST_N, hist_index

#: CostModel.stop_gap_ns default: see the module docstring
STOP_GAP_NS = 200_000


@njit(cache=True)
def _heap_push(h, n, v):
    i = n
    h[i] = v
    while i > 0:
        p = (i - 1) >> 1
        if h[p] <= h[i]:
            break
        h[p], h[i] = h[i], h[p]
        i = p
    return n + 1


@njit(cache=True)
def _heap_pop(h, n):
    n -= 1
    top = h[0]
    h[0] = h[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and h[c + 1] < h[c]:
            c += 1
        if h[i] <= h[c]:
            break
        h[i], h[c] = h[c], h[i]
        i = c
    return top, n


@njit(cache=True)
def _boundary(b, infl, st, gap, out, on):
    """Boundary ``b`` after a silence with ``infl`` measured calls in flight."""
    last = st[0]
    if infl > 0 and b - last > gap:
        out[on, 0] = last + gap
        out[on, 1] = b - last - gap
        on += 1
    if b > last:
        st[0] = b
    return on


@njit(cache=True)
def _scan(ts, dur, heap, st, gap, out, final):
    """Feed one batch (ts order) into the running scan; ``st`` = [last boundary, heap size].

    Returns the number of silences written to ``out`` (``[start, removed]`` rows); with
    ``final`` the calls still in flight are drained too.
    """
    on = 0
    hn = st[1]
    for i in range(ts.shape[0]):
        s = ts[i]
        while hn > 0 and heap[0] <= s:
            e, hn = _heap_pop(heap, hn)
            on = _boundary(e, hn + 1, st, gap, out, on)
        if st[0] < 0:
            st[0] = s
        on = _boundary(s, hn, st, gap, out, on)
        if dur[i] > 0:
            hn = _heap_push(heap, hn, s + dur[i])
    if final:
        while hn > 0:
            e, hn = _heap_pop(heap, hn)
            on = _boundary(e, hn + 1, st, gap, out, on)
    st[1] = hn
    return on


@dataclass(frozen=True)
class Stops:
    """The silences removed from the replay clock: ``start`` (ascending) and ``removed``."""

    start: np.ndarray
    removed: np.ndarray
    gap_ns: int

    @property
    def total_ns(self) -> int:
        return int(self.removed.sum())

    def warp(self, t: np.ndarray) -> np.ndarray:
        """``W(t)``: ``t`` minus the stopped time before it (int64 ns).

        >>> s = Stops(np.array([100, 500]), np.array([50, 10]), 0)
        >>> s.warp(np.array([90, 120, 160, 400, 505, 600])).tolist()
        [90, 100, 110, 350, 450, 540]
        """
        t = np.asarray(t, dtype=np.int64)
        if len(self.start) == 0:
            return t
        cum = np.concatenate([[0], np.cumsum(self.removed)])
        k = np.searchsorted(self.start, t, side="right")  # silences starting <= t
        prev = np.maximum(k - 1, 0)
        inside = np.where(k > 0, np.minimum(t - self.start[prev], self.removed[prev]), 0)
        return t - cum[prev] * (k > 0) - inside

    def durations(self, ts: np.ndarray, dur: np.ndarray) -> np.ndarray:
        """Measured durations on the warped clock (0 stays 0, never below 1)."""
        if len(self.start) == 0:
            return dur
        d = self.warp(ts + dur) - self.warp(ts)
        return np.where(dur > 0, np.maximum(d, 1), 0)


def find_stops(path: str | os.PathLike[str], gap_ns: int = STOP_GAP_NS) -> Stops:
    """One streaming pass over ``ts_ns``/``duration_ns``: every silence longer than
    ``gap_ns`` with a measured call in flight (memory: the calls in flight, the silences)."""
    tr = open_trace(path)
    heap = np.zeros(1024, dtype=np.int64)
    st = np.array([-1, 0], dtype=np.int64)
    parts: list[np.ndarray] = []
    batches = tr.iter_batches(columns=["ts_ns", "duration_ns"])
    pending = next(batches, None)
    while pending is not None:
        nxt = next(batches, None)
        ts = pending.column("ts_ns").to_numpy().astype(np.int64)
        dur = pending.column("duration_ns").to_numpy().astype(np.int64)
        if int(st[1]) + len(ts) > len(heap):
            grown = np.zeros(2 * (int(st[1]) + len(ts)), dtype=np.int64)
            grown[: len(heap)] = heap
            heap = grown
        out = np.zeros((2 * len(ts) + int(st[1]) + 1, 2), dtype=np.int64)
        on = _scan(ts, dur, heap, st, np.int64(gap_ns), out, nxt is None)
        parts.append(out[:on].copy())  # a view would keep every batch's whole `out` alive
        pending = nxt
    rows = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    return Stops(rows[:, 0].copy(), rows[:, 1].copy(), gap_ns)


@njit(cache=True)
def _hist(code, dur, hist):
    for i in range(code.shape[0]):
        if code[i] >= 0 and dur[i] > 0:
            hist[code[i], hist_index(dur[i])] += 1


def bounded_dur_hist(
    path: str | os.PathLike[str], stops: Stops | None, one_pool: bool, table: Any
) -> np.ndarray:
    """Measured durations per ingest event code as the replay holds them: less switched-out
    time, on the warped clock and capped by their witnesses (the hold-time distribution the
    interval's replicas draw from, replacing ``prescan.Prescan.dur_hist``, so a redraw
    cannot bring back the stops and the off-CPU time the replay took out)."""
    hist = np.zeros((N_EV, HIST_N), dtype=np.int64)
    tr = open_trace(path)
    has_tid = "tid" in tr.schema.names
    cols = [*unheld_columns(tr.schema.names), "cpu", "size_bytes", "handle"]
    for b in tr.iter_batches(columns=cols):
        ts, dur = unheld(b, stops, has_tid)
        code = event_codes(b.column("event"))
        if has_tid:
            calls = call_rows(b.column("event"))
            size = b.column("size_bytes").to_numpy().astype(np.int64)
            handle = b.column("handle").to_numpy().view(np.int64)
            dur, _ = witness_bound(
                code,
                ts,
                dur,
                b.column("tid").to_numpy().astype(np.int64),
                b.column("cpu").to_numpy().astype(np.int64),
                calls,
                lock_keys(code, size, handle, calls, one_pool, table),
            )
        _hist(code, dur, hist)
    return hist


def unheld_columns(names: list[str]) -> list[str]:
    """The columns :func:`unheld` reads, of a trace whose columns are ``names``."""
    cols = ["ts_ns", "duration_ns", "event"]
    if "tid" in names:
        cols += ["tid", *(c for c in NOT_HELD_COLUMNS if c in names)]
    return cols


def unheld(b: pa.RecordBatch, stops: Stops | None, has_tid: bool) -> tuple[np.ndarray, np.ndarray]:
    """A batch's arrivals and measured durations on the replay clock (``stops`` taken out),
    each duration less what the capture shows was no hold (:func:`held_durations`, with
    thread ids): the tighter of the two."""
    ts = b.column("ts_ns").to_numpy().astype(np.int64)
    dur = b.column("duration_ns").to_numpy().astype(np.int64)
    held = held_durations(b, ts, dur, b.column("tid").to_numpy()) if has_tid else None
    if stops is not None:
        ts, dur = stops.warp(ts), stops.durations(ts, dur)
    if held is not None:  # both take out time that is no hold: keep the tighter
        dur = np.minimum(dur, held)
    return ts, dur


#: kernel releases whose zsmalloc takes one pool spinlock in every zs_* call (6.1.192 Debian
#: backport and 6.2-6.10: spin_lock(&pool->lock) in zs_malloc, zs_free, zs_map_object)
def one_pool_lock(release: str) -> bool:
    """True for 6.1-6.10 (see docs/replay-model.md, design ``pool``).

    >>> one_pool_lock("6.1.0-57-amd64"), one_pool_lock("6.12.95+deb12-amd64")
    (True, False)
    """
    parts = release.split(".")
    try:
        v = (int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0))
    except (ValueError, IndexError):
        return False
    return (6, 1) <= v < (6, 11)


@njit(cache=True)
def _witness_bound(code, ts, dur, tid, cpu, is_call, lock, hold_code_a, hold_code_b):
    """Each hold row's duration capped by the witnesses inside it (see :func:`witness_bound`)."""
    n = ts.shape[0]
    out = dur.copy()
    capped = 0
    for i in range(n):
        if dur[i] <= 0 or (code[i] != hold_code_a and code[i] != hold_code_b):
            continue
        a = ts[i]
        b = a + dur[i]
        short = dur[i] // 8  # longer witnesses pin little; any subset gives a valid bound
        u = np.int64(0)
        prev_start = np.int64(-1)
        first = True
        j = i + 1
        while j < n and ts[j] < b:
            e = ts[j] + dur[j]
            if (
                is_call[j]
                and e <= b
                and e - ts[j] <= short
                and tid[j] != tid[i]
                and (cpu[j] == cpu[i] or (lock[j] >= 0 and lock[j] == lock[i]))
            ):
                if first:
                    u = e - a
                    first = False
                else:
                    g = e - prev_start
                    if g > u:
                        u = g
                prev_start = ts[j]
            j += 1
        if not first:
            g = b - prev_start
            if g > u:
                u = g
            if u < out[i]:
                out[i] = u
                capped += 1
    return out, capped


def witness_bound(
    code: np.ndarray,
    ts: np.ndarray,
    dur: np.ndarray,
    tid: np.ndarray,
    cpu: np.ndarray,
    is_call: np.ndarray,
    lock: np.ndarray,
) -> tuple[np.ndarray, int]:
    """zs_malloc/zs_free durations capped by what other threads did meanwhile.

    A call's lock hold is one interval inside its measured span, and it cannot contain a
    moment at which (a) another thread ran on the call's CPU (a spinlock holder is not
    preempted: spin_lock disables preemption), or (b) another thread's call took the same
    spinlock: ``lock`` names it per row (:func:`lock_keys`; -1 = not known). Each such
    *witness* call lies wholly inside the span and pins one such moment somewhere inside its
    own ``[ts, ts + d]``; the hold fits between two consecutive witnesses, so it is at most
    the largest ``end(next) - start(this)`` (and the two edge pieces). Any subset of the
    witnesses gives a valid bound; witnesses longer than 1/8 of the call are skipped (one
    stopped for milliseconds pins almost nothing). The bundled 6.1
    zsstress capture: zs_malloc is the only function other threads run inside on the same
    CPU (67 of its 211 calls > 20 µs; 6.1 zs_malloc's cache_alloc_handle() and
    alloc_zspage() may sleep, mm/zsmalloc.c), so the long spans are time off the CPU or
    outside the lock. Rows are one batch in ts order; a witness in the next batch is not
    seen (the bound is then looser, never tighter). Returns the durations and how many were
    capped.

    >>> c = np.array([1, 11, 2]); ts = np.array([0, 10, 40]); d = np.array([100, 5, 5])
    >>> witness_bound(c, ts, d, np.array([1, 2, 3]), np.array([0, 0, 1]),
    ...               np.array([True, True, True]), np.array([0, 0, 0]))[0].tolist()
    [60, 5, 5]
    >>> witness_bound(c, ts, d, np.array([1, 2, 3]), np.array([0, 0, 1]),
    ...               np.array([True, True, True]), np.array([7, -1, 8]))[0].tolist()
    [90, 5, 5]
    """
    from ztrace.format.events import EV_FREE, EV_MALLOC

    return _witness_bound(
        code,
        ts,
        dur,
        tid,
        cpu,
        is_call,
        lock,
        np.int64(EV_MALLOC),
        np.int64(EV_FREE),
    )


def lock_keys(
    code: np.ndarray,
    size: np.ndarray,
    handle: np.ndarray,
    is_call: np.ndarray,
    one_pool: bool,
    table: Any,
) -> np.ndarray:
    """The spinlock each row's call takes on the *captured* kernel, where the row says which.

    One-pool-lock kernels (6.1-6.10): every zs_* call takes ``pool->lock`` (key 0). Class-lock
    kernels (<= 6.0, >= 6.11): a zs_malloc takes its class's lock (6.12 mm/zsmalloc.c:
    zs_malloc, ``spin_lock(&class->lock)``; key = class from the size, as
    ``ClassTable.class_for_malloc``); a zs_free takes its object's class lock (6.12 zs_free:
    ``read_lock(&pool->lock)`` -> ``spin_lock(&class->lock)``): the class of the last
    zs_malloc of its handle before it in this batch (-1 when that is in an earlier batch).
    Reads take the pool rwlock for reading (readers never exclude each other): -1, not a
    witness across CPUs.

    >>> from ztrace.model.classes import build_classes
    >>> t = build_classes(8)
    >>> lock_keys(np.array([1, 2, 2, 11]), np.array([100, 0, 0, 0]), np.array([5, 5, 6, 5]),
    ...           np.ones(4, bool), False, t).tolist() == [t.class_for_malloc(100),
    ...           t.class_for_malloc(100), -1, -1]
    True
    """
    from ztrace.format.events import EV_FREE, EV_MALLOC
    from ztrace.model.classes import ZS_HANDLE_SIZE

    if one_pool:
        return np.where(is_call, 0, -1).astype(np.int64)
    s = size.astype(np.int64) + ZS_HANDLE_SIZE
    idx = np.where(s > table.min_alloc_size, -(-(s - table.min_alloc_size) // table.size_delta), 0)
    cls = np.asarray(table.merged_into)[np.minimum(idx, table.n_classes - 1)].astype(np.int64)
    is_m = (code == EV_MALLOC) & (size > 0)
    key = np.where(is_m, cls, -1)
    rows = np.flatnonzero(is_m | (code == EV_FREE))
    if len(rows):
        order = rows[np.lexsort((rows, handle[rows]))]  # by handle, then trace order
        pos = np.arange(len(order))
        last = np.maximum.accumulate(np.where(is_m[order], pos, -1))
        ok = (last >= 0) & (code[order] == EV_FREE)
        ok[ok] &= handle[order[last[ok]]] == handle[order[ok]]
        key[order[ok]] = cls[order[last[ok]]]
    return key


#: the optional trace columns :func:`held_durations` reads, where the trace has them, and
#: what each takes out (said in the results' cost provenance)
NOT_HELD_COLUMNS = ("offcpu_ns", "wait_ns")
NOT_HELD_TEXT = {
    "offcpu_ns": "the time a call's thread was switched out (offcpu_ns; no lock is held then)",
    "wait_ns": "the thread's own measured lock waits inside its call (the replay simulates them)",
}


def held_durations(
    batch: pa.RecordBatch, ts: np.ndarray, dur: np.ndarray, tid: np.ndarray
) -> np.ndarray | None:
    """Measured durations less what the capture itself shows was no hold (session 9), or
    ``None`` when the batch has no such column.

    * ``offcpu_ns``: time the calling thread was switched out inside the call (kprobe
      captures since session 9, ``sched:sched_switch``). A zsmalloc lock holder is never
      switched out: spin_lock() and read_lock() disable preemption until the unlock, and
      sleeping under them is a bug (6.1/6.12 mm/zsmalloc.c: zs_malloc, zs_free and
      zs_map_object take only spinlocks and rwlocks).
    * the thread's own measured lock waits inside the call (:func:`lock_waits_inside`):
      the replay simulates a wait itself.

    The hold share (:mod:`ztrace.replay.holds`) is measured on one uncontended thread that
    is rarely switched out, so it applies to what is left. A measured row stays measured
    (at least 1 ns); rows without values keep their duration.

    >>> b = pa.record_batch({"event": ["zs_malloc", "zs_free", "zs_free"],
    ...                      "offcpu_ns": [4000, None, 4000]})
    >>> held_durations(b, np.array([0, 1, 2]), np.array([5000, 3000, 4000]), np.zeros(3))
    array([1000, 3000,    1])
    """
    names = batch.schema.names
    taken = None
    if "offcpu_ns" in names:
        taken = batch.column("offcpu_ns").fill_null(0).to_numpy(zero_copy_only=False)
        taken = taken.astype(np.int64)
    if "wait_ns" in names and batch.column("wait_ns").null_count < batch.num_rows:
        ev = batch.column("event")
        w = lock_waits_inside(
            ev, ts, dur, tid, batch.column("wait_ns"), call_rows(ev, WAIT_CALL_EVENTS)
        )
        taken = w if taken is None else taken + w
    if taken is None:
        return None
    return np.where(dur > 0, np.maximum(dur - taken, 1), dur)


@njit(cache=True)
def _waits_inside(is_call, kind, ts, dur, tidx, wait, n_tids):
    out_spin = np.zeros(ts.shape[0], dtype=np.int64)
    out_tp = np.zeros(ts.shape[0], dtype=np.int64)
    last = np.full(n_tids, -1, dtype=np.int64)  # the thread's latest call row
    # where the thread's latest counted wait of each kind ends: a wait nested inside it (an
    # interrupt's spinlock while the thread spun; captures since session 32 keep both rows)
    # is already part of it and is not counted again
    cover = np.zeros((n_tids, 2), dtype=np.int64)
    for j in range(ts.shape[0]):
        t = tidx[j]
        if is_call[j]:
            last[t] = j
        elif kind[j] > 0:
            i = last[t]
            k = kind[j] - 1
            end = ts[j] + wait[j]
            if i >= 0 and dur[i] > 0 and end <= ts[i] + dur[i] and end > cover[t, k]:
                cover[t, k] = end
                if kind[j] == 1:
                    out_spin[i] += wait[j]
                else:
                    out_tp[i] += wait[j]
    return np.maximum(out_spin, out_tp)


def lock_waits_inside(
    event: pa.Array | pa.ChunkedArray,
    ts: np.ndarray,
    dur: np.ndarray,
    tid: np.ndarray,
    wait_ns: pa.Array | pa.ChunkedArray,
    is_call: np.ndarray,
) -> np.ndarray:
    """Per call row, the measured lock wait of its own thread that lies inside it.

    A contended call's duration contains the time it waited for a lock (the waiter spins in
    queued_spin_lock_slowpath, 6.1/6.12 kernel/locking/qspinlock.c), and the replay
    simulates that wait itself: held as part of ``share * duration`` it would be counted
    twice and lengthen the hold besides. The waits are the capture's ``spin_slowpath``
    rows (every contended spinlock) and ``lock_contention`` rows (the tracepoint, which also
    sees rwlock waits); one spinlock wait can show in both, so a call gets the larger of the
    two sums (never more than was measured). Rows in ts order, one batch; a wait must end
    inside the call; a call whose wait falls in the next batch keeps it (looser, never
    tighter). A wait nested inside an earlier one of the same thread and kind (an
    interrupt's spinlock wait while the thread spun: zs_capture.bpf.c, lock_nested and
    spin_nested) is inside that one's time and counts once.

    >>> ev = pa.array(["zs_malloc", "spin_slowpath", "lock_contention", "zs_free", "spin_slowpath"])
    >>> lock_waits_inside(ev, np.array([0, 10, 10, 50, 60]), np.array([40, 0, 0, 5, 0]),
    ...                   np.array([1, 1, 1, 2, 2]), pa.array([None, 20, 25, None, 9]),
    ...                   np.array([True, False, False, True, False]))
    array([25,  0,  0,  0,  0])
    >>> ev = pa.array(["zs_malloc", "spin_slowpath", "spin_slowpath", "spin_slowpath"])
    >>> lock_waits_inside(ev, np.array([0, 10, 12, 31]), np.array([40, 0, 0, 0]),
    ...                   np.array([1, 1, 1, 1]), pa.array([None, 20, 5, 4]),
    ...                   np.array([True, False, False, False]))  # 12+5 lies inside 10+20
    array([24,  0,  0,  0])
    """
    names = event.cast(pa.string()).to_numpy(zero_copy_only=False)
    kind = np.where(names == "spin_slowpath", 1, np.where(names == "lock_contention", 2, 0))
    w = wait_ns.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    kind = np.where(w > 0, kind, 0).astype(np.int64)
    _, tidx = np.unique(tid, return_inverse=True)
    tidx = tidx.reshape(-1).astype(np.int64)
    n_tids = int(tidx.max()) + 1 if len(tidx) else 0
    return _waits_inside(is_call, kind, ts.astype(np.int64), dur, tidx, w, n_tids)


#: the zs_* call rows that can witness (every one takes a zsmalloc lock)
CALL_EVENTS = ("zs_malloc", "zs_free", "zs_write", "zs_read", "zs_map_object", "zs_obj_read_begin")
#: the calls whose own lock waits are taken out of their duration: the witnesses, and
#: zs_compact, which re-takes the pool lock after every source zspage (Debian 6.1
#: __zs_compact: spin_unlock, cond_resched, spin_lock; 6.12: write_unlock / write_lock of
#: pool->migrate_lock when the destination fills or the lock is contended). Its phases are
#: replayed as holds, each requesting the lock itself (ztrace.replay.compaction), so a wait
#: left inside its duration would be held (session 31).
WAIT_CALL_EVENTS = (*CALL_EVENTS, "zs_compact")


def call_rows(event: pa.Array, names: tuple[str, ...] = CALL_EVENTS) -> np.ndarray:
    """Bool mask of the rows that are zs_* calls (``names``: :data:`CALL_EVENTS`)."""
    col = event.combine_chunks() if isinstance(event, pa.ChunkedArray) else event
    if pa.types.is_dictionary(col.type):
        lut = np.array([s in names for s in col.dictionary.to_pylist()] + [False])
        return lut[col.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    return np.isin(col.cast(pa.string()).to_numpy(zero_copy_only=False), names)


def co_running(path: str | os.PathLike[str], bin_ns: int = 10_000) -> dict[str, float]:
    """How often two or more CPUs were recording at once: of the ``bin_ns`` bins in which
    some CPU started a call, the share in which two or more did. Only then can two CPUs
    contend for a lock. A TCG guest whose vCPU threads the host runs one at a time shows
    it: the bundled 6.1 zsstress run 3.9 % of 10 µs bins, the 6.12 run 0.24 %."""
    seen: dict[int, set[int]] = {}
    for b in open_trace(path).iter_batches(columns=["ts_ns", "cpu"]):
        ts = b.column("ts_ns").to_numpy().astype(np.int64) // bin_ns
        cpu = b.column("cpu").to_numpy().astype(np.int64)
        for c in np.unique(cpu):
            seen.setdefault(int(c), set()).update(np.unique(ts[cpu == c]).tolist())
    either: set[int] = set().union(*seen.values()) if seen else set()
    multi = 0
    if len(seen) > 1:
        from collections import Counter

        cnt = Counter(x for s in seen.values() for x in s)
        multi = sum(1 for v in cnt.values() if v > 1)
    return {
        "bins": len(either),
        "bins_multi_cpu": multi,
        "share": multi / len(either) if either else 0.0,
    }
