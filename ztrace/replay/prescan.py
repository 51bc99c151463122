"""The prescan: one cheap pass over a trace before the replay (counts, span, CPUs, durations)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from ztrace.format import open_trace
from ztrace.replay.hashing import splitmix64_array
from ztrace.replay.ingest import IN_CODES, N_EV, event_codes
from ztrace.replay.locks._sim import HIST_EXACT, HIST_N, HIST_SUB, hist_index, hist_quantile


@njit(cache=True)
def _dur_hist(code, dur, hist):
    for i in range(code.shape[0]):
        c = code[i]
        if c >= 0 and dur[i] > 0:
            hist[c, hist_index(dur[i])] += 1


@dataclass
class Prescan:
    n_events: int
    ts0: int
    ts_last: int
    max_cpu: int
    counts: dict[str, int]
    medians: dict[str, int]
    #: rows with a measured duration (> 0) per event kind
    measured: dict[str, int]
    #: largest size_bytes (Parquet statistics; None when a file lacks them)
    size_max: int | None
    #: measured durations per ingest event code (histogram, see locks._sim.hist_index)
    dur_hist: np.ndarray


def prescan(path: str | os.PathLike[str]) -> Prescan:
    """Cheap pass: event counts, time span, CPUs, measured durations.

    Reads ``event`` (dictionary codes), ``ts_ns`` and ``cpu``; ``duration_ns`` only when the
    Parquet statistics say some duration is nonzero.
    """
    tr = open_trace(path)
    # Parquet row-group statistics (no data read); None (unknown) reads the column too
    want_dur = tr.column_max("duration_ns") != 0
    cols = ["ts_ns", "cpu", "event"] + (["duration_ns"] if want_dur else [])
    n = 0
    ts0 = ts_last = None
    max_cpu = 0
    counts: dict[str, int] = {}
    hist = np.zeros((N_EV, HIST_N), dtype=np.int64)
    for batch in tr.iter_batches(columns=cols):
        if batch.num_rows == 0:
            continue
        n += batch.num_rows
        ts = batch.column("ts_ns").to_numpy()
        if ts0 is None:
            ts0 = int(ts[0])
        ts_last = int(ts[-1])
        max_cpu = max(max_cpu, int(batch.column("cpu").to_numpy().max()))
        ev = batch.column("event")
        if pa.types.is_dictionary(ev.type) and ev.null_count == 0:
            # count the dictionary codes and name them once: decoding every row to a string
            # first took half of the prescan (~25 of ~50 ns/event; engineer H1, session 7)
            codes = ev.indices.to_numpy(zero_copy_only=False)
            per_code = np.bincount(codes, minlength=len(ev.dictionary))
            for name, c in zip(ev.dictionary.to_pylist(), per_code.tolist(), strict=True):
                if c:
                    counts[name] = counts.get(name, 0) + c
        else:
            vc = pc.value_counts(ev.dictionary_decode() if pa.types.is_dictionary(ev.type) else ev)
            for item in vc.to_pylist():
                counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
        if want_dur:
            dur = batch.column("duration_ns").to_numpy().astype(np.int64)
            _dur_hist(event_codes(ev), dur, hist)
    medians = {}
    measured = {}
    for name, c in IN_CODES.items():
        if hist[c].sum():
            medians[name] = hist_quantile(hist[c], 0.5)
            measured[name] = int(hist[c].sum())
    size_max = tr.column_max("size_bytes")
    return Prescan(n, ts0 or 0, ts_last or 0, max_cpu, counts, medians, measured, size_max, hist)


def bucket_low(idx: np.ndarray) -> np.ndarray:
    """Lower bound of histogram buckets (vectorised ``locks._sim.hist_bounds``)."""
    idx = idx.astype(np.int64)
    k = np.maximum((idx - HIST_EXACT) // HIST_SUB + 1, 0)
    m = (idx - HIST_EXACT) % HIST_SUB + HIST_SUB
    return np.where(idx < HIST_EXACT, idx, m << k)


def resample_durations(
    dur: np.ndarray, code: np.ndarray, hist: np.ndarray, offset: int, seed: int
) -> np.ndarray:
    """Measured durations replaced by seeded draws from the trace's own distribution of the
    same event kind (``hist``: :attr:`Prescan.dur_hist`): one replica of the hold-time
    uncertainty. Rows without a measured duration stay 0."""
    out = dur.copy()
    rows = np.arange(offset, offset + len(dur), dtype=np.uint64)
    mix = np.uint64((seed * 0xA0761D6478BD642F + 0xE7037ED1A0B428DB) % 2**64)
    u = splitmix64_array(rows ^ mix)
    for c in range(hist.shape[0]):
        total = int(hist[c].sum())
        sel = (code == c) & (dur > 0)
        if total == 0 or not sel.any():
            continue
        cdf = np.cumsum(hist[c])
        pick = np.searchsorted(cdf, (u[sel] % np.uint64(total)).astype(np.int64), side="right")
        out[sel] = np.maximum(bucket_low(pick), 1)
    return out
