"""``swap-lru``: one LRU across zswap and the disk swap device (a design, not a kernel).

The swap layer keeps a single recency order over every swapped-out page. A store that zswap
would reject — pool at its limit, or a page that does not compress — is not sent to disk;
instead the *coldest* entry is written back until the new page fits, and an incompressible
page is kept uncompressed (as 6.18 does). So the only way a page reaches disk is by being
the coldest page zswap holds, and no page can land on disk while an older one stays in zswap.
That is a claim; ``metrics.Recorder`` checks it on every disk write rather than assuming it.

With exclusive loads (default) the LRU order is the store order. With ``exclusive_loads=no``
a faulted-in page's clean copy is moved to the cold end: it is the cheapest thing to drop.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ztrace.replay.lru._base import Entry, Param
from ztrace.replay.lru.entry_lru import EntryLru


class SwapLru(EntryLru):
    """Unified swap LRU: write back the coldest entry instead of rejecting."""

    NAME: ClassVar[str] = "swap-lru"
    ERA: ClassVar[str] = "6.18"
    LIMITS: ClassVar[str] = "v6.10"
    PARAMS: ClassVar[dict[str, Param]] = {}
    DEFAULTS: ClassVar[dict[str, Any]] = {"exclusive_loads": True, "store_as_is": True}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync = True  # by construction: make room, never reject on the limit

    def _lru_loaded(self, e: Entry) -> None:
        if e.page in self.lru:
            self.lru.move_to_end(e.page, last=False)


DESIGN = SwapLru
