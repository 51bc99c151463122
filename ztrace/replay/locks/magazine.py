"""``magazine:C``: per-CPU object magazines refilled in batches (no kernel has shipped this).

Idea (after Bonwick's magazine layer in the Solaris/vmem slab allocator, and SLUB's per-CPU
partial slabs): each CPU keeps, per size class, a small stack of up to ``C`` objects that
are already allocated in zspages but not handed out.

* zs_malloc on CPU x, class c: pop from magazine (x, c) with no lock at all (preemption off
  is enough for per-CPU data) -- op ``mag_hit``. If it is empty, take ``class->lock`` once
  and move ``C/2`` objects into it (``mag_refill``; hold = one malloc plus ``C/2 - 1``
  batched obj_malloc steps).
* zs_free on CPU x: push onto magazine (x, c) -- ``mag_free``, no lock. When it is full,
  flush the oldest ``C/2`` back under the pool read lock + class lock (``mag_flush``), like
  zs_free but batched.

Why it might win: a class lock is taken once per ``C/2`` operations instead of once per
operation, so contention on a hot class (where per-class locks cannot help, see the
``hot-class`` synthetic profile) drops by about that factor, and the lock's cache line stops
bouncing between CPUs. Cost: up to ``nr_cpus * classes * C`` objects sit allocated but
unused; the replay's allocator model holds them, so ``pages_used`` shows that price. Handles
are still looked up under the pool rwlock on flush, so migration stays safe; the write after
malloc takes the pool read lock as in ``class``.
"""

from __future__ import annotations

import numpy as np

from ztrace.replay.locks import (
    H_ALLOCZS,
    H_LOOKUP,
    H_MAGHIT,
    H_OP,
    M_READ,
    M_SPIN,
    OP_MAG_FLUSH,
    OP_MAG_FREE,
    OP_MAG_HIT,
    OP_MAG_REFILL,
    SP_NONE,
    SP_POOL,
    SP_SUB,
    U_NEXT,
    U_OWN,
    LockDesign,
    Step,
    positive_param,
    register,
)
from ztrace.replay.locks.classlock import CLASS_STEPS, compile_steps

MAG_STEPS: dict[int, list[Step]] = {
    **CLASS_STEPS,
    OP_MAG_HIT: [(SP_NONE, 0, H_MAGHIT, U_OWN)],
    OP_MAG_FREE: [(SP_NONE, 0, H_MAGHIT, U_OWN)],
    # new zspages for the batch are allocated before taking the lock, as zs_malloc does
    OP_MAG_REFILL: [(SP_NONE, 0, H_ALLOCZS, U_OWN), (SP_SUB, M_SPIN, H_OP, U_OWN)],
    OP_MAG_FLUSH: [(SP_POOL, M_READ, H_LOOKUP, U_NEXT), (SP_SUB, M_SPIN, H_OP, U_OWN)],
}


@register("magazine", "mag", "percpu-magazine")
def make(param: int | None, n_classes: int) -> LockDesign:
    """Magazine capacity C (default 16, even, 2..1024)."""
    c = positive_param("magazine", param, 16, 2, 1024)
    c -= c % 2
    steps, nsteps = compile_steps(MAG_STEPS)
    return LockDesign(
        name=f"magazine:{c}",
        family="magazine",
        description=f"per-CPU magazines of {c} objects per class, batch refill/flush of {c // 2}",
        steps=steps,
        nsteps=nsteps,
        n_sub=n_classes,
        sub_of_class=np.arange(n_classes, dtype=np.int64),
        pool_lock_type="rwlock",
        sub_label="class",
        magazine=c,
        params={"capacity": c},
    )
