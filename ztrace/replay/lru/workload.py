"""The workload part of a swap trace: which page is reclaimed, faulted or freed, and when.

A design replay re-decides every outcome, so it reads only what the workload did
(docs/lru-inversion.md, "Workload vs outcome"):

* ``zswap_store`` row → **store** attempt of ``swap_entry`` with ``compressed_bytes``
  (whatever the recorded ``outcome`` was: a page rejected by the kernel was still reclaimed);
* ``zswap_load`` row → **load** (a fault on a swapped-out page), hit or miss;
* ``zswap_invalidate`` row → **invalidate** (the swap slot was freed);
* ``swap_out`` / ``swap_in`` rows are the workload only in a trace without any
  ``zswap_store`` / ``zswap_load`` rows (zswap off); otherwise they are outcomes (the
  disk write after a reject, the disk read after a zswap miss) and are ignored here, as are
  ``zswap_writeback`` rows (a design decides its own writebacks).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from ztrace.errors import TraceFormatError
from ztrace.format import SWAP_EVENTS, Trace, TraceMeta, read_trace

OP_STORE = 0
OP_LOAD = 1
OP_INVALIDATE = 2
#: a writeback the kernel's memory-pressure shrinker did (6.8+ ``zswap_shrinker_scan``, run
#: in the reclaiming task, not the ``kworker`` of the pool-limit shrink worker): reclaim's
#: demand on zswap, which a design with a shrinker replays by its own LRU order
OP_SHRINK = 3
#: a store whose allocation comes later (its own OP_STORE_ALLOC event at entry + duration):
#: only in ``Prepared``'s replay stream, for stores with a recorded duration
OP_STORE_CHECK = 5
OP_STORE_ALLOC = 4
#: one call of the memory-pressure shrinker (6.8+ ``zswap_shrinker_scan``), measured on the
#: guest (``zswap-lru`` scenario, worker_timing.parse_scans); ``clen`` = its ``nr_to_scan``,
#: ``page`` 0 (swap offset 0 is the swap header: never a page). Added by :func:`with_scans`.
OP_SHRINK_SCAN = 6

#: ``clen`` of a page the compressor could not shrink below a page (kernel: compress
#: failure, or ``zpool_malloc`` -ENOSPC for a length above PAGE_SIZE).
INCOMPRESSIBLE = -2
#: ``clen`` not recorded (e.g. 6.1 rejects on the pool limit *before* compressing).
UNKNOWN = -1
#: ``clen`` of a same-filled page: the kernel recorded it as stored without a zsmalloc
#: allocation (``entry->length = 0``, ≤6.11 ``zswap_is_page_same_filled``); no pool space.
SAME_FILLED = -3

_COLUMNS = ["ts_ns", "event", "swap_entry", "outcome", "compressed_bytes", "memcg_id"]


@dataclass
class Workload:
    """Swap workload arrays, one row per operation, in trace order.

    Attributes
    ----------
    ts : int64 array
        Event time (ns).
    op : int8 array
        ``OP_STORE``, ``OP_LOAD`` or ``OP_INVALIDATE``.
    page : uint64 array
        Page identity (``swap_entry``).
    clen : int64 array
        Compressed length for stores (bytes, may exceed ``page_size`` for pages that do not
        compress); ``INCOMPRESSIBLE`` or ``UNKNOWN`` otherwise; 0 for loads and invalidates.
    """

    ts: np.ndarray
    op: np.ndarray
    page: np.ndarray
    clen: np.ndarray
    page_size: int = 4096
    ram_pages: int | None = None
    source: str = "<memory>"
    meta: TraceMeta | None = None
    recorded: dict[str, int] = field(default_factory=dict)
    #: per row: how long the operation took (``duration_ns``; 0 = unknown or atomic). A store
    #: checks the pool limit at its entry (``ts``) and allocates at ``ts + dur``.
    dur: np.ndarray | None = None
    #: the pool-limit shrink worker's own writebacks (``zswap_writeback`` rows in a
    #: ``kworker``; not replayed, a design decides its own): entry time and duration (ns)
    worker_wb_ts: np.ndarray | None = None
    worker_wb_dur: np.ndarray | None = None
    #: measured shrink-worker timing (worker_timing.WorkerTiming) to replay the worker in
    #: time; set by the caller that has it (check lru-kernel, from the guest's ftrace)
    worker_timing: Any = None
    #: how many OP_SHRINK_SCAN rows it has (:func:`with_scans`)
    shrinker_scans: int = 0
    #: per row: the memory cgroup (``memcg_id``; 0 = not known). A store's is its folio's
    #: memcg; a load's or an invalidate's is not used (a page's memcg is its last store's).
    #: None, or fewer than two distinct ids on stores: one memcg, replayed as before.
    memcg: np.ndarray | None = None
    _prep: Prepared | None = field(default=None, repr=False, compare=False)
    #: results derived from this workload alone, shared by the runs on it (optimal's faults)
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ts)

    def resolved_clen(self) -> np.ndarray:
        """Store lengths with ``UNKNOWN`` filled in.

        An unknown length takes the same page's most recent earlier length (a page that is
        reclaimed again usually compresses alike), else its next later one, else the median of
        all known lengths; a length above ``page_size`` becomes ``INCOMPRESSIBLE``.
        Documented in docs/lru-inversion.md.
        """
        return self.prepared().clen.copy()

    def memcg_ids(self) -> np.ndarray:
        """The distinct memcg ids of the stores, sorted (0 = not known); one id or none
        means one memcg."""
        if self.memcg is None:
            return np.zeros(0, np.uint64)
        return np.unique(np.asarray(self.memcg, np.uint64)[self.op == OP_STORE])

    def prepared(self) -> Prepared:
        """Dense page indices and resolved lengths, computed once and shared by every design
        replayed on this workload."""
        if self._prep is None:
            uniq, pidx = np.unique(self.page, return_inverse=True)
            pidx = np.ascontiguousarray(pidx.reshape(-1), dtype=np.int64)
            clen = np.ascontiguousarray(self.clen, dtype=np.int64).copy()
            stores = self.op == OP_STORE
            known = stores & (clen > 0) & (clen <= self.page_size)
            # a SAME_FILLED or INCOMPRESSIBLE marker is kept as it is
            median = int(np.median(clen[known])) if known.any() else self.page_size // 2
            clen[stores & (clen > self.page_size)] = INCOMPRESSIBLE
            _fill_unknown(clen, pidx, np.ascontiguousarray(stores), len(uniq), median)
            op = np.ascontiguousarray(self.op, dtype=np.int8)
            ts = np.ascontiguousarray(self.ts, dtype=np.int64)
            ev_ts, ev_op, ev_pidx, ev_clen = ts, op, pidx, clen
            ids = self.memcg_ids()
            # one memcg: no per-event array (8 bytes an event), the replay never reads it
            mc = np.zeros(len(ts) if len(ids) > 1 else 1, np.int64)
            if len(ids) > 1:
                assert self.memcg is not None
                mc = _memcg_index(np.asarray(self.memcg, np.uint64), ids, op)
            ev_mc = mc
            dur = self.dur
            split = stores & (dur > 0) if dur is not None else None
            if dur is not None and split is not None and split.any():
                # a store with a duration: its limit check at entry, its allocation at
                # entry + duration, ordered by time (ties: row order, check before alloc)
                k = np.flatnonzero(split)
                idx = np.concatenate([np.arange(len(ts)), k])
                t = np.concatenate([ts, ts[k] + dur[k].astype(np.int64)])
                sub = np.concatenate([np.zeros(len(ts), np.int8), np.ones(len(k), np.int8)])
                order = np.lexsort((sub, idx, t))
                idx, sub = idx[order], sub[order]
                ev_ts = np.ascontiguousarray(t[order])
                ev_op = op[idx].copy()
                ev_op[(sub == 0) & split[idx]] = OP_STORE_CHECK
                ev_op[sub == 1] = OP_STORE_ALLOC
                ev_pidx = np.ascontiguousarray(pidx[idx])
                ev_clen = np.ascontiguousarray(clen[idx])
                if len(ids) > 1:
                    ev_mc = np.ascontiguousarray(mc[idx])
            self._prep = Prepared(
                uniq=uniq,
                pidx=pidx,
                clen=clen,
                n_stores=int(stores.sum()),
                ev_op=np.ascontiguousarray(ev_op, dtype=np.int8),
                ev_ts=ev_ts,
                ev_pidx=ev_pidx,
                ev_clen=ev_clen,
                nf=_next_faults(ev_op, ev_pidx, len(uniq)),
                ev_mc=np.ascontiguousarray(ev_mc, dtype=np.int64),
                memcg_ids=ids if len(ids) > 1 else np.zeros(1, np.uint64),
                mh_cap=(
                    _heap_caps(ev_op, ev_pidx, ev_mc, len(uniq), len(ids))
                    if len(ids) > 1
                    else np.ones(1, np.int64)
                ),
            )
        return self._prep


@dataclass(frozen=True)
class Prepared:
    """What the compiled replay reads: pages as dense indices ``0..len(uniq)-1``."""

    uniq: np.ndarray
    pidx: np.ndarray  # per workload row
    clen: np.ndarray  # per workload row, resolved
    n_stores: int
    #: the replay stream: the workload rows, plus an OP_STORE_ALLOC event for each store with
    #: a duration (whose own row becomes OP_STORE_CHECK)
    ev_op: np.ndarray
    ev_ts: np.ndarray
    ev_pidx: np.ndarray
    ev_clen: np.ndarray
    #: per event: the index of the same page's next fault (a load) if no store or
    #: invalidate of that page comes first, else NEVER: what Belady's MIN looks at
    nf: np.ndarray
    #: per event: its memcg as an index into ``memcg_ids`` (one memcg: ``[0]``, not per
    #: event); a shrinker row without a known memcg takes the last store's
    ev_mc: np.ndarray
    #: the memcg ids, index order (one memcg: ``[0]``)
    memcg_ids: np.ndarray
    #: per memcg: the most next-fault heap rows it can need (_core.mheap_push)
    mh_cap: np.ndarray


#: ``Prepared.nf`` of an event whose page is not faulted again (freed or stored first)
NEVER = 1 << 62


@njit(cache=True)
def _next_faults(op, pidx, n_pages):  # type: ignore[no-untyped-def]
    nf = np.full(op.shape[0], NEVER, dtype=np.int64)
    nxt_op = np.full(n_pages, -1, dtype=np.int64)
    nxt_i = np.zeros(n_pages, dtype=np.int64)
    for i in range(op.shape[0] - 1, -1, -1):
        if op[i] == OP_SHRINK or op[i] == OP_STORE_ALLOC or op[i] == OP_SHRINK_SCAN:
            # not a new operation on the page
            continue
        p = pidx[i]
        if nxt_op[p] == OP_LOAD:
            nf[i] = nxt_i[p]
        nxt_op[p] = OP_STORE if op[i] == OP_STORE_CHECK else op[i]
        nxt_i[p] = i
    return nf


def _memcg_index(memcg: np.ndarray, ids: np.ndarray, op: np.ndarray) -> np.ndarray:
    """Per row: the index of its memcg in ``ids``; a shrinker row (OP_SHRINK, OP_SHRINK_SCAN)
    with no memcg of its own, and a load or invalidate (whose memcg is its page's, not its
    row's), take the last store's."""
    idx = np.searchsorted(ids, memcg).clip(0, len(ids) - 1)
    known = (ids[idx] == memcg) & (memcg != 0)
    stores = op == OP_STORE
    own = stores | ((op == OP_SHRINK_SCAN) | (op == OP_SHRINK)) & known
    # forward fill: rows without their own memcg take the last row that has one
    src = np.where(own, np.arange(len(op)), -1)
    np.maximum.accumulate(src, out=src)
    out = np.where(src >= 0, idx[np.maximum(src, 0)], 0)
    return np.ascontiguousarray(out, dtype=np.int64)


@njit(cache=True)
def _heap_caps(op, pidx, mc, n_pages, n_mc):  # type: ignore[no-untyped-def]
    """Per memcg: its stores plus the loads of pages last stored by it (each can push one
    row into that memcg's next-fault heap), plus one."""
    cap = np.ones(n_mc, dtype=np.int64)
    last = np.zeros(n_pages, dtype=np.int64)
    for i in range(op.shape[0]):
        if op[i] == OP_STORE or op[i] == OP_STORE_CHECK:
            last[pidx[i]] = mc[i]
            cap[mc[i]] += 1
        elif op[i] == OP_LOAD:
            cap[last[pidx[i]]] += 1
    return cap


@njit(cache=True)
def _fill_unknown(clen, pidx, stores, n_pages, median):  # type: ignore[no-untyped-def]
    """Workload.resolved_clen's rule, in place: each page's last earlier known length, else
    its first later one, else ``median``."""
    first = np.full(n_pages, -1, dtype=np.int64)
    last = np.full(n_pages, -1, dtype=np.int64)
    for i in range(clen.shape[0] - 1, -1, -1):
        if stores[i] and clen[i] > 0:
            first[pidx[i]] = clen[i]
    for i in range(clen.shape[0]):
        if not stores[i]:
            continue
        c = clen[i]
        p = pidx[i]
        if c == UNKNOWN or c == 0:
            if last[p] >= 0:
                clen[i] = last[p]
            elif first[p] >= 0:
                clen[i] = first[p]
            else:
                clen[i] = median
        elif c > 0:
            last[p] = c


def from_arrays(
    ts: np.ndarray | list[int],
    op: np.ndarray | list[int],
    page: np.ndarray | list[int],
    clen: np.ndarray | list[int],
    *,
    page_size: int = 4096,
    ram_pages: int | None = None,
    memcg: np.ndarray | list[int] | None = None,
) -> Workload:
    """Build a :class:`Workload` directly (tests, hand-built streams); ``memcg``: each
    row's memcg id (stores: the folio's), None for one memcg."""
    return Workload(
        ts=np.asarray(ts, dtype=np.int64),
        op=np.asarray(op, dtype=np.int8),
        page=np.asarray(page, dtype=np.uint64),
        clen=np.asarray(clen, dtype=np.int64),
        page_size=page_size,
        ram_pages=ram_pages,
        memcg=None if memcg is None else np.asarray(memcg, dtype=np.uint64),
    )


def with_scans(
    w: Workload, ts: np.ndarray, nr_to_scan: np.ndarray, memcg: np.ndarray | None = None
) -> Workload:
    """``w`` with one OP_SHRINK_SCAN row per measured shrinker call (time ``ts``, walk
    length ``nr_to_scan``, ``sc->memcg`` as a cgroup id when measured, else 0), merged in
    time order (a scan after the rows of the same time)."""
    n = len(ts)
    o = np.argsort(ts, kind="stable")
    ts = np.asarray(ts, np.int64)[o]
    # insert before the first later row; the workload's own rows keep their order
    at = np.searchsorted(np.maximum.accumulate(w.ts), ts, side="right")
    dur = None if w.dur is None else np.insert(w.dur, at, 0)
    return Workload(
        ts=np.insert(w.ts, at, ts),
        op=np.insert(w.op, at, OP_SHRINK_SCAN).astype(np.int8),
        page=np.insert(w.page, at, 0).astype(np.uint64),
        clen=np.insert(w.clen, at, np.asarray(nr_to_scan, np.int64)[o]),
        page_size=w.page_size,
        ram_pages=w.ram_pages,
        source=w.source,
        meta=w.meta,
        recorded=dict(w.recorded),
        dur=dur,
        worker_wb_ts=w.worker_wb_ts,
        worker_wb_dur=w.worker_wb_dur,
        worker_timing=w.worker_timing,
        shrinker_scans=w.shrinker_scans + n,
        memcg=None
        if w.memcg is None
        else np.insert(
            w.memcg, at, np.zeros(n, np.uint64) if memcg is None else np.asarray(memcg)[o]
        ).astype(np.uint64),
    )


def _ram_pages(meta: TraceMeta) -> int | None:
    """RAM size from trace metadata: ``extra.ram_bytes`` or ``extra.totalram_pages``."""
    for key, scale in (("totalram_pages", 1), ("ram_bytes", 0)):
        val = meta.extra.get(key)
        if val is None:
            continue
        try:
            n = int(val)
        except ValueError:
            continue
        return n if scale else n // meta.page_size
    return None


def load_workload(trace: str | os.PathLike[str] | Trace) -> Workload:
    """Read a trace and extract its swap workload.

    Raises
    ------
    TraceFormatError
        The trace is unreadable, has no ``swap_entry`` column, or has no swap events
        (message ``no swap events``, naming the file).
    """
    if isinstance(trace, Trace):
        t = trace
        source = str(t.files[0]) if t.files else "<memory>"
    else:
        path = Path(trace)
        t = read_trace(path, allow_empty=True)
        source = str(t.files[0]) if len(t.files) == 1 else str(path)
    table = t.table
    names = set(table.column_names)
    ev = table.column("event").cast(pa.string()) if table.num_rows else None
    n_swap = 0
    if ev is not None:
        n_swap = int(pc.sum(pc.is_in(ev, value_set=pa.array(SWAP_EVENTS))).as_py() or 0)
    if n_swap == 0 or "swap_entry" not in names:
        why = "no swap events" if n_swap == 0 else "no swap events with a `swap_entry` column"
        raise TraceFormatError(
            source,
            f"{why} (a LRU replay needs zswap_store/zswap_load/zswap_invalidate rows, "
            "trace format v2)",
        )
    assert ev is not None
    # Only swap rows (and any row with an outcome) count below. A capture is mostly allocator
    # rows (4.0 M of 4.2 M in the fleet bench's traces), and every step below makes Python
    # strings of each row's event and comm: 4.3 s of a 4.7 s LRU task before this filter.
    keep_rows = pc.is_in(ev, value_set=pa.array(SWAP_EVENTS))
    if "outcome" in names:
        keep_rows = pc.or_(keep_rows, pc.is_valid(table.column("outcome")))
    row_of = np.asarray(pc.indices_nonzero(keep_rows).to_numpy(), dtype=np.int64)
    table = table.filter(keep_rows)
    ev = ev.filter(keep_rows)
    evs = np.asarray(ev.to_numpy(zero_copy_only=False), dtype=object)
    has_store = bool((evs == "zswap_store").any())
    has_load = bool((evs == "zswap_load").any())
    store_ev = "zswap_store" if has_store else "swap_out"
    load_ev = "zswap_load" if has_load else "swap_in"
    is_store = evs == store_ev
    is_load = evs == load_ev
    is_inval = evs == "zswap_invalidate"
    is_shrink = np.zeros(len(evs), dtype=bool)
    if "comm" in names:
        comm = np.asarray(
            pc.fill_null(table.column("comm").cast(pa.string()), "").to_numpy(zero_copy_only=False),
            dtype=object,
        )
        # the shrink worker runs in a kworker; anything else is reclaim calling the shrinker
        is_shrink = (evs == "zswap_writeback") & ~np.char.startswith(comm.astype(str), "kworker")
    keep = is_store | is_load | is_inval | is_shrink
    entry_col = table.column("swap_entry")
    if entry_col.null_count:
        bad = keep & np.asarray(pc.is_null(entry_col).to_numpy(zero_copy_only=False))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TraceFormatError(
                source, f"row {row_of[i]} ({evs[i]}) has no `swap_entry` (page identity)"
            )
    idx = np.flatnonzero(keep)
    op = np.where(
        is_store[idx],
        OP_STORE,
        np.where(is_load[idx], OP_LOAD, np.where(is_shrink[idx], OP_SHRINK, OP_INVALIDATE)),
    )
    # non-swap rows have a null swap_entry: fill before converting (nulls become NaN otherwise)
    page = np.asarray(pc.fill_null(entry_col, 0).to_numpy(), dtype=np.uint64)[idx]
    ts = np.asarray(table.column("ts_ns").to_numpy(), dtype=np.int64)[idx]
    dur = None
    if "duration_ns" in names:  # a capture's kprobe entry→return time of the operation
        dur = np.asarray(pc.fill_null(table.column("duration_ns"), 0).to_numpy(), np.int64)[idx]
        dur = np.where(op == OP_STORE, dur, 0)
    clen = np.zeros(len(idx), dtype=np.int64)
    if "compressed_bytes" in names:
        cb = np.asarray(pc.fill_null(table.column("compressed_bytes"), 0).to_numpy(), np.int64)
        clen = np.where(op == OP_STORE, np.where(cb[idx] > 0, cb[idx], UNKNOWN), 0)
    else:
        clen = np.where(op == OP_STORE, UNKNOWN, 0).astype(np.int64)
    memcg = None
    if "memcg_id" in names:  # the folio's memcg (capture/session.py), null where unknown
        memcg = np.asarray(pc.fill_null(table.column("memcg_id"), 0).to_numpy(), np.uint64)[idx]
    recorded: dict[str, int] = {}
    if "outcome" in names:
        out = np.asarray(
            table.column("outcome").cast(pa.string()).to_numpy(zero_copy_only=False), object
        )
        # a store the kernel rejected as incompressible: its length is above a page
        sel = is_store[idx] & (out[idx] == "reject_compress")
        clen[sel & (clen <= t.meta.page_size)] = INCOMPRESSIBLE
        # stored without a length: a same-filled page (no zsmalloc object)
        clen[is_store[idx] & (out[idx] == "stored") & (clen == UNKNOWN)] = SAME_FILLED
        has_out = np.asarray(pc.is_valid(table.column("outcome")).to_numpy(zero_copy_only=False))
        for (e, o), n in Counter(zip(evs[has_out], out[has_out], strict=True)).items():
            recorded[f"{e}:{o}"] = n
        # 6.5+ zswap_store returns bool, so a capture cannot tell a pool-limit reject from
        # a compression failure: both are `reject_other` with no length (the limit is checked
        # before compressing). A page none of whose stores in the trace ever had a length
        # and that was rejected is taken as incompressible (a compressible page rejected on
        # the limit is normally stored at another reclaim). Heuristic; counted in
        # recorded["inferred_incompressible"].
        if not (out == "reject_pool_limit").any() and not (out == "reject_compress").any():
            st = op == OP_STORE
            sized = set(page[st & (clen > 0)].tolist())
            cand = st & (clen == UNKNOWN) & (out[idx] == "reject_other")
            inferred = cand & ~np.isin(page, np.fromiter(sized, np.uint64, len(sized)))
            clen[inferred] = INCOMPRESSIBLE
            recorded["inferred_incompressible"] = int(inferred.sum())
    for e in ("zswap_writeback", "swap_out", "swap_in", "zswap_store", "zswap_load"):
        recorded[e] = int((evs == e).sum())
    recorded["shrinker_writebacks"] = int(is_shrink.sum())
    is_worker = (evs == "zswap_writeback") & ~is_shrink if "comm" in names else None
    wts = wdur = None
    if is_worker is not None and is_worker.any():
        wts = np.asarray(table.column("ts_ns").to_numpy(), dtype=np.int64)[is_worker]
        if "duration_ns" in names:
            wdur = np.asarray(pc.fill_null(table.column("duration_ns"), 0).to_numpy(), np.int64)[
                is_worker
            ]
    return Workload(
        ts=ts,
        op=op.astype(np.int8),
        page=page,
        clen=clen.astype(np.int64),
        page_size=t.meta.page_size,
        ram_pages=_ram_pages(t.meta),
        source=source,
        meta=t.meta,
        recorded=recorded,
        dur=dur,
        worker_wb_ts=wts,
        worker_wb_dur=wdur,
        memcg=memcg,
    )
