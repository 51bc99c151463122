"""Allocator ingest: trace events -> operations with kind, class, pool and costs.

Each distinct *allocator configuration* (pools, allocator front; see
:attr:`ztrace.replay.locks.LockDesign.allocator_key`) runs once per batch: the kernel-exact
:mod:`ztrace.model.zsmalloc` pool model, the handle table (:mod:`ztrace.replay.handles`) and
the design's allocator front (:mod:`ztrace.replay.locks._front`) decide each op's kind
(malloc that grew a zspage, free, magazine hit, ...) and its costs. Every design with that
configuration then feeds the same ops to its lock simulator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

from ztrace.format.events import (
    EV_COMPACT,
    EV_FREE,
    EV_MALLOC,
    EV_MIGRATE,
    EVENT_CODES,
    READ_EVENTS,
)
from ztrace.model import zsmalloc as zsm
from ztrace.replay.compaction import N_R
from ztrace.replay.costs import (
    C_ALLOC_ZSPAGE,
    C_CAP_FREE,
    C_CAP_GROW,
    C_CAP_MALLOC,
    C_COMPACT,
    C_HOLD_FREE,
    C_HOLD_GROW,
    C_HOLD_MALLOC,
    C_LOOKUP,
    C_MIGRATE,
    C_WRITE_BASE,
    C_WRITE_KIB,
)
from ztrace.replay.handles import (
    HM_CLS_MASK,
    HM_KEY,
    HM_SHIFT,
    HM_VAL,
    HandleMap,
    hm_delete,
    hm_find,
    hm_full,
    hm_prefetch,
)
from ztrace.replay.locks import OP_COMPACT, OP_MALLOC_GROW, OP_MIGRATE, OP_READ, LockDesign
from ztrace.replay.locks._front import front_free, front_malloc, plain_front

#: allocator event name -> its code, as defined once in ztrace.format.events (the BPF
#: ``ZT_EV_*`` values); every other event ingests as -1 (not an allocator op)
EV_CODES = {
    name: EVENT_CODES[name] for name in ("zs_malloc", "zs_free", "zs_compact", "zs_migrate")
}
#: Ingest-only codes, after the event codes: derived from events that have no BPF code yet
#: (reads: zs_map_object up to 6.14, zs_obj_read_begin from 6.15; see READ_EVENTS) or from
#: zswap events plus their outcome (:func:`swap_codes`).
IN_READ = max(EV_CODES.values()) + 1
IN_CODES: dict[str, int] = {**EV_CODES, **dict.fromkeys(READ_EVENTS, IN_READ)}
#: rows of per-event-code tables (codes index them directly)
N_EV = IN_READ + 1
#: zswap's own events, for traces without zsmalloc read probes: a stored entry (its
#: object's size), a read of it, its end
IN_SWAP_STORE, IN_SWAP_READ, IN_SWAP_DROP = N_EV, N_EV + 1, N_EV + 2
#: zs_malloc's return value on failure: 0 before v6.0, ERR_PTR(-errno) since "zsmalloc:
#: zs_malloc: return ERR_PTR on failure" (v6.0): the top 4095 values of an unsigned long
ERR_HANDLE_MIN = np.uint64(2**64 - 4095)
# counters
(
    K_BAD_ALLOC,
    K_DUP_MALLOC,
    K_UNMATCHED_FREE,
    K_UNKNOWN_CLASS,
    K_MALLOC,
    K_FREE,
    K_COMPACT,
    K_MIGRATE,
    K_OTHER,
    K_FAILED_MALLOC,
    K_READ,
    K_UNMATCHED_READ,
) = range(12)
COUNTER_NAMES = (
    "bad_alloc",
    "dup_malloc",
    "unmatched_free",
    "unknown_class",
    "mallocs",
    "frees",
    "compacts",
    "migrates",
    "other_events",
    "failed_malloc",
    "reads",
    "unmatched_read",
)
#: columns of a classes snapshot row
SN_BIN, SN_CLS, SN_OBJ_ALLOC, SN_OBJ_USED, SN_PAGES = range(5)
N_SN = 5
#: the plain single pool: classes.parquet always describes it
STD_KEY: tuple[Any, ...] = (1, ())
#: events between the stages of the ingest loop's lookahead (prefetch hints, see _ingest)
PF_STEP = 2
#: the op arrays ``ingest`` returns, besides ``pool``
OUT_COLUMNS = ("kind", "cls", "cost", "cost2", "cost3", "cut", "zsp")


def event_codes(col: pa.Array) -> np.ndarray:
    """int8 codes of the ``event`` column (-1 = not an allocator op)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    lut = np.array([IN_CODES.get(s, -1) for s in col.dictionary.to_pylist()] + [-1], dtype=np.int8)
    ind = col.indices.to_numpy(zero_copy_only=False)
    return lut[ind.astype(np.int64)]


