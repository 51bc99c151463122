"""The kernel's lock:contention_begin flags and the lock type names perf derives from them.

Shared by capture (attribution), look (reports) and the guest checks; imports nothing of
ztrace's.
"""

from __future__ import annotations

from typing import Any

#: lock:contention_begin flags (include/trace/events/lock.h, LCB_F_*)
LCB_F_SPIN, LCB_F_READ, LCB_F_WRITE, LCB_F_RT, LCB_F_PERCPU, LCB_F_MUTEX = 1, 2, 4, 8, 16, 32

#: the trace's lock events (docs/trace-format.md): the tracepoint pair's rows, and the kprobe
#: pair on the qspinlock slowpath (kprobe kernels)
LOCK_CONTENTION, SPIN_SLOWPATH = "lock_contention", "spin_slowpath"
LOCK_EVENTS = (LOCK_CONTENTION, SPIN_SLOWPATH)


def measured_waits(is_slowpath: Any, is_tracepoint: Any, flags: Any, has_slowpath: bool) -> Any:
    """Which lock rows are the capture's contended acquisitions, each counted once.

    Where the trace has ``spin_slowpath`` rows they are every spinlock wait, qspinlock's
    first (pending-bit) waiter included. The tracepoint's plain-spinlock rows are the queued
    subset of those (6.1 kernel/locking/qspinlock.c: ``trace_contention_begin`` only after
    the ``queue:`` label), so they are dropped; its rwlock, mutex and rwsem rows, which it
    reports in full, are kept. Without slowpath rows the tracepoint's rows are all there is.
    Takes numpy arrays or polars expressions alike (only ``|``, ``&`` and ``!=``)."""
    if not has_slowpath:
        return is_tracepoint
    return is_slowpath | (is_tracepoint & (flags != LCB_F_SPIN))


def waits_source(has_slowpath: bool) -> str:
    """What :func:`measured_waits` counted, for a report's trust lines."""
    if has_slowpath:
        return (
            "spinlock slowpath kprobe (every spinlock wait) + lock tracepoint (rwlock, mutex, "
            "rwsem)"
        )
    return "lock tracepoint (spinlocks: queued waiters only, not qspinlock's first waiter)"


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


#: Frames that are lock machinery, not the caller (perf skips the kernel's lock text the
#: same way: machine__is_lock_function()).
LOCK_FRAME_PREFIXES = (
    "__pv_queued_spin",
    "native_queued_spin",
    "queued_spin",
    "queued_read_lock",
    "queued_write_lock",
    "_raw_",
    "__raw_",
    "do_raw_",
    "mutex_lock",
    "__mutex_lock",
    "mutex_spin_on_owner",
    "rwsem_down_",
    "down_read",
    "down_write",
    "__down",
    "rt_mutex",
    "rt_spin",
    "__rt_mutex",
    "osq_lock",
    "percpu_down",
    "__percpu_down",
    "_atomic_dec_and_lock",
    # BPF machinery, should a stack include the probe's own frames
    "bpf_trace_run",
    "__bpf_trace_",
    "bpf_prog_",
)


def caller_of(frames: list[str]) -> str:
    """The first frame (innermost first) that is not lock machinery; ``[unknown]`` if none."""
    for f in frames:
        if not f.startswith(LOCK_FRAME_PREFIXES):
            return f
    return "[unknown]"


#: zsmalloc's own static functions that take its locks when not inlined (mm/zsmalloc.c)
ZS_INTERNAL = frozenset(
    {
        "obj_malloc",
        "obj_free",
        "migrate_read_lock",
        "migrate_write_lock",
        "find_get_zspage",
        "async_free_zspage",
        "free_zspage",
        "__free_zspage",
        "zs_page_migrate",
    }
)


def is_zsmalloc_frame(name: str) -> bool:
    """A zsmalloc function (``zs_*``, ``__zs_*``, or one of its static helpers)."""
    return name.startswith(("zs_", "__zs_")) or name in ZS_INTERNAL


def taken_by_callee(frames: list[str]) -> bool:
    """True when a wait's lock was taken by a function zsmalloc called (the page allocator's
    zone lock under alloc_zspage, a wakeup's or cond_resched()'s runqueue lock), not by
    zsmalloc itself: the first frame above the lock machinery is not a zsmalloc function,
    yet one is further down. The capture's attribution (ztrace/capture/attribute.py) and the
    validation's measured side (ztrace/vm/contention.py) both apply it.

    >>> taken_by_callee(["_raw_spin_lock", "__schedule", "__cond_resched", "zs_malloc"])
    True
    >>> taken_by_callee(["_raw_spin_lock", "zs_malloc"]), taken_by_callee(["_raw_spin_lock"])
    (False, False)
    """
    names = [f.split("+")[0] for f in frames]
    takers = [n for n in names if not n.startswith(LOCK_FRAME_PREFIXES)]
    return bool(takers) and not is_zsmalloc_frame(takers[0]) and any(map(is_zsmalloc_frame, takers))
