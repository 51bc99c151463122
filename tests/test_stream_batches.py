"""Streaming a trace reads row group by row group (ztrace.format.trace._file_batches)."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.test_format import META, small_table
from ztrace.format import open_trace, write_trace


def test_rows_in_order_across_row_groups_and_arrow_memory_stays_flat(tmp_path):
    n = 1 << 16
    write_trace(tmp_path / "t", small_table(n), META)
    (f,) = sorted((tmp_path / "t").glob("*.parquet"))
    pq.write_table(pq.read_table(f), f, row_group_size=1 << 11)  # 32 row groups
    tr = open_trace(tmp_path / "t")
    # Arrow's allocation count is the whole process's: a test that ran before in this
    # worker may still hold tables (the full run under xdist once started at ~1 MB), so
    # only what this stream adds counts
    gc.collect()
    base = pa.total_allocated_bytes()
    peaks = []
    got = []
    for b in tr.iter_batches(columns=["ts_ns", "handle"], batch_rows=1000):
        got.append(b.column("ts_ns").to_numpy().copy())  # no view keeps a buffer alive
        peaks.append(pa.total_allocated_bytes() - base)
    ts = np.concatenate(got)
    assert np.array_equal(ts, np.arange(n, dtype=np.uint64) * 100)
    # one reader per row group: Arrow holds a few row groups' buffers (here ~100 KB), not
    # the file's (one reader for the whole file: ~690 KB here, and ~6 bytes per row read on
    # a 30 M-event trace; issue 15)
    row_group_bytes = (1 << 11) * 2 * 8
    assert max(peaks) <= 8 * row_group_bytes
