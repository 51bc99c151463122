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
* zs_page_migrate() and __zs_compact(): ``spin_lock(&pool->lock)``.

6.1 stable is reported to have picked the consolidation up in 6.1.47; not re-verified
here, so the docs say "reported".
"""

from __future__ import annotations

from ztrace.errors import ConfigError
from ztrace.replay.locks import (
    H_ALLOCZS,
    H_LOOKUP,
    H_OP,
    H_WRITE,
    M_SPIN,
    OP_COMPACT,
    OP_FREE,
    OP_MALLOC,
    OP_MALLOC_GROW,
    OP_MIGRATE,
    OP_READ,
    OP_WRITE,
    SP_NONE,
    SP_POOL,
    U_OWN,
    LockDesign,
    Step,
    compile_steps,
    register,
)

POOL_STEPS: dict[int, list[Step]] = {
    OP_MALLOC: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    OP_MALLOC_GROW: [
        (SP_POOL, M_SPIN, H_LOOKUP, U_OWN),
        (SP_NONE, 0, H_ALLOCZS, U_OWN),
        (SP_POOL, M_SPIN, H_OP, U_OWN),
    ],
    OP_FREE: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    OP_WRITE: [(SP_POOL, M_SPIN, H_LOOKUP, U_OWN), (SP_NONE, 0, H_WRITE, U_OWN)],
    OP_COMPACT: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    OP_MIGRATE: [(SP_POOL, M_SPIN, H_OP, U_OWN)],
    # 6.2-6.10 zs_map_object(): spin_lock(&pool->lock); obj -> zspage;
    # migrate_read_lock(zspage); spin_unlock(&pool->lock): the copy runs under the zspage
    # lock only (the zspage lock itself is not simulated, see the module docstring)
    OP_READ: [(SP_POOL, M_SPIN, H_LOOKUP, U_OWN), (SP_NONE, 0, H_OP, U_OWN)],
}


@register("pool", "pool-lock", "global", "6.2")
def make(param: int | None, n_classes: int) -> LockDesign:
    """The single pool spinlock design; takes no parameter."""
    if param is not None:
        raise ConfigError("lock design `pool` takes no parameter (did you mean `pools:N`?)")
    steps, nsteps = compile_steps(POOL_STEPS)
    return LockDesign(
        name="pool",
        family="pool",
        description="one pool spinlock (6.2-6.10)",
        steps=steps,
        nsteps=nsteps,
        pool_lock_type="spinlock",
    )