def swap_codes(code: np.ndarray, event: pa.Array, outcome: pa.Array) -> np.ndarray:
    """``code`` with zswap's events turned into reads of zsmalloc objects.

    6.12 zswap_load() (hit) and zswap_writeback_entry() both decompress the entry:
    zswap_decompress() -> zpool_map_handle() -> zs_map_object() (mm/zswap.c, v6.12). A
    capture with zswap probes but no zsmalloc read probes thus still shows every read;
    the entry's size class comes from its zswap_store (``size_bytes`` = compressed size).
    """
    ev = event.cast(pa.string()).to_numpy(zero_copy_only=False)
    out = outcome.cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)
    code = code.copy()
    code[(ev == "zswap_store") & (out == "stored")] = IN_SWAP_STORE
    code[((ev == "zswap_load") & (out == "hit")) | (ev == "zswap_writeback")] = IN_SWAP_READ
    code[ev == "zswap_invalidate"] = IN_SWAP_DROP
    return code


def malloc_ok(code: np.ndarray, handle: np.ndarray, ok: pa.Array | None) -> np.ndarray:
    """1 where an event is not a failed zs_malloc (int64): failed = the trace's ``ok``
    column is false, or the returned handle is 0 / an ERR_PTR (:data:`ERR_HANDLE_MIN`)."""
    u = handle.view(np.uint64)
    bad = (code == EV_MALLOC) & ((u == 0) | (u >= ERR_HANDLE_MIN))
    if ok is not None:
        bad |= (code == EV_MALLOC) & ~ok.fill_null(True).to_numpy(zero_copy_only=False).astype(bool)
    return (~bad).astype(np.int64)


@njit(cache=True)
def _handle_order(code, handle, ts, dur, tid):
    """Sort keys (2 x row) for the handle table's processing order, and how many were moved.

    Kprobe events carry their *entry* time, but zs_malloc hands out its handle when it
    *returns*. While one zs_malloc runs (6.1: cache_alloc_handle() before the pool lock,
    mm/zsmalloc.c: zs_malloc; a long call was descheduled or its vCPU stopped), another
    thread can free a handle and the slab hand that same handle to this malloc. By entry
    time the malloc then sorts before the free of the handle's previous object: the table
    saw "malloc of a live handle, then a free" (dup_malloc, and the later real free
    unmatched). A free of the malloc's handle that *entered* inside the malloc's call
    released it before the malloc returned it, so the malloc is processed after the last
    such free (key 2j + 1), if another thread made it (a thread cannot free inside its own
    zs_malloc call; traces without thread ids, all 0, are left in entry order). Lock
    arrivals keep the entry times: only the handle table's order changes, and only for
    these mallocs.
    """
    n = code.shape[0]
    key = np.arange(n, dtype=np.int64) * 2
    moved = 0
    for i in range(n):
        if code[i] != EV_MALLOC or dur[i] <= 0:
            continue
        end = ts[i] + dur[i]
        last = -1
        j = i + 1
        while j < n and ts[j] < end:
            if code[j] == EV_FREE and handle[j] == handle[i] and tid[j] != tid[i]:
                last = j
            j += 1
        if last >= 0:
            key[i] = 2 * last + 1
            moved += 1
    return key, moved


