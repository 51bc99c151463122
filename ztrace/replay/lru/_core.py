"""The compiled replay shared by every LRU design: zswap_store / _load / _invalidate, the pool,
the metric, and the hook points where designs differ.

One numba ``structref`` holds a replay's state (plain arrays and an ``sc`` array of scalars,
so every function is ``cache=True``). Each design module declares its own state *type*, a
subclass of :class:`LruStateType`, and registers njit implementations of the hooks for it
with :func:`hook`::

    lru_add(st, p)        a new entry p was stored
    lru_del(st, p)        entry p leaves zswap (load, invalidate, replace); not for writeback
    lru_loaded(st, p)     a non-exclusive load hit p (it stays as a clean copy)
    evict_one(st) -> bool write back one entry to make room (sync mode)
    worker_step(st) -> bool
                          one step of shrink_worker; False when the worker returns
                          (base: ≤6.4's one ``evict_one`` per run, ``shrink_once``)
    after_store(st)       after every store attempt (6.12 shrinker approximation)
    shrink_one(st)        the trace shows one shrinker writeback here (OP_SHRINK)
    shrink_scan(st, n)    the trace shows a shrinker call that may walk n entries here

``run(T, ...)`` is compiled once per state type ``T``, so each design gets its own machine
code with its hooks inlined, and numba's disk cache keeps it (keyed by ``T``).

The generic functions below resolve a hook by walking the state type's MRO, so a design that
subclasses another's type inherits its hooks and overrides only what differs (libCacheSim's
FIFO.c delegates to its base the same way). The flow and the metric mirror the readable
reference in ``_base.py`` (the store flow) and ``metrics.Recorder`` (the inversion check).

Pages are dense indices ``0..P-1`` (``np.unique`` of the swap entries); a state's LRU lists
are intrusive doubly linked lists over ``l_prev`` / ``l_next`` (node = page for entry LRUs,
zspage id for the zspage LRU): ``OLD`` is the kernel's list tail (oldest, written back first),
``NEW`` its head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, types
from numba.core.extending import overload
from numba.experimental import structref

from ztrace.model import zsmalloc as _zs
from ztrace.model.structs import A8, A64, UnliteralStructRef
from ztrace.replay import hashing as _hashing
from ztrace.replay.hashing import splitmix64

# ---------------------------------------------------------------- workload codes (workload.py)
OP_STORE = 0
OP_LOAD = 1
OP_INVALIDATE = 2
OP_SHRINK = 3
OP_STORE_ALLOC = 4  # the second half of a store: compress + zpool_malloc (workload.Prepared)
OP_STORE_CHECK = 5  # the first half of a store whose OP_STORE_ALLOC comes later
OP_SHRINK_SCAN = 6  # one zswap_shrinker_scan() call; clen = its nr_to_scan (workload.py)
INCOMPRESSIBLE = -2
SAME_FILLED = -3

# ---------------------------------------------------------------- cfg[] (set once per replay)
CF_MAX_PAGES = 0
CF_THR_PAGES = 1
CF_PAGE_SIZE = 2
CF_HEADER = 3
CF_LIMITS_V610 = 4  # 1: zswap_check_limits() (6.10+); 0: zswap_is_full/can_accept
CF_QUEUE_ON = 5  # QUEUE_FULL, QUEUE_LIMIT, QUEUE_ANY_REJECT
CF_SYNC = 6
CF_AS_IS = 7
CF_EXCL = 8
CF_WSTEPS = 9
CF_MAX_FAIL = 10
CF_SHRINKER_WALK = 11
CF_POOL_BYTES = 12
CF_T0 = 13
CF_BIN_NS = 14
CF_NBINS = 15
CF_SHRINKER_TRACE = 16  # the trace's shrinker: 1 its writebacks (OP_SHRINK), 2 its scans
CF_WTIMED = 17  # 1: the shrink worker runs in time (measured delays, worker_timing.py)
CF_NMC = 18  # memory cgroups in the workload (1: one LRU, exactly as before issue 13 item 3)
N_CFG = 19

QUEUE_FULL = 0
QUEUE_LIMIT = 1
QUEUE_ANY_REJECT = 2

# ---------------------------------------------------------------- c[]: kernel-named counters
BASE_COUNTERS = (
    "pool_limit_hit",
    "reject_reclaim_fail",
    "reject_compress_poor",
    "reject_pool_limit",
    "written_back_pages",
    "duplicate_entry",
    "zswpout",
    "zswpin",
    "disk_swapout",
    "disk_swapin",
    "unknown_load",
    "same_filled",
)
K_POOL_LIMIT_HIT = 0
K_RECLAIM_FAIL = 1
K_COMPRESS_POOR = 2
K_POOL_LIMIT = 3
K_WB_PAGES = 4
K_DUP = 5
K_ZSWPOUT = 6
K_ZSWPIN = 7
K_DISK_SWAPOUT = 8
K_DISK_SWAPIN = 9
K_UNKNOWN = 10
K_SAME_FILLED = 11
#: design-specific counters (a design's EXTRA_COUNTERS name them, in order)
K_EXTRA0 = 12
K_EXTRA1 = 13
N_COUNTERS = 14

# ---------------------------------------------------------------- sc[]: scalars
R_STORES = 0
R_REJECTS = 1
R_WB = 2
R_WB_BYTES = 3
R_DISK_WRITES = 4
R_INV = 5
R_INV_RPL = 6  # inversions by cause: reject_pool_limit, reject_compress, writeback
R_INV_RC = 7
R_INV_WB = 8
R_HITS = 9
R_DISK_IN = 10
R_NGAPS = 11
R_NSEQ = 12
R_LO = 13
R_NHELD = 14
R_BIN = 15
R_NWB = 16
S_REACHED_FULL = 17
S_WORK_ACTIVE = 18
S_WORK_PHASE = 19
S_WORK_FAIL = 20
S_CUR_MC = 21  # the memcg under reclaim: the current store's, or a measured scan's
S_RR = 22  # shrink_worker's memcg cursor (zswap_next_shrink); CF_NMC = NULL (end of the walk)
S_BYTES_USED = 23
S_BYTES_NEXT = 24
R_AVOID = 25  # avoidable disk faults
H_N = 26  # entries in the next-fault heap
S_IN_NF = 27  # next fault of the page being stored (event index, NEVER if none)
# the shrink worker in time (CF_WTIMED): see queue_worker / advance_timed
S_NOW = 28  # time of the event being replayed (ns)
S_WQ_PEND = 29  # zswap_shrink_work is queued (WORK_STRUCT_PENDING) and starts at S_WQ_START
S_WQ_START = 30
S_WQ_RUN = 31  # shrink_worker() is running; its next step is at S_WQ_NEXT
S_WQ_NEXT = 32
S_WQ_K = 33  # samples drawn (the sampling hash's counter)
R_WQ_RUNS = 34  # shrink_worker() executions
R_WQ_REQUEUE = 35  # queued while running (starts when the running one returns)
S_RR_ATT = 36  # shrink_worker's `attempts` in the current memcg tree walk
N_SC = 37

# lend[m, ·]: the ends of memcg m's list (node x is on the list of memcg l_mc[x])
LE_OLD = 0  # the kernel's list tail (oldest, written back first)
LE_NEW = 1  # its head

# mcc[m, ·]: per-memcg counters (a page's memcg is the one of its last store)
MC_ZSWPOUT = 0
MC_ZSWPIN = 1
MC_WB = 2
MC_REJECTS = 3
MC_DISK_IN = 4
MC_AVOID = 5
MC_XINV = 6  # disk copies made while another memcg's entry is faulted later (or never)
MC_XAVOID = 7  # disk faults on pages whose disk copy was such a cross-memcg inversion
N_MCC = 8
#: names of the MC_* columns (the lru_memcg results table)
MC_NAMES = (
    "stored",
    "zswap_hits",
    "written_back",
    "rejects",
    "disk_faults",
    "avoidable_disk_faults",
    "cross_memcg_inversions",
    "cross_memcg_avoidable_disk_faults",
)

#: "no next fault": the page is freed or stored again before it is faulted (or the trace ends)
NEVER = np.int64(1) << np.int64(62)

CAUSE_RPL = 0
CAUSE_RC = 1
CAUSE_WB = 2

# timeline columns (metrics._T_*)
T_INV = 0
T_HIT = 1
T_DISK = 2
T_WB = 3


class LruStateType(UnliteralStructRef):
    """numba type of a replay state; each design subclasses it (its own type = its hooks)."""


FIELDS = [
    ("cfg", A64),
    ("sc", A64),
    ("c", A64),
    ("zs", _zs._pool_t),
    ("e_in", A8),
    ("e_loaded", A8),
    ("e_ref", A8),
    ("on_disk", A8),
    ("e_seq", A64),
    ("e_clen", A64),
    ("e_handle", A64),
    ("e_zp", A64),
    ("m_prev", A64),
    ("m_next", A64),
    ("l_prev", A64),
    ("l_next", A64),
    ("l_on", A8),
    ("z_head", A64),
    ("z_count", A64),
    ("b_len", A64),
    ("seq_ts", A64),
    ("held", A8),
    ("gaps", A64),
    ("wb_log", A64),
    ("bins", types.int64[:, ::1]),
    ("pool_bin", A64),
    # the future, which an offline replay has (docs/lru-inversion.md, "Harm"):
    ("nf", A64),  # per event: index of the page's next fault, NEVER if none
    ("e_nf", A64),  # per page: the next fault of its zswap entry
    ("e_ver", A64),  # per page: version of its entry (stale heap rows are skipped)
    ("e_avoid", A8),  # per page: its disk copy was written while a later-faulted page stayed
    ("e_pend", A8),  # per page: a store passed the limit check, its allocation is pending
    ("hk", A64),  # max-heap of (next fault, page, version) over entries that take pool space
    ("hp", A64),
    ("hv", A64),
    # measured shrink-worker timing (worker_timing.WorkerTiming; empty unless CF_WTIMED)
    ("wq_delay", A64),  # queue_work → execute_start, queued while idle (ns)
    ("wq_step", A64),  # worker time per writeback (ns)
    ("wq_walk", A64),  # an execution that wrote nothing back, start to end (ns)
    # memory cgroups (issue 13 item 3): dense memcg indices 0..CF_NMC-1 (workload.Prepared)
    ("ev_mc", A64),  # per event: its memcg (a store's folio memcg); [0] with one memcg
    ("e_mc", A64),  # per page: the memcg of its last store
    ("l_mc", A64),  # per list node: whose list it is on (0 for the designs with one list)
    ("lend", types.int64[:, ::1]),  # per memcg: list ends (LE_OLD, LE_NEW)
    ("mcc", types.int64[:, ::1]),  # per memcg: MC_* counters
    ("e_xav", A8),  # per page: its disk copy was a cross-memcg inversion
    # per-memcg max-heaps of (next fault, page, version), only with CF_NMC > 1: memcg m's
    # rows are mh*[mh_off[m] : mh_off[m] + mh_n[m]]
    ("mh_off", A64),
    ("mh_n", A64),
    ("mhk", A64),
    ("mhp", A64),
    ("mhv", A64),
]


def state_type(cls: type[LruStateType]) -> LruStateType:
    """Register a design's state class with numba and return its type instance."""
    structref.register(cls)
    return cls(FIELDS)


