"""``striped:N``: the per-class design with the class locks folded onto N stripes.

Class ``c`` uses stripe ``c mod N``. Neighbouring classes hold objects of neighbouring
sizes, and compressed sizes cluster, so the hot classes of a workload tend to be adjacent:
``mod`` puts adjacent classes on different stripes. ``striped:255`` is ``class``;
``striped:1`` is one spinlock for malloc/free behind the pool rwlock. It answers "how many
locks do we actually need?" (memory of 255 spinlocks vs contention).
"""

from __future__ import annotations

import numpy as np

from ztrace.replay.locks import LockDesign, design, positive_param, register
from ztrace.replay.locks.classlock import CLASS_STEPS


@register("striped", "stripes", rank=40)
def make(param: int | None, n_classes: int) -> LockDesign:
    """N stripes (default 8)."""
    n = positive_param("striped", param, 8, 1, 4096)
    return design(
        CLASS_STEPS,
        f"striped:{n}",
        f"classes hashed (index mod {n}) onto {n} spinlocks + pool rwlock",
        n_sub=n,
        sub_of_class=np.arange(n_classes, dtype=np.int64) % n,
        pool_lock_type="rwlock",
        sub_label="stripe",
        params={"n": n},
    )
