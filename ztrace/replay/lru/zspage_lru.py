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
shrinker may run ``zs_compact`` under memory pressure, moving objects between zspages) and
eviction failures (``zs_reclaim_page`` puts a zspage back at the head when an object's page is
in the swap cache, then retries up to 8 times).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, ClassVar

from ztrace.replay.lru._base import Entry, Param, ZswapDesign


class ZspageLru(ZswapDesign):
    """6.2–6.4: LRU of zspages; writeback evicts every object of the tail zspage."""

    NAME: ClassVar[str] = "zspage-lru"
    ERA: ClassVar[str] = "6.2"
    LIMITS: ClassVar[str] = "legacy"
    HEADER: ClassVar[int] = 8  # sizeof(struct zswap_header)
    PARAMS: ClassVar[dict[str, Param]] = {}
    DEFAULTS: ClassVar[dict[str, Any]] = {"exclusive_loads": False, "store_as_is": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # zspage id -> pages of its live objects; first = LRU tail (oldest)
        self.lru: OrderedDict[int, dict[int, Entry]] = OrderedDict()
        self._zp: dict[int, int] = {}  # page -> zspage id
        self.c["zspages_written_back"] = 0

    def _lru_add(self, e: Entry) -> None:
        z = self.pool.zspage_of(e.handle)
        self._zp[e.page] = z
        objs = self.lru.get(z)
        if objs is None:
            objs = self.lru[z] = {}
        objs[e.page] = e
        self.lru.move_to_end(z)  # move_to_front(pool, zspage): list_add at the head

    def _lru_del(self, e: Entry) -> None:
        z = self._zp.pop(e.page, None)
        if z is None:  # same-filled entry: no zspage
            return
        objs = self.lru[z]
        del objs[e.page]
        if not objs:  # the zspage is freed with its last object (free_zspage: list_del)
            del self.lru[z]

    def _reclaim_zspage(self) -> bool:
        """zs_reclaim_page(): write back every object of the tail zspage."""
        if not self.lru:
            return False
        _, objs = self.lru.popitem(last=False)
        victims = sorted(objs.values(), key=lambda x: x.seq)
        # all objects leave zswap in one operation: release them before any disk write is
        # judged, so an object is not counted against its own zspage-mates
        for e in victims:
            del self.entries[e.page]
            del self._zp[e.page]
            self._free(e)
        for e in victims:
            self.on_disk.add(e.page)
            self.c["written_back_pages"] += 1
            self.rec.writeback(e.clen)
            if not e.loaded:
                self.rec.disk_write(e.seq, "writeback")
        self.c["zspages_written_back"] += 1
        return True

    def _evict_one(self) -> bool:
        return self._reclaim_zspage()

    def _worker(self) -> Iterator[None]:
        # one zspage per run: zpool_shrink(pool->zpool, 1, NULL)
        if not self._reclaim_zspage():
            self.c["reject_reclaim_fail"] += 1
        yield


DESIGN = ZspageLru