# ---------------------------------------------------------------- hooks

_HOOKS: dict[tuple[type, str], Any] = {}
HOOK_NAMES = (
    "lru_add",
    "lru_del",
    "lru_loaded",
    "evict_one",
    "worker_step",
    "after_store",
    "shrink_one",
    "shrink_scan",
)


def hook(state_cls: type[LruStateType], name: str) -> Callable[[Any], Any]:
    """Decorator: ``fn`` (an njit function) implements hook ``name`` for ``state_cls``."""
    if name not in HOOK_NAMES:
        raise ValueError(f"unknown LRU hook `{name}` (valid: {', '.join(HOOK_NAMES)})")

    def deco(fn: Any) -> Any:
        key = (state_cls, name)
        if key in _HOOKS:
            raise ValueError(f"hook `{name}` of {state_cls.__name__} is registered twice")
        _HOOKS[key] = fn
        return fn

    return deco


def _resolve(st: Any, name: str) -> Any:
    for k in type(st).__mro__:
        fn = _HOOKS.get((k, name))
        if fn is not None:
            return fn
    raise TypeError(f"no `{name}` hook for {type(st).__name__}")


def lru_add(st: Any, p: int) -> None:  # pragma: no cover - resolved by @overload below
    raise NotImplementedError


def lru_del(st: Any, p: int) -> None:  # pragma: no cover
    raise NotImplementedError


