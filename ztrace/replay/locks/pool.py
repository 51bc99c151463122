"""``pool``: one pool-wide spinlock for everything (6.2–6.10).

Commit c0547d0b6a4b "zsmalloc: consolidate zs_pool's migrate_lock and size_class's locks"
(Nhat Pham, v6.2; prepared writeback from zsmalloc's own LRU) replaced ``class->lock`` and
``pool->migrate_lock`` by one ``spinlock_t pool->lock``. Until v6.11 reverted it ("mm/zsmalloc:
change back to per-size_class lock"; the revert's hunks show the 6.10 code), every entry
point took it:

* zs_malloc(): ``spin_lock(&pool->lock)`` around find_get_zspage/obj_malloc, dropped around
  alloc_zspage() and re-taken to insert the new zspage (op ``malloc_grow``);
* zs_free(): ``spin_lock(&pool->lock)`` for the handle lookup *and* the free;
* zs_map_object(): ``spin_lock(&pool->lock)`` for the lookup until migrate_read_lock(zspage);
* zs_page_migrate() and __zs_compact(): ``spin_lock(&pool->lock)``. __zs_compact() drops
  it between source zspages: Debian 6.1 (linux-source-6.1, 6.1.192, which carries the
  consolidation) and 6.2-6.3 unconditionally after every source zspage (the inner
  ``spin_is_contended(&pool->lock)`` test there, when a destination fills, ends the class
  early: not modelled, it would change the pages); 6.4-6.10 when the destination is full or
  ``spin_is_contended(&pool->lock)``. Every zsmalloc op waits on this one lock, so "a waiter
  goes first at the next source zspage" is what both do; op ``compact_src`` replays one
  source zspage as one hold (:mod:`ztrace.replay.compaction`). Both write-lock the zspage
  (``migrate_write_lock()``: ``write_lock(&zspage->lock)``) under the pool lock, so they
  first wait for the readers copying from it (``U_ZWRITE``; see ``U_ZREAD``).

6.1 stable is reported to have picked the consolidation up in 6.1.47; not re-verified
here, so the docs say "reported".
"""

from __future__ import annotations

from ztrace.replay.locks import (
    H_OP,
    H_WRITE,
    M_SPIN,
    OP_COMPACT,
    OP_COMPACT_SRC,
    OP_FREE,
    OP_MALLOC,
    OP_MALLOC_GROW,
    OP_MIGRATE,
    OP_READ,
    OP_WRITE,
    SP_POOL,
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

POOL_STEPS: dict[int, list[Step]] = {
    OP_MALLOC: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    OP_MALLOC_GROW: grow_steps(SP_POOL),
    OP_FREE: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    OP_WRITE: lookup_then(M_SPIN, H_WRITE),
    OP_COMPACT: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    # one source zspage of __zs_compact: migrate_write_lock(src_zspage) under the pool lock
    # waits for the source's readers (Debian 6.1 mm/zsmalloc.c: __zs_compact, zs_page_migrate)
    OP_COMPACT_SRC: [(SP_POOL, M_SPIN, H_OP, U_ZWRITE)],
    OP_MIGRATE: [(SP_POOL, M_SPIN, H_OP, U_ZWRITE)],
    # 6.2-6.10 zs_map_object(): spin_lock(&pool->lock); obj -> zspage;
    # migrate_read_lock(zspage); spin_unlock(&pool->lock): the copy runs under the zspage
    # read lock only (U_ZREAD)
    OP_READ: lookup_then(M_SPIN, H_OP),
}


@register("pool", "pool-lock", "global", "6.2", rank=20)
def make(param: int | None, n_classes: int) -> LockDesign:
    """The single pool spinlock design; takes no parameter."""
    no_param("pool", param, " (did you mean `pools:N`?)")
    description = "one pool spinlock (6.2-6.10)"
    return design(POOL_STEPS, "pool", description, pool_lock_type="spinlock")
