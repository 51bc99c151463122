"""LRU-inversion metrics, shared by every design (definitions: docs/lru-inversion.md).

A :class:`Recorder` watches one design replay a workload. The design tells it when a page is
stored in zswap, when a stored page stops being a *swapped-out page held by zswap* (loaded,
invalidated, written back, replaced) and when a page is written to the disk swap device. At
each disk write it decides, in O(1) amortised time, whether the write is an **inversion**:

    a page P is written to disk while zswap still holds a swapped-out page Q that was
    reclaimed earlier than P, i.e. Q's store attempt comes before P's in trace order
    (``seq(Q) < seq(P)``; trace order is ``ts_ns`` order with ties kept in row order).

Every store attempt (accepted or rejected) gets the next sequence number, so "reclaimed
earlier" is a total order. The held pages are a set of sequence numbers; the oldest one is
found with a pointer that only moves forward over a byte map of live numbers, which is why
the check is O(1) amortised instead of a scan.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ztrace.format.results import SCHEMAS

#: Column order of lru_summary.parquet / sweep.parquet and of lru_timeline.parquet: the one
#: results schema (ztrace.format.results, docs/results-format.md).
SUMMARY_SCHEMA = pa.schema(list(SCHEMAS["lru_summary"].items()))
MEMCG_SCHEMA = pa.schema(list(SCHEMAS["lru_memcg"].items()))
TIMELINE_SCHEMA = pa.schema(list(SCHEMAS["lru_timeline"].items()))

# timeline counter columns (index into Recorder._bins rows)
_T_INV, _T_HIT, _T_DISK, _T_WB = 0, 1, 2, 3


@dataclass(frozen=True)
class Latency:
    """Per-tier fault latencies used for ``expected_fault_latency_ns``.

    Defaults are assumptions, not measurements: a zswap load is a decompression plus the
    fault path (~10 µs for lzo/lz4 on a 4 KiB page); a disk swap-in is a random 4 KiB read
    from an SSD plus the fault path (~200 µs). Pass ``zswap_ns=`` / ``disk_ns=`` to change.
    """

    zswap_ns: float = 10_000.0
    disk_ns: float = 200_000.0


class Recorder:
    """Counts and the inversion check for one design on one workload.

    Parameters
    ----------
    t0_ns, t_end_ns
        First and last timestamp of the workload (timeline bins cover ``[t0, t_end]``).
    bin_ns
        Timeline bin width; ``None`` picks 100 bins over the workload span.
    latency
        Tier latencies for the expected fault latency.
    """

    def __init__(self, t0_ns: int, t_end_ns: int, bin_ns: int | None, latency: Latency) -> None:
        span = max(1, t_end_ns - t0_ns + 1)
        if bin_ns is None:
            bin_ns = max(1, -(-span // 100))
        self.t0 = int(t0_ns)
        self.bin_ns = int(bin_ns)
        self.n_bins = max(1, -(-span // self.bin_ns))
        self._bins = np.zeros((self.n_bins, 4), dtype=np.int64)
        self._pool = np.full(self.n_bins, -1, dtype=np.int64)
        self.latency = latency
        # seq -> store ts, and whether seq is a swapped-out page zswap holds right now
        self._seq_ts = array("q")
        self._held = bytearray()
        self._lo = 0  # no held seq below this
        self.n_held = 0
        # counters
        self.stores = 0
        self.rejects = 0
        self.writebacks = 0
        self.written_back_bytes = 0
        self.disk_writes = 0  # swapped-out pages sent to disk (rejects + their writebacks)
        self.inversions = 0
        self.inversions_by_cause: dict[str, int] = {}
        self.age_gaps: list[int] = []
        self.zswap_hits = 0
        self.disk_swapins = 0
        self.unknown_loads = 0
        self.avoidable_disk_faults = 0
        self._bin = 0

    # -------------------------------------------------------------- sequence numbers

    def new_seq(self, ts: int) -> int:
        """Number a store attempt (accepted or not) at time ``ts``; returns its seq."""
        self._seq_ts.append(int(ts))
        self._held.append(0)
        return len(self._seq_ts) - 1

    def seq_ts(self, seq: int) -> int:
        return self._seq_ts[seq]

    def hold(self, seq: int) -> None:
        """The page stored with ``seq`` is now a swapped-out page held by zswap."""
        if not self._held[seq]:
            self._held[seq] = 1
            self.n_held += 1
            if seq < self._lo:  # cannot happen with in-order seqs; kept for safety
                self._lo = seq

    def release(self, seq: int) -> None:
        """The page stored with ``seq`` is no longer held (loaded, freed, written back)."""
        if self._held[seq]:
            self._held[seq] = 0
            self.n_held -= 1

    def oldest_held(self) -> int:
        """Smallest held seq, or -1 when zswap holds no swapped-out page."""
        if self.n_held == 0:
            return -1
        held = self._held
        lo = self._lo
        while not held[lo]:
            lo += 1
        self._lo = lo
        return lo

    def absorb(
        self, sc: np.ndarray, bins: np.ndarray, pool_bin: np.ndarray, gaps: np.ndarray
    ) -> None:
        """Take the counts of a compiled replay (``_core.results``): the same quantities the
        methods below count one call at a time."""
        from ztrace.replay.lru import _core as K

        self.stores = int(sc[K.R_STORES])
        self.rejects = int(sc[K.R_REJECTS])
        self.writebacks = int(sc[K.R_WB])
        self.written_back_bytes = int(sc[K.R_WB_BYTES])
        self.disk_writes = int(sc[K.R_DISK_WRITES])
        self.inversions = int(sc[K.R_INV])
        causes = ("reject_pool_limit", "reject_compress", "writeback")
        self.inversions_by_cause = {
            c: int(sc[K.R_INV_RPL + i]) for i, c in enumerate(causes) if sc[K.R_INV_RPL + i]
        }
        self.age_gaps = gaps.tolist()
        self.zswap_hits = int(sc[K.R_HITS])
        self.disk_swapins = int(sc[K.R_DISK_IN])
        self.avoidable_disk_faults = int(sc[K.R_AVOID])
        self.n_held = int(sc[K.R_NHELD])
        self._bins = bins
        self._pool = pool_bin

    # -------------------------------------------------------------- events

    def tick(self, ts: int) -> None:
        """Move the timeline to the bin of ``ts`` (call before counting an event)."""
        b = (int(ts) - self.t0) // self.bin_ns
        self._bin = min(max(b, 0), self.n_bins - 1)

    def pool_pages(self, pages: int) -> None:
        """Pool size after the current event (the last value in a bin is its value)."""
        self._pool[self._bin] = pages

    def disk_write(self, seq: int, cause: str) -> None:
        """A swapped-out page (stored or attempted with ``seq``) is written to disk now.

        ``cause`` is ``reject_pool_limit``, ``reject_compress`` or ``writeback``; inversions
        are also counted per cause (``inversions_by_cause``).

        The caller has already released ``seq`` (and every page leaving zswap in the same
        operation), so the check sees zswap as it is at the instant of the write.
        """
        self.disk_writes += 1
        oldest = self.oldest_held()
        if oldest != -1 and oldest < seq:
            self.inversions += 1
            self.inversions_by_cause[cause] = self.inversions_by_cause.get(cause, 0) + 1
            self.age_gaps.append(self._seq_ts[seq] - self._seq_ts[oldest])
            self._bins[self._bin, _T_INV] += 1

    def writeback(self, nbytes: int) -> None:
        self.writebacks += 1
        self.written_back_bytes += int(nbytes)
        self._bins[self._bin, _T_WB] += 1

    def hit(self) -> None:
        self.zswap_hits += 1
        self._bins[self._bin, _T_HIT] += 1

    def disk_swapin(self) -> None:
        self.disk_swapins += 1
        self._bins[self._bin, _T_DISK] += 1

    # -------------------------------------------------------------- results

    def expected_fault_latency_ns(self) -> float:
        n = self.zswap_hits + self.disk_swapins
        if n == 0:
            return 0.0
        return (
            self.zswap_hits * self.latency.zswap_ns + self.disk_swapins * self.latency.disk_ns
        ) / n

    def summary_row(
        self, design: str, pool_limit_pages: int, optimal_disk_faults: int | None = None
    ) -> dict[str, object]:
        """One ``lru_summary`` row; ``optimal_gap`` needs the optimal design's disk faults
        at the same limit (0 when not given)."""
        gaps = np.asarray(self.age_gaps, dtype=np.int64)
        return {
            "lru_design": design,
            "pool_limit_pages": int(pool_limit_pages),
            "stores": self.stores,
            "rejects": self.rejects,
            "writebacks": self.writebacks,
            "written_back_bytes": self.written_back_bytes,
            "inversions": self.inversions,
            "inversion_rate": (self.inversions / self.disk_writes) if self.disk_writes else 0.0,
            # p50 = lower median (an observed gap, not an interpolation), so it is exact
            "age_gap_ns_p50": int(np.sort(gaps)[(len(gaps) - 1) // 2]) if len(gaps) else 0,
            "age_gap_ns_max": int(gaps.max()) if len(gaps) else 0,
            "zswap_hits": self.zswap_hits,
            "disk_swapins": self.disk_swapins,
            "expected_fault_latency_ns": self.expected_fault_latency_ns(),
            "disk_faults": self.disk_swapins,
            "avoidable_disk_faults": self.avoidable_disk_faults,
            "optimal_gap": (
                self.disk_swapins - optimal_disk_faults if optimal_disk_faults is not None else 0
            ),
            "latency_zswap_ns": float(self.latency.zswap_ns),
            "latency_disk_ns": float(self.latency.disk_ns),
        }

    def timeline_rows(self, design: str) -> dict[str, list[object]]:
        pool = self._pool.copy()
        last = 0
        for i in range(len(pool)):  # bins without events keep the previous pool size
            if pool[i] < 0:
                pool[i] = last
            last = pool[i]
        starts = np.arange(self.n_bins, dtype=np.int64) * self.bin_ns
        return {
            "lru_design": [design] * self.n_bins,
            "bin_start_ns": starts.tolist(),
            "pool_pages": pool.tolist(),
            "inversions": self._bins[:, _T_INV].tolist(),
            "zswap_hits": self._bins[:, _T_HIT].tolist(),
            "disk_swapins": self._bins[:, _T_DISK].tolist(),
            "writebacks": self._bins[:, _T_WB].tolist(),
        }


def summary_table(rows: list[dict[str, object]]) -> pa.Table:
    """``lru_summary`` / ``sweep`` table from :meth:`Recorder.summary_row` dicts."""
    cols = {f.name: [r[f.name] for r in rows] for f in SUMMARY_SCHEMA}
    return pa.Table.from_pydict(cols, schema=SUMMARY_SCHEMA)


def timeline_table(parts: list[dict[str, list[object]]]) -> pa.Table:
    """``lru_timeline`` table from :meth:`Recorder.timeline_rows` dicts."""
    cols: dict[str, list[object]] = {f.name: [] for f in TIMELINE_SCHEMA}
    for p in parts:
        for k in cols:
            cols[k].extend(p[k])
    return pa.Table.from_pydict(cols, schema=TIMELINE_SCHEMA)


def rate(n: int, d: int) -> float:
    """``n / d``, 0.0 for an empty denominator (never NaN in a results file)."""
    return n / d if d else 0.0


__all__ = [
    "MEMCG_SCHEMA",
    "SUMMARY_SCHEMA",
    "TIMELINE_SCHEMA",
    "Latency",
    "Recorder",
    "rate",
    "summary_table",
    "timeline_table",
]