def lru_loaded(st: Any, p: int) -> None:  # pragma: no cover
    raise NotImplementedError


def evict_one(st: Any) -> bool:  # pragma: no cover
    raise NotImplementedError


def worker_step(st: Any) -> bool:  # pragma: no cover
    raise NotImplementedError


def after_store(st: Any) -> None:  # pragma: no cover
    raise NotImplementedError


def shrink_one(st: Any) -> None:  # pragma: no cover
    raise NotImplementedError


def shrink_scan(st: Any, n: int) -> None:  # pragma: no cover
    raise NotImplementedError


def _bind1(generic: Any, name: str) -> None:
    @overload(generic)
    def _ol(st):  # type: ignore[no-untyped-def]
        if isinstance(st, LruStateType):
            fn = _resolve(st, name)
            return lambda st: fn(st)
        return None


def _bind2(generic: Any, name: str) -> None:
    @overload(generic)
    def _ol(st, p):  # type: ignore[no-untyped-def]
        if isinstance(st, LruStateType):
            fn = _resolve(st, name)
            return lambda st, p: fn(st, p)
        return None


_bind2(lru_add, "lru_add")
_bind2(lru_del, "lru_del")
_bind2(lru_loaded, "lru_loaded")
_bind1(evict_one, "evict_one")
_bind1(worker_step, "worker_step")
_bind1(after_store, "after_store")
_bind1(shrink_one, "shrink_one")
_bind2(shrink_scan, "shrink_scan")


@njit(cache=True)
def noop_p(st, p):  # type: ignore[no-untyped-def]
    """A hook that does nothing (base designs: no LRU)."""
    return


@njit(cache=True)
def noop(st):  # type: ignore[no-untyped-def]
    return


@njit(cache=True)
def no_evict(st):  # type: ignore[no-untyped-def]
    return False


hook(LruStateType, "lru_add")(noop_p)
hook(LruStateType, "lru_del")(noop_p)
hook(LruStateType, "lru_loaded")(noop_p)
hook(LruStateType, "evict_one")(no_evict)
hook(LruStateType, "after_store")(noop)
hook(LruStateType, "shrink_one")(noop)  # designs without a memory-pressure shrinker
hook(LruStateType, "shrink_scan")(noop_p)


# ---------------------------------------------------------------- construction


@njit(cache=True)
def init_state(  # type: ignore[no-untyped-def]
    st, cfg, n_pages, n_stores, zs, nf, wq_delay, wq_step, wq_walk, ev_mc, mh_cap
):
    """Fill a fresh ``structref.new(T)`` for ``n_pages`` distinct pages and ``n_stores``;
    ``nf`` is the next-fault index of every event (workload.Prepared.nf); ``wq_delay``,
    ``wq_step`` and ``wq_walk`` the measured shrink-worker timing (empty: not in time;
    ``wq_walk`` empty: a run's first step is drawn from ``wq_step``); ``ev_mc`` each
    event's memcg index and ``mh_cap`` each memcg's heap capacity (workload.Prepared)."""
    st.cfg = cfg
    st.sc = np.zeros(N_SC, dtype=np.int64)
    n_mc = cfg[CF_NMC]
    st.sc[S_RR] = n_mc  # zswap_next_shrink = NULL: the first walk starts at the first memcg
    st.c = np.zeros(N_COUNTERS, dtype=np.int64)
    st.zs = zs
    st.e_in = np.zeros(n_pages, dtype=np.int8)
    st.e_loaded = np.zeros(n_pages, dtype=np.int8)
    st.e_ref = np.zeros(n_pages, dtype=np.int8)
    st.on_disk = np.zeros(n_pages, dtype=np.int8)
    st.e_seq = np.zeros(n_pages, dtype=np.int64)
    st.e_clen = np.zeros(n_pages, dtype=np.int64)
    st.e_handle = np.full(n_pages, -1, dtype=np.int64)
    st.e_zp = np.full(n_pages, -1, dtype=np.int64)
    st.m_prev = np.full(n_pages, -1, dtype=np.int64)
    st.m_next = np.full(n_pages, -1, dtype=np.int64)
    nn = max(n_pages, n_stores) + 1
    st.l_prev = np.full(nn, -1, dtype=np.int64)
    st.l_next = np.full(nn, -1, dtype=np.int64)
    st.l_on = np.zeros(nn, dtype=np.int8)
    st.z_head = np.full(n_stores + 1, -1, dtype=np.int64)
    st.z_count = np.zeros(n_stores + 1, dtype=np.int64)
    st.b_len = np.zeros(n_stores + 1, dtype=np.int64)
    st.seq_ts = np.zeros(n_stores + 1, dtype=np.int64)
    st.held = np.zeros(n_stores + 1, dtype=np.int8)
    st.gaps = np.zeros(n_stores + 1, dtype=np.int64)
    st.wb_log = np.zeros(n_stores + 1, dtype=np.int64)
    st.bins = np.zeros((cfg[CF_NBINS], 4), dtype=np.int64)
    st.pool_bin = np.full(cfg[CF_NBINS], -1, dtype=np.int64)
    st.nf = nf
    st.e_nf = np.full(n_pages, NEVER, dtype=np.int64)
    st.e_ver = np.zeros(n_pages, dtype=np.int64)
    st.e_avoid = np.zeros(n_pages, dtype=np.int8)
    st.e_pend = np.zeros(n_pages, dtype=np.int8)
    nh = nf.shape[0] + 1
    st.hk = np.zeros(nh, dtype=np.int64)
    st.hp = np.zeros(nh, dtype=np.int64)
    st.hv = np.zeros(nh, dtype=np.int64)
    st.wq_delay = wq_delay
    st.wq_step = wq_step
    st.wq_walk = wq_walk if wq_walk.shape[0] else wq_step
    st.ev_mc = ev_mc
    st.e_mc = np.zeros(n_pages, dtype=np.int64)
    st.l_mc = np.zeros(nn, dtype=np.int64)
    st.lend = np.full((n_mc, 2), -1, dtype=np.int64)
    st.mcc = np.zeros((n_mc, N_MCC), dtype=np.int64)
    st.e_xav = np.zeros(n_pages, dtype=np.int8)
    st.mh_off = np.zeros(n_mc, dtype=np.int64)
    st.mh_n = np.zeros(n_mc, dtype=np.int64)
    tot = 0
    if n_mc > 1:
        for m in range(n_mc):
            st.mh_off[m] = tot
            tot += mh_cap[m]
    st.mhk = np.zeros(tot, dtype=np.int64)
    st.mhp = np.zeros(tot, dtype=np.int64)
    st.mhv = np.zeros(tot, dtype=np.int64)


