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

from ztrace.format.events import EV_COMPACT, EV_FREE, EV_MALLOC, EV_MIGRATE, EVENT_CODES
from ztrace.model import zsmalloc as zsm
from ztrace.replay.costs import (
    C_ALLOC_ZSPAGE,
    C_COMPACT,
    C_FREE,
    C_MIGRATE,
    C_WRITE_BASE,
    C_WRITE_KIB,
)
from ztrace.replay.handles import HM_CLS, HM_KEY, HM_OBJ, HandleMap, hm_delete, hm_find
from ztrace.replay.locks import OP_COMPACT, OP_MIGRATE, LockDesign
from ztrace.replay.locks._front import front_free, front_malloc, plain_front

#: allocator event name -> its code, as defined once in ztrace.format.events (the BPF
#: ``ZT_EV_*`` values); every other event ingests as -1 (not an allocator op)
EV_CODES = {
    name: EVENT_CODES[name] for name in ("zs_malloc", "zs_free", "zs_compact", "zs_migrate")
}
#: rows of per-event-code tables (codes index them directly)
N_EV = max(EV_CODES.values()) + 1
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
) = range(9)
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
)
#: columns of a classes snapshot row
SN_BIN, SN_CLS, SN_OBJ_ALLOC, SN_OBJ_USED, SN_PAGES = range(5)
N_SN = 5
#: the plain single pool: classes.parquet always describes it
STD_KEY: tuple[Any, ...] = (1, ())
#: the op arrays ``ingest`` returns, besides ``pool``
OUT_COLUMNS = ("kind", "cls", "cost", "cost2", "cost3")


def event_codes(col: pa.Array) -> np.ndarray:
    """int8 codes of the ``event`` column (-1 = not an allocator op)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    lut = np.array([EV_CODES.get(s, -1) for s in col.dictionary.to_pylist()] + [-1], dtype=np.int8)
    ind = col.indices.to_numpy(zero_copy_only=False)
    return lut[ind.astype(np.int64)]


@njit(cache=True)
def _ingest(
    model,
    idx,
    start,
    code,
    size,
    handle,
    dur,
    cpu,
    clsidx,
    binidx,
    htab,
    hn,
    front,
    cm,
    out_kind,
    out_cls,
    out_cost,
    out_cost2,
    out_cost3,
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
    grown the handle table (it is kept at most half full). Cached: the pool model is a numba
    ``structref`` (ztrace.model.zsmalloc) and the front a NamedTuple, so a new process loads
    this from disk.
    """
    cap = htab.shape[0]
    for j in range(start, idx.shape[0]):
        if 2 * (hn[0] + 1) > cap:
            return j
        i = idx[j]
        b = binidx[i]
        if b != last_bin[0]:
            # classes snapshots at the end of every ``snap_stride``-th timeline bin
            lb = last_bin[0]
            if snap_on and lb >= 0 and b // snap_stride != lb // snap_stride:
                snap_n[0] = _snapshot(model, lb // snap_stride * snap_stride, snap, snap_n[0])
            last_bin[0] = b
        ev = code[i]
        out_kind[i] = -1
        out_cls[i] = -1
        if ev == EV_MALLOC:
            counters[K_MALLOC] += 1
            sz = size[i]
            h = handle[i]
            s = hm_find(htab, h)
            if s >= 0:  # a live handle again: its zs_free was lost; drop the old object
                counters[K_DUP_MALLOC] += 1
                zsm.free(model, htab[s, HM_OBJ])
                hm_delete(htab, s)
                hn[0] -= 1
                s = hm_find(htab, h)
            # s = -1 - (the free row for h); the model does not touch the table meanwhile
            c = zsm.class_index(model, sz)
            p0 = model.pages_allocated
            obj, kind, cost = front_malloc(front, model, cpu[i], c, sz, dur[i], cm)
            if obj < 0:
                counters[K_BAD_ALLOC] += 1
                pages_bin[b] = model.pages_allocated
                continue
            out_kind[i] = kind
            out_cost[i] = cost
            out_cost2[i] = (model.pages_allocated - p0) * cm[C_ALLOC_ZSPAGE]
            out_cost3[i] = cm[C_WRITE_BASE] + sz * cm[C_WRITE_KIB] // 1024
            out_cls[i] = c
            s = -1 - s
            htab[s, HM_KEY] = h
            htab[s, HM_OBJ] = obj
            htab[s, HM_CLS] = c
            hn[0] += 1
        elif ev == EV_FREE:
            counters[K_FREE] += 1
            s = hm_find(htab, handle[i])
            if s < 0:
                counters[K_UNMATCHED_FREE] += 1
                pages_bin[b] = model.pages_allocated
                continue
            obj = htab[s, HM_OBJ]
            c = htab[s, HM_CLS]
            hm_delete(htab, s)
            hn[0] -= 1
            out_cls[i] = c
            base = dur[i] if dur[i] > 0 else cm[C_FREE]
            out_kind[i], out_cost[i] = front_free(front, model, cpu[i], c, obj, base, cm)
        elif ev == EV_COMPACT:
            counters[K_COMPACT] += 1
            zsm.compact(model)
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
        n = len(b["code"])
        out = {k: np.zeros(n, dtype=np.int64) for k in OUT_COLUMNS}
        pool = self.pool_of(b["handle"])
        out["pool"] = pool
        max_bin = int(b["bin"].max())
        if self.n_pools == 1:
            subsets = [np.arange(n, dtype=np.int64)]
        else:
            order = np.argsort(pool, kind="stable")
            bounds = np.searchsorted(pool[order], np.arange(self.n_pools + 1))
            subsets = [order[bounds[p] : bounds[p + 1]] for p in range(self.n_pools)]
        n_bins_here = len(np.unique(b["bin"] // self.snap_stride)) + 1
        for p, idx in enumerate(subsets):
            if len(idx) == 0:
                continue
            hm = self.maps[p]
            if max_bin >= len(self.pages[p]):
                grown = np.full(max(max_bin + 1, 2 * len(self.pages[p])), -1, dtype=np.int64)
                grown[: len(self.pages[p])] = self.pages[p]
                self.pages[p] = grown
            snap_on = self.snap_on and p == 0
            snap = np.zeros((n_bins_here * self.n_classes if snap_on else 1, N_SN), dtype=np.int64)
            snap_n = np.zeros(1, dtype=np.int64)
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
                    b["cpu"],
                    b["clsidx"],
                    b["bin"],
                    hm.tab,
                    hm.n,
                    self.fronts[p],
                    cm,
                    out["kind"],
                    out["cls"],
                    out["cost"],
                    out["cost2"],
                    out["cost3"],
                    self.pages[p],
                    self.last_bin[p],
                    snap_on,
                    np.int64(self.snap_stride),
                    snap,
                    snap_n,
                    self.counters,
                )
                if pos < len(idx):
                    hm.grow()
            if snap_on and snap_n[0]:
                self.snaps.append(snap[: snap_n[0]].copy())
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
