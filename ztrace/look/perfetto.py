"""``ztrace export perfetto``: a trace as Chrome trace-event JSON for ui.perfetto.dev.

Layout (JSON object format, ``displayTimeUnit: "ns"``):

* one *process* per zsmalloc pool: ``pid`` = 1, 2, … in order of first appearance (pool ids
  are kernel pointers, too large for a JSON number to hold exactly), named by ``M``
  ``process_name`` events ``zsmalloc pool 0x…``;
* two *threads* per CPU: ``tid = 1 + cpu`` for allocator calls ("cpu N"), and
  ``tid = 100001 + cpu`` for lock waits and holds ("cpu N locks"), so a wait never has to
  nest inside the call that caused it;
* ``X`` complete events for calls with a measured ``duration_ns`` and for lock ``wait`` (from
  ``contention_begin``, or on kprobe kernels the spinlock slowpath pair, ``wait_ns`` long;
  each wait once: :func:`ztrace.lockflags.measured_waits`) and ``hold`` (after the wait,
  ``hold_ns`` long);
* ``i`` thread-scoped instants for calls whose duration is unknown (``duration_ns`` = 0);
* ``C`` counter events ``pool pages`` from checkpoint rows that carry ``pool_pages``.

``ts``/``dur`` are microseconds written as exact decimals (``123.456``), from integer ns.
Events on one thread are written in ``ts`` order and never overlap: an event that would run
past the next one on its thread is cut at the next one's start (Perfetto drops improperly
nested slices otherwise); the number cut is in ``otherData.clamped_events``.
The file is streamed batch by batch, so memory stays bounded whatever the trace length.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import polars as pl

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format.safeio import output_file
from ztrace.lockflags import (
    LOCK_CONTENTION,
    LOCK_EVENTS,
    SPIN_SLOWPATH,
    measured_waits,
    waits_source,
)

OPS_TID_BASE = 1
LOCK_TID_BASE = 100_001
_EVENT_COLUMNS = ("ts_ns", "cpu", "event", "pool", "size_bytes", "handle", "duration_ns")
_OPTIONAL = (
    "class_idx",
    "lock_kind",
    "wait_ns",
    "hold_ns",
    "lock_addr",
    "lock_flags",
    "pool_pages",
    "tid",
)


@dataclass
class ExportStats:
    path: Path
    trace_events: int  # events in the input that were exported
    json_events: int  # entries written to traceEvents
    clamped: int
    bytes: int  # written, counted: a pipe or device has no size to stat


class _Counted:
    """A binary output written as UTF-8 text, counting the bytes: ``-o /dev/stdout | cat``
    has no size on disk to report."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.bytes = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self._f.write(data)
        self.bytes += len(data)


