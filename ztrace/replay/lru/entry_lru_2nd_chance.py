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

from collections.abc import Iterator
from typing import Any, ClassVar

from ztrace.replay.lru._base import Param, p_int
from ztrace.replay.lru.entry_lru import EntryLru

#: include/linux/swap.h / mm/internal.h MAX_RECLAIM_RETRIES
MAX_RECLAIM_RETRIES = 16


class EntryLru2ndChance(EntryLru):
    """6.12+: entry LRU whose walk rotates referenced entries once."""

    NAME: ClassVar[str] = "entry-lru-2nd-chance"
    ERA: ClassVar[str] = "6.12"
    LIMITS: ClassVar[str] = "v6.10"
    QUEUE_ON: ClassVar[str] = "any_reject"
    PARAMS: ClassVar[dict[str, Param]] = {
        **EntryLru.PARAMS,
        "max_failures": Param(
            p_int(1),
            MAX_RECLAIM_RETRIES,
            "shrink_worker gives up after this many walks that wrote nothing back",
        ),
        "shrinker_walk": Param(
            p_int(0),
            0,
            "approximate memory-pressure shrinker: LRU steps after each store (0 = off)",
        ),
    }
    DEFAULTS: ClassVar[dict[str, Any]] = {"exclusive_loads": True, "store_as_is": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.c["shrink_rotations"] = 0
        # 6.12 does not count these in reject_reclaim_fail (the guest's counter stays 0)
        self.c["shrink_gave_up"] = 0

    def _step(self) -> int:
        """One shrink_memcg_cb() on the oldest entry: 1 written back, 0 rotated, -1 empty."""
        if not self.lru:
            return -1
        page = next(iter(self.lru))
        e = self.lru[page]
        if e.referenced:
            e.referenced = False
            self.lru.move_to_end(page)  # LRU_ROTATE: list_move_tail → newest end
            self.c["shrink_rotations"] += 1
            return 0
        del self.lru[page]
        self.writeback(e)
        return 1

    def _evict_one(self) -> bool:
        # sync mode: CLOCK — rotate referenced entries until one is written back
        while True:
            r = self._step()
            if r != 0:
                return r == 1

    def _worker(self) -> Iterator[None]:
        failures = 0
        max_failures = int(self.params["max_failures"])
        while True:  # do { shrink_memcg() } while (zswap_total_pages() > thr)
            r = self._step()
            if r < 0:
                self.c["shrink_gave_up"] += 1
                return
            if r == 0:
                failures += 1
                if failures == max_failures:
                    self.c["shrink_gave_up"] += 1
                    return
            if not self.pool.pages() > self.thr_pages:
                return
            yield

    def store(self, ts: int, page: int, clen: int) -> bool:
        ok = super().store(ts, page, clen)
        for _ in range(int(self.params["shrinker_walk"])):
            if self._step() < 0:
                break
        return ok


DESIGN = EntryLru2ndChance
