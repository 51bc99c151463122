"""Object sizes for traces that have none: a clear error, or sizes imputed from a stated source.

The kmem tracepoint fallback (``zsmalloc:kmem-tracepoint`` probes, e.g. the host 6.18
sample) records zs_malloc without its size. Replaying such rows would turn every one into a
``bad_alloc`` (the kernel's zs_malloc(0) returns -EINVAL), so :func:`check_sizes` refuses
them unless the caller names a reference capture: each size-less zs_malloc then gets a size
drawn (seeded, reproducible) from that capture's zs_malloc sizes. The results say so
(``ztrace.sizes`` metadata and the ``sizes_imputed`` counter).

After the replay, :func:`check_replayed` refuses a trace of which no allocation could be
replayed at all (every size out of range, every zs_malloc failed, or frees only): results of
zero operations would read as "no contention" for every design.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.compute as pc

from ztrace.errors import TraceFormatError
from ztrace.format import iter_batches
from ztrace.replay.hashing import splitmix64_array

_SEED_MUL, _SEED_ADD = 0xD1B54A32D192ED03, 0x8CB92BA72F3D8DD7


def reference_sizes(path: str | os.PathLike[str]) -> np.ndarray:
    """The nonzero zs_malloc sizes of ``path``, in trace order (int64)."""
    parts = []
    for b in iter_batches(path, columns=["event", "size_bytes"]):
        ev = b.column("event")
        m = pc.and_(pc.equal(ev.cast("string"), "zs_malloc"), pc.greater(b.column("size_bytes"), 0))
        parts.append(b.column("size_bytes").filter(m).to_numpy().astype(np.int64))
    ref = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(ref) == 0:
        raise TraceFormatError(path, "--sizes-from: no zs_malloc rows with a size to draw from")
    return ref


def impute(size: np.ndarray, is_malloc: np.ndarray, offset: int, seed: int, ref: np.ndarray) -> int:
    """Fill ``size`` (in place) where a zs_malloc has size 0 with a draw from ``ref``: row
    ``offset + i`` draws ``ref[splitmix64(row ^ seed) mod len(ref)]``. Returns how many."""
    hole = is_malloc & (size == 0)
    n = int(hole.sum())
    if n:
        rows = np.flatnonzero(hole).astype(np.uint64) + np.uint64(offset)
        mix = np.uint64((seed * _SEED_MUL + _SEED_ADD) % 2**64)
        pick = splitmix64_array(rows ^ mix) % np.uint64(len(ref))
        size[hole] = ref[pick.astype(np.int64)]
    return n


def check_sizes(
    trace: str | os.PathLike[str], n_malloc: int, size_max: int | None, probes: str
) -> None:
    """Refuse a trace whose zs_malloc rows all lack sizes (without ``--sizes-from``)."""
    if n_malloc and size_max == 0:
        raise TraceFormatError(
            trace,
            f"all {n_malloc} zs_malloc rows have size 0 (probes: {probes or 'unknown'}; the "
            "kmem tracepoint fallback records no size), so every one would replay as a failed "
            "allocation; impute sizes from another capture with --sizes-from TRACE",
        )


def check_replayed(trace: str | os.PathLike[str], counters: dict[str, int], page_size: int) -> None:
    """Refuse a replay in which not one zs_malloc allocated an object.

    ``counters`` are the plain pool's (ztrace.replay.ingest.COUNTER_NAMES): ``mallocs``
    counts the successful zs_malloc rows, ``bad_alloc`` those of them whose size the kernel
    refuses (0 or over ZS_MAX_ALLOC_SIZE = PAGE_SIZE: zs_malloc returns an error), and
    ``failed_malloc`` the calls that failed in the kernel (handle 0).
    """
    replayed = counters.get("mallocs", 0) - counters.get("bad_alloc", 0)
    if replayed > 0:
        return
    why = []
    if counters.get("bad_alloc", 0):
        why.append(
            f"{counters['bad_alloc']} zs_malloc rows have a size outside 1..{page_size} bytes"
        )
    if counters.get("failed_malloc", 0):
        why.append(f"{counters['failed_malloc']} zs_malloc calls failed in the kernel (handle 0)")
    if not counters.get("mallocs", 0) and not counters.get("failed_malloc", 0):
        why.append("there are no zs_malloc rows")
    if counters.get("unmatched_free", 0):
        why.append(f"{counters['unmatched_free']} zs_free rows free handles never allocated")
    raise TraceFormatError(
        trace, "no allocation could be replayed: " + "; ".join(why) + ", so there is no result"
    )


def bad_alloc_note(trace: str | os.PathLike[str], counters: dict[str, int]) -> str | None:
    """One line for stderr when some zs_malloc rows could not be replayed for their size
    (``bad_alloc``), or None. A capture's zs_malloc returned a handle, so the kernel took its
    size: such rows come from an edited or synthetic trace, and the results leave them out."""
    bad = counters.get("bad_alloc", 0)
    if not bad:
        return None
    return (
        f"ztrace: warning: {trace}: {bad} of {counters.get('mallocs', 0)} zs_malloc rows have a "
        "size the kernel refuses (0 or over the page size): counted as bad_alloc, not replayed"
    )
