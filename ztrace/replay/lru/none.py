"""``none``: zswap on zsmalloc up to 6.1 — the pool cannot evict anything.

6.1 zswap_frontswap_store(): when ``zswap_is_full()`` it counts ``pool_limit_hit``, sets
``zswap_pool_reached_full``, queues ``shrink_work`` and rejects the page; while
``reached_full`` and ``!zswap_can_accept()`` it rejects without queueing. 6.1
shrink_worker() calls ``zpool_shrink(pool->zpool, 1, NULL)``, and zsmalloc's zpool driver has
no ``.shrink`` before 6.2 ("zsmalloc: Implement writeback mechanism for zsmalloc" added
``zs_zpool_shrink``), so ``zpool_shrink`` returns -EINVAL and the worker counts
``reject_reclaim_fail``. Nothing is ever written back: once full, new pages go to disk while
the old ones stay in zswap until they are faulted in or freed. Loads are not exclusive in 6.1
(frontswap keeps the entry until the swap slot is freed).
"""

from __future__ import annotations

from ztrace.replay.lru import _core as K
from ztrace.replay.lru import register
from ztrace.replay.lru._base import ZswapDesign


class NoLruState(K.LruStateType):
    """numba state type of ``none`` (no LRU: the base hooks; the base worker's zpool_shrink,
    ``evict_one``, fails)."""


_T = K.state_type(NoLruState)


class NoLru(ZswapDesign):
    """6.1: reject when full, never write back (the base's limits, queueing and worker are
    6.1's; no parameters of its own)."""

    NAME = "none"
    ERA = "6.1"
    DEFAULTS = {"exclusive_loads": False, "store_as_is": False}
    STATE = _T


register(NoLru, "6.1", "no-lru", "reject", rank=10)