def _us(col: str) -> pl.Expr:
    """Integer ns -> exact microsecond decimal text, e.g. 1234567 -> "1234.567"."""
    c = pl.col(col).cast(pl.UInt64)
    return _fmt("{}.{}", c // 1000, (c % 1000).cast(pl.String).str.zfill(3))


def _fmt(template: str, *args: pl.Expr | str) -> pl.Expr:
    """``pl.format`` without its rules on braces: ``{}`` are the only placeholders.

    JSON text is full of literal braces, which ``pl.format`` refuses.
    """
    pieces = template.split("{}")
    if len(pieces) != len(args) + 1:
        raise ValueError(f"template {template!r} needs {len(pieces) - 1} args, got {len(args)}")
    parts: list[pl.Expr] = []
    for lit, arg in zip(pieces, [*args, None], strict=True):
        if lit:
            parts.append(pl.lit(lit))
        if arg is not None:
            e = pl.col(arg) if isinstance(arg, str) else arg
            parts.append(e.cast(pl.String))
    return pl.concat_str(parts)


def _json_str(values: list[str]) -> dict[str, str]:
    return {v: json.dumps(v) for v in values}


def _rows(batch: pl.DataFrame, pid_of: dict[int, int], has_slowpath: bool) -> pl.DataFrame:
    """Expand one batch into output rows: pid, tid, ph, name, ts_ns, dur_ns, args.
    ``has_slowpath``: the trace has ``spin_slowpath`` rows (every spinlock wait), so the
    tracepoint's plain-spinlock rows, a subset of them, are left out."""
    b = batch.with_columns(
        pl.col("event").cast(pl.String),
        pl.col("pool").replace_strict(pid_of, return_dtype=pl.Int64).alias("pid"),
    )
    for c in _OPTIONAL:
        if c not in b.columns:
            b = b.with_columns(pl.lit(None).alias(c))
    b = b.with_columns(pl.col("lock_kind").cast(pl.String).fill_null("lock"))
    ev = pl.col("event")
    is_lock = ev.is_in(LOCK_EVENTS)  # never an allocator call (session 27: slowpath rows were)
    is_wait = measured_waits(
        ev == SPIN_SLOWPATH,
        ev == LOCK_CONTENTION,
        pl.col("lock_flags").cast(pl.UInt32).fill_null(0),
        has_slowpath,
    )
    is_ckpt = ev == "checkpoint"
    ops = b.filter(~is_lock & ~is_ckpt).select(
        "pid",
        (pl.col("cpu").cast(pl.Int64) + OPS_TID_BASE).alias("tid"),
        pl.when(pl.col("duration_ns") > 0).then(pl.lit("X")).otherwise(pl.lit("i")).alias("ph"),
        pl.col("event").alias("name"),
        pl.col("ts_ns").cast(pl.UInt64),
        pl.col("duration_ns").cast(pl.UInt64).alias("dur_ns"),
        _fmt(
            '{"size":{},"handle":"0x{}","class_idx":{},"tid":{}}',
            pl.col("size_bytes"),
            pl.col("handle").cast(pl.UInt64).map_batches(_hex),
            pl.col("class_idx").cast(pl.String).fill_null("null"),
            pl.col("tid").cast(pl.String).fill_null("null"),
        ).alias("args"),
    )
    locks = b.filter(is_wait)
    lock_args = _fmt(
        '{"lock_addr":"0x{}","wait_ns":{},"hold_ns":{},"tid":{}}',
        pl.col("lock_addr").cast(pl.UInt64).fill_null(0).map_batches(_hex),
        pl.col("wait_ns").cast(pl.String).fill_null("null"),
        pl.col("hold_ns").cast(pl.String).fill_null("null"),
        pl.col("tid").cast(pl.String).fill_null("null"),
    ).alias("args")
    lock_tid = (pl.col("cpu").cast(pl.Int64) + LOCK_TID_BASE).alias("tid")
    waits = locks.select(
        "pid",
        lock_tid,
        pl.lit("X").alias("ph"),
        _fmt("wait {}", pl.col("lock_kind")).alias("name"),
        pl.col("ts_ns").cast(pl.UInt64),
        pl.col("wait_ns").cast(pl.UInt64).fill_null(0).alias("dur_ns"),
        lock_args,
    )
    holds = locks.filter(pl.col("hold_ns").cast(pl.UInt64).fill_null(0) > 0).select(
        "pid",
        lock_tid,
        pl.lit("X").alias("ph"),
        _fmt("hold {}", pl.col("lock_kind")).alias("name"),
        (pl.col("ts_ns").cast(pl.UInt64) + pl.col("wait_ns").cast(pl.UInt64).fill_null(0)).alias(
            "ts_ns"
        ),
        pl.col("hold_ns").cast(pl.UInt64).alias("dur_ns"),
        lock_args,
    )
    counters = b.filter(is_ckpt & pl.col("pool_pages").is_not_null()).select(
        "pid",
        pl.lit(0, dtype=pl.Int64).alias("tid"),
        pl.lit("C").alias("ph"),
        pl.lit("pool pages").alias("name"),
        pl.col("ts_ns").cast(pl.UInt64),
        pl.lit(0, dtype=pl.UInt64).alias("dur_ns"),
        _fmt('{"pages":{}}', pl.col("pool_pages")).alias("args"),
    )
    return pl.concat([ops, waits, holds, counters], how="vertical_relaxed")


def _hex(s: pl.Series) -> pl.Series:
    # polars has no integer->hex formatter; the values are few per batch relative to I/O.
    return pl.Series(
        s.name, [format(v, "x") if v is not None else "0" for v in s.to_list()], dtype=pl.String
    )


def _clamp(rows: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Cut X events that would overlap the next event on their thread; return count cut."""
    rows = rows.sort("pid", "tid", "ts_ns", maintain_order=True)
    nxt = pl.col("ts_ns").shift(-1).over("pid", "tid")
    over = (pl.col("ph") == "X") & nxt.is_not_null() & (pl.col("ts_ns") + pl.col("dur_ns") > nxt)
    rows = rows.with_columns(over.alias("_cut"))
    n = int(rows["_cut"].sum())
    rows = rows.with_columns(
        pl.when(pl.col("_cut"))
        .then(nxt - pl.col("ts_ns"))
        .otherwise(pl.col("dur_ns"))
        .alias("dur_ns")
    ).drop("_cut")
    return rows, n


def _write_rows(f: _Counted, rows: pl.DataFrame, first: bool) -> int:
    if rows.height == 0:
        return 0
    name_json = _json_str(rows["name"].unique().to_list())
    text = rows.sort("ts_ns", maintain_order=True).select(
        pl.when(pl.col("ph") == "X")
        .then(
            _fmt(
                '{"name":{},"ph":"X","ts":{},"dur":{},"pid":{},"tid":{},"args":{}}',
                pl.col("name").replace_strict(name_json),
                _us("ts_ns"),
                _us("dur_ns"),
                "pid",
                "tid",
                "args",
            )
        )
        .when(pl.col("ph") == "i")
        .then(
            _fmt(
                '{"name":{},"ph":"i","s":"t","ts":{},"pid":{},"tid":{},"args":{}}',
                pl.col("name").replace_strict(name_json),
                _us("ts_ns"),
                "pid",
                "tid",
                "args",
            )
        )
        .otherwise(
            _fmt(
                '{"name":{},"ph":"C","ts":{},"pid":{},"args":{}}',
                pl.col("name").replace_strict(name_json),
                _us("ts_ns"),
                "pid",
                "args",
            )
        )
        .alias("line")
    )["line"]
    f.write(("" if first else ",\n") + ",\n".join(text.to_list()))
    return rows.height


def export_perfetto(
    trace: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    max_events: int | None = None,
    quiet: bool = True,
    batch_rows: int = 1 << 18,
    force: bool = False,
) -> ExportStats:
    """Write ``trace`` (optionally a time window, or its first ``max_events``) as JSON.
    An existing ``out`` file is replaced only with ``force`` (safeio.output_file)."""
    from ztrace.format import open_trace
    from ztrace.progress import progress

    tr = open_trace(trace)
    meta = tr.meta
    names = set(tr.schema.names)
    columns = list(_EVENT_COLUMNS) + [c for c in _OPTIONAL if c in names]
    total = tr.num_rows
    if total == 0:
        raise TraceFormatError(trace, "empty dataset: the trace has no events to export")
    # which rows are waits depends on the whole trace (measured_waits): one pass over the
    # event column first (dictionary-coded: its codes only)
    has_slowpath = any(
        SPIN_SLOWPATH in pl.Series(rb.column(0)).cast(pl.String).unique().to_list()
        for rb in tr.iter_batches(columns=["event"], batch_rows=batch_rows)
    )
    out = Path(out)
    pid_of: dict[int, int] = {}
    threads: set[tuple[int, int]] = set()
    exported = written = clamped = 0
    pending = pl.DataFrame()
    # a fresh temporary beside `out`, renamed over it when complete: a half-written file
    # never looks like an export, and a link planted at a guessable name is never followed
    with (
        output_file(out, force=force, inputs=(trace,), binary=True) as raw,
        progress(total, desc="export", quiet=quiet, unit="events") as bar,
    ):
        f = _Counted(raw)
        f.write('{"traceEvents":[\n')
        first = True
        for rb in tr.iter_batches(columns=columns, batch_rows=batch_rows):
            bar.advance(rb.num_rows)
            batch = pl.from_arrow(rb)
            assert isinstance(batch, pl.DataFrame)
            if start_ns is not None:
                batch = batch.filter(pl.col("ts_ns") >= start_ns)
            if end_ns is not None:
                batch = batch.filter(pl.col("ts_ns") < end_ns)
            if max_events is not None:
                batch = batch.head(max(0, max_events - exported))
            if batch.height == 0:
                if max_events is not None and exported >= max_events:
                    break
                continue
            exported += batch.height
            for p in batch["pool"].unique(maintain_order=True).to_list():
                pid_of.setdefault(int(p), len(pid_of) + 1)
            new = _rows(batch, pid_of, has_slowpath)
            rows = pl.concat([pending, new], how="vertical_relaxed") if pending.height else new
            rows, n = _clamp(rows)
            clamped += n
            # The last event of each thread waits for the next batch: it may need cutting.
            last = pl.col("ts_ns").rank("ordinal").over("pid", "tid") == pl.len().over("pid", "tid")
            rows = rows.with_columns(last.alias("_last"))
            pending = rows.filter(pl.col("_last")).drop("_last")
            ready = rows.filter(~pl.col("_last")).drop("_last")
            threads.update(zip(ready["pid"].to_list(), ready["tid"].to_list(), strict=True))
            written += _write_rows(f, ready, first)
            first = first and ready.height == 0
        if pending.height:
            threads.update(zip(pending["pid"].to_list(), pending["tid"].to_list(), strict=True))
            written += _write_rows(f, pending, first)
            first = first and pending.height == 0
        for line in _metadata_events(pid_of, threads):
            f.write(("" if first else ",\n") + line)
            first = False
            written += 1
        other = {
            "tool": "ztrace export perfetto",
            "trace": str(trace),
            "kernel_release": meta.kernel_release,
            "source": meta.source,
            "nr_cpus": meta.nr_cpus,
            "lost_events": meta.lost_events,
            "waits": waits_source(has_slowpath),
            "exported_trace_events": exported,
            "clamped_events": clamped,
            "pools": {str(pid): hex(pool) for pool, pid in pid_of.items()},
        }
        f.write('\n],"displayTimeUnit":"ns","otherData":' + json.dumps(other) + "}\n")
        if exported == 0:
            raise ConfigError(
                "--start-ns/--end-ns/--max-events: no events of the trace are in the window"
            )
    return ExportStats(
        path=out,
        trace_events=exported,
        json_events=written,
        clamped=clamped,
        bytes=f.bytes,
    )


def _metadata_events(pid_of: dict[int, int], threads: set[tuple[int, int]]) -> list[str]:
    out: list[str] = []

    def m(name: str, pid: int, args: dict[str, Any], tid: int | None = None) -> str:
        ev: dict[str, Any] = {"name": name, "ph": "M", "pid": pid}
        if tid is not None:
            ev["tid"] = tid
        ev["args"] = args
        return json.dumps(ev)

    for pool, pid in pid_of.items():
        out.append(m("process_name", pid, {"name": f"zsmalloc pool {pool:#x}"}))
        out.append(m("process_sort_index", pid, {"sort_index": pid}))
    for pid, tid in sorted(threads):
        if tid == 0:
            continue  # counters live on the process, not a thread
        if tid >= LOCK_TID_BASE:
            cpu, label, order = tid - LOCK_TID_BASE, "locks", 2
        else:
            cpu, label, order = tid - OPS_TID_BASE, "", 1
        name = f"cpu {cpu}" + (f" {label}" if label else "")
        out.append(m("thread_name", pid, {"name": name}, tid))
        out.append(m("thread_sort_index", pid, {"sort_index": cpu * 4 + order}, tid))
    return out
