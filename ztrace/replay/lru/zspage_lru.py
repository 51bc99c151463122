"""``zspage-lru``: the LRU inside zsmalloc, 6.2–6.4 — whole zspages are written back.

6.2 ("zsmalloc: Add a LRU to zs_pool to keep track of zspages in LRU order" and
"zsmalloc: Implement writeback mechanism for zsmalloc", Nhat Pham): every store moves the
zspage that received the object to the head of ``pool->lru`` (6.2 ``zs_map_object`` with
``ZS_MM_WO``; the 6.2.y fix "zsmalloc: move LRU update from zs_map_object() to zs_malloc()"
does it in ``zs_malloc`` — the same moment for zswap, which maps once right after
allocating). ``zs_zpool_shrink(pool, 1)`` → ``zs_reclaim_page(pool, 8)`` takes
``list_last_entry(&pool->lru)`` and calls ``zswap_writeback_entry`` for *every* allocated
object of that zspage, so young pages that share a zspage with old ones go to disk with them.
zswap's 6.2–6.4 flow is 6.1's: the worker is queued only on the ``zswap_is_full()`` path and
reclaims one zspage per run (``zpool_shrink(pool->zpool, 1, NULL)``; "shrink until can
accept" came in 6.5). Because zsmalloc was now "evictable", zswap prepends
``struct zswap_header`` (8 bytes, the swp_entry_t) to every object.

Placement comes from the allocator model (ztrace.model.zsmalloc): which zspage an object
lands in is decided exactly as ``zs_malloc`` does. Not modelled: compaction (the zsmalloc
shrinker may run ``zs_compact`` under memory pressure, moving objects between zspages).

Eviction failures are modelled: ``zswap_writeback_entry`` returns -EEXIST when the page is
already in the swap cache (6.2 ``zswap_get_swap_cache_page`` → ``ZSWAP_SWAPCACHE_EXIST``),
which with 6.2–6.4's non-exclusive loads is the case for an entry that was loaded (its page
was read into the swap cache and zswap kept the compressed copy). ``zs_reclaim_page`` walks
the zspage's objects in address order and stops at the first failing ``evict``
(``goto next``): the objects before it are written back, the zspage goes back at the *head*
of ``pool->lru`` (``putback_zspage``; ``list_add``), and the next tail zspage is tried, up to
``retries`` = 8 (``zs_zpool_shrink``: ``zs_reclaim_page(pool, 8)``); after 8 failures it
returns -EAGAIN and ``shrink_worker`` counts ``reject_reclaim_fail``. Which loaded pages are
still in the swap cache the trace cannot tell (a clean page leaves it on reclaim without an
event), so every loaded entry counts as in it, as the kernel's own comment puts it ("page is
already in the swap cache, ignore for now").
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ztrace.replay.lru import _core as K
from ztrace.replay.lru import register
from ztrace.replay.lru._base import ZswapDesign

K_ZSPAGES_WB = K.K_EXTRA0
#: 6.2 zs_zpool_shrink: zs_reclaim_page(pool, 8)
RECLAIM_RETRIES = 8


class ZspageLruState(K.LruStateType):
    """numba state type of ``zspage-lru``: list nodes are zspage ids; each zspage keeps its
    objects' pages in a member list (z_head / m_next / m_prev)."""


_T = K.state_type(ZspageLruState)


@njit(cache=True)
def _member_push(st, z, p):  # type: ignore[no-untyped-def]
    """Put entry p at the front of zspage z's member list."""
    h = st.z_head[z]
    st.m_prev[p] = -1
    st.m_next[p] = h
    if h >= 0:
        st.m_prev[h] = p
    st.z_head[z] = p
    st.z_count[z] += 1


@K.hook(ZspageLruState, "lru_add")
@njit(cache=True)
def _lru_add(st, p):  # type: ignore[no-untyped-def]
    z = K.zspage_of(st, st.e_handle[p])
    st.e_zp[p] = z
    _member_push(st, z, p)
    K.ll_push_new(st, z)  # move_to_front(pool, zspage): list_add at the head


@K.hook(ZspageLruState, "lru_del")
@njit(cache=True)
def _lru_del(st, p):  # type: ignore[no-untyped-def]
    z = st.e_zp[p]
    if z < 0:  # same-filled entry: no zspage
        return
    st.e_zp[p] = -1
    pv = st.m_prev[p]
    nx = st.m_next[p]
    if pv >= 0:
        st.m_next[pv] = nx
    else:
        st.z_head[z] = nx
    if nx >= 0:
        st.m_prev[nx] = pv
    st.z_count[z] -= 1
    if st.z_count[z] == 0:  # the zspage is freed with its last object (free_zspage)
        K.ll_unlink(st, z)


@njit(cache=True)
def _try_zspage(st, z):  # type: ignore[no-untyped-def]
    """One zs_reclaim_page() attempt on zspage z (off the LRU): write back its objects in
    address order up to the first one whose page is in the swap cache; True if all went."""
    n = st.z_count[z]
    victims = np.empty(n, dtype=np.int64)
    seqs = np.empty(n, dtype=np.int64)
    slots = np.empty(n, dtype=np.int64)
    p = st.z_head[z]
    for k in range(n):
        victims[k] = p
        seqs[k] = st.e_seq[p]
        slots[k] = K.slot_of(st, st.e_handle[p])
        p = st.m_next[p]
    # -EEXIST: the first object (address order) whose page is in the swap cache stops it
    stop = np.int64(1) << np.int64(62)
    for k in range(n):
        if st.e_loaded[victims[k]] and slots[k] < stop:
            stop = slots[k]
    go = slots < stop
    victims = victims[np.argsort(seqs)]
    go = go[np.argsort(seqs)]
    st.z_head[z] = -1
    st.z_count[z] = 0
    # the written objects leave zswap in one operation: release them before any disk write
    # is judged, so an object is not counted against its own zspage-mates
    for k in range(n):
        v = victims[k]
        if go[k]:
            st.e_zp[v] = -1
            K.free_entry(st, v)
        else:  # stays: back on the zspage's member list
            _member_push(st, z, v)
    for k in range(n):
        if go[k]:
            K.to_disk(st, victims[k])
    return st.z_count[z] == 0


@K.hook(ZspageLruState, "evict_one")
@njit(cache=True)
def _reclaim_zspage(st):  # type: ignore[no-untyped-def]
    """zs_zpool_shrink → zs_reclaim_page(pool, 8): write back the tail zspage; on an -EEXIST
    put it back at the head and try the next tail. The worker is the base's (one call per run,
    ``_core.shrink_once``, which counts ``reject_reclaim_fail``)."""
    for _ in range(RECLAIM_RETRIES):
        z = K.oldest(st, 0)
        if z < 0:
            return False  # -EINVAL: empty LRU
        K.ll_unlink(st, z)
        if _try_zspage(st, z):
            st.c[K_ZSPAGES_WB] += 1
            return True
        K.ll_push_new(st, z)  # putback_zspage + list_add(&zspage->lru, &pool->lru)
    return False  # -EAGAIN


class ZspageLru(ZswapDesign):
    """6.2–6.4: LRU of zspages; writeback evicts every object of the tail zspage."""

    NAME = "zspage-lru"
    ERA = "6.2"
    LIMITS = "legacy"
    HEADER = 8  # sizeof(struct zswap_header)
    PARAMS = {}
    DEFAULTS = {"exclusive_loads": False, "store_as_is": False}
    EXTRA_COUNTERS = ("zspages_written_back",)
    STATE = _T


register(ZspageLru, "6.2", "6.3", "6.4", "zsmalloc-lru", rank=20)
