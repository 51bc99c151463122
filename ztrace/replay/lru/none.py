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

from typing import Any, ClassVar

from numba import njit

from ztrace.replay.lru import _core as K
from ztrace.replay.lru._base import Param, ZswapDesign


class NoLruState(K.LruStateType):
    """numba state type of ``none`` (no LRU: the base hooks)."""


_T = K.state_type(NoLruState)


@K.hook(NoLruState, "worker_step")
@njit(cache=True)
def _worker_step(st):  # type: ignore[no-untyped-def]
    # queued only on the zswap_is_full() path (QUEUE_ON = "full"); zpool_shrink fails
    # (-EINVAL), then the worker returns
    if not K.first_step(st):
        return False
    st.c[K.K_RECLAIM_FAIL] += 1
    return True


class NoLru(ZswapDesign):
    """6.1: reject when full, never write back."""

    NAME: ClassVar[str] = "none"
    ERA: ClassVar[str] = "6.1"
    LIMITS: ClassVar[str] = "legacy"
    PARAMS: ClassVar[dict[str, Param]] = {}
    DEFAULTS: ClassVar[dict[str, Any]] = {"exclusive_loads": False, "store_as_is": False}
    STATE = _T


DESIGN = NoLru
