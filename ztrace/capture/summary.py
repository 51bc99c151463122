"""``ztrace capture --summary``: always-on mode, aggregated in the kernel.

Like ``perf lock contention -b``: no per-event stream. The probes compile with
``-DZT_SUMMARY``, so ``zt_end()`` folds each event into per-CPU maps (lock waits by lock
address, flags and stack; operations by type and pool; count, total, max, min and a log2
histogram each). Every interval this module reads the maps, subtracts the previous reading and
writes one small ``summary-NNNNN.parquet`` (written under a hidden name, then renamed), plus
``stacks.json``. ``ztrace report DIR`` reads these files (``ztrace/look/measured.py``).

Columns of a summary file (one row per lock key or operation key with activity in the
interval): ``record`` (``lock`` | ``op``), ``interval_start_ns``, ``interval_end_ns``
(CLOCK_MONOTONIC), ``lock_addr``, ``lock_kind``, ``lock_flags``, ``stack_id`` (lock rows),
``op``, ``pool`` (op rows), ``count``, ``total_ns`` (wait or duration), ``max_ns`` and
``min_ns`` (over the whole capture so far: per-CPU maps cannot be reset atomically),
``hist`` (40 log2 buckets of this interval), and (version 2, session 27) ``event`` on lock
rows: ``lock_contention`` (the lock tracepoints) or ``spin_slowpath`` (the kprobe pair on the
qspinlock slowpath, kprobe kernels only), the trace's own event names, so that a reader
counts each wait once with :func:`ztrace.lockflags.measured_waits`. A version-1 file has no
``event`` column: its lock rows are all the tracepoint's (its slowpath waits were op rows).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.capture import attribute
from ztrace.format.events import EVENT_NAMES
from ztrace.format.safeio import atomic_file
from ztrace.format.trace import LOCK_CLASSES_FILE
from ztrace.lockflags import LOCK_CONTENTION, SPIN_SLOWPATH

HIST_BUCKETS = 40  # ZT_HIST_BUCKETS in probes/zs_events.h
#: a lock key's flag bit for a spinlock-slowpath wait (ZT_AGG_SLOWPATH in probes/zs_events.h)
AGG_SLOWPATH = 0x80000000
SUMMARY_VERSION = "2"

SCHEMA = pa.schema(
    [
        pa.field("record", pa.string(), nullable=False),
        pa.field("interval_start_ns", pa.uint64(), nullable=False),
        pa.field("interval_end_ns", pa.uint64(), nullable=False),
        pa.field("lock_addr", pa.uint64()),
        pa.field("lock_kind", pa.string()),
        pa.field("lock_flags", pa.uint32()),
        pa.field("stack_id", pa.int32()),
        pa.field("op", pa.string()),
        pa.field("pool", pa.uint64()),
        pa.field("count", pa.uint64(), nullable=False),
        pa.field("total_ns", pa.uint64(), nullable=False),
        pa.field("max_ns", pa.uint64(), nullable=False),
        pa.field("min_ns", pa.uint64(), nullable=False),
        pa.field("hist", pa.list_(pa.uint64()), nullable=False),
        pa.field("event", pa.string()),
    ]
)


@dataclass
class _Cum:
    count: int
    total: int
    max: int
    min: int
    hist: np.ndarray


@dataclass
class SummaryState:
    """Cumulative readings by key, to turn the kernel's running totals into intervals."""

    locks: dict[tuple[int, int, int], _Cum] = field(default_factory=dict)
    ops: dict[tuple[int, int], _Cum] = field(default_factory=dict)


def _read(table: Any) -> dict[tuple[int, ...], _Cum]:
    """A per-CPU hash of struct zs_agg, summed over CPUs."""
    out: dict[tuple[int, ...], _Cum] = {}
    for k, vals in table.items():
        key = tuple(int(getattr(k, f)) for f, _ in k._fields_ if f != "pad")
        hist = np.zeros(HIST_BUCKETS, np.uint64)
        count = total = mx = 0
        mn = (1 << 64) - 1
        for v in vals:
            if not v.count:
                continue
            count += v.count
            total += v.total_ns
            mx = max(mx, v.max_ns)
            mn = min(mn, v.min_ns)
            hist += np.ctypeslib.as_array(v.hist).astype(np.uint64)
        if count:
            out[key] = _Cum(count, total, mx, mn, hist)
    return out