# ---------------------------------------------------------------- intrusive LRU list


@njit(cache=True)
def ll_unlink(st, x):  # type: ignore[no-untyped-def]
    """Take node x off its memcg's list (no-op if it is not on it)."""
    if not st.l_on[x]:
        return
    pv = st.l_prev[x]
    nx = st.l_next[x]
    m = st.l_mc[x] if st.cfg[CF_NMC] > 1 else 0  # one memcg: no load of l_mc (hot path)
    if pv >= 0:
        st.l_next[pv] = nx
    else:
        st.lend[m, LE_OLD] = nx
    if nx >= 0:
        st.l_prev[nx] = pv
    else:
        st.lend[m, LE_NEW] = pv
    st.l_prev[x] = -1
    st.l_next[x] = -1
    st.l_on[x] = 0


@njit(cache=True)
def _ll_push(st, x, back, fwd, end, other):  # type: ignore[no-untyped-def]
    # put x at the `end` side of its memcg's list: new end with (l_prev, l_next, LE_NEW,
    # LE_OLD), old end mirrored
    ll_unlink(st, x)
    m = st.l_mc[x] if st.cfg[CF_NMC] > 1 else 0
    t = st.lend[m, end]
    back[x] = t
    fwd[x] = -1
    if t >= 0:
        fwd[t] = x
    else:
        st.lend[m, other] = x
    st.lend[m, end] = x
    st.l_on[x] = 1


@njit(cache=True)
def ll_push_new(st, x):  # type: ignore[no-untyped-def]
    """Put node x at the newest end (kernel: list_add at the head)."""
    _ll_push(st, x, st.l_prev, st.l_next, LE_NEW, LE_OLD)


@njit(cache=True)
def ll_push_old(st, x):  # type: ignore[no-untyped-def]
    """Put node x at the oldest end (the next to be written back)."""
    _ll_push(st, x, st.l_next, st.l_prev, LE_OLD, LE_NEW)


@njit(cache=True)
def oldest(st, m):  # type: ignore[no-untyped-def]
    """The oldest node on memcg m's list (-1: empty); designs with one list use m = 0."""
    return st.lend[m, LE_OLD]


# ---------------------------------------------------------------- pool


@njit(cache=True)
def pool_pages(st):  # type: ignore[no-untyped-def]
    if st.cfg[CF_POOL_BYTES]:
        ps = st.cfg[CF_PAGE_SIZE]
        return (st.sc[S_BYTES_USED] + ps - 1) // ps
    return _zs._m_total_pages(st.zs)


@njit(cache=True)
def pool_alloc(st, size):  # type: ignore[no-untyped-def]
    if st.cfg[CF_POOL_BYTES]:
        if size <= 0 or size > st.cfg[CF_PAGE_SIZE]:
            return -1  # zs_malloc: -EINVAL / -ENOSPC above PAGE_SIZE
        h = st.sc[S_BYTES_NEXT]
        st.sc[S_BYTES_NEXT] = h + 1
        st.b_len[h] = size
        st.sc[S_BYTES_USED] += size
        return h
    return _zs._m_malloc(st.zs, size)


@njit(cache=True)
def pool_free(st, h):  # type: ignore[no-untyped-def]
    if st.cfg[CF_POOL_BYTES]:
        st.sc[S_BYTES_USED] -= st.b_len[h]
        st.b_len[h] = 0
    else:
        _zs._m_free(st.zs, h)


@njit(cache=True)
def pool_fits(st, need):  # type: ignore[no-untyped-def]
    """Room for ``need`` more bytes: exact bytes, or (zsmalloc) the pool below its limit."""
    if st.cfg[CF_POOL_BYTES]:
        return st.sc[S_BYTES_USED] + need <= st.cfg[CF_MAX_PAGES] * st.cfg[CF_PAGE_SIZE]
    return _zs._m_total_pages(st.zs) < st.cfg[CF_MAX_PAGES]


@njit(cache=True)
def slot_of(st, h):  # type: ignore[no-untyped-def]
    """Handle h's object index in its zspage: address order (bytes pool: 0)."""
    if st.cfg[CF_POOL_BYTES]:
        return np.int64(0)
    return _zs._m_zspage_of(st.zs, h)[1]


@njit(cache=True)
def zspage_of(st, h):  # type: ignore[no-untyped-def]
    """The zspage holding handle h (bytes pool: every object is its own zspage)."""
    if st.cfg[CF_POOL_BYTES]:
        return h
    return _zs._m_zspage_of(st.zs, h)[0]


# ---------------------------------------------------------------- the metric (metrics.Recorder)


@njit(cache=True)
def rec_new_seq(st, ts):  # type: ignore[no-untyped-def]
    s = st.sc[R_NSEQ]
    st.seq_ts[s] = ts
    st.sc[R_NSEQ] = s + 1
    return s


@njit(cache=True)
def rec_hold(st, seq):  # type: ignore[no-untyped-def]
    if not st.held[seq]:
        st.held[seq] = 1
        st.sc[R_NHELD] += 1
        if seq < st.sc[R_LO]:
            st.sc[R_LO] = seq


@njit(cache=True)
def rec_release(st, seq):  # type: ignore[no-untyped-def]
    if st.held[seq]:
        st.held[seq] = 0
        st.sc[R_NHELD] -= 1


