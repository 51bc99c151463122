"""Lock attribution: which zsmalloc lock a contention was on, from its kernel stack.

``lock:contention_begin`` gives a lock address and flags, not a name. The stack says who
waited: the first zsmalloc function on it (``zs_malloc``, ``zs_free``, ``__zs_compact``, ...)
and the lock type from the flags (spin vs rwlock read/write) name the lock, using the kernel's
own locking rules:

* >= 6.9: ``zs_malloc`` takes only ``class->lock`` (spinlock); ``zs_free`` takes
  ``pool->lock`` for read (rwlock, migration) then ``class->lock``; compaction and migration
  take ``pool->lock`` for write and class locks.
* 6.1.y (with the consolidation backport) .. 6.8: one spinlock per pool for everything.
* < 6.15 zspage locks are rwlocks: taken for read in the map functions, for write in
  compaction and migration (``zspage``). Below 6.9 every rwlock zsmalloc takes is one; from
  6.9 an rwlock wait is the pool's (``pool->migrate_lock``) unless a ``migrate_read_lock``
  frame says otherwise, since a zspage lock's writer holds the pool lock throughout.

Anything without a zsmalloc function on the stack is ``other`` (zram slot locks, scheduler
locks, ...). So is a lock that a function zsmalloc *called* took: the first frame above the
lock primitives must be zsmalloc's own. Session 29: a 6.12 zsstress capture attributed the
runqueue lock of ``zs_malloc -> kmem_cache_alloc -> __cond_resched -> __schedule`` to a class,
and the lock's address held no ``struct size_class`` (the kernel's own index, read by the
probes, lock_classes.json). The rule is ``ztrace.lockflags.taken_by_callee``, the one the
validation's measured side (``ztrace/vm/contention.py``) already applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ztrace.lockflags import (  # noqa: F401 (lock_type: re-exported for callers)
    LCB_F_MUTEX,
    LCB_F_READ,
    LCB_F_RT,
    LCB_F_SPIN,
    LCB_F_WRITE,
    lock_type,
    taken_by_callee,
)

KINDS = ("class", "pool", "zspage", "other")

_ZS_FUNCS = frozenset(
    {
        "zs_malloc",
        "zs_free",
        "obj_malloc",
        "obj_free",
        "__zs_compact",
        "zs_compact",
        "zs_shrinker_scan",
        "zs_page_migrate",
        "zs_page_isolate",
        "zs_page_putback",
        "async_free_zspage",
        "free_zspage",
        "__free_zspage",
        "zs_map_object",
        "zs_unmap_object",
        "zs_obj_read_begin",
        "zs_obj_read_end",
        "zs_obj_write",
        "zs_destroy_pool",
    }
)
_MAP_FUNCS = frozenset(
    {"zs_map_object", "zs_unmap_object", "zs_obj_read_begin", "zs_obj_read_end", "zs_obj_write"}
)


def _base(name: str) -> str:
    return name.split(".", 1)[0]  # zs_compact.isra.0 -> zs_compact


def classify(
    functions: Sequence[str], flags: int, *, version: tuple[int, int] = (6, 9)
) -> tuple[str, str]:
    """(lock kind, zsmalloc caller) for one contention stack (innermost frame first)."""
    caller = ""
    for fn in functions:
        b = _base(fn)
        if b in _ZS_FUNCS:
            caller = b
            break
    if not caller:
        return "other", ""
    if taken_by_callee(list(functions)):
        return "other", caller  # a lock of a function zsmalloc called, not zsmalloc's
    rw = bool(flags & (LCB_F_READ | LCB_F_WRITE))
    if flags & (LCB_F_MUTEX | LCB_F_RT) or not flags & LCB_F_SPIN:
        return "other", caller  # zsmalloc takes no sleeping locks itself
    if rw:
        if version < (6, 9):
            # the pool lock is a spinlock here: every rwlock zsmalloc takes is a zspage's
            # (migrate_read_lock in the map functions, migrate_write_lock in compaction and
            # migration; Debian 6.1.192 mm/zsmalloc.c)
            return "zspage", caller
        if (
            caller in _MAP_FUNCS
            and version < (6, 15)
            and "migrate_read_lock" in map(_base, functions)
        ):
            return "zspage", caller
        # 6.9-6.14 zs_map_object takes read_lock(&pool->migrate_lock) (inlined) before the
        # zspage's read lock, and a reader never waits for the latter: a writer of the
        # zspage holds the pool lock for writing throughout (6.12 mm/zsmalloc.c). Session 31:
        # 214 such waits of a 6.12 compacting zsstress run were all at pool.migrate_lock's
        # address. The address witness (ztrace/vm/contention.py) has the last word.
        return "pool", caller
    return ("class" if version >= (6, 9) else "pool"), caller


class StackAttributor:
    """Caches stack id -> (kind, caller, symbolised frames) for one capture."""

    def __init__(
        self,
        walk: Callable[[int], Sequence[int]],
        resolve: Callable[[int], str],
        version: tuple[int, int],
    ) -> None:
        self._walk = walk
        self._resolve = resolve
        self.version = version
        self.frames: dict[int, list[str]] = {}
        self._kind: dict[tuple[int, int], tuple[str, str]] = {}

    def symbols(self, stack_id: int) -> list[str]:
        if stack_id < 0:
            return []
        fr = self.frames.get(stack_id)
        if fr is None:
            try:
                fr = [self._resolve(a) for a in self._walk(stack_id)]
            except (KeyError, OSError):
                fr = []
            self.frames[stack_id] = fr
        return fr

    def kind(self, stack_id: int, flags: int) -> tuple[str, str]:
        key = (stack_id, flags)
        k = self._kind.get(key)
        if k is None:
            k = classify(self.symbols(stack_id), flags, version=self.version)
            self._kind[key] = k
        return k
