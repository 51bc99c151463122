"""``class``: per-class spinlock plus a pool-wide rwlock (5.17–6.1 and 6.11–6.14).

Kernel locking this design replays (mm/zsmalloc.c):

* **zs_malloc()** takes only ``class->lock`` (``spin_lock(&class->lock)``, from 6.13 spelled
  ``size_class_lock(class)``) around ``find_get_zspage()`` + ``obj_malloc()``. When no zspage
  has a free slot it *drops* the class lock, calls ``alloc_zspage()`` unlocked (page
  allocation), and re-takes the class lock to insert the zspage: op ``malloc_grow``. No pool
  lock: checked in "mm/zsmalloc: change back to per-size_class lock" (Chengming Zhou, v6.11),
  whose zs_malloc() hunk only swaps ``pool->lock`` for ``class->lock``.
* **zs_free()** ``read_lock(&pool->lock)`` (≤6.1: ``pool->migrate_lock``) to turn the handle
  into a zspage safely against migration, then ``spin_lock(&class->lock)``, then
  ``read_unlock`` of the pool lock: a hand-over (``U_NEXT``).
* **zs_map_object()** (≤6.14) / **zs_obj_write()** (≥6.15, "zsmalloc: introduce new object
  mapping API"): ``read_lock(&pool->lock)``, look up the zspage, take the zspage lock for
  reading (``migrate_read_lock()``; ≥6.15 ``zspage_read_lock()``), ``read_unlock``; the copy
  runs under the zspage read lock only (``U_ZREAD``). A reader never waits for the zspage
  lock: its only writers (migration, compaction) take it while holding ``pool->lock`` for
  writing. A writer does wait for it: ``migrate_write_lock()`` is ``write_lock(&zspage->lock)``
  (6.1, 6.12 mm/zsmalloc.c), so a compactor or migration of a zspage that readers are
  copying from spins, pool and class lock held, until the copies end (``U_ZWRITE``). From
  v6.15 ("zsmalloc: make zspage lock preemptible") the writers only *try* it: that kernel
  is the design ``class-6.15`` (:mod:`ztrace.replay.locks.class_trylock`).
* **__zs_compact()** (6.12, read in linux-source-6.12 6.12.117) ``write_lock(&pool->migrate_lock)``
  (≥6.14 spelled ``pool->lock``) then ``spin_lock(&class->lock)`` per class; after each
  source zspage it drops both (``cond_resched()``) when the destination is full or
  ``rwlock_is_contended(&pool->migrate_lock)``. Replayed per source zspage (op
  ``compact_src``, :mod:`ztrace.replay.compaction`): the pool write lock, then the class
  lock, both released after the zspage, so a waiter queued meanwhile goes first. The
  kernel's test watches only the *pool* lock: a waiter on the class lock alone (zs_malloc)
  is let through by the model at every source zspage, by the kernel only when the
  destination fills or a pool-lock waiter forces the drop (docs/replay-model.md).
  A zs_compact that migrates nothing stays one pool write hold (op ``compact``).
* **zs_page_migrate()** ``write_lock(&pool->lock)``, ``spin_lock(&class->lock)``, zspage write
  lock; both pool and class lock are held to the end (``U_END`` outer lock). Its zspage is
  not known to the replay (the event names a page, not a model zspage), so it never waits
  for readers; a compaction's source zspage is (``ztrace.model.zsmalloc`` ``CL_SRC``).
  6.12's __zs_compact() write-locks the source only; 6.1's also the destination
  (``migrate_write_lock_nested(dst_zspage)``), not replayed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ztrace.replay.locks import (
    H_ALLOCZS,
    H_LOOKUP,
    H_OP,
    H_WRITE,
    M_READ,
    M_SPIN,
    M_WRITE,
    OP_COMPACT,
    OP_COMPACT_SRC,
    OP_FREE,
    OP_MALLOC,
    OP_MALLOC_GROW,
    OP_MIGRATE,
    OP_READ,
    OP_WRITE,
    SP_POOL,
    SP_SUB,
    U_END,
    U_NEXT,
    U_OWN,
    U_ZWRITE,
    LockDesign,
    Step,
    design,
    grow_steps,
    lookup_then,
    no_param,
    register,
)

#: The per-class table shared by ``class``, ``striped`` and ``magazine`` (sub-lock = SP_SUB).
CLASS_STEPS: dict[int, list[Step]] = {
    OP_MALLOC: [(SP_SUB, M_SPIN, H_OP, U_OWN)],
    OP_MALLOC_GROW: grow_steps(SP_SUB),
    OP_FREE: [(SP_POOL, M_READ, H_LOOKUP, U_NEXT), (SP_SUB, M_SPIN, H_OP, U_OWN)],
    OP_WRITE: lookup_then(M_READ, H_WRITE),
    OP_COMPACT: [(SP_POOL, M_WRITE, H_OP, U_OWN)],
    # one source zspage of __zs_compact(): write_lock(pool) + spin_lock(class), both held
    # to the end of the zspage. The pool step holds cost2, which ingest leaves 0 for
    # compaction phases: the class lock is requested right after the pool grant.
    # migrate_write_lock(src_zspage) under both: the copy waits for the source's readers
    OP_COMPACT_SRC: [(SP_POOL, M_WRITE, H_ALLOCZS, U_END), (SP_SUB, M_SPIN, H_OP, U_ZWRITE)],
    OP_MIGRATE: [(SP_POOL, M_WRITE, H_LOOKUP, U_END), (SP_SUB, M_SPIN, H_OP, U_ZWRITE)],
    # zs_map_object() (<=6.14): read_lock(&pool->migrate_lock) (6.11+: pool->lock),
    # obj -> zspage, migrate_read_lock(zspage), read_unlock; 6.15+ zs_obj_read_begin():
    # the same with zspage_read_lock(). The copy runs under the zspage lock only.
    OP_READ: lookup_then(M_READ, H_OP),
}


def class_locks(n_classes: int) -> dict[str, Any]:
    """The lock layout of ``class`` (shared by ``magazine``): a spinlock per class behind the
    pool rwlock."""
    return {
        "n_sub": n_classes,
        "sub_of_class": np.arange(n_classes, dtype=np.int64),
        "pool_lock_type": "rwlock",
        "sub_label": "class",
    }


@register("class", "per-class", "class-lock", "6.11", rank=10)
def make(param: int | None, n_classes: int) -> LockDesign:
    """The per-class design; takes no parameter."""
    no_param("class", param)
    description = "per-class spinlock + pool rwlock (5.17-6.1, 6.11-6.14)"
    return design(CLASS_STEPS, "class", description, **class_locks(n_classes))
