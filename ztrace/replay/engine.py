"""Single-pass replay of a zsmalloc trace under one or more lock designs.

Per trace batch (``iter_batches``, bounded memory) the engine

1. turns the Arrow columns into int64 numpy arrays (no Python object per event);
2. runs each distinct *allocator configuration* once (one pool, N pools, magazines): the
   kernel-exact :mod:`ztrace.model.zsmalloc` pool model maps handles to model object ids
   through an open-addressing table in numpy arrays (memory ~ live objects, freed ids reused)
   and decides the op kind (malloc that grew a zspage, free, magazine hit, ...) and its cost;
3. feeds the ops to every design's numba lock simulator
   (:mod:`ztrace.replay.locks._sim`).

Usage::

    from ztrace.replay.engine import replay, write_results
    res = replay("trace_dir", locks=["class", "pool"], seed=0)
    res.summary[0]["contention_rate"]
    write_results(res, "out_dir")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numba import njit

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import SCHEMAS, TraceMeta, iter_batches, read_meta
from ztrace.model import classes as _classes_module
from ztrace.model import zsmalloc as zsm
from ztrace.replay import costs as _costs_module
from ztrace.replay import locks as _locks_module
from ztrace.replay.costs import (
    C_ALLOC_ZSPAGE,
    C_BATCH_OBJ,
    C_COMPACT,
    C_FREE,
    C_FREE_ZSPAGE,
    C_MAG_HIT,
    C_MALLOC,
    C_MIGRATE,
    C_WRITE_BASE,
    C_WRITE_KIB,
    CostModel,
)
from ztrace.replay.locks import (
    MODE_TYPES,
    OP_COMPACT,
    OP_FREE,
    OP_MAG_FLUSH,
    OP_MAG_FREE,
    OP_MAG_HIT,
    OP_MAG_REFILL,
    OP_MALLOC,
    OP_MALLOC_GROW,
    OP_MIGRATE,
    LockDesign,
    parse_designs,
)
from ztrace.replay.locks._sim import (
    HIST_N,
    S_ACQ,
    S_CONT,
    S_HOLD,
    S_WAIT,
    S_WMAX,
    S_WMIN,
    SimState,
    hist_index,
    hist_quantile,
)

#: event name -> ingest code
EV_MALLOC, EV_FREE, EV_COMPACT, EV_MIGRATE = 0, 1, 2, 3
_EV_CODES = {
    "zs_malloc": EV_MALLOC,
    "zs_free": EV_FREE,
    "zs_compact": EV_COMPACT,
    "zs_migrate": EV_MIGRATE,
}
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
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: most time bins a run may produce (keeps timeline memory bounded)
MAX_BINS = 1_000_000
#: most time bins in classes.parquet (coarser bins, multiples of the timeline's, beyond)
MAX_CLASS_BINS = 2_000


# ============================================================ handle -> object id table


@njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser: a well-spread 64-bit hash."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: columns of the handle table rows (32 bytes: one probe touches one cache line)
HM_KEY, HM_OBJ, HM_CLS = 0, 1, 2


@njit(cache=True)
def _hm_find(tab, key):
    """Row of ``key`` (int64 bits of the handle), or ``-1 - free row`` when absent."""
    mask = tab.shape[0] - 1
    i = np.int64(_mix(np.uint64(key)) & np.uint64(mask))
    while tab[i, HM_CLS] >= 0:
        if tab[i, HM_KEY] == key:
            return i
        i = (i + 1) & mask
    return -1 - i


@njit(cache=True)
def _hm_delete(tab, i):
    """Backward-shift deletion (linear probing without tombstones)."""
    mask = tab.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if tab[j, HM_CLS] < 0:
            break
        k = np.int64(_mix(np.uint64(tab[j, HM_KEY])) & np.uint64(mask))
        # keep j where it is if its home k lies cyclically in (i, j]
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        tab[i, HM_KEY] = tab[j, HM_KEY]
        tab[i, HM_OBJ] = tab[j, HM_OBJ]
        tab[i, HM_CLS] = tab[j, HM_CLS]
        i = j
    tab[i, HM_CLS] = -1


@njit(cache=True)
def _hm_rehash(tab, new):
    for i in range(tab.shape[0]):
        if tab[i, HM_CLS] >= 0:
            s = -1 - _hm_find(new, tab[i, HM_KEY])
            new[s, HM_KEY] = tab[i, HM_KEY]
            new[s, HM_OBJ] = tab[i, HM_OBJ]
            new[s, HM_CLS] = tab[i, HM_CLS]


class HandleMap:
    """Kernel handle -> (model object id, class index): open addressing in one int64 array,
    sized to the live objects (doubles when half full; ``cls = -1`` marks a free row)."""

    def __init__(self, cap: int = 1 << 12) -> None:
        self.tab = np.full((cap, 4), -1, dtype=np.int64)
        self.n = np.zeros(1, dtype=np.int64)

    def grow(self) -> None:
        new = np.full((2 * self.tab.shape[0], 4), -1, dtype=np.int64)
        _hm_rehash(self.tab, new)
        self.tab = new


# ============================================================ allocator ingest (numba)


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
    mag,
    mag_cnt,
    magc,
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
    ``structref`` (ztrace.model.zsmalloc), so a new process loads this from disk.
    """
    half = magc // 2
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
            s = _hm_find(htab, h)
            if s >= 0:  # a live handle again: its zs_free was lost; drop the old object
                counters[K_DUP_MALLOC] += 1
                zsm.free(model, htab[s, HM_OBJ])
                _hm_delete(htab, s)
                hn[0] -= 1
                s = _hm_find(htab, h)
            # s = -1 - (the free row for h); the model does not touch the table meanwhile
            c = zsm.class_index(model, sz)
            p0 = model.pages_allocated
            if magc == 0:
                obj = zsm.malloc(model, sz)
                if obj < 0:
                    counters[K_BAD_ALLOC] += 1
                    pages_bin[b] = model.pages_allocated
                    continue
                grew = model.pages_allocated - p0
                out_kind[i] = OP_MALLOC_GROW if grew > 0 else OP_MALLOC
                out_cost[i] = dur[i] if dur[i] > 0 else cm[C_MALLOC]
            else:
                x = cpu[i]
                if mag_cnt[x, c] > 0:
                    mag_cnt[x, c] -= 1
                    obj = mag[x, c, mag_cnt[x, c]]
                    out_kind[i] = OP_MAG_HIT
                    out_cost[i] = cm[C_MAG_HIT]
                else:
                    obj = -1
                    for _r in range(half):
                        o = zsm.malloc(model, sz)
                        if o < 0:
                            break
                        mag[x, c, mag_cnt[x, c]] = o
                        mag_cnt[x, c] += 1
                    if mag_cnt[x, c] == 0:
                        counters[K_BAD_ALLOC] += 1
                        pages_bin[b] = model.pages_allocated
                        continue
                    mag_cnt[x, c] -= 1
                    obj = mag[x, c, mag_cnt[x, c]]
                    out_kind[i] = OP_MAG_REFILL
                    base = dur[i] if dur[i] > 0 else cm[C_MALLOC]
                    out_cost[i] = base + (half - 1) * cm[C_BATCH_OBJ]
                grew = model.pages_allocated - p0
            out_cost2[i] = grew * cm[C_ALLOC_ZSPAGE]
            out_cost3[i] = cm[C_WRITE_BASE] + sz * cm[C_WRITE_KIB] // 1024
            out_cls[i] = c
            s = -1 - s
            htab[s, HM_KEY] = h
            htab[s, HM_OBJ] = obj
            htab[s, HM_CLS] = c
            hn[0] += 1
        elif ev == EV_FREE:
            counters[K_FREE] += 1
            s = _hm_find(htab, handle[i])
            if s < 0:
                counters[K_UNMATCHED_FREE] += 1
                pages_bin[b] = model.pages_allocated
                continue
            obj = htab[s, HM_OBJ]
            c = htab[s, HM_CLS]
            _hm_delete(htab, s)
            hn[0] -= 1
            out_cls[i] = c
            base = dur[i] if dur[i] > 0 else cm[C_FREE]
            p0 = model.pages_allocated
            if magc == 0:
                zsm.free(model, obj)
                out_kind[i] = OP_FREE
                out_cost[i] = base + (p0 - model.pages_allocated) * cm[C_FREE_ZSPAGE]
            else:
                x = cpu[i]
                mag[x, c, mag_cnt[x, c]] = obj
                mag_cnt[x, c] += 1
                if mag_cnt[x, c] == magc:  # full: flush the oldest half
                    for r in range(half):
                        zsm.free(model, mag[x, c, r])
                    for r in range(half, magc):
                        mag[x, c, r - half] = mag[x, c, r]
                    mag_cnt[x, c] = magc - half
                    out_kind[i] = OP_MAG_FLUSH
                    out_cost[i] = (
                        base
                        + (half - 1) * cm[C_BATCH_OBJ]
                        + (p0 - model.pages_allocated) * cm[C_FREE_ZSPAGE]
                    )
                else:
                    out_kind[i] = OP_MAG_FREE
                    out_cost[i] = cm[C_MAG_HIT]
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
            snap[n, 0] = b
            snap[n, 1] = c
            snap[n, 2] = st[c, 0]
            snap[n, 3] = st[c, 1]
            snap[n, 4] = st[c, 2]
            n += 1
    return n


