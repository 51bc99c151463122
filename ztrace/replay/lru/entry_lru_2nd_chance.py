"""``entry-lru-2nd-chance``: 6.12+, the zswap LRU with a referenced bit.

6.12 ("mm: zswap: implement a second chance algorithm for dynamic zswap shrinker", Nhat Pham):
``zswap_store`` sets ``entry->referenced = true``; ``shrink_memcg_cb`` clears a set bit and
returns ``LRU_ROTATE`` (the entry goes to the newest end of the ``list_lru``) instead of
writing it back. Limits use ``zswap_check_limits()`` (6.10: full iff pages >= max, accept again
iff pages <= threshold), and ``zswap_store`` queues ``zswap_shrink_work`` on *every* reject
while ``zswap_pool_reached_full``. ``shrink_worker`` reclaims down to
``zswap_accept_thr_pages()``, one entry per ``shrink_memcg()`` call (``nr_to_walk = 1``); a walk
that only rotates returns -EAGAIN, and the worker gives up after ``MAX_RECLAIM_RETRIES`` (16)
such failures. Swapcache loads are exclusive (6.12 ``zswap_load`` frees the entry).

The memory-pressure shrinker (``zswap_shrinker_scan``, ``shrinker_enabled``) writes back
without the pool limit; how much it scans depends on reclaim priority, which a trace does not
record. ``shrinker_walk=N`` approximates it as N second-chance steps after every store attempt
(default 0: off, CONFIG_ZSWAP_SHRINKER_DEFAULT_ON=n). It is not calibrated.
"""

from __future__ import annotations

from numba import njit

from ztrace.replay.lru import _core as K
from ztrace.replay.lru import register
from ztrace.replay.lru._base import MAX_COUNT_PARAM, Param, p_choice, p_int
from ztrace.replay.lru.entry_lru import MAX_RECLAIM_RETRIES, EntryLru, EntryLruState

K_ROTATIONS = K.K_EXTRA0
K_GAVE_UP = K.K_EXTRA1


class SecondChanceState(EntryLruState):
    """numba state type of ``entry-lru-2nd-chance``: entry-lru's list and referenced bits."""


_T = K.state_type(SecondChanceState)


EEXIST = -2


@K.hook(SecondChanceState, "lru_add")
@njit(cache=True)
def _lru_add(st, p):  # type: ignore[no-untyped-def]
    # 6.12 zswap_store → zswap_lru_add: list_lru_add(list_lru, &entry->lru, nid, memcg) on
    # the list of the entry's memcg (mm/zswap.c: zswap_lru_add, obj_cgroup memcg)
    if st.cfg[K.CF_NMC] > 1:
        st.l_mc[p] = st.e_mc[p]
    K.ll_push_new(st, p)


@njit(cache=True)
def _step(st, m):  # type: ignore[no-untyped-def]
    """One shrink_memcg_cb() on the oldest entry of memcg m's list: 1 written back,
    0 rotated, -1 empty, EEXIST the writeback failed (the page is in the swap cache)."""
    p = K.oldest(st, m)
    if p < 0:
        return -1
    if st.e_ref[p]:
        st.e_ref[p] = 0
        K.ll_push_new(st, p)  # LRU_ROTATE: list_move_tail → newest end
        st.c[K_ROTATIONS] += 1
        return 0
    if st.e_loaded[p]:
        # 6.12 shrink_memcg_cb: list_move_tail first, then zswap_writeback_entry fails with
        # -EEXIST (__read_swap_cache_async found the folio): reject_reclaim_fail++, LRU_RETRY
        # (worker: shrink_memcg returns -EAGAIN, a failure) or LRU_STOP (shrinker). Only with
        # exclusive_loads=no: 6.12 swapcache loads free the entry (zswap_load).
        K.ll_push_new(st, p)
        st.c[K.K_RECLAIM_FAIL] += 1
        return EEXIST
    K.ll_unlink(st, p)
    K.writeback(st, p)
    return 1


@K.hook(SecondChanceState, "evict_one")
@njit(cache=True)
def _evict_one(st):  # type: ignore[no-untyped-def]
    # sync mode: CLOCK — rotate referenced entries until one is written back; the shrinker
    # stops at an -EEXIST (LRU_STOP, zswap_shrinker_scan returns SHRINK_STOP)
    while True:
        r = _step(st, st.sc[K.S_CUR_MC])
        if r != 0:
            return r == 1


@K.hook(SecondChanceState, "worker_step")
@njit(cache=True)
def _worker_step(st):  # type: ignore[no-untyped-def]
    # do { shrink_memcg() } while (zswap_total_pages() > thr); 6.12 does not count giving
    # up in reject_reclaim_fail (the guest's counter stays 0)
    if st.cfg[K.CF_NMC] > 1:
        return _worker_step_memcgs(st)
    r = _step(st, 0)
    if r < 0:
        st.c[K_GAVE_UP] += 1
        return False
    if r == 0 or r == EEXIST:  # shrink_memcg(): nothing written back → -EAGAIN
        st.sc[K.S_WORK_FAIL] += 1
        if st.sc[K.S_WORK_FAIL] == st.cfg[K.CF_MAX_FAIL]:
            st.c[K_GAVE_UP] += 1
            return False
    return K.pool_pages(st) > st.cfg[K.CF_THR_PAGES]