def handle_order(
    code: np.ndarray, handle: np.ndarray, ts: np.ndarray, dur: np.ndarray, tid: np.ndarray
) -> np.ndarray | None:
    """Row order for the handle table (see :func:`_handle_order`); None = trace order."""
    key, moved = _handle_order(code, handle, ts, dur, tid)
    return np.argsort(key, kind="stable") if moved else None


@njit(cache=True, nogil=True)  # engine threads run allocator groups in parallel
def _ingest(
    model,
    idx,
    start,
    code,
    size,
    handle,
    dur,
    ok,
    cpu,
    clsidx,
    binidx,
    htab,
    hn,
    stab,
    sn,
    swap_key,
    front,
    cm,
    clog,
    clog_n,
    out_kind,
    out_cls,
    out_cost,
    out_cost2,
    out_cost3,
    out_cut,
    out_zsp,
    pages_bin,
    last_bin,
    snap_on,
    snap_stride,
    snap,
    snap_n,
    counters,
):
    """Run the events ``idx[start:]`` of a batch through one pool model; fill the op arrays.

    Returns ``len(idx)`` when done, or the position to resume from after the caller has
    grown the handle table (it is kept at most 3/4 full) or, when ``clog_n[1]`` is set,
    the compaction log to that many rows. Cached: the pool model is a numba
    ``structref`` (ztrace.model.zsmalloc) and the front a NamedTuple, so a new process loads
    this from disk.
    """
    cap = htab.shape[0]
    scap = stab.shape[0]
    n_idx = idx.shape[0]
    # Lookahead (issue 15): the loop is latency-bound (a handle-table row, then the freed
    # object's row, its zspage row, its slot: dependent random reads), so the rows of the
    # events a few places ahead are prefetched in stages, each stage's row read from cache
    # by the next. Hints only: ``ahead`` may go stale (the table and pool change meanwhile),
    # which costs a useless prefetch, never a wrong value.
    ahead = np.full(8, -1, dtype=np.int64)  # object id a free ahead will release
    m_obj = model.obj
    m_zp = model.zp
    m_slot = model.slot
    for j in range(start, n_idx):
        if hm_full(hn[0], cap) or hm_full(sn[0], scap):
            return j
        if model.obj_count > m_obj.shape[0]:  # the pool grew an array: hint the new one
            m_obj = model.obj
        if model.zp_count > m_zp.shape[0]:
            m_zp = model.zp
        if model.arena_used > m_slot.shape[0]:
            m_slot = model.slot
        ja = j + 3 * PF_STEP
        if ja < n_idx:
            e = code[idx[ja]]
            if e in (EV_MALLOC, EV_FREE, IN_READ):
                hm_prefetch(htab, handle[idx[ja]])
        jb = j + 2 * PF_STEP
        if jb < n_idx:
            o = -1
            if code[idx[jb]] == EV_FREE:
                s = hm_find(htab, handle[idx[jb]])
                if s >= 0:
                    o = htab[s, HM_VAL] >> HM_SHIFT
                    zsm.prefetch_object(m_obj, o)
            ahead[jb & 7] = o
        if j + PF_STEP < n_idx:
            zsm.prefetch_zspage_of(m_obj, m_zp, ahead[(j + PF_STEP) & 7])
        if j + 1 < n_idx:
            zsm.prefetch_free_rest(m_obj, m_zp, m_slot, ahead[(j + 1) & 7])
        i = idx[j]
        b = binidx[i]
        if b > last_bin[0]:  # (a malloc moved after a free (handle_order) may step back)
            # classes snapshots at the end of every ``snap_stride``-th timeline bin
            lb = last_bin[0]
            if snap_on and lb >= 0 and b // snap_stride != lb // snap_stride:
                snap_n[0] = _snapshot(model, lb // snap_stride * snap_stride, snap, snap_n[0])
            last_bin[0] = b
        ev = code[i]
        out_kind[i] = -1
        out_cls[i] = -1
        out_zsp[i] = -1  # the op's zspage (the zspage lock: ztrace.replay.locks U_ZREAD)
        if ev == EV_MALLOC and ok[i] == 0:
            # the kernel's zs_malloc failed (e.g. zram's first, no-direct-reclaim attempt
            # under pressure): it allocated nothing, so it is counted, not replayed
            counters[K_FAILED_MALLOC] += 1
        elif ev == EV_MALLOC:
            counters[K_MALLOC] += 1
            sz = size[i]
            h = handle[i]
            s = hm_find(htab, h)
            if s >= 0:  # a live handle again: its zs_free was lost; drop the old object
                counters[K_DUP_MALLOC] += 1
                zsm.free(model, htab[s, HM_VAL] >> HM_SHIFT)
                hm_delete(htab, s)
                hn[0] -= 1
                s = hm_find(htab, h)
            # s = -1 - (the free row for h); the model does not touch the table meanwhile
            c = zsm.class_index(model, sz)
            p0 = model.pages_allocated
            # (H, issue 10) the lock is held for the measured hold share of the call only
            # (6.1/6.12 mm/zsmalloc.c: zs_malloc calls cache_alloc_handle() before
            # spin_lock(); ztrace.replay.holds); 1000 permille = the whole call
            # (issue 10) past its kind's stall cap a call was stalled: the stall is taken
            # out here and comes back at the measured rate, inside a hold or not
            # (ztrace.replay.stalls)
            capped = min(dur[i], cm[C_CAP_MALLOC])
            held = _held(capped, cm[C_HOLD_MALLOC])
            obj, kind, cost = front_malloc(front, model, cpu[i], c, sz, held, cm)
            if obj < 0:
                counters[K_BAD_ALLOC] += 1
                pages_bin[b] = model.pages_allocated
                continue
            alloc = (model.pages_allocated - p0) * cm[C_ALLOC_ZSPAGE]
            if kind == OP_MALLOC_GROW and dur[i] > 0 and cm[C_HOLD_GROW] < 1000:
                # measured holds (two: before and after alloc_zspage()) are the grow share
                # of the call; alloc_zspage() runs in the rest of it, outside the lock
                capped = min(dur[i], cm[C_CAP_GROW])
                held = _held(capped, cm[C_HOLD_GROW])
                cost = held - cm[C_LOOKUP] if held > cm[C_LOOKUP] else 0
                alloc = alloc if alloc < dur[i] - held else dur[i] - held
            elif kind == OP_MALLOC_GROW and dur[i] > 0:
                # the measured duration already contains the lookup and alloc_zspage():
                # split it over the three steps instead of adding to it
                capped = min(dur[i], cm[C_CAP_GROW])
                rest = capped - cm[C_LOOKUP] if capped > cm[C_LOOKUP] else 0
                alloc = alloc if alloc < rest else rest
                cost = rest - alloc
            out_kind[i] = kind
            out_cost[i] = cost
            out_cut[i] = dur[i] - capped  # the stall taken out: the closed loop's credit
            out_cost2[i] = alloc
            out_cost3[i] = cm[C_WRITE_BASE] + sz * cm[C_WRITE_KIB] // 1024
            out_cls[i] = c
            out_zsp[i] = zsm.zspage_of(model, obj)[0]  # the write's zs_map_object() after it
            s = -1 - s
            htab[s, HM_KEY] = h
            htab[s, HM_VAL] = obj << HM_SHIFT | c
            hn[0] += 1
        elif ev == EV_FREE:
            counters[K_FREE] += 1
            s = hm_find(htab, handle[i])
            if s < 0:
                counters[K_UNMATCHED_FREE] += 1
                pages_bin[b] = model.pages_allocated
                continue
            v = htab[s, HM_VAL]
            obj = v >> HM_SHIFT
            c = v & HM_CLS_MASK
            hm_delete(htab, s)
            hn[0] -= 1
            out_cls[i] = c
            # a measured zs_free contains its handle lookup, which the per-class designs
            # replay as a step of its own (pool read lock): hand the rest to the front.
            # (The pool design has no such step, so its free holds lookup_ns less.)
            # (H, issue 10) only the hold share: zs_free calls cache_free_handle() after
            # spin_unlock() (6.1/6.12 mm/zsmalloc.c: zs_free)
            capped = min(dur[i], cm[C_CAP_FREE])
            out_cut[i] = dur[i] - capped
            d = _held(capped, cm[C_HOLD_FREE])
            d = d - cm[C_LOOKUP] if d > cm[C_LOOKUP] else d
            out_kind[i], out_cost[i] = front_free(front, model, cpu[i], c, obj, d, cm)
        elif ev == IN_READ:
            counters[K_READ] += 1
            s = hm_find(htab, handle[i])
            if s < 0:  # its zs_malloc was before the capture (or lost)
                counters[K_UNMATCHED_READ] += 1
            else:
                c = htab[s, HM_VAL] & HM_CLS_MASK
                out_kind[i] = OP_READ
                out_cls[i] = c
                out_zsp[i] = zsm.zspage_of(model, htab[s, HM_VAL] >> HM_SHIFT)[0]
                # held under the zspage lock only: the copy of the object (class size);
                # the measured duration of zs_map_object()/zs_obj_read_begin() is not the
                # copy (it ends before the caller copies), so it is not used here
                sz = model.cls_size[c]
                out_cost[i] = cm[C_WRITE_BASE] + sz * cm[C_WRITE_KIB] // 1024
        elif ev == IN_SWAP_STORE:  # a zswap entry and the size class of its object
            s = hm_find(stab, swap_key[i])
            if s < 0:
                s = -1 - s
                sn[0] += 1
            stab[s, HM_KEY] = swap_key[i]
            # the class alone (object 0); -1 (no class) leaves the row free, as it always did
            stab[s, HM_VAL] = zsm.class_index(model, size[i])
        elif ev == IN_SWAP_READ:
            counters[K_READ] += 1
            s = hm_find(stab, swap_key[i])
            if s < 0:
                counters[K_UNMATCHED_READ] += 1
            else:
                c = stab[s, HM_VAL]
                out_kind[i] = OP_READ
                out_cls[i] = c
                out_cost[i] = cm[C_WRITE_BASE] + model.cls_size[c] * cm[C_WRITE_KIB] // 1024
        elif ev == IN_SWAP_DROP:
            s = hm_find(stab, swap_key[i])
            if s >= 0:
                hm_delete(stab, s)
                sn[0] -= 1
        elif ev == EV_COMPACT:
            need = zsm.compact_log_rows(model)
            if clog_n[0] + need > clog.shape[0]:
                clog_n[1] = clog_n[0] + need  # the caller grows ``clog`` and resumes here
                return j
            counters[K_COMPACT] += 1
            # one row per source zspage (ztrace.replay.compaction splits the op by them)
            n0 = clog_n[0]
            rows = zsm.compact_log(model, clog[n0:, 1:])[1]
            for r in range(n0, n0 + rows):
                clog[r, 0] = i
            clog_n[0] = n0 + rows
            out_kind[i] = OP_COMPACT
            out_cost[i] = dur[i] if dur[i] > 0 else cm[C_COMPACT]
        elif ev == EV_MIGRATE:
            counters[K_MIGRATE] += 1
            c = clsidx[i]
            if c < 0 and size[i] > 0:
                c = zsm.class_index(model, size[i])
            if c < 0:
                counters[K_UNKNOWN_CLASS] += 1
            else:
                out_kind[i] = OP_MIGRATE
                out_cls[i] = model.cls_rep[c]
                out_cost[i] = dur[i] if dur[i] > 0 else cm[C_MIGRATE]
        else:
            counters[K_OTHER] += 1
        pages_bin[b] = model.pages_allocated
    return idx.shape[0]


@njit(cache=True, nogil=True)
def _held(dur, permille):
    """The held part of a measured duration: ``dur * permille / 1000``, at least 1 ns when
    there is a duration (0 = none measured: the model's constants apply)."""
    if dur <= 0 or permille >= 1000:
        return dur
    h = dur * permille // 1000
    return h if h > 0 else 1


@njit(cache=True)
def _snapshot(model, b, snap, n):
    st = zsm._m_class_stats(model)
    for c in range(st.shape[0]):
        if st[c, 0] > 0:
            snap[n, SN_BIN] = b
            snap[n, SN_CLS] = c
            snap[n, SN_OBJ_ALLOC] = st[c, 0]
            snap[n, SN_OBJ_USED] = st[c, 1]
            snap[n, SN_PAGES] = st[c, 2]
            n += 1
    return n


class AllocGroup:
    """One allocator configuration (pools, front) shared by the designs with that key."""

    def __init__(
        self,
        design: LockDesign,
        table: Any,
        ratio_groups: bool,
        n_cpus: int,
        seed: int,
        snap_on: bool,
    ) -> None:
        from ztrace.model.zsmalloc import new_pool

        self.key = design.allocator_key
        self.n_pools = design.n_pools
        self.pool_fn = design.pool_of
        self.seed = seed
        self.models = [new_pool(table, ratio_groups=ratio_groups) for _ in range(self.n_pools)]
        self.maps = [HandleMap() for _ in range(self.n_pools)]
        self.swap_maps = [HandleMap(1 << 4) for _ in range(self.n_pools)]
        nc = table.n_classes
        make_front = design.front if design.front is not None else plain_front
        self.fronts = [make_front(n_cpus, nc) for _ in range(self.n_pools)]
        self.pages = [np.full(64, -1, dtype=np.int64) for _ in range(self.n_pools)]
        self.last_bin = [np.full(1, -1, dtype=np.int64) for _ in range(self.n_pools)]
        self.counters = np.zeros(len(COUNTER_NAMES), dtype=np.int64)
        self.snap_on = snap_on
        self.n_classes = nc
        self.snaps: list[np.ndarray] = []
        self.snap_stride = 1  # set by replay(): classes rows every k timeline bins

    def pool_of(self, handle: np.ndarray) -> np.ndarray:
        """Pool of each handle (the design's ``pool_of``; all 0 for one pool)."""
        if self.n_pools == 1:
            return np.zeros(len(handle), dtype=np.int64)
        assert self.pool_fn is not None, "a design with n_pools > 1 must give pool_of"
        return self.pool_fn(handle, self.seed)

    def ingest(self, b: dict[str, np.ndarray], cm: np.ndarray) -> dict[str, np.ndarray]:
        """One batch (``b``: the engine's columns, trace rows) -> the op arrays, trace rows."""
        n = len(b["code"])
        pool = self.pool_of(b["handle"])
        base = b.get("order")
        if base is None:
            base = np.arange(n, dtype=np.int64)
        if self.n_pools == 1:
            out = self._ingest_rows(b, cm, [base])
            out["pool"] = pool
            return out
        # Several pools: each pool's rows in handle-table order (``base``), pool by pool.
        # The same stable order as sorting the int64 pools, but numpy radix-sorts a 16-bit
        # key (~6x faster on a 64 Ki-row batch, on the allocator's thread).
        key = pool[base].astype(np.uint16 if self.n_pools <= 1 << 16 else np.int64)
        order = base[np.argsort(key, kind="stable")]
        bounds = np.searchsorted(pool[order], np.arange(self.n_pools + 1))
        # The batch is gathered in that order first, so each pool's pass reads its rows in
        # sequence instead of every ~n_pools-th row of every column (issue 15: pools:32's
        # ingest ~0.6x the CPU); the ops are scattered back to their trace rows.
        rows = np.arange(n, dtype=np.int64)
        got = self._ingest_rows(
            {k: v[order] for k, v in b.items() if k != "order"},
            cm,
            [rows[bounds[p] : bounds[p + 1]] for p in range(self.n_pools)],
        )
        out = {}
        for k in OUT_COLUMNS:
            out[k] = np.empty(n, dtype=np.int64)
            out[k][order] = got[k]
        out["pool"] = pool
        out["compact"] = got["compact"]
        out["compact"][:, 0] = order[out["compact"][:, 0]]  # the zs_compact's trace row
        return out

    def _ingest_rows(
        self, b: dict[str, np.ndarray], cm: np.ndarray, subsets: list[np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run ``subsets[p]`` (rows of ``b``, in order) through pool ``p``."""
        n = len(b["code"])
        # kind and cls are written for every row (each row is in exactly one pool's subset)
        out = {
            k: (np.empty if k in ("kind", "cls", "zsp") else np.zeros)(n, dtype=np.int64)
            for k in OUT_COLUMNS
        }
        max_bin = int(b["bin"].max())
        # snapshot rows this batch can need: at most one per distinct snapshot bin, and a
        # batch has no more distinct values than runs of equal ones (a count, not a sort:
        # np.unique cost ~30-100 ns per event here, issue 15)
        sb = b["bin"] // self.snap_stride
        n_bins_here = int(np.count_nonzero(sb[1:] != sb[:-1])) + 2
        # compaction rows of this batch (ztrace.replay.compaction); grown on demand
        clog = np.zeros((1, N_R), dtype=np.int64)
        logs: list[np.ndarray] = []
        for p, idx in enumerate(subsets):
            if len(idx) == 0:
                continue
            hm = self.maps[p]
            sm = self.swap_maps[p]
            if max_bin >= len(self.pages[p]):
                grown = np.full(max(max_bin + 1, 2 * len(self.pages[p])), -1, dtype=np.int64)
                grown[: len(self.pages[p])] = self.pages[p]
                self.pages[p] = grown
            snap_on = self.snap_on and p == 0
            snap = np.zeros((n_bins_here * self.n_classes if snap_on else 1, N_SN), dtype=np.int64)
            snap_n = np.zeros(1, dtype=np.int64)
            clog_n = np.zeros(2, dtype=np.int64)
            pos = 0
            while pos < len(idx):
                pos = _ingest(
                    self.models[p],
                    idx,
                    pos,
                    b["code"],
                    b["size"],
                    b["handle"],
                    b["dur"],
                    b["ok"],
                    b["cpu"],
                    b["clsidx"],
                    b["bin"],
                    hm.tab,
                    hm.n,
                    sm.tab,
                    sm.n,
                    b["swap_key"],
                    self.fronts[p],
                    cm,
                    clog,
                    clog_n,
                    out["kind"],
                    out["cls"],
                    out["cost"],
                    out["cost2"],
                    out["cost3"],
                    out["cut"],
                    out["zsp"],
                    self.pages[p],
                    self.last_bin[p],
                    snap_on,
                    np.int64(self.snap_stride),
                    snap,
                    snap_n,
                    self.counters,
                )
                if pos < len(idx) and clog_n[1] > len(clog):
                    grown_log = np.zeros((max(int(clog_n[1]), 2 * len(clog)), N_R), np.int64)
                    grown_log[: len(clog)] = clog
                    clog = grown_log
                    clog_n[1] = 0
                if pos < len(idx):
                    for m in (hm, sm):
                        if hm_full(int(m.n[0]), m.tab.shape[0]):
                            m.grow()
            if snap_on and snap_n[0]:
                self.snaps.append(snap[: snap_n[0]].copy())
            if clog_n[0]:
                logs.append(clog[: clog_n[0]].copy())
        out["compact"] = np.concatenate(logs) if logs else np.zeros((0, N_R), np.int64)
        return out

    def finish(self) -> None:
        if self.snap_on and self.last_bin[0][0] >= 0:
            snap = np.zeros((self.n_classes, N_SN), dtype=np.int64)
            lb = int(self.last_bin[0][0])
            n = _snapshot(self.models[0], lb // self.snap_stride * self.snap_stride, snap, 0)
            self.snaps.append(snap[:n].copy())

    def pages_timeline(self, n_bins: int) -> np.ndarray:
        """Pages at the end of each bin, summed over pools (carried forward over gaps)."""
        total = np.zeros(n_bins, dtype=np.int64)
        for pb in self.pages:
            v = pb[:n_bins].copy()
            if len(v) < n_bins:
                v = np.concatenate([v, np.full(n_bins - len(v), -1, dtype=np.int64)])
            # carry each pool's last known value over bins where it saw no event
            idx = np.where(v >= 0, np.arange(n_bins), -1)
            np.maximum.accumulate(idx, out=idx)
            total += np.where(idx >= 0, v[np.maximum(idx, 0)], 0)
        return total
