"""``entry-lru``: zswap's own LRU of entries, 6.5–6.11.

6.5 moved the LRU out of the allocators into zswap ("mm: zswap: add pool shrinking mechanism",
Domenico Cerasuolo): ``zswap_store`` does ``list_add(&entry->lru, &pool->lru)`` (head = newest);
``zswap_reclaim_entry`` takes ``list_last_entry`` (the tail, oldest) and
``zswap_writeback_entry`` writes it to the swap device. On the pool limit ``zswap_store`` rejects
the page and queues ``shrink_work`` — on the ``zswap_is_full()`` path *and* on the hysteresis
path (``goto shrink``) — and ``shrink_worker`` reclaims until ``zswap_can_accept()`` ("mm: zswap:
shrink until can accept", 6.5). A non-exclusive load moves the entry to the head
(6.5 ``zswap_load``: ``list_move(&entry->lru, &entry->pool->lru)``); from 6.8 swapcache loads
are exclusive (the entry is freed), which is the default here (``exclusive_loads=no`` gives the
6.5–6.7 default). 6.8 made the LRU a per-memcg ``list_lru``; with one cgroup the order is the
same.

A writeback fails with -EEXIST when the entry's page is already in the swap cache
(``zswap_writeback_entry``: ``__read_swap_cache_async`` found a folio; 6.5–6.7 with
non-exclusive loads, that is an entry that was loaded and kept); ``zswap_reclaim_entry`` then
puts the entry back at the head (``list_move(&entry->lru, &pool->lru)``) and returns -EAGAIN,
and ``shrink_worker`` counts ``reject_reclaim_fail`` and gives up after
``MAX_RECLAIM_RETRIES`` (16) failures (6.6 mm/zswap.c: zswap_reclaim_entry, shrink_worker).
Every loaded entry counts as in the swap cache (a clean page leaves it on reclaim without a
trace event).

``shrink=sync`` writes back *before* storing instead of rejecting (no hysteresis): the
eviction order of a plain LRU cache, which tests compare with libCacheSim's LRU.
"""

from __future__ import annotations

from numba import njit

from ztrace.replay.lru import _core as K
from ztrace.replay.lru import register
from ztrace.replay.lru._base import Param, ZswapDesign, p_choice

#: include/linux/swap.h MAX_RECLAIM_RETRIES: shrink_worker's failure budget (6.5+)
MAX_RECLAIM_RETRIES = 16


class EntryLruState(K.LruStateType):
    """numba state type of ``entry-lru``: the list nodes are pages; OLD = the list tail."""


_T = K.state_type(EntryLruState)


@K.hook(EntryLruState, "lru_add")
@njit(cache=True)
def _lru_add(st, p):  # type: ignore[no-untyped-def]
    K.ll_push_new(st, p)  # list_add(&entry->lru, &pool->lru): the head = newest


@K.hook(EntryLruState, "lru_del")
@njit(cache=True)
def _lru_del(st, p):  # type: ignore[no-untyped-def]
    K.ll_unlink(st, p)  # same-filled entries are not on the list: a no-op


@K.hook(EntryLruState, "lru_loaded")
@njit(cache=True)
def _lru_loaded(st, p):  # type: ignore[no-untyped-def]
    if st.l_on[p]:  # 6.5 zswap_load: list_move(&entry->lru, &entry->pool->lru)
        K.ll_push_new(st, p)


@K.hook(EntryLruState, "evict_one")
@njit(cache=True)
def _evict_one(st):  # type: ignore[no-untyped-def]
    p = K.oldest(st, 0)  # zswap_reclaim_entry: list_last_entry (the tail, oldest)
    if p < 0:
        return False
    K.ll_unlink(st, p)
    K.writeback(st, p)
    return True


@K.hook(EntryLruState, "worker_step")
@njit(cache=True)
def _worker_step(st):  # type: ignore[no-untyped-def]
    # shrink_worker: do { zswap_reclaim_entry() } while (!zswap_can_accept());
    # queued on both reject paths since 6.5 (`goto shrink`)
    p = K.oldest(st, 0)
    if p >= 0 and st.e_loaded[p]:
        # -EEXIST: the page is in the swap cache; the entry goes back to the head, and the
        # failure counts toward MAX_RECLAIM_RETRIES
        K.ll_push_new(st, p)
        st.c[K.K_RECLAIM_FAIL] += 1
        st.sc[K.S_WORK_FAIL] += 1
        if st.sc[K.S_WORK_FAIL] == MAX_RECLAIM_RETRIES:
            return False
        return not st.cfg[K.CF_THR_PAGES] > K.pool_pages(st)
    if not K.evict_one(st):
        st.c[K.K_RECLAIM_FAIL] += 1  # -EINVAL: empty LRU
        return False
    return not st.cfg[K.CF_THR_PAGES] > K.pool_pages(st)


class EntryLru(ZswapDesign):
    """6.5–6.11: one LRU of zswap entries; writeback from the tail."""

    NAME = "entry-lru"
    ERA = "6.8"
    LIMITS = "legacy"
    QUEUE_ON = "limit"
    PARAMS = {
        "shrink": Param(
            p_choice("async", "sync"),
            "async",
            "`async`: reject at the limit, then the shrink worker writes back down to the "
            "accept threshold (kernel); `sync`: write back the tail before storing, never "
            "reject on the limit",
        ),
    }
    DEFAULTS = {"exclusive_loads": True, "store_as_is": False}
    STATE = _T


register(EntryLru, "6.5", "6.8", "zswap-lru", "lru", rank=30)