# _ingest and _snapshot compile in the pool model and constants of other modules
zsm.cache_depends_on(
    (_ingest, _snapshot),
    zsm.__file__,
    _classes_module.__file__,
    _costs_module.__file__,
    _locks_module.__file__,
)


@njit(cache=True)
def _dur_hist(code, dur, hist):
    for i in range(code.shape[0]):
        c = code[i]
        if c >= 0 and dur[i] > 0:
            hist[c, hist_index(dur[i])] += 1


# ============================================================ results objects


@dataclass
class ReplayResult:
    """What a replay produced.

    ``summary``: one dict per design (``lock_design, ops, acquisitions, contended,
    contention_rate, wait_ns_total, wait_ns_avg, wait_ns_p50, wait_ns_p99, wait_ns_max,
    hold_ns_total, pages_used_peak, makespan_ns``). ``tables``: results-file stem -> Arrow
    table, as in docs/results-format.md. ``meta``: the run's parameters (Parquet metadata).
    """

    summary: list[dict[str, Any]]
    tables: dict[str, pa.Table]
    meta: dict[str, str]
    counters: dict[str, int] = field(default_factory=dict)
    cost_model: CostModel = field(default_factory=CostModel)


@dataclass
class _Prescan:
    n_events: int
    ts0: int
    ts_last: int
    max_cpu: int
    counts: dict[str, int]
    medians: dict[str, int]


