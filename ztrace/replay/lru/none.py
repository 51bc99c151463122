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

from collections.abc import Iterator
from typing import Any, ClassVar

from ztrace.replay.lru._base import Param, ZswapDesign


class NoLru(ZswapDesign):
    """6.1: reject when full, never write back."""

    NAME: ClassVar[str] = "none"
    ERA: ClassVar[str] = "6.1"
    LIMITS: ClassVar[str] = "legacy"
    PARAMS: ClassVar[dict[str, Param]] = {}
    DEFAULTS: ClassVar[dict[str, Any]] = {"exclusive_loads": False, "store_as_is": False}

    def _worker(self) -> Iterator[None]:
        # queued only on the zswap_is_full() path (QUEUE_ON = "full"), and always fails
        self.c["reject_reclaim_fail"] += 1
        yield


DESIGN = NoLru
