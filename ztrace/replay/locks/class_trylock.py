"""``class-6.15``: the per-class design of ≥6.15, whose zspage-lock writers only *try* it.

v6.15's "zsmalloc: make zspage lock preemptible" (Sergey Senozhatsky) turned
``zspage->lock`` from an rwlock_t into an atomic counter that a reader may hold while it
sleeps (zram decompresses under it: zs_obj_read_begin() .. zs_obj_read_end()). Its writers
could then no longer spin for it, so both *try* it: __zs_compact() stops compacting the
class when ``zspage_write_trylock(src_zspage)`` fails, and zs_page_migrate() returns
-EINVAL (the migration core retries later). Readers are unchanged: they take the zspage
lock under ``pool->lock`` (read), which a writer holds for writing while it holds the
zspage, so they never wait for it.

The pool and class locks are the ``class`` design's (:mod:`ztrace.replay.locks.classlock`,
the same kernel citations); the only difference is that no writer waits for a zspage's
readers (``zspage_trylock``). What a failed trylock does to the *allocator* (a compaction
that stops early, a migration that is retried) is not replayed: the pool model compacts as
the trace's zs_compact did, before the locks are replayed. Up to 6.14 use ``class``.
"""

from __future__ import annotations

from ztrace.replay.locks import LockDesign, design, no_param, register, zspage_trylock
from ztrace.replay.locks.classlock import CLASS_STEPS, class_locks

CLASS_TRYLOCK_STEPS = zspage_trylock(CLASS_STEPS)


@register("class-6.15", "class-trylock", "6.15", rank=70)
def make(param: int | None, n_classes: int) -> LockDesign:
    """The ≥6.15 per-class design; takes no parameter."""
    no_param("class-6.15", param)
    description = "per-class spinlock + pool rwlock, zspage lock tried (>=6.15)"
    return design(CLASS_TRYLOCK_STEPS, "class-6.15", description, **class_locks(n_classes))