def _event_codes(col: pa.Array) -> np.ndarray:
    """int8 codes of the ``event`` column (-1 = not an allocator op)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    lut = np.array([_EV_CODES.get(s, -1) for s in col.dictionary.to_pylist()] + [-1], dtype=np.int8)
    ind = col.indices.to_numpy(zero_copy_only=False)
    return lut[ind.astype(np.int64)]


def _stats_max(path: str | os.PathLike[str], column: str) -> int | None:
    """Max of an integer column from the Parquet row-group statistics (no data read), or
    None when any row group lacks them."""
    from ztrace.format import trace_files

    best = 0
    for f in trace_files(path):
        md = pq.ParquetFile(f).metadata
        j = md.schema.to_arrow_schema().get_field_index(column)
        if j < 0:
            return None
        for r in range(md.num_row_groups):
            st = md.row_group(r).column(j).statistics
            if st is None or not st.has_min_max:
                return None
            best = max(best, int(st.max))
    return best


def _prescan(path: str | os.PathLike[str]) -> _Prescan:
    """Cheap pass: event counts, time span, CPUs, measured durations.

    Reads ``event`` (dictionary codes), ``ts_ns`` and ``cpu``; ``duration_ns`` only when the
    Parquet statistics say some duration is nonzero.
    """
    want_dur = _stats_max(path, "duration_ns") != 0
    cols = ["ts_ns", "cpu", "event"] + (["duration_ns"] if want_dur else [])
    n = 0
    ts0 = ts_last = None
    max_cpu = 0
    counts: dict[str, int] = {}
    hist = np.zeros((4, HIST_N), dtype=np.int64)
    for batch in iter_batches(path, columns=cols):
        if batch.num_rows == 0:
            continue
        n += batch.num_rows
        ts = batch.column("ts_ns").to_numpy()
        if ts0 is None:
            ts0 = int(ts[0])
        ts_last = int(ts[-1])
        max_cpu = max(max_cpu, int(batch.column("cpu").to_numpy().max()))
        ev = batch.column("event")
        vc = pc.value_counts(ev.dictionary_decode() if pa.types.is_dictionary(ev.type) else ev)
        for item in vc.to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
        if want_dur:
            dur = batch.column("duration_ns").to_numpy().astype(np.int64)
            _dur_hist(_event_codes(ev), dur, hist)
    medians = {}
    for name, c in _EV_CODES.items():
        if hist[c].sum():
            medians[name] = hist_quantile(hist[c], 0.5)
    return _Prescan(n, ts0 or 0, ts_last or 0, max_cpu, counts, medians)


def _nice_bin(span: int) -> int:
    """A 1-2-5 x 10^k bin width giving at most ~500 bins (at least 1 us)."""
    raw = max(1_000, math.ceil(span / 500))
    exp = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * exp >= raw:
            return m * exp
    return 10 * exp


# ============================================================ allocator groups


class _AllocGroup:
    """One allocator configuration (pools, magazine) shared by designs with that key."""

    def __init__(
        self,
        key: tuple[int, int],
        table: Any,
        ratio_groups: bool,
        n_cpus: int,
        seed: int,
        snap_on: bool,
    ) -> None:
        from ztrace.model.zsmalloc import new_pool

        self.n_pools, self.magc = key
        self.models = [new_pool(table, ratio_groups=ratio_groups) for _ in range(self.n_pools)]
        self.maps = [HandleMap() for _ in range(self.n_pools)]
        nc = table.n_classes
        if self.magc:
            self.mags = [
                np.zeros((n_cpus, nc, self.magc), dtype=np.int64) for _ in range(self.n_pools)
            ]
            self.mag_cnts = [np.zeros((n_cpus, nc), dtype=np.int64) for _ in range(self.n_pools)]
        else:
            self.mags = [np.zeros((1, 1, 1), dtype=np.int64)] * self.n_pools
            self.mag_cnts = [np.zeros((1, 1), dtype=np.int64)] * self.n_pools
        self.pages = [np.full(64, -1, dtype=np.int64) for _ in range(self.n_pools)]
        self.last_bin = [np.full(1, -1, dtype=np.int64) for _ in range(self.n_pools)]
        self.counters = np.zeros(len(COUNTER_NAMES), dtype=np.int64)
        self.seed_mix = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
        self.snap_on = snap_on
        self.n_classes = nc
        self.snaps: list[np.ndarray] = []
        self.snap_stride = 1  # set by replay(): classes rows every k timeline bins

    def pool_of(self, handle: np.ndarray) -> np.ndarray:
        """Pool of each handle (pools:N): seeded splitmix64 of the handle, mod N."""
        if self.n_pools == 1:
            return np.zeros(len(handle), dtype=np.int64)
        x = handle.view(np.uint64) ^ self.seed_mix
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
        return (x % np.uint64(self.n_pools)).astype(np.int64)

    def ingest(self, b: dict[str, np.ndarray], cm: np.ndarray) -> dict[str, np.ndarray]:
        n = len(b["code"])
        out = {k: np.zeros(n, dtype=np.int64) for k in ("kind", "cls", "cost", "cost2", "cost3")}
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
            snap = np.zeros((n_bins_here * self.n_classes if snap_on else 1, 5), dtype=np.int64)
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
                    self.mags[p],
                    self.mag_cnts[p],
                    np.int64(self.magc),
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
            snap = np.zeros((self.n_classes, 5), dtype=np.int64)
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


# ============================================================ the replay


def _check_options(speedup: float, cpus: int | None, bin_ns: int | None) -> None:
    if not (isinstance(speedup, int | float) and math.isfinite(speedup) and speedup > 0):
        raise ConfigError(f"--speedup must be a positive number, got {speedup!r}")
    if cpus is not None and not (isinstance(cpus, int) and 1 <= cpus <= 4096):
        raise ConfigError(f"--cpus must be between 1 and 4096, got {cpus!r}")
    if bin_ns is not None and not (isinstance(bin_ns, int) and bin_ns >= 1):
        raise ConfigError(f"--bin-ms must be positive, got {bin_ns!r} ns")


def replay(
    trace: str | os.PathLike[str],
    *,
    locks: Sequence[str] | str,
    seed: int = 0,
    cpus: int | None = None,
    speedup: float = 1.0,
    cost_model: CostModel | None = None,
    bin_ns: int | None = None,
    progress: bool = False,
    batch_rows: int = 1 << 20,
) -> ReplayResult:
    """Replay ``trace`` under each lock design in ``locks``, in one streaming pass.

    Parameters
    ----------
    trace
        Trace directory or file (format v1/v2).
    locks
        Design specs, e.g. ``["class", "pool", "pools:32"]`` or ``"class,pool"``.
    seed
        Seeds the ``--cpus`` spreading and the ``pools:N`` handle hash; same trace + seed
        gives byte-identical results.
    cpus
        Replay on this many CPUs: event ``i`` goes to CPU ``hash(seed, i) mod cpus``.
        ``None`` keeps each event's traced CPU.
    speedup
        Divide inter-arrival times by this factor (``> 1`` compresses time).
    cost_model
        Hold/CPU times for events without ``duration_ns``. ``None``: defaults, fitted to the
        trace's measured durations (median per event kind) when it has any.
    bin_ns
        Timeline bin width (replay clock). ``None``: a 1-2-5 width giving ~500 bins.
    progress
        Show a progress bar on stderr.

    Returns
    -------
    ReplayResult
    """
    from ztrace.model.classes import build_classes, kernel_profile

    _check_options(speedup, cpus, bin_ns)
    lock_specs = list(locks) if not isinstance(locks, str) else locks
    parse_designs(lock_specs)  # fail on a bad name before reading the trace
    meta: TraceMeta = read_meta(trace)
    pre = _prescan(trace)
    if pre.counts.get("zs_malloc", 0) + pre.counts.get("zs_free", 0) == 0:
        raise TraceFormatError(trace, "no zs_malloc/zs_free events: nothing to replay")
    try:
        prof = kernel_profile(meta.kernel_release)
        legacy, ratio = prof.legacy_classes, prof.ratio_groups
    except ConfigError:
        legacy, ratio = False, True  # unknown release string: model a current kernel
    table = build_classes(
        None if legacy else meta.zsmalloc_chain_size, legacy=legacy, page_size=meta.page_size
    )
    designs = parse_designs(lock_specs, table.n_classes)
    cm_model = cost_model if cost_model is not None else CostModel().fit(pre.medians)
    cm = cm_model.as_array()
    n_cpus = cpus if cpus is not None else max(pre.max_cpu + 1, meta.nr_cpus, 1)
    span = int((pre.ts_last - pre.ts0) / speedup)
    bw = bin_ns if bin_ns is not None else _nice_bin(span)
    if span // bw + 1 > MAX_BINS:
        raise ConfigError(f"--bin-ms too small: {span // bw + 1} time bins (max {MAX_BINS})")

    groups: dict[tuple[int, int], _AllocGroup] = {}
    std_key = (1, 0)
    for d in designs:
        if d.allocator_key not in groups:
            groups[d.allocator_key] = _AllocGroup(
                d.allocator_key, table, ratio, n_cpus, seed, snap_on=d.allocator_key == std_key
            )
    if std_key not in groups:  # classes.parquet always describes the plain single pool
        groups[std_key] = _AllocGroup(std_key, table, ratio, n_cpus, seed, snap_on=True)
    sims = [SimState(d, n_cpus, table.n_classes, cm, cm_model.write_after_malloc) for d in designs]
    # classes.parquet has one row per class per bin: keep it to ~MAX_CLASS_BINS bins
    for g in groups.values():
        g.snap_stride = max(1, -(-(span // bw + 1) // MAX_CLASS_BINS))

    from ztrace.progress import progress as progress_bar

    cols = ["ts_ns", "cpu", "event", "size_bytes", "handle", "duration_ns"]
    has_cls = "class_idx" in _schema_names(trace)
    if has_cls:
        cols.append("class_idx")
    offset = 0
    seed_mix = np.uint64((seed * 0x2545F4914F6CDD1D + 0x1B873593) % 2**64)
    with progress_bar(pre.n_events, desc="replay", quiet=not progress, unit="events") as bar:
        for batch in iter_batches(trace, columns=cols, batch_rows=batch_rows):
            n = batch.num_rows
            if n == 0:
                continue
            ts = batch.column("ts_ns").to_numpy().astype(np.int64) - np.int64(pre.ts0)
            arr = ts if speedup == 1.0 else (ts / speedup).astype(np.int64)
            if cpus is None:
                cpu = batch.column("cpu").to_numpy().astype(np.int64)
            else:
                x = np.arange(offset, offset + n, dtype=np.uint64) ^ seed_mix
                x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                x = x ^ (x >> np.uint64(31))
                cpu = (x % np.uint64(cpus)).astype(np.int64)
            if has_cls:
                clsidx = batch.column("class_idx").fill_null(-1).to_numpy().astype(np.int64)
            else:
                clsidx = np.full(n, -1, dtype=np.int64)
            b = {
                "code": _event_codes(batch.column("event")),
                "size": batch.column("size_bytes").to_numpy().astype(np.int64),
                # int64 bits of the u64 handle: the table compares and hashes the bits
                "handle": batch.column("handle").to_numpy().view(np.int64),
                "dur": batch.column("duration_ns").to_numpy().astype(np.int64),
                "cpu": cpu,
                "clsidx": clsidx,
                "bin": arr // bw,
            }
            outs = {k: g.ingest(b, cm) for k, g in groups.items()}
            for s in sims:
                o = outs[s.design.allocator_key]
                s.feed(
                    arr,
                    cpu,
                    o["kind"],
                    o["cls"],
                    o["pool"],
                    o["cost"],
                    o["cost2"],
                    o["cost3"],
                    b["bin"],
                )
            offset += n
            bar.advance(n)
    for s in sims:
        s.finish()
    for g in groups.values():
        g.finish()

    run_meta = {
        "ztrace.results_version": "1",
        "ztrace.trace": str(trace),
        "ztrace.seed": str(seed),
        "ztrace.speedup": repr(float(speedup)),
        "ztrace.cpus": str(n_cpus),
        "ztrace.cpus_remapped": str(cpus is not None),
        "ztrace.bin_ns": str(bw),
        "ztrace.ts0_ns": str(pre.ts0),
        "ztrace.span_ns": str(span),
        "ztrace.lock_designs": ",".join(d.name for d in designs),
        "ztrace.cost_model": cm_model.to_json(),
        "ztrace.kernel_release": meta.kernel_release,
    }
    counters = {k: int(v) for k, v in zip(COUNTER_NAMES, groups[std_key].counters, strict=True)}
    n_bins = span // bw + 1
    summary, tables = _build_tables(designs, sims, groups, table, bw, n_bins)
    return ReplayResult(
        summary=summary, tables=tables, meta=run_meta, counters=counters, cost_model=cm_model
    )


def _schema_names(trace: str | os.PathLike[str]) -> list[str]:
    from ztrace.format import inspect_file, trace_files

    return list(inspect_file(trace_files(trace)[0])[1].schema_arrow.names)


# ============================================================ tables


_U64 = pa.uint64()


def _build_tables(
    designs: list[LockDesign],
    sims: list[SimState],
    groups: dict[tuple[int, int], _AllocGroup],
    table: Any,
    bw: int,
    n_bins: int,
) -> tuple[list[dict[str, Any]], dict[str, pa.Table]]:
    summary: list[dict[str, Any]] = []
    by_lock: dict[str, list[Any]] = {k: [] for k in SCHEMAS["locks_by_lock"]}
    by_class: dict[str, list[Any]] = {
        k: []
        for k in (
            "lock_design",
            "class_idx",
            "class_size",
            "acquisitions",
            "contended",
            "wait_ns_total",
        )
    }
    hist_rows: dict[str, list[Any]] = {
        k: [] for k in ("lock_design", "bucket_lo_ns", "bucket_hi_ns", "count")
    }
    tl_parts: list[pa.Table] = []
    pages_cache: dict[tuple[int, int], np.ndarray] = {}
    for d, s in zip(designs, sims, strict=True):
        ls = s.lstats
        acq = int(ls[:, S_ACQ].sum())
        cont = int(ls[:, S_CONT].sum())
        wait = int(ls[:, S_WAIT].sum())
        key = d.allocator_key
        if key not in pages_cache:
            pages_cache[key] = groups[key].pages_timeline(n_bins)
        pages = pages_cache[key]
        summary.append(
            {
                "lock_design": d.name,
                "ops": int(s.sc[3]),
                "acquisitions": acq,
                "contended": cont,
                "contention_rate": cont / acq if acq else 0.0,
                "wait_ns_total": wait,
                "wait_ns_avg": wait / cont if cont else 0.0,
                "wait_ns_p50": hist_quantile(s.hist, 0.50),
                "wait_ns_p99": hist_quantile(s.hist, 0.99),
                "wait_ns_max": int(ls[:, S_WMAX].max()) if len(ls) else 0,
                "hold_ns_total": int(ls[:, S_HOLD].sum()),
                "pages_used_peak": int(pages.max()) if len(pages) else 0,
                # when the last op finished (replay clock); >> the trace span = saturated
                "makespan_ns": int(s.cpu_free.max()) if len(s.cpu_free) else 0,
            }
        )
        for row in np.flatnonzero(ls[:, S_ACQ]):
            lid, mode = divmod(int(row), 3)
            is_sub = lid % (1 + d.n_sub) != 0
            by_lock["lock_design"].append(d.name)
            by_lock["lock"].append(d.lock_name(lid))
            by_lock["lock_type"].append(
                "spinlock" if is_sub or d.pool_lock_type == "spinlock" else MODE_TYPES[mode]
            )
            by_lock["acquisitions"].append(int(ls[row, S_ACQ]))
            by_lock["contended"].append(int(ls[row, S_CONT]))
            by_lock["wait_ns_total"].append(int(ls[row, S_WAIT]))
            by_lock["wait_ns_max"].append(int(ls[row, S_WMAX]))
            by_lock["wait_ns_min"].append(int(ls[row, S_WMIN]) if ls[row, S_CONT] else 0)
            by_lock["hold_ns_total"].append(int(ls[row, S_HOLD]))
        for c in np.flatnonzero(s.cstats[:, 0]):
            by_class["lock_design"].append(d.name)
            by_class["class_idx"].append(int(c))
            by_class["class_size"].append(int(table.size[c]))
            by_class["acquisitions"].append(int(s.cstats[c, 0]))
            by_class["contended"].append(int(s.cstats[c, 1]))
            by_class["wait_ns_total"].append(int(s.cstats[c, 2]))
        for k in np.flatnonzero(s.l2h):
            hist_rows["lock_design"].append(d.name)
            hist_rows["bucket_lo_ns"].append(1 << int(k))
            hist_rows["bucket_hi_ns"].append((1 << (int(k) + 1)) - 1)
            hist_rows["count"].append(int(s.l2h[k]))
        tl = (
            s.tl[:n_bins]
            if s.tl.shape[0] >= n_bins
            else np.vstack([s.tl, np.zeros((n_bins - s.tl.shape[0], 4), dtype=np.int64)])
        )
        tl_parts.append(
            pa.table(
                {
                    "lock_design": pa.array([d.name] * n_bins, pa.string()),
                    "bin_start_ns": pa.array(np.arange(n_bins, dtype=np.uint64) * np.uint64(bw)),
                    "bin_ns": pa.array(np.full(n_bins, bw, dtype=np.uint64)),
                    "ops": pa.array(tl[:, 0].astype(np.uint64)),
                    "acquisitions": pa.array(tl[:, 1].astype(np.uint64)),
                    "contended": pa.array(tl[:, 2].astype(np.uint64)),
                    "wait_ns_total": pa.array(tl[:, 3].astype(np.uint64)),
                    "pages_used": pa.array(pages.astype(np.uint64)),
                }
            )
        )
    tables: dict[str, pa.Table] = {}
    tables["locks_summary"] = pa.table(
        {
            "lock_design": pa.array([r["lock_design"] for r in summary], pa.string()),
            **{
                k: pa.array([r[k] for r in summary], _U64)
                for k in ("ops", "acquisitions", "contended")
            },
            "contention_rate": pa.array([r["contention_rate"] for r in summary], pa.float64()),
            "wait_ns_total": pa.array([r["wait_ns_total"] for r in summary], _U64),
            "wait_ns_avg": pa.array([r["wait_ns_avg"] for r in summary], pa.float64()),
            **{
                k: pa.array([r[k] for r in summary], _U64)
                for k in (
                    "wait_ns_p50",
                    "wait_ns_p99",
                    "wait_ns_max",
                    "hold_ns_total",
                    "pages_used_peak",
                    "makespan_ns",
                )
            },
        }
    )
    tables["locks_by_lock"] = pa.table(
        {
            "lock_design": pa.array(by_lock["lock_design"], pa.string()),
            "lock": pa.array(by_lock["lock"], pa.string()),
            "lock_type": pa.array(by_lock["lock_type"], pa.string()),
            **{
                k: pa.array(by_lock[k], _U64)
                for k in (
                    "acquisitions",
                    "contended",
                    "wait_ns_total",
                    "wait_ns_max",
                    "wait_ns_min",
                    "hold_ns_total",
                )
            },
        }
    )
    tables["locks_by_class"] = pa.table(
        {
            "lock_design": pa.array(by_class["lock_design"], pa.string()),
            "class_idx": pa.array(by_class["class_idx"], pa.int16()),
            "class_size": pa.array(by_class["class_size"], pa.uint32()),
            **{
                k: pa.array(by_class[k], _U64)
                for k in ("acquisitions", "contended", "wait_ns_total")
            },
        }
    )
    tables["wait_hist"] = pa.table(
        {
            "lock_design": pa.array(hist_rows["lock_design"], pa.string()),
            **{k: pa.array(hist_rows[k], _U64) for k in ("bucket_lo_ns", "bucket_hi_ns", "count")},
        }
    )
    tables["timeline"] = pa.concat_tables(tl_parts)
    snaps = groups[(1, 0)].snaps
    sn = np.vstack(snaps) if snaps else np.zeros((0, 5), dtype=np.int64)
    tables["classes"] = pa.table(
        {
            "bin_start_ns": pa.array(sn[:, 0].astype(np.uint64) * np.uint64(bw)),
            "class_idx": pa.array(sn[:, 1].astype(np.int16)),
            "class_size": pa.array(table.size[sn[:, 1]].astype(np.uint32)),
            "obj_allocated": pa.array(sn[:, 2].astype(np.uint64)),
            "obj_used": pa.array(sn[:, 3].astype(np.uint64)),
            "pages_used": pa.array(sn[:, 4].astype(np.uint64)),
        }
    )
    return summary, tables


def write_results(
    result: ReplayResult,
    out_dir: str | os.PathLike[str],
    extra_tables: dict[str, pa.Table] | None = None,
) -> list[Path]:
    """Write ``result`` (plus e.g. LRU tables) as a results directory; see ztrace.results."""
    from ztrace.format import write_results_dir

    tables = dict(result.tables)
    if extra_tables:
        tables.update(extra_tables)
    summary: dict[str, Any] = {
        "locks": result.summary,
        "counters": result.counters,
        "cost_model": json.loads(result.cost_model.to_json()),
    }
    return write_results_dir(out_dir, tables, result.meta, summary)
