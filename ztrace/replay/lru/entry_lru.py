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

``shrink=sync`` writes back *before* storing instead of rejecting (no hysteresis): the
eviction order of a plain LRU cache, which tests compare with libCacheSim's LRU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, ClassVar

from ztrace.replay.lru._base import Entry, Param, ZswapDesign, p_choice


class EntryLru(ZswapDesign):
    """6.5–6.11: one LRU of zswap entries; writeback from the tail."""

    NAME: ClassVar[str] = "entry-lru"
    ERA: ClassVar[str] = "6.8"
    LIMITS: ClassVar[str] = "legacy"
    QUEUE_ON: ClassVar[str] = "limit"
    PARAMS: ClassVar[dict[str, Param]] = {
        "shrink": Param(
            p_choice("async", "sync"),
            "async",
            "`async`: reject at the limit, then the shrink worker writes back down to the "
            "accept threshold (kernel); `sync`: write back the tail before storing, never "
            "reject on the limit",
        ),
    }
    DEFAULTS: ClassVar[dict[str, Any]] = {"exclusive_loads": True, "store_as_is": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # first = tail (oldest), last = head (newest): popitem(last=False) is the tail
        self.lru: OrderedDict[int, Entry] = OrderedDict()

    def _lru_add(self, e: Entry) -> None:
        self.lru[e.page] = e

    def _lru_del(self, e: Entry) -> None:
        self.lru.pop(e.page, None)

    def _lru_loaded(self, e: Entry) -> None:
        if e.page in self.lru:  # same-filled entries are not on the LRU
            self.lru.move_to_end(e.page)

    def _evict_one(self) -> bool:
        if not self.lru:
            return False
        _, e = self.lru.popitem(last=False)
        self.writeback(e)
        return True

    def _worker(self) -> Iterator[None]:
        # shrink_worker: do { zswap_reclaim_entry() } while (!zswap_can_accept());
        # queued on both reject paths since 6.5 (`goto shrink`)
        while True:
            if not self._evict_one():
                self.c["reject_reclaim_fail"] += 1  # -EINVAL: empty LRU
                return
            if self.thr_pages > self.pool.pages():
                return
            yield


DESIGN = EntryLru
