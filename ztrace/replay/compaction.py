"""One zs_compact event -> the per-class, per-source-zspage phases the kernel runs.

``__zs_compact()`` (mm/zsmalloc.c) compacts one class at a time under the pool lock (and,
in the per-class kernels, the class lock) and may drop its locks after every *source
zspage*: unconditionally in Debian 6.1 / 6.2-6.3, when the destination is full or the lock
is contended in 6.4-6.10 (``spin_is_contended(&pool->lock)``) and in >=6.11
(``rwlock_is_contended(&pool->migrate_lock)``, >=6.14 ``&pool->lock``). The pool model
(:func:`ztrace.model.zsmalloc.compact_log`) reports the work per source zspage; ingest
keeps the rows of each compaction (:data:`R_EVENT` = its index in the batch), and
:func:`split_compactions` turns the compaction's op into one ``OP_COMPACT_SRC`` op per row,
in the kernel's order, on the same CPU with the same arrival. Each op takes and releases
the design's compaction locks, so a request that queued during one source zspage is
granted (FIFO, by request time) before the compactor's next one: the contention break.

The compaction's cost (its measured duration, or ``compact_ns``) is *split* over its
phases in proportion to ``objects moved + 1`` (the copies, plus the isolate/putback of
each zspage), never added to: the phases' costs sum to the event's cost exactly.
A compaction that migrated nothing keeps its single ``OP_COMPACT`` op.
"""

from __future__ import annotations

import numpy as np

from ztrace.replay.locks import OP_COMPACT_SRC

#: columns of an ingest compaction row: batch index of the zs_compact event, then the
#: pool model's log row (ztrace.model.zsmalloc CL_*: class, objects moved, pages freed,
#: destinations filled, source zspage id)
R_EVENT, R_CLASS, R_MOVED, R_FREED, R_DST_FULL, R_SRC = range(6)
N_R = 6

#: the per-op arrays, in ``SimState.feed`` order (``zsp``: the op's zspage, -1 = none)
OP_ARRAYS = ("arr", "cpu", "kind", "cls", "pool", "cost", "cost2", "cost3", "bin", "credit", "zsp")


def split_costs(total: np.ndarray, weight: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Split ``total[g]`` over the rows of each group ``g`` in proportion to ``weight``
    (int64; rows of a group contiguous). Each group's parts sum to its total exactly."""
    cw = np.cumsum(weight)
    first = np.r_[True, group[1:] != group[:-1]]
    base = np.where(first, cw - weight, 0)
    base = np.maximum.accumulate(base)  # cumulative weight before each group
    upto = cw - base  # cumulative weight within the group, through this row
    gsum = np.zeros(int(group.max()) + 1, dtype=np.int64)
    np.add.at(gsum, group, weight)
    tot = total[group]
    w_all = gsum[group]
    hi = tot * upto // w_all
    lo = tot * (upto - weight) // w_all
    return hi - lo


def split_compactions(ops: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``ops`` (the :data:`OP_ARRAYS` of one batch) with each compaction that has rows in
    ``rows`` (N_R columns) replaced by its per-source-zspage phases. No rows: ``ops``."""
    if len(rows) == 0:
        return ops
    rows = rows[np.argsort(rows[:, R_EVENT], kind="stable")]
    ev = rows[:, R_EVENT]
    n = len(ops["arr"])
    rep = np.ones(n, dtype=np.int64)
    uniq, counts = np.unique(ev, return_counts=True)
    rep[uniq] = counts
    src = np.repeat(np.arange(n, dtype=np.int64), rep)
    out = {k: v[src] for k, v in ops.items()}
    # position of each row: the event's first expanded slot + the row's rank in the event
    start = np.cumsum(rep) - rep
    rank = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    pos = start[ev] + rank
    out["kind"][pos] = OP_COMPACT_SRC
    out["cls"][pos] = rows[:, R_CLASS]
    out["zsp"][pos] = rows[:, R_SRC]  # migrate_write_lock(src_zspage)
    out["cost"][pos] = split_costs(ops["cost"], rows[:, R_MOVED] + 1, ev)
    # closed loop: every phase arrives with the compaction, so a later phase starts late by
    # the phases before it; credit them, or the CPU's next op would inherit them as lateness
    before = np.cumsum(out["cost"][pos]) - out["cost"][pos]
    before -= np.repeat(before[np.cumsum(counts) - counts], counts)
    out["credit"][pos] += before
    out["cost2"][pos] = 0  # the pool step's hold before the class lock (classlock.py)
    out["cost3"][pos] = 0
    return out
