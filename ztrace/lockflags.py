"""The kernel's lock:contention_begin flags and the lock type names perf derives from them.

Shared by capture (attribution) and look (reports); imports nothing.
"""

from __future__ import annotations

#: lock:contention_begin flags (include/trace/events/lock.h, LCB_F_*)
LCB_F_SPIN, LCB_F_READ, LCB_F_WRITE, LCB_F_RT, LCB_F_PERCPU, LCB_F_MUTEX = 1, 2, 4, 8, 16, 32


def lock_type(flags: int) -> str:
    """Kernel lock type name as perf lock shows it (spinlock, rwlock:R, rwsem:W, mutex...)."""
    if flags & LCB_F_MUTEX:
        return "mutex"
    if flags & LCB_F_SPIN:
        if flags & LCB_F_READ:
            return "rwlock:R"
        if flags & LCB_F_WRITE:
            return "rwlock:W"
        return "spinlock"
    if flags & LCB_F_READ:
        return "rwsem:R"
    if flags & LCB_F_WRITE:
        return "rwsem:W"
    return "rtmutex" if flags & LCB_F_RT else "unknown"
