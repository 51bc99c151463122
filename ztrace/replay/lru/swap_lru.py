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

from numba import njit

from ztrace.replay.lru import _core as K
from ztrace.replay.lru import register
from ztrace.replay.lru.entry_lru import EntryLru, EntryLruState


class SwapLruState(EntryLruState):
    """numba state type of ``swap-lru``: entry-lru's list, loaded copies go to the cold end."""


_T = K.state_type(SwapLruState)


@K.hook(SwapLruState, "lru_loaded")
@njit(cache=True)
def _lru_loaded(st, p):  # type: ignore[no-untyped-def]
    if st.l_on[p]:
        K.ll_push_old(st, p)


class SwapLru(EntryLru):
    """Unified swap LRU: write back the coldest entry instead of rejecting."""

    NAME = "swap-lru"
    ERA = "6.18"
    LIMITS = "v6.10"
    PARAMS = {}
    DEFAULTS = {"exclusive_loads": True, "store_as_is": True}
    ALWAYS_SYNC = True  # by construction: make room, never reject on the limit
    STATE = _T


register(SwapLru, "unified", "unified-lru", "global-lru", rank=50)