@njit(cache=True)
def rec_disk_write(st, seq, cause):  # type: ignore[no-untyped-def]
    """A swapped-out page is written to disk now: an inversion if an older one is held."""
    st.sc[R_DISK_WRITES] += 1
    if st.sc[R_NHELD] == 0:
        return
    lo = st.sc[R_LO]
    while not st.held[lo]:
        lo += 1
    st.sc[R_LO] = lo
    if lo < seq:
        st.sc[R_INV] += 1
        st.sc[R_INV_RPL + cause] += 1
        st.gaps[st.sc[R_NGAPS]] = st.seq_ts[seq] - st.seq_ts[lo]
        st.sc[R_NGAPS] += 1
        st.bins[st.sc[R_BIN], T_INV] += 1


# ---------------------------------------------------------------- the future: next-fault heap


@njit(cache=True)
def _hswap(k, pg, v, i, j):  # type: ignore[no-untyped-def]
    k[i], k[j] = k[j], k[i]
    pg[i], pg[j] = pg[j], pg[i]
    v[i], v[j] = v[j], v[i]


@njit(cache=True)
def _sift_up(k, pg, v, o, i):  # type: ignore[no-untyped-def]
    """Max-heap rows k/pg/v[o : ...]: move row o + i up to its place."""
    while i > 0:
        up = (i - 1) >> 1
        if k[o + up] >= k[o + i]:
            break
        _hswap(k, pg, v, o + i, o + up)
        i = up


@njit(cache=True)
def _pop(k, pg, v, o, n):  # type: ignore[no-untyped-def]
    """Remove the top of the max-heap rows k/pg/v[o : o + n + 1] (n rows stay)."""
    _hswap(k, pg, v, o, o + n)
    i = 0
    while True:
        a = 2 * i + 1
        if a >= n:
            break
        if a + 1 < n and k[o + a + 1] > k[o + a]:
            a += 1
        if k[o + i] >= k[o + a]:
            break
        _hswap(k, pg, v, o + i, o + a)
        i = a


@njit(cache=True)
def heap_push(st, p):  # type: ignore[no-untyped-def]
    """Entry p (taking pool space) now has next fault e_nf[p]: a new version in the heap."""
    st.e_ver[p] += 1
    i = st.sc[H_N]
    st.sc[H_N] = i + 1
    st.hk[i] = st.e_nf[p]
    st.hp[i] = p
    st.hv[i] = st.e_ver[p]
    _sift_up(st.hk, st.hp, st.hv, 0, i)


@njit(cache=True)
def heap_pop(st):  # type: ignore[no-untyped-def]
    n = st.sc[H_N] - 1
    st.sc[H_N] = n
    _pop(st.hk, st.hp, st.hv, 0, n)


@njit(cache=True)
def heap_top(st):  # type: ignore[no-untyped-def]
    """The zswap entry taking pool space whose next fault is the latest (-1: none); stale
    rows (entry gone, replaced or re-keyed) are dropped on the way."""
    while st.sc[H_N] > 0:
        p = st.hp[0]
        if st.e_in[p] and st.e_handle[p] >= 0 and st.e_ver[p] == st.hv[0]:
            return p
        heap_pop(st)
    return -1


@njit(cache=True)
def mheap_push(st, p):  # type: ignore[no-untyped-def]
    """heap_push's row (same version) also in the heap of p's memcg (CF_NMC > 1 only)."""
    m = st.e_mc[p]
    o = st.mh_off[m]
    i = st.mh_n[m]
    st.mh_n[m] = i + 1
    st.mhk[o + i] = st.e_nf[p]
    st.mhp[o + i] = p
    st.mhv[o + i] = st.e_ver[p]
    _sift_up(st.mhk, st.mhp, st.mhv, o, i)


@njit(cache=True)
def mheap_top(st, m):  # type: ignore[no-untyped-def]
    """heap_top over memcg m's entries (-1: none)."""
    o = st.mh_off[m]
    while st.mh_n[m] > 0:
        p = st.mhp[o]
        if st.e_in[p] and st.e_handle[p] >= 0 and st.e_ver[p] == st.mhv[o]:
            return p
        st.mh_n[m] -= 1  # a stale top
        _pop(st.mhk, st.mhp, st.mhv, o, st.mh_n[m])
    return -1


@njit(cache=True)
def mc_count(st, p, k):  # type: ignore[no-untyped-def]
    """Per-memcg counter k of page p's memcg, with several memcgs only (one memcg: the
    results have no per-memcg rows, and the hot path no extra writes)."""
    if st.cfg[CF_NMC] > 1:
        st.mcc[st.e_mc[p], k] += 1


@njit(cache=True)
def judge_disk_copy(st, p, nf_p):  # type: ignore[no-untyped-def]
    """Page p goes to disk now with next fault ``nf_p``: its next disk fault is *avoidable*
    if zswap holds a page (taking pool space) faulted later than p, or never; with several
    memcgs, a *cross-memcg* inversion if that page can be another memcg's."""
    st.e_avoid[p] = 0
    if st.cfg[CF_NMC] > 1:
        st.e_xav[p] = 0
    if nf_p == NEVER:
        return
    q = heap_top(st)
    if q >= 0 and st.e_nf[q] > nf_p:
        st.e_avoid[p] = 1
        if st.cfg[CF_NMC] > 1:
            mp = st.e_mc[p]
            for m in range(st.cfg[CF_NMC]):
                if m == mp:
                    continue
                r = mheap_top(st, m)
                if r >= 0 and st.e_nf[r] > nf_p:
                    st.e_xav[p] = 1
                    st.mcc[mp, MC_XINV] += 1
                    break


# ---------------------------------------------------------------- zswap operations


@njit(cache=True)
def free_entry(st, p):  # type: ignore[no-untyped-def]
    """Entry p leaves zswap: its object is freed and its page is no longer held."""
    st.e_in[p] = 0
    h = st.e_handle[p]
    if h >= 0:  # a same-filled entry has no zsmalloc object
        pool_free(st, h)
    rec_release(st, st.e_seq[p])


