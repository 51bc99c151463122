"""Summarise a trace itself into results-shaped tables (no replay, no model).

Used by ``ztrace dashboard TRACE`` when the replay engine is not available, and useful on
its own for a capture: it shows the contention the kernel *observed* (``lock_contention``
events, and ``spin_slowpath`` where a kprobe kernel has them, counted by
:func:`ztrace.lockflags.measured_waits`) under the design name ``observed``. Acquisitions are
approximated by allocator calls (``zs_malloc`` + ``zs_free``: each takes its class lock
once), so the rate is "contended events per allocator call". Everything is one polars lazy
query per table, so a 10 M-event trace takes about a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from ztrace.format import RESULT_COLUMNS, Results, open_trace, results_from_tables
from ztrace.lockflags import LOCK_CONTENTION, SPIN_SLOWPATH, measured_waits

OBSERVED = "observed"
#: Aim for about this many timeline bins; the dashboard re-bins further if needed.
TARGET_BINS = 1000


def _nice_bin(span_ns: int, target: int = TARGET_BINS) -> int:
    """The smallest 1/2/5 × 10^k ns bin giving at most ``target`` bins."""
    raw = max(1, -(-span_ns // target))
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k >= raw:
                return m * k
        k *= 10


def summarise_trace(path: str | os.PathLike[str], *, quiet: bool = True) -> Results:
    """Timeline, wait histogram and per-lock-kind tables of observed contention."""
    tr = open_trace(path)
    files, meta = tr.files, tr.meta
    names = set(tr.schema.names)
    n_events = tr.num_rows
    cols = ["ts_ns", "event"] + [
        c for c in ("wait_ns", "hold_ns", "lock_kind", "lock_flags", "pool_pages") if c in names
    ]
    lf = (
        pl.scan_parquet([str(f) for f in files])
        .select(cols)
        .with_columns(pl.col("event").cast(pl.String))
    )
    if "wait_ns" not in names:
        lf = lf.with_columns(pl.lit(None, dtype=pl.UInt64).alias("wait_ns"))
    if "hold_ns" not in names:
        lf = lf.with_columns(pl.lit(None, dtype=pl.UInt64).alias("hold_ns"))
    if "lock_kind" not in names:
        lf = lf.with_columns(pl.lit("other").alias("lock_kind"))
    if "pool_pages" not in names:
        lf = lf.with_columns(pl.lit(None, dtype=pl.UInt64).alias("pool_pages"))
    if "lock_flags" not in names:
        lf = lf.with_columns(pl.lit(None, dtype=pl.UInt32).alias("lock_flags"))
    lf = lf.with_columns(pl.col("lock_kind").cast(pl.String))
    ev = pl.col("event")
    # one pass for the time bounds and for which waits count (ztrace.lockflags)
    bounds = lf.select(
        pl.col("ts_ns").min().alias("lo"),
        pl.col("ts_ns").max().alias("hi"),
        (ev == SPIN_SLOWPATH).any().alias("has_slowpath"),
    )
    lo, hi, has_slowpath = bounds.collect().row(0)
    lo, hi = int(lo or 0), int(hi or 0)
    bin_ns = _nice_bin(hi - lo + 1)

    is_op = pl.col("event").is_in(["zs_malloc", "zs_free"])
    is_lock = measured_waits(
        ev == SPIN_SLOWPATH,
        ev == LOCK_CONTENTION,
        pl.col("lock_flags").fill_null(0),
        bool(has_slowpath),
    )
    timeline = (
        lf.with_columns((((pl.col("ts_ns") - lo) // bin_ns) * bin_ns + lo).alias("bin_start_ns"))
        .group_by("bin_start_ns")
        .agg(
            pl.len().cast(pl.UInt64).alias("ops"),
            is_op.sum().cast(pl.UInt64).alias("acquisitions"),
            is_lock.sum().cast(pl.UInt64).alias("contended"),
            pl.col("wait_ns").filter(is_lock).sum().cast(pl.UInt64).alias("wait_ns_total"),
            pl.col("pool_pages").drop_nulls().last().alias("pages_used"),
        )
        .sort("bin_start_ns")
        .with_columns(
            pl.lit(OBSERVED).alias("lock_design"),
            pl.lit(bin_ns, dtype=pl.UInt64).alias("bin_ns"),
            pl.col("pages_used").forward_fill().fill_null(0).cast(pl.UInt64),
        )
        .select(
            "lock_design",
            "bin_start_ns",
            "bin_ns",
            "ops",
            "acquisitions",
            "contended",
            "wait_ns_total",
            "pages_used",
        )
        .collect()
    )
    locks = lf.filter(is_lock)
    waits = locks.filter(pl.col("wait_ns") > 0)
    hist = (
        waits.with_columns(
            # log2 bucket [2^k, 2^(k+1)) of each contended wait.
            pl.col("wait_ns").cast(pl.Float64).log(2).floor().cast(pl.UInt64).alias("k")
        )
        .group_by("k")
        .agg(pl.len().cast(pl.UInt64).alias("count"))
        .sort("k")
        .select(
            pl.lit(OBSERVED).alias("lock_design"),
            (pl.lit(1, dtype=pl.UInt64) * 2 ** pl.col("k")).cast(pl.UInt64).alias("bucket_lo_ns"),
            (pl.lit(1, dtype=pl.UInt64) * 2 ** (pl.col("k") + 1))
            .cast(pl.UInt64)
            .alias("bucket_hi_ns"),
            "count",
        )
        .collect()
    )
    n_acq = int(timeline["acquisitions"].sum())
    agg = [
        pl.len().cast(pl.UInt64).alias("contended"),
        pl.col("wait_ns").sum().cast(pl.UInt64).alias("wait_ns_total"),
        pl.col("wait_ns").max().cast(pl.UInt64).alias("wait_ns_max"),
        pl.col("hold_ns").sum().cast(pl.UInt64).alias("hold_ns_total"),
    ]
    summary = (
        locks.select(
            *agg,
            pl.col("wait_ns").median().cast(pl.UInt64).alias("wait_ns_p50"),
            pl.col("wait_ns").quantile(0.99, "higher").cast(pl.UInt64).alias("wait_ns_p99"),
        )
        .collect()
        .with_columns(
            pl.lit(OBSERVED).alias("lock_design"),
            pl.lit(n_acq, dtype=pl.UInt64).alias("acquisitions"),
            (pl.col("contended") / max(1, n_acq)).alias("contention_rate"),
            (pl.col("wait_ns_total") / pl.col("contended").clip(lower_bound=1)).alias(
                "wait_ns_avg"
            ),
        )
        .select(*RESULT_COLUMNS["locks_summary"])
    )
    by_lock = (
        locks.group_by("lock_kind")
        .agg(*agg, pl.col("wait_ns").min().cast(pl.UInt64).alias("wait_ns_min"))
        .collect()
        .with_columns(
            pl.lit(OBSERVED).alias("lock_design"),
            # The trace does not say which lock type; zsmalloc's class and pool locks are
            # spinlocks (mm/zsmalloc.c), the migrate lock an rwlock.
            pl.lit("spinlock").alias("lock_type"),
            pl.col("lock_kind").fill_null("other").alias("lock"),
            pl.lit(None, dtype=pl.UInt64).alias("acquisitions"),
        )
        .select(*RESULT_COLUMNS["locks_by_lock"])
    )
    tables = {"timeline": timeline, "wait_hist": hist}
    if summary["contended"][0]:
        tables["locks_summary"] = summary
        tables["locks_by_lock"] = by_lock
    return results_from_tables(
        tables,
        meta={"ztrace.trace": str(Path(path))},
        summary={
            "events": n_events,
            "lost_events": meta.lost_events,
            "summarised_trace": True,
            "trace": str(Path(path)),
        },
    )