def interval_rows(
    state: SummaryState,
    lock_table: Any,
    op_table: Any,
    attrib: attribute.StackAttributor | None,
    t0: int,
    t1: int,
) -> pa.Table:
    """Differences since the previous reading, as a table in :data:`SCHEMA`."""
    cols: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}

    def add(record: str, cur: _Cum, prev: _Cum | None, **keys: Any) -> None:
        d_count = cur.count - (prev.count if prev else 0)
        if d_count <= 0:
            return
        cols["record"].append(record)
        cols["interval_start_ns"].append(t0)
        cols["interval_end_ns"].append(t1)
        for name in ("lock_addr", "lock_kind", "lock_flags", "stack_id", "op", "pool", "event"):
            cols[name].append(keys.get(name))
        cols["count"].append(d_count)
        cols["total_ns"].append(cur.total - (prev.total if prev else 0))
        cols["max_ns"].append(cur.max)
        cols["min_ns"].append(cur.min)
        hist = cur.hist - prev.hist if prev is not None else cur.hist
        cols["hist"].append(hist.tolist())

    for key, cur in sorted(_read(lock_table).items()):
        addr, key_flags, stack_id = key
        flags = key_flags & ~AGG_SLOWPATH
        kind = attrib.kind(stack_id, flags)[0] if attrib is not None else "other"
        add(
            "lock",
            cur,
            state.locks.get(key),  # type: ignore[arg-type]
            lock_addr=addr,
            lock_kind=kind,
            lock_flags=flags,
            stack_id=stack_id,
            event=SPIN_SLOWPATH if key_flags & AGG_SLOWPATH else LOCK_CONTENTION,
        )
        state.locks[key] = cur  # type: ignore[index]
    for key, cur in sorted(_read(op_table).items()):
        typ, pool = key
        add("op", cur, state.ops.get(key), op=EVENT_NAMES.get(typ, f"type{typ}"), pool=pool)  # type: ignore[arg-type]
        state.ops[key] = cur  # type: ignore[index]
    return pa.table(cols, schema=SCHEMA)


def write_summary(table: pa.Table, path: Path, meta: dict[str, str]) -> None:
    """One interval's file, atomically: a reader never sees a half-written summary. The
    temporary is a fresh ``mkstemp`` file (safeio.atomic_file), never a fixed name: capture
    runs as root, and a link planted at a guessable name would be followed (issue 11)."""
    with atomic_file(path, mode="wb", encoding=None) as f:
        pq.write_table(
            table.replace_schema_metadata({f"ztrace.{k}": v for k, v in meta.items()}),
            f,
            compression="zstd",
        )


def write_stacks(out: Path, frames: dict[int, list[str]]) -> None:
    """``stacks.json`` (stack_id -> symbolised frames) beside the parts, atomically and
    through a fresh temporary, as :func:`write_summary`."""
    with atomic_file(out / "stacks.json") as f:
        f.write(json.dumps({str(k): v for k, v in sorted(frames.items())}))


def read_lock_class_map(table: Any) -> dict[int, tuple[int, int]]:
    """Lock address -> (index, size), from the probes' ``lock_class`` map: the ``index``
    and ``size`` read at each waited-on lock's address as a ``struct size_class``
    (probes/zs_capture.bpf.c, zt_note_lock). :func:`class_pairs` keeps the real ones."""
    return {int(k.value): (int(v.index), int(v.size)) for k, v in table.items()}


def class_pairs(read: dict[int, tuple[int, int]], page_size: int) -> dict[int, int]:
    """The (index, size) pairs that zs_create_pool() builds: class ``index`` of size ``size``
    in the kernel's class table (6.12 mm/zsmalloc.c: ``size = ZS_MIN_ALLOC_SIZE + i *
    ZS_SIZE_CLASS_DELTA``, at most PAGE_SIZE; the chain size does not enter). A lock that is
    no class lock reads as some other pair and is dropped.

    >>> class_pairs({0xA: (0, 32), 0xB: (254, 4096), 0xC: (5, 200), 0xD: (300, 32)}, 4096)
    {10: 0, 11: 254}
    """
    from ztrace.model.classes import build_classes

    classes = build_classes(page_size=page_size)
    return {
        addr: index
        for addr, (index, size) in read.items()
        if 0 <= index < classes.n_classes and int(classes.size[index]) == size
    }


def write_lock_classes(out: Path, classes: dict[int, int]) -> None:
    """``lock_classes.json`` (lock address -> size class index) beside the parts, atomically,
    as :func:`write_stacks`: a reader names these locks ``class[i]``."""
    with atomic_file(out / LOCK_CLASSES_FILE) as f:
        f.write(json.dumps({str(k): v for k, v in sorted(classes.items())}))


def now_ns() -> int:
    return time.monotonic_ns()