@njit(cache=True)
def _worker_step_memcgs(st):  # type: ignore[no-untyped-def]
    """One iteration of 6.12 shrink_worker's loop over several memcgs (mm/zswap.c:
    shrink_worker): the cursor zswap_next_shrink moves to the next memcg of the tree walk
    (mem_cgroup_iter; here the memcgs in cgroup id order, then NULL at the end of the walk)
    and persists across worker runs; NULL counts a failure only when the walk found no memcg
    with entries (``!attempts``); an empty memcg is -ENOENT (skipped, no attempt);
    shrink_memcg() walks one entry of that memcg's list (nr_to_walk = 1), and nothing
    written back (-EAGAIN) is a failure; MAX_RECLAIM_RETRIES failures end the run."""
    n = st.cfg[K.CF_NMC]
    if K.first_step(st):  # a new run: `attempts` is a local of shrink_worker
        st.sc[K.S_RR_ATT] = 0
    c = st.sc[K.S_RR] + 1
    if c > n:
        c = 0
    st.sc[K.S_RR] = c
    more = K.pool_pages(st) > st.cfg[K.CF_THR_PAGES]
    if c == n:  # mem_cgroup_iter() returned NULL: the walk is over
        if st.sc[K.S_RR_ATT] == 0:
            st.sc[K.S_WORK_FAIL] += 1
            if st.sc[K.S_WORK_FAIL] == st.cfg[K.CF_MAX_FAIL]:
                st.c[K_GAVE_UP] += 1
                return False
        st.sc[K.S_RR_ATT] = 0
        return more
    if K.oldest(st, c) < 0:  # shrink_memcg: -ENOENT (nothing scanned)
        return more
    st.sc[K.S_RR_ATT] += 1
    if _step(st, c) != 1:  # rotated or -EEXIST: nothing written back → -EAGAIN
        st.sc[K.S_WORK_FAIL] += 1
        if st.sc[K.S_WORK_FAIL] == st.cfg[K.CF_MAX_FAIL]:
            st.c[K_GAVE_UP] += 1
            return False
    return K.pool_pages(st) > st.cfg[K.CF_THR_PAGES]


@K.hook(SecondChanceState, "after_store")
@njit(cache=True)
def _after_store(st):  # type: ignore[no-untyped-def]
    for _ in range(st.cfg[K.CF_SHRINKER_WALK]):  # the shrinker approximation (default off)
        if _step(st, st.sc[K.S_CUR_MC]) < 0:
            break


@K.hook(SecondChanceState, "shrink_one")
@njit(cache=True)
def _shrink_one(st):  # type: ignore[no-untyped-def]
    # the kernel's shrinker wrote one entry back here (zswap_shrinker_scan →
    # list_lru_shrink_walk(shrink_memcg_cb)): referenced entries rotate, the first
    # unreferenced one is written back; how many it wrote (after nr_disk_swapins protection
    # in zswap_shrinker_count, 6.8+) is what the trace recorded, which entry is the design's
    _evict_one(st)


@K.hook(SecondChanceState, "shrink_scan")
@njit(cache=True)
def _shrink_scan(st, n):  # type: ignore[no-untyped-def]
    # zswap_shrinker_scan → list_lru_shrink_walk(nr_to_walk = sc->nr_to_scan): every visited
    # entry costs one (__list_lru_walk_one decrements nr_to_walk first): referenced ones
    # rotate, the others are written back; -EEXIST stops the walk (LRU_STOP). How many
    # (nr_to_scan, after zswap_shrinker_count's nr_disk_swapins protection, 6.8+) is what
    # the guest measured; which entries, and so how many are written back, is the design's.
    # the walk is over sc->memcg's list: the memcg under reclaim (S_CUR_MC)
    m = st.sc[K.S_CUR_MC]
    for _ in range(n):
        r = _step(st, m)
        if r == -1 or r == EEXIST:
            return


class EntryLru2ndChance(EntryLru):
    """6.12+: entry LRU whose walk rotates referenced entries once."""

    NAME = "entry-lru-2nd-chance"
    ERA = "6.12"
    LIMITS = "v6.10"
    QUEUE_ON = "any_reject"
    PARAMS = {
        **EntryLru.PARAMS,
        "max_failures": Param(
            p_int(1, MAX_COUNT_PARAM),
            MAX_RECLAIM_RETRIES,
            "shrink_worker gives up after this many walks that wrote nothing back",
        ),
        "shrinker": Param(
            p_choice("trace", "demand", "off"),
            "trace",
            "`trace`: the kernel's memory-pressure shrinker as the trace records it: its "
            "measured scans when the workload has them (walk nr_to_scan entries in this "
            "design's order), else `demand`: at each writeback the shrinker did (not the "
            "kworker), write back one entry in this design's order; `off`",
        ),
        "shrinker_walk": Param(
            p_int(0, MAX_COUNT_PARAM),
            0,
            "approximate memory-pressure shrinker: LRU steps after each store (0 = off)",
        ),
    }
    DEFAULTS = {"exclusive_loads": True, "store_as_is": False}
    EXTRA_COUNTERS = ("shrink_rotations", "shrink_gave_up")
    STATE = _T


register(EntryLru2ndChance, "6.12", "6.18", "2nd-chance", "second-chance", "clock", rank=40)
