"""The prescan: one cheap pass over a trace before the replay (counts, span, CPUs, durations)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numba import njit

from ztrace.format import iter_batches
from ztrace.replay.ingest import EV_CODES, N_EV, event_codes
from ztrace.replay.locks._sim import HIST_N, hist_index, hist_quantile


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


def _stats_max(path: str | os.PathLike[str], column: str) -> int | None:
    """Max of an integer column from the Parquet row-group statistics (no data read), or
    None when any row group lacks them."""
    from ztrace.format import trace_files

    best = 0
    for f in trace_files(path):
        md = pq.ParquetFile(f).metadata
        j = md.schema.to_arrow_schema().get_field_index(column)
        if j < 0:
            return None
        for r in range(md.num_row_groups):
            st = md.row_group(r).column(j).statistics
            if st is None or not st.has_min_max:
                return None
            best = max(best, int(st.max))
    return best


def prescan(path: str | os.PathLike[str]) -> Prescan:
    """Cheap pass: event counts, time span, CPUs, measured durations.

    Reads ``event`` (dictionary codes), ``ts_ns`` and ``cpu``; ``duration_ns`` only when the
    Parquet statistics say some duration is nonzero.
    """
    want_dur = _stats_max(path, "duration_ns") != 0
    cols = ["ts_ns", "cpu", "event"] + (["duration_ns"] if want_dur else [])
    n = 0
    ts0 = ts_last = None
    max_cpu = 0
    counts: dict[str, int] = {}
    hist = np.zeros((N_EV, HIST_N), dtype=np.int64)
    for batch in iter_batches(path, columns=cols):
        if batch.num_rows == 0:
            continue
        n += batch.num_rows
        ts = batch.column("ts_ns").to_numpy()
        if ts0 is None:
            ts0 = int(ts[0])
        ts_last = int(ts[-1])
        max_cpu = max(max_cpu, int(batch.column("cpu").to_numpy().max()))
        ev = batch.column("event")
        vc = pc.value_counts(ev.dictionary_decode() if pa.types.is_dictionary(ev.type) else ev)
        for item in vc.to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
        if want_dur:
            dur = batch.column("duration_ns").to_numpy().astype(np.int64)
            _dur_hist(event_codes(ev), dur, hist)
    medians = {}
    for name, c in EV_CODES.items():
        if hist[c].sum():
            medians[name] = hist_quantile(hist[c], 0.5)
    return Prescan(n, ts0 or 0, ts_last or 0, max_cpu, counts, medians)