@njit(cache=True)
def to_disk(st, p):  # type: ignore[no-untyped-def]
    """zswap_writeback_entry() after the entry left zswap: the page is on disk now."""
    st.on_disk[p] = 1
    judge_disk_copy(st, p, st.e_nf[p])
    st.wb_log[st.sc[R_NWB]] = p
    st.sc[R_NWB] += 1
    st.c[K_WB_PAGES] += 1
    mc_count(st, p, MC_WB)
    st.sc[R_WB] += 1
    st.sc[R_WB_BYTES] += st.e_clen[p]
    st.bins[st.sc[R_BIN], T_WB] += 1
    if not st.e_loaded[p]:  # a clean copy of an in-memory page is not a swapped-out page
        rec_disk_write(st, st.e_seq[p], CAUSE_WB)


@njit(cache=True)
def writeback(st, p):  # type: ignore[no-untyped-def]
    """Write back entry p (already off the design's LRU)."""
    free_entry(st, p)
    to_disk(st, p)


@njit(cache=True)
def _reject(st, seq, p, cause):  # type: ignore[no-untyped-def]
    st.sc[R_REJECTS] += 1
    st.on_disk[p] = 1
    judge_disk_copy(st, p, st.sc[S_IN_NF])
    st.c[K_DISK_SWAPOUT] += 1
    mc_count(st, p, MC_REJECTS)
    rec_disk_write(st, seq, cause)


