"""The event vocabulary: every event name a trace may hold, and its code, defined once.

The codes are the BPF record's ``zs_event.type`` values (``probes/zs_events.h``,
``ZT_EV_*``); ``tests/test_format.py`` parses that header and checks it against this module,
so the C side and the Python side cannot drift. Events that only synthetic or oracle traces
carry (``checkpoint``, ``swap_out``, ``swap_in``) have a name but no BPF code.

>>> EVENT_CODES["zs_malloc"], EVENT_NAMES[EV_LOCK]
(1, 'lock_contention')
>>> "zswap_store" in SWAP_EVENTS
True
"""

from __future__ import annotations

from typing import Final, Literal, get_args

AllocatorEvent = Literal[
    "zs_malloc",
    "zs_free",
    "zs_compact",
    "zs_migrate",
    "checkpoint",
    # a zs_malloc whose return value was an error (capture decodes it from ``ret``); counted
    # as ``failed_malloc``, never replayed as an allocation
    "zs_malloc_failed",
    # an object write access: zs_map_object(ZS_MM_WO)..zs_unmap_object up to 6.14,
    # zs_obj_write() from 6.15; replay models the write after every malloc itself
    "zs_write",
]
#: zsmalloc's read side (issue 10). Capture writes ``zs_read`` (zs_map_object(RO/RW) ..
#: zs_unmap_object up to 6.14, zs_obj_read_begin .. _end from 6.15); hand-built traces may
#: name the kernel function instead. Replay treats all three alike.
ReadEvent = Literal["zs_read", "zs_map_object", "zs_obj_read_begin"]
#: ``lock_contention``: lock:contention_begin/end; ``spin_slowpath``: a kprobe on
#: native_queued_spin_lock_slowpath, which also sees the pending-bit waiter that
#: lock:contention_begin misses (6.1 kernel/locking/qspinlock.c: the tracepoint fires only
#: after the ``queue:`` label)
LockEvent = Literal["lock_contention", "spin_slowpath"]
SwapEvent = Literal[
    "zswap_store",
    "zswap_load",
    "zswap_writeback",
    "zswap_invalidate",
    "swap_out",
    "swap_in",
]
#: Every event name with a defined meaning (docs/trace-format.md). Readers accept others
#: (forward compatibility) but only these mean something to replay and look.
EventName = Literal[AllocatorEvent, ReadEvent, LockEvent, SwapEvent]

# BPF event type codes (zs_event.type = ZT_EV_*); 0 is never emitted.
EV_MALLOC: Final = 1
EV_FREE: Final = 2
EV_COMPACT: Final = 3
EV_MIGRATE: Final = 4
EV_LOCK: Final = 5
EV_ZSWAP_STORE: Final = 6
EV_ZSWAP_LOAD: Final = 7
EV_ZSWAP_WB: Final = 8
EV_ZSWAP_INVAL: Final = 9
EV_READ: Final = 10
EV_WRITE: Final = 11
EV_MALLOC_FAIL: Final = 12  # user space only: decoded from a zs_malloc record's ``ret``
EV_SPIN: Final = 13

#: BPF code -> trace-format event name (the names capture writes). Typed ``str`` values so
#: callers can pass ``list(EVENT_NAMES.values())`` where a ``list[str]`` is wanted.
EVENT_NAMES: Final[dict[int, str]] = {
    EV_MALLOC: "zs_malloc",
    EV_FREE: "zs_free",
    EV_COMPACT: "zs_compact",
    EV_MIGRATE: "zs_migrate",
    EV_LOCK: "lock_contention",
    EV_ZSWAP_STORE: "zswap_store",
    EV_ZSWAP_LOAD: "zswap_load",
    EV_ZSWAP_WB: "zswap_writeback",
    EV_ZSWAP_INVAL: "zswap_invalidate",
    EV_READ: "zs_read",
    EV_WRITE: "zs_write",
    EV_MALLOC_FAIL: "zs_malloc_failed",
    EV_SPIN: "spin_slowpath",
}
#: trace-format event name -> BPF code
EVENT_CODES: Final[dict[str, int]] = {name: code for code, name in EVENT_NAMES.items()}

#: Event groups, in the order docs/trace-format.md lists them.
ALLOCATOR_EVENTS: tuple[AllocatorEvent, ...] = get_args(AllocatorEvent)
READ_EVENTS: tuple[ReadEvent, ...] = get_args(ReadEvent)
LOCK_EVENTS: tuple[LockEvent, ...] = get_args(LockEvent)
SWAP_EVENTS: tuple[SwapEvent, ...] = get_args(SwapEvent)
EVENTS: tuple[EventName, ...] = ALLOCATOR_EVENTS + READ_EVENTS + LOCK_EVENTS + SWAP_EVENTS

#: Values of the ``lock_kind`` column of lock events (docs/trace-format.md).
LockKind = Literal["class", "pool", "zspage", "other"]
LOCK_KINDS: tuple[LockKind, ...] = get_args(LockKind)
