"""``class-pools:N``: N independent pools, each locked like ``class`` (a what-if).

The question behind "mm/zswap: use only one pool in zswap" (Chengming Zhou, v6.11). zswap had
spread its entries over 32 zsmalloc pools since v6.6 ("mm: zswap: multiple zpools support",
``ZSWAP_NR_ZPOOLS`` = 32) because each pool then had one ``pool->lock`` spinlock (6.2–6.10:
design ``pools:32``). The same series brought the per-class locks back ("mm/zsmalloc: change
back to per-size_class lock", v6.11: design ``class``) and went back to one pool, its kernel
build numbers showing one pool with class locks about as fast as 32 pools. No kernel ran
both together; this design does, to ask what 32 pools still buy once class locks exist (a hot
class split N ways; N pool rwlocks for frees, reads, compaction and migration) and what they
cost (every pool keeps its own partly filled zspages).

* Locking inside each pool: the ``class`` table (:data:`~ztrace.replay.locks.classlock.
  CLASS_STEPS`, its kernel citations in ``classlock.py``). 6.12 mm/zsmalloc.c: zs_malloc
  takes only ``spin_lock(&class->lock)``; zs_free ``read_lock(&pool->migrate_lock)`` handed
  over to ``class->lock``; __zs_compact and zs_page_migrate ``write_lock(&pool->migrate_lock)``
  of *their* pool: with N pools a compaction stalls only its own pool's readers.
* Pool choice: exactly ``pools:N``'s, its layout taken whole
  (:func:`~ztrace.replay.locks.pools.pools_layout`; :func:`~ztrace.replay.locks.pools.pool_of`,
  the seeded hash of the handle standing in for 6.6–6.10 zswap_find_zpool()'s
  ``hash_ptr(entry, ilog2(ZSWAP_NR_ZPOOLS))``). So ``class-pools:N`` and ``pools:N`` put every
  object in the same pool and share one allocator model (equal ``allocator_key``): equal
  memory, only the locks differ. ``class-pools:1`` is ``class``.
* What it departs from: 6.12 mm/zswap.c: ``struct zswap_pool`` holds one ``struct zpool
  *zpool`` (zswap_pool_create(): one zpool_create_pool()), and zswap_compress() allocates
  with ``zpool_malloc(entry->pool->zpool, ...)``: one pool.
"""

from __future__ import annotations

from ztrace.replay.locks import LockDesign, design, positive_param, register
from ztrace.replay.locks.classlock import CLASS_STEPS, class_locks
from ztrace.replay.locks.pools import pools_layout


@register("class-pools", "pools-class", "multi-pool-class", rank=60)
def make(param: int | None, n_classes: int) -> LockDesign:
    """N pools (default 32, zswap's 6.6–6.10 count), class locks + pool rwlock in each."""
    n = positive_param("class-pools", param, 32, 1, 4096)
    what = f"{n} independent pools, per-class spinlocks + pool rwlock each"
    return design(
        CLASS_STEPS,
        f"class-pools:{n}",
        f"{what} (what-if: zswap's 6.6-6.10 pools on >=6.11 locks)",
        **class_locks(n_classes),
        **pools_layout(n),
    )