@njit(cache=True)
def _sample(st, arr):  # type: ignore[no-untyped-def]
    """One draw from a measured distribution (the empirical sample ``arr``): a fixed hash of
    the draw number picks the element, so a replay is deterministic."""
    k = st.sc[S_WQ_K]
    st.sc[S_WQ_K] = k + 1
    return arr[
        np.int64(splitmix64(np.uint64(k) + np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(1))
        % arr.shape[0]
    ]


@njit(cache=True)
def queue_worker_timed(st):  # type: ignore[no-untyped-def]
    """queue_work(shrink_wq, &zswap_shrink_work) in time. A no-op while the work is pending
    (kernel/workqueue.c: queue_work_on tests and sets WORK_STRUCT_PENDING). Queued while idle,
    it starts after a measured workqueue delay; queued while running (process_one_work clears
    PENDING before calling shrink_worker), it runs again as soon as the running one returns
    (the work is non-reentrant: __queue_work puts it on the pool that runs it)."""
    if st.sc[S_WQ_PEND]:
        return
    st.sc[S_WQ_PEND] = 1
    if st.sc[S_WQ_RUN]:
        st.sc[R_WQ_REQUEUE] += 1
        st.sc[S_WQ_START] = st.sc[S_NOW]  # moved to the running one's end in advance_timed
    else:
        st.sc[S_WQ_START] = st.sc[S_NOW] + _sample(st, st.wq_delay)


@njit(cache=True)
def advance_timed(st, t):  # type: ignore[no-untyped-def]
    """Run the shrink worker's steps due by time ``t``: one shrink_memcg() per step, each
    step that wrote back taking a measured worker time per writeback; the worker returns when
    its ``worker_step`` hook says so (6.12 shrink_worker: the pool is at the threshold, or
    MAX_RECLAIM_RETRIES failures)."""
    while True:
        if st.sc[S_WQ_RUN]:
            tw = st.sc[S_WQ_NEXT]
            if tw > t:
                return
            nwb = st.sc[R_NWB]
            cont = worker_step(st)
            if st.sc[R_NWB] != nwb:  # wrote back: the next step (or the return) comes later
                tw += _sample(st, st.wq_step)
            if cont:
                st.sc[S_WQ_NEXT] = tw
            else:
                st.sc[S_WQ_RUN] = 0
                if st.sc[S_WQ_PEND] and st.sc[S_WQ_START] < tw:
                    st.sc[S_WQ_START] = tw
        elif st.sc[S_WQ_PEND]:
            if st.sc[S_WQ_START] > t:
                return
            st.sc[S_WQ_PEND] = 0
            st.sc[S_WQ_RUN] = 1
            # its first shrink_memcg() outcome comes one measured walk after it starts: in
            # the guests almost every execution only rotates (16 failures, tens of µs), a
            # walk far shorter than a writeback step (worker_timing.py: walk_ns)
            st.sc[S_WQ_NEXT] = st.sc[S_WQ_START] + _sample(st, st.wq_walk)
            st.sc[S_WORK_PHASE] = 0
            st.sc[S_WORK_FAIL] = 0
            st.sc[R_WQ_RUNS] += 1
        else:
            return


@njit(cache=True)
def queue_worker(st):  # type: ignore[no-untyped-def]
    """queue_work(shrink_wq): start the worker unless it is pending (then a no-op).

    ``worker_steps=0``: the worker runs to completion before the next event; N > 0: it does
    N steps per following event (see _base.ZswapDesign._queue); in time (CF_WTIMED):
    :func:`queue_worker_timed`.
    """
    if st.cfg[CF_WTIMED]:
        queue_worker_timed(st)
        return
    if st.sc[S_WORK_ACTIVE]:
        return
    st.sc[S_WORK_PHASE] = 0
    st.sc[S_WORK_FAIL] = 0
    if st.cfg[CF_WSTEPS] == 0:
        while worker_step(st):
            pass
    else:
        st.sc[S_WORK_ACTIVE] = 1


@njit(cache=True)
def first_step(st):  # type: ignore[no-untyped-def]
    """True at a queued worker's first step, False after: the ≤6.4 workers do one
    zpool_shrink() per run, yield, and return at the next step."""
    if st.sc[S_WORK_PHASE]:
        return False
    st.sc[S_WORK_PHASE] = 1
    return True


@njit(cache=True)
def shrink_once(st):  # type: ignore[no-untyped-def]
    """The base ``worker_step``, ≤6.4's shrink_worker: one zpool_shrink(pool->zpool, 1, NULL)
    per run, and a failure counts reject_reclaim_fail (6.1 mm/zswap.c: shrink_worker). The
    zpool's shrink is the design's ``evict_one``: none for zsmalloc before 6.2 (-EINVAL),
    zs_reclaim_page in 6.2–6.4."""
    if not first_step(st):
        return False
    if not evict_one(st):
        st.c[K_RECLAIM_FAIL] += 1
    return True


hook(LruStateType, "worker_step")(shrink_once)


@njit(cache=True)
def advance_worker(st):  # type: ignore[no-untyped-def]
    for _ in range(st.cfg[CF_WSTEPS]):
        if not worker_step(st):
            st.sc[S_WORK_ACTIVE] = 0
            return


@njit(cache=True)
def check_limits(st):  # type: ignore[no-untyped-def]
    """(reject, hit_limit): see _base.ZswapDesign.check_limits for both generations."""
    cur = pool_pages(st)
    mx = st.cfg[CF_MAX_PAGES]
    if st.cfg[CF_LIMITS_V610]:
        hit = cur >= mx
        if hit:
            st.c[K_POOL_LIMIT_HIT] += 1
            st.sc[S_REACHED_FULL] = 1
        elif st.sc[S_REACHED_FULL] and cur <= st.cfg[CF_THR_PAGES]:
            st.sc[S_REACHED_FULL] = 0
        return st.sc[S_REACHED_FULL] != 0, hit
    if cur > mx:
        st.c[K_POOL_LIMIT_HIT] += 1
        st.sc[S_REACHED_FULL] = 1
        return True, True
    if st.sc[S_REACHED_FULL]:
        if not st.cfg[CF_THR_PAGES] > cur:
            return True, False
        st.sc[S_REACHED_FULL] = 0
    return False, False


@njit(cache=True)
def _reject_compress(st, seq, p):  # type: ignore[no-untyped-def]
    st.c[K_COMPRESS_POOR] += 1
    _reject(st, seq, p, CAUSE_RC)
    if st.cfg[CF_QUEUE_ON] == QUEUE_ANY_REJECT and st.sc[S_REACHED_FULL] and not st.cfg[CF_SYNC]:
        queue_worker(st)  # 6.10+: `reject:` queues the worker while reached_full
    return False


@njit(cache=True)
def _new_entry(st, p, seq, clen, h):  # type: ignore[no-untyped-def]
    st.e_in[p] = 1
    st.e_nf[p] = st.sc[S_IN_NF]
    st.e_ver[p] += 1
    st.e_seq[p] = seq
    st.e_clen[p] = clen
    st.e_handle[p] = h
    st.e_loaded[p] = 0
    st.e_ref[p] = 1  # 6.12 second chance: zswap_store sets entry->referenced
    st.sc[R_STORES] += 1
    st.c[K_ZSWPOUT] += 1
    mc_count(st, p, MC_ZSWPOUT)


@njit(cache=True)
def store(st, ts, p, clen, nf_i):  # type: ignore[no-untyped-def]
    """zswap_store() up to its limit check, at the store's entry (the flow: _base module
    docstring); the rest runs at its OP_STORE_ALLOC event (``store_alloc``). The kernel checks
    the limit at entry, before compressing, without a lock (6.1 zswap_frontswap_store:
    zswap_is_full(); 6.10+ zswap_store: zswap_check_limits()), so two stores on two CPUs can
    both pass before either allocates; splitting the store lets the replay do the same.
    ``nf_i``: the page's next fault."""
    flush_pending(st, p)
    st.sc[S_IN_NF] = nf_i
    seq = rec_new_seq(st, ts)
    if st.e_in[p]:  # zswap_duplicate_entry: the new version replaces the old
        st.c[K_DUP] += 1
        lru_del(st, p)
        free_entry(st, p)
    st.on_disk[p] = 0  # a disk copy of an older version is stale now
    st.e_avoid[p] = 0
    if st.cfg[CF_NMC] > 1:
        st.e_xav[p] = 0
        st.e_mc[p] = st.sc[S_CUR_MC]  # the folio's memcg (zswap_store charges its objcg)
    if not st.cfg[CF_SYNC]:
        reject, hit = check_limits(st)
        if reject:
            st.c[K_POOL_LIMIT] += 1
            _reject(st, seq, p, CAUSE_RPL)
            if hit or st.cfg[CF_QUEUE_ON] != QUEUE_FULL:
                queue_worker(st)
            return
    # passed: remember what the allocation half needs (the entry fields are free: e_in is 0)
    st.e_pend[p] = 1
    st.e_seq[p] = seq
    st.e_clen[p] = clen
    st.e_nf[p] = nf_i


@njit(cache=True)
def flush_pending(st, p):  # type: ignore[no-untyped-def]
    """Finish a store of ``p`` still waiting for its allocation (before anything else touches
    ``p``; only reachable when a trace's timestamps overlap oddly)."""
    if st.e_pend[p]:
        store_alloc(st, p)


@njit(cache=True)
def store_alloc(st, p):  # type: ignore[no-untyped-def]
    """The rest of zswap_store(): compression result, zpool_malloc, the entry joins the LRU.
    Returns True when zswap stored the page."""
    if not st.e_pend[p]:
        return False
    st.e_pend[p] = 0
    seq = st.e_seq[p]
    clen = st.e_clen[p]
    st.sc[S_IN_NF] = st.e_nf[p]
    ps = st.cfg[CF_PAGE_SIZE]
    incompressible = clen == INCOMPRESSIBLE or clen > ps
    as_is = st.cfg[CF_AS_IS] != 0
    if incompressible and as_is:
        clen = ps
    header = st.cfg[CF_HEADER]
    if incompressible and not as_is:
        return _reject_compress(st, seq, p)
    if st.cfg[CF_SYNC]:
        need = clen + header
        while not pool_fits(st, need):
            if not evict_one(st):
                break
        if not pool_fits(st, need):
            st.c[K_POOL_LIMIT] += 1
            _reject(st, seq, p, CAUSE_RPL)
            return False
    if clen == SAME_FILLED:  # no zpool object, not on the LRU, not a held page
        _new_entry(st, p, seq, 0, -1)
        st.c[K_SAME_FILLED] += 1
        return True
    h = pool_alloc(st, clen + header)
    if h < 0:  # zpool_malloc -ENOSPC: the length (plus header) exceeds a page
        return _reject_compress(st, seq, p)
    _new_entry(st, p, seq, clen, h)
    heap_push(st, p)
    if st.cfg[CF_NMC] > 1:
        mheap_push(st, p)
    rec_hold(st, seq)
    lru_add(st, p)
    return True


@njit(cache=True)
def count_fault(st, p, r, t, k, mc):  # type: ignore[no-untyped-def]
    """A fault on page p served by zswap or by disk, counted four ways: the replay's scalar
    ``r`` (R_*), the timeline column ``t`` (T_*), the kernel counter ``k`` (K_*) and its
    memcg's column ``mc`` (MC_*)."""
    st.sc[r] += 1
    st.bins[st.sc[R_BIN], t] += 1
    st.c[k] += 1
    mc_count(st, p, mc)


@njit(cache=True)
def load(st, p, nf_i):  # type: ignore[no-untyped-def]
    """zswap_load(): a hit (exclusive: the entry is freed), a disk swap-in, or unknown;
    ``nf_i``: the page's next fault after this one (a kept clean copy's new key)."""
    flush_pending(st, p)
    if st.e_in[p]:
        count_fault(st, p, R_HITS, T_HIT, K_ZSWPIN, MC_ZSWPIN)
        if st.cfg[CF_EXCL]:
            st.e_in[p] = 0
            lru_del(st, p)
            free_entry(st, p)
        elif not st.e_loaded[p]:
            st.e_loaded[p] = 1
            rec_release(st, st.e_seq[p])
            if st.e_handle[p] >= 0:
                st.e_nf[p] = nf_i
                heap_push(st, p)
                if st.cfg[CF_NMC] > 1:
                    mheap_push(st, p)
            lru_loaded(st, p)
        return
    if st.on_disk[p]:
        count_fault(st, p, R_DISK_IN, T_DISK, K_DISK_SWAPIN, MC_DISK_IN)
        if st.e_avoid[p]:
            st.sc[R_AVOID] += 1
            mc_count(st, p, MC_AVOID)
            st.e_avoid[p] = 0
        if st.cfg[CF_NMC] > 1 and st.e_xav[p]:
            mc_count(st, p, MC_XAVOID)
            st.e_xav[p] = 0
        return
    st.c[K_UNKNOWN] += 1


@njit(cache=True)
def invalidate(st, p):  # type: ignore[no-untyped-def]
    flush_pending(st, p)
    if st.e_in[p]:
        st.e_in[p] = 0
        lru_del(st, p)
        free_entry(st, p)
    st.on_disk[p] = 0
    st.e_avoid[p] = 0
    if st.cfg[CF_NMC] > 1:
        st.e_xav[p] = 0


@njit(cache=True)
def replay(st, ts, op, pidx, clen):  # type: ignore[no-untyped-def]
    """Every operation in order; per event: timeline bin, pending worker, the op, pool size."""
    t0 = st.cfg[CF_T0]
    bin_ns = st.cfg[CF_BIN_NS]
    last = st.cfg[CF_NBINS] - 1
    for i in range(ts.shape[0]):
        b = (ts[i] - t0) // bin_ns
        st.sc[R_BIN] = min(max(b, 0), last)
        st.sc[S_NOW] = ts[i]
        if st.cfg[CF_WTIMED]:
            advance_timed(st, ts[i])
        o = op[i]
        if o == OP_STORE_ALLOC:  # the second half of a store: not a trace event of its own
            store_alloc(st, pidx[i])
            after_store(st)
            st.pool_bin[st.sc[R_BIN]] = pool_pages(st)
            continue
        if st.sc[S_WORK_ACTIVE]:
            advance_worker(st)
        if st.cfg[CF_NMC] > 1 and o != OP_LOAD and o != OP_INVALIDATE:
            # the memcg under reclaim: the store's folio memcg, or the shrinker's (a scan's
            # measured memcg, else the last store's: workload.Prepared.ev_mc)
            st.sc[S_CUR_MC] = st.ev_mc[i]
        if o == OP_STORE:  # no recorded duration: both halves at once
            store(st, ts[i], pidx[i], clen[i], st.nf[i])
            store_alloc(st, pidx[i])
            after_store(st)
        elif o == OP_STORE_CHECK:
            store(st, ts[i], pidx[i], clen[i], st.nf[i])
        elif o == OP_LOAD:
            load(st, pidx[i], st.nf[i])
        elif o == OP_INVALIDATE:
            invalidate(st, pidx[i])
        elif o == OP_SHRINK and st.cfg[CF_SHRINKER_TRACE] == 1:
            shrink_one(st)
        elif o == OP_SHRINK_SCAN and st.cfg[CF_SHRINKER_TRACE] == 2:
            shrink_scan(st, clen[i])
        st.pool_bin[st.sc[R_BIN]] = pool_pages(st)


@njit(cache=True)
def stored_pages(st):  # type: ignore[no-untyped-def]
    return np.int64(st.e_in.sum())


@njit(cache=True)
def results(st):  # type: ignore[no-untyped-def]
    """Everything the Python side reads back, as arrays."""
    return (
        st.sc.copy(),
        st.c.copy(),
        st.bins.copy(),
        st.pool_bin.copy(),
        st.gaps[: st.sc[R_NGAPS]].copy(),
        st.wb_log[: st.sc[R_NWB]].copy(),
        stored_pages(st),
        pool_pages(st),
        st.mcc.copy(),
    )


# nogil: a fleet sweep's driver runs LRU tasks while its Ray thread feeds the workers
# (ztrace/fleet/runner.py); the replay touches no Python object
@njit(cache=True, nogil=True)
def run(  # type: ignore[no-untyped-def]
    T,
    cfg,
    ts,
    op,
    pidx,
    clen,
    nf,
    n_pages,
    n_stores,
    pool,
    wq_delay,
    wq_step,
    wq_walk,
    ev_mc,
    mh_cap,
):
    """Replay a workload under the design whose state type is ``T`` (compiled once per
    design: ``T`` selects the hooks)."""
    st = structref.new(T)
    init_state(st, cfg, n_pages, n_stores, pool, nf, wq_delay, wq_step, wq_walk, ev_mc, mh_cap)
    replay(st, ts, op, pidx, clen)
    return results(st)


def own_dispatchers() -> list[Any]:
    from numba.core.registry import CPUDispatcher

    return [v for v in globals().values() if isinstance(v, CPUDispatcher)]


#: what the compiled ``run`` contains besides this file: the pool model and every design's
#: hooks (all modules of this package), so an edit to any of them invalidates numba's cache
DEPENDS = (
    _zs.__file__,
    _hashing.__file__,
    _zs._classes_module.__file__,
    *sorted(str(f) for f in Path(__file__).parent.glob("*.py")),
)
_zs.cache_depends_on(own_dispatchers(), *DEPENDS)
