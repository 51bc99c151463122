"""``optimal``: an offline reference that knows the future (Belady's MIN for the zswap tier).

Not a kernel and not implementable online: the floor the other designs are measured against
(``optimal_gap``). The replay knows, for every swapped-out page, when it will be faulted next
(``workload.Prepared.nf``: the page's next load, or *never* when it is freed or stored again
first). With exclusive loads a page can only be saved from a disk fault by staying in zswap
from its store to its fault, so the tier's problem is: keep as many store→fault intervals as
fit. The rule:

* a store that fits is kept;
* when it does not fit, write back the entry whose next fault is the **farthest** (never
  first), repeatedly, until the new page fits — unless the new page's own next fault is at
  least as far as every held entry's: then the new page goes to disk instead (MIN *with
  bypass*; a plain cache must admit it, a swap tier need not);
* incompressible pages are stored as-is (a page of pool space), so no fault is lost to the
  compressor; same-filled pages cost no space and are always kept.

**Page-count capacity** (every entry the same size, e.g. ``pool=bytes`` with equal lengths):
this is Belady's MIN and exactly optimal — the greedy "drop the interval that ends last" is
optimal for keeping the most intervals under a count limit. ``tests/test_lru_optimal.py``
checks it against libCacheSim's Belady on the same stream. **Byte capacity** (compressed
lengths differ): the same farthest-first rule, evicting until the new page's bytes fit in
limit × PAGE_SIZE. Its pool is **ideal packing** by default (``pool=bytes``): no size-class
rounding, no zspage fragmentation, so it holds at least what any design holds in the modelled
zsmalloc pool at the same limit; that is what makes it the floor ``optimal_gap`` is measured
from. (``pool=zsmalloc`` is available but is no floor: there, writing back an object frees a
page only when its zspage empties, and a kernel design with hysteresis can beat it.) The rule
is size-aware only through the fit test: with sizes the true optimum is a knapsack problem,
so at byte capacity ``optimal`` is a strong offline reference rather than a proven floor;
libCacheSim's BeladySize (evict the largest size × distance) is the peer it is compared with.

Its ``avoidable_disk_faults`` are 0 by construction: every page it sends to disk had the
farthest next fault at that instant.
"""

from __future__ import annotations

from numba import njit

from ztrace.replay.lru import _core as K
from ztrace.replay.lru import register
from ztrace.replay.lru._base import Param, ZswapDesign, p_choice


class OptimalState(K.LruStateType):
    """numba state type of ``optimal``: no list; the core's next-fault heap is its order."""


_T = K.state_type(OptimalState)


@K.hook(OptimalState, "evict_one")
@njit(cache=True)
def _evict_one(st):  # type: ignore[no-untyped-def]
    q = K.heap_top(st)
    if q < 0 or st.e_nf[q] <= st.sc[K.S_IN_NF]:
        return False  # bypass: the incoming page is faulted last (or nothing to evict)
    K.heap_pop(st)
    K.writeback(st, q)
    return True


class Optimal(ZswapDesign):
    """Offline Belady MIN with bypass: write back the entry faulted farthest in the future."""

    NAME = "optimal"
    ERA = "6.18"
    LIMITS = "v6.10"
    PARAMS = {
        "pool": Param(
            p_choice("zsmalloc", "bytes"),
            "bytes",
            "`bytes` (default): ideal packing, the floor; `zsmalloc`: the modelled pool, where "
            "freeing an object frees a page only when its zspage empties",
        ),
    }
    DEFAULTS = {"exclusive_loads": True, "store_as_is": True}
    ALWAYS_SYNC = True
    STATE = _T


register(Optimal, "belady", "min", "opt", rank=60)
