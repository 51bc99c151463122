"""``pools:N``: N independent zsmalloc pools, each with the 6.2–6.10 pool spinlock.

zswap did this from v6.6 ("mm: zswap: multiple zpools support", ``ZSWAP_NR_ZPOOLS`` = 32)
until v6.11 ("mm/zswap: use only one pool in zswap", merged with the return of per-class
locks): ``zswap_find_zpool()`` picked ``entry->pool->zpools[hash_ptr(entry,
ilog2(ZSWAP_NR_ZPOOLS))]``, i.e. a hash of the zswap entry's address, fixed for the entry's
life. The replay has no entry address, so it hashes the object's **handle** with a seeded
splitmix64 (:func:`pool_of`); like the entry pointer it is fixed from malloc to free and
spreads objects uniformly. Each pool has its own allocator model, so memory differs: every
pool keeps its own partly-filled zspages per class (``pages_used`` grows with N).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ztrace.replay.hashing import splitmix64_array
from ztrace.replay.locks import LockDesign, design, positive_param, register
from ztrace.replay.locks.pool import POOL_STEPS

#: mixes the replay seed into the handle before hashing (any odd constants will do; these
#: keep results identical to earlier releases)
_SEED_MUL, _SEED_ADD = 0x9E3779B97F4A7C15, 0x632BE59BD9B4E019


def pool_of(handle: np.ndarray, seed: int, n: int) -> np.ndarray:
    """Pool of each object (int64 handles): seeded splitmix64 of the handle, mod ``n``."""
    mix = np.uint64((seed * _SEED_MUL + _SEED_ADD) % 2**64)
    return (splitmix64_array(handle.view(np.uint64) ^ mix) % np.uint64(n)).astype(np.int64)


def pools_layout(n: int) -> dict[str, Any]:
    """The pool layout of ``pools:N`` (shared by ``class-pools:N``): ``n`` pools, each object
    in the one :func:`pool_of` hashes its handle to. Designs with this layout share one
    allocator model (equal ``allocator_key``), so they must choose pools the same way."""
    return {
        "n_pools": n,
        "params": {"n": n},
        "pool_of": lambda handle, seed: pool_of(handle, seed, n),
    }


@register("pools", "multi-pool", "zswap-pools", rank=30)
def make(param: int | None, n_classes: int) -> LockDesign:
    """N pools (default 32, as zswap 6.6–6.10)."""
    n = positive_param("pools", param, 32, 1, 4096)
    return design(
        POOL_STEPS,
        f"pools:{n}",
        f"{n} independent pools, pool spinlock each (zswap 6.6-6.10 used 32)",
        pool_lock_type="spinlock",
        **pools_layout(n),
    )
