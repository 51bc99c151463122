"""Measured lock contention from a capture, in ``perf lock contention``'s vocabulary.

A capture's ``lock_contention`` rows are the waits that actually happened (one row per
``lock:contention_begin``/``end`` pair: lock address, flags, wait, kernel stack id) and
``stacks.json`` beside the parts names each stack. On a kprobe kernel its ``spin_slowpath``
rows (same columns) are every spinlock wait, which the tracepoint reports only in part;
:func:`ztrace.lockflags.measured_waits` says which rows count, each wait once. This module
turns them into:

* **by lock** (perf ``-l``): one row per lock address, named by the zsmalloc lock it is --
  ``class[i]`` (the index when the trace has object sizes to infer it from), ``pool``,
  ``zspage`` or ``other`` -- as attributed at capture time from the stack and flags
  (``ztrace/capture/attribute.py``);
* **by caller** (perf's default): one row per calling function, the first frame of the stack
  that is not lock machinery (``_raw_spin_lock``, ``__pv_queued_spin_lock_slowpath``, ...);
* **folded stacks** (``a;b;c N``, root first, N = wait in ns) for flamegraph.pl/speedscope.

Everything is computed from one aggregate, the *contention table*: one row per (lock address,
kind, flags, stack id) with contended count, total/max/min wait and a log2 wait histogram.
An always-on capture (``capture --summary``) writes that table directly, per interval, so
both kinds of input share every line below :func:`contention_table`.

Hold times: the probes measure waits only (``lock:contention_end``); a trace with a
``hold_ns`` column (none that capture writes today) gets hold columns too.
"""

from __future__ import annotations

import io
import json
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import LOCK_CLASSES_FILE
from ztrace.lockflags import (
    LOCK_CONTENTION,
    LOCK_EVENTS,
    SPIN_SLOWPATH,
    caller_of,
    lock_type,
    measured_waits,
    waits_source,
)
from ztrace.look.report import SORT_COLUMN, SORT_KEYS, human_ns, perf_table, text_console

# a capture sees contentions, not acquisitions: `acquired` sorts like perf without lock_stat,
# by contentions
_SORT_COLUMN = {**SORT_COLUMN, "acquired": "contended"}
#: log2 wait buckets: bucket b holds waits in [2**b, 2**(b+1)) ns (bucket 0 also holds 0)
HIST_BUCKETS = 40


def is_trace(path: str | Path) -> bool:
    """A capture/trace (Parquet parts, or a summary capture), as opposed to a results dir."""
    p = Path(path)
    try:  # a name over 255 bytes, or a parent we may not search: one line, not a traceback
        if p.is_file():
            return p.suffix == ".parquet"
        if not p.is_dir() or (p / "summary.json").exists():
            return False
        parts = (*p.glob("part-*.parquet"), *p.glob("summary-*.parquet"))
    except OSError as exc:
        raise TraceFormatError(p, f"cannot use this path ({exc.strerror or exc})") from None
    return any(not f.name.startswith(".") for f in parts)


def is_summary_capture(path: str | Path) -> bool:
    """A ``capture --summary`` directory: ``summary-*.parquet`` intervals and no event parts
    (nothing to replay; report and dashboard read its aggregates)."""
    p = Path(path)
    return (
        is_trace(p)
        and p.is_dir()
        and not any(p.glob("part-*.parquet"))
        and any(not f.name.startswith(".") for f in p.glob("summary-*.parquet"))
    )


@dataclass
class Measured:
    """A capture's contention table plus what the report needs to name and trust it."""

    table: pl.DataFrame  # the contention table (see module docstring)
    stacks: dict[int, list[str]]
    trace: str
    meta: dict[str, Any]
    events: int
    lost_events: int
    has_hold: bool
    class_of_addr: dict[int, int]
    not_captured: str


def hist_of(wait_ns: np.ndarray) -> np.ndarray:
    """log2 bucket of each wait (0 and 1 ns both in bucket 0)."""
    w = np.maximum(wait_ns.astype(np.uint64), 1)
    b = np.floor(np.log2(w.astype(np.float64))).astype(np.int64)
    return np.minimum(b, HIST_BUCKETS - 1)


def contention_table(rows: pl.DataFrame) -> pl.DataFrame:
    """Per-event lock rows -> the contention table (one row per lock, kind, flags, stack)."""
    keys = ["lock_addr", "lock_kind", "lock_flags", "stack_id"]
    if rows.is_empty():
        return pl.DataFrame(
            schema={
                "lock_addr": pl.UInt64,
                "lock_kind": pl.Utf8,
                "lock_flags": pl.UInt32,
                "stack_id": pl.Int32,
                "contended": pl.UInt64,
                "wait_ns_total": pl.UInt64,
                "wait_ns_max": pl.UInt64,
                "wait_ns_min": pl.UInt64,
                "hold_ns_total": pl.UInt64,
                "hist": pl.List(pl.UInt64),
            }
        )
    rows = rows.with_columns(
        pl.Series("bucket", hist_of(rows["wait_ns"].to_numpy()), dtype=pl.Int64)
    )
    hold = (
        pl.col("hold_ns").sum().cast(pl.UInt64)
        if "hold_ns" in rows.columns
        else pl.lit(None, pl.UInt64)
    )
    agg = rows.group_by(keys).agg(
        pl.len().cast(pl.UInt64).alias("contended"),
        pl.col("wait_ns").sum().cast(pl.UInt64).alias("wait_ns_total"),
        pl.col("wait_ns").max().cast(pl.UInt64).alias("wait_ns_max"),
        pl.col("wait_ns").min().cast(pl.UInt64).alias("wait_ns_min"),
        hold.alias("hold_ns_total"),
        pl.col("bucket"),
    )
    hists = [
        np.bincount(np.asarray(b, np.int64), minlength=HIST_BUCKETS).astype(np.uint64).tolist()
        for b in agg["bucket"].to_list()
    ]
    return (
        agg.drop("bucket")
        .with_columns(pl.Series("hist", hists, dtype=pl.List(pl.UInt64)))
        .sort(keys)
    )


def printable_frame(name: str) -> str:
    """A frame name made printable: a lone surrogate or a control character (newline, NUL,
    ESC, U+2028, ...) becomes its repr-style escape (``\\ud800``, ``\\n``, ``\\x1b``), so every
    output (terminal, --csv, --folded, JSON, the dashboard) stays one line per stack and
    encodes as UTF-8."""
    if name.isprintable():
        return name
    out = []
    for ch in name:
        # Cc: controls; Cs: lone surrogates; Zl/Zp: U+2028/9, line breaks to splitlines()
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


def _read_sidecar(trace: Path, name: str, what: str) -> tuple[Path, dict[Any, Any] | None]:
    """A capture's JSON sidecar beside the parts (``stacks.json``, ``lock_classes.json``):
    its path and decoded object, None when absent; anything that is not a JSON object is one
    line naming the file (``what``: the map it should be)."""
    path = (trace if trace.is_dir() else trace.parent) / name
    try:
        if not path.exists() and not path.is_symlink():
            return path, None
        if not path.is_file():
            raise TraceFormatError(path, f"not a regular file (want a {what} map)")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TraceFormatError(path, f"cannot read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise TraceFormatError(path, f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise TraceFormatError(path, f"want a JSON object of {what}, got {_jtype(raw)}")
    return path, raw


def _int_key(path: Path, key: str, what: str) -> int:
    """A sidecar's integer key (JSON keys are strings), or one line naming the file."""
    try:
        return int(key)
    except ValueError:
        raise TraceFormatError(path, f"{what} {printable_frame(key)!r} is not an integer") from None


def _read_stacks(trace: Path) -> dict[int, list[str]]:
    """``stacks.json`` beside the parts: a JSON object of stack id -> list of frame names.
    Absent means no stacks; anything else that is not that shape is one line naming it."""
    path, raw = _read_sidecar(trace, "stacks.json", "stack id -> frames")
    if raw is None:
        return {}
    stacks: dict[int, list[str]] = {}
    for k, v in raw.items():
        sid = _int_key(path, k, "stack id")
        if not isinstance(v, list) or not all(isinstance(f, str) for f in v):
            bad = v if not isinstance(v, list) else next(f for f in v if not isinstance(f, str))
            raise TraceFormatError(
                path, f"stack {sid}: want a list of frame names (strings), found {_jtype(bad)}"
            )
        stacks[sid] = [printable_frame(f) for f in v]
    return stacks


def _read_lock_classes(trace: Path) -> dict[int, int]:
    """``lock_classes.json`` beside the parts: lock address -> the size class index the kernel
    stores in that lock's ``struct size_class`` (read by the probes; zt_note_lock in
    probes/zs_capture.bpf.c). Absent (older captures, kernels without the struct in BTF)
    means none; anything that is not that shape is one line naming it."""
    path, raw = _read_sidecar(trace, LOCK_CLASSES_FILE, "lock address -> class")
    if raw is None:
        return {}
    out: dict[int, int] = {}
    for k, v in raw.items():
        addr = _int_key(path, k, "lock address")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            found = str(v) if isinstance(v, int) and not isinstance(v, bool) else _jtype(v)
            raise TraceFormatError(
                path, f"lock {addr:#x}: want a class index (an integer >= 0), found {found}"
            )
        out[addr] = v
    return out


def _class_names(inferred: dict[int, int], kernel: dict[int, int]) -> tuple[dict[int, int], str]:
    """Class lock address -> index: the kernel's own where the capture read it, else inferred
    from object sizes; and a line saying which."""
    merged = {**inferred, **kernel}
    if not merged:
        return merged, ""
    n_inf = sum(1 for a in inferred if a not in kernel)
    parts = []
    if kernel:
        parts.append(
            f"{len(kernel)} read from the kernel's struct size_class ({LOCK_CLASSES_FILE})"
        )
    if n_inf:
        parts.append(f"{n_inf} inferred from object sizes")
    return merged, ", ".join(parts)


def _jtype(v: Any) -> str:
    """The JSON type name of a decoded value (for error messages)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return names.get(type(v), type(v).__name__)


def _class_of_addr(lock: pl.DataFrame, ops: pl.DataFrame, meta: Any) -> dict[int, int]:
    """Lock address -> size class index, where object sizes let us infer it.

    A class-lock contention happens inside one zs_malloc/zs_free of the same thread: the
    latest op event of that thread that began at or before the wait (kprobe events carry the
    entry time). zs_malloc's size, or for zs_free the size its handle was allocated with,
    gives the class (``ztrace.model.classes``: the kernel's size-class table for this
    kernel's chain size). Each address takes the class most of its waits point at. Without
    sizes (kmem tracepoint captures) nothing can be inferred and the map is empty.

    A handle is a slab slot, reused by later allocations of other sizes: a zs_free's size is
    that of the zs_malloc that returned its handle last before the free began (session 29:
    taking the handle's last zs_malloc in the whole trace named 8 of 17 class locks of a
    6.12 zsstress capture wrongly, against the index the kernel stores in each lock's
    ``struct size_class``, lock_classes.json).
    """
    waits = lock.filter(pl.col("lock_kind") == "class").select("tid", "ts_ns", "lock_addr")
    if waits.is_empty() or ops.is_empty() or not (ops["size_bytes"] > 0).any():
        return {}
    from ztrace.model.classes import build_classes, kernel_profile

    prof = kernel_profile(meta.kernel_release)
    chain = None if prof.legacy_classes else meta.zsmalloc_chain_size
    table = build_classes(chain_size=chain, page_size=meta.page_size)
    # keyed by the malloc's return (its handle exists from then on), so a malloc that entered
    # before the free and got the freed slot after it is never taken for the freed object's
    mallocs = (
        ops.filter((pl.col("event") == "zs_malloc") & (pl.col("handle") != 0))
        .select(
            "handle",
            (pl.col("ts_ns") + pl.col("duration_ns")).alias("ts_ns"),
            pl.col("size_bytes").alias("h_size"),
        )
        .sort("ts_ns")
    )
    ops = (
        ops.sort("ts_ns")
        .join_asof(mallocs, on="ts_ns", by="handle", strategy="backward", check_sortedness=False)
        .with_columns(
            pl.when(pl.col("event") == "zs_malloc")
            .then(pl.col("size_bytes"))
            .otherwise(pl.col("h_size"))
            .alias("obj_size")
        )
        .filter(pl.col("obj_size").is_not_null() & (pl.col("obj_size") > 0))
        .select("tid", "ts_ns", "obj_size")
        .sort("ts_ns")
    )
    if ops.is_empty():
        return {}
    # both sides are sorted by ts_ns above; polars cannot check that per ``by`` group and
    # would warn on every report
    j = waits.sort("ts_ns").join_asof(
        ops, on="ts_ns", by="tid", strategy="backward", check_sortedness=False
    )
    j = j.filter(pl.col("obj_size").is_not_null())
    if j.is_empty():
        return {}
    cls = [table.class_for_malloc(int(s)) for s in j["obj_size"].to_list()]
    j = j.with_columns(pl.Series("class_idx", cls, dtype=pl.Int64))
    best = (
        j.group_by("lock_addr", "class_idx")
        .len()
        .sort(["lock_addr", "len", "class_idx"], descending=[False, True, False])
        .unique("lock_addr", keep="first")
    )
    return dict(zip(best["lock_addr"].to_list(), best["class_idx"].to_list(), strict=True))


def load_measured(path: str | Path) -> Measured:
    """Read a capture's lock rows (or a summary capture's tables) into a :class:`Measured`."""
    from ztrace.format import iter_batches, read_meta, trace_files

    p = Path(path)
    summaries = sorted(f for f in p.glob("summary-*.parquet")) if p.is_dir() else []
    if summaries and not list(p.glob("part-*.parquet")):
        return _load_summary(p, summaries)
    meta = read_meta(p)
    files = trace_files(p)
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(files[0]).schema_arrow.names)
    if "lock_addr" not in names:
        raise TraceFormatError(
            p, "no lock columns: captured without the `locks` probe (capture --probes ...,locks)"
        )
    if "wait_ns" not in names:
        raise TraceFormatError(files[0], "lock rows without a wait_ns column: nothing to measure")
    cols = ["ts_ns", "tid", "event", "size_bytes", "handle", "duration_ns", "lock_addr"]
    cols += ["lock_kind", "wait_ns", "lock_flags", "stack_id"]
    # optional columns (docs/trace-format.md) a file may lack: null, as a row without them
    absent_ok = {"lock_kind": pl.Utf8, "lock_flags": pl.UInt32, "stack_id": pl.Int32}
    has_hold = "hold_ns" in names
    if has_hold:
        cols.append("hold_ns")
    lock_parts, op_parts, events = [], [], 0
    for batch in iter_batches(p, columns=cols):
        events += batch.num_rows
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        missing = [pl.lit(None, dtype=t).alias(c) for c, t in absent_ok.items() if c not in df]
        df = df.with_columns(pl.col("event").cast(pl.Utf8), *missing)
        lock_parts.append(df.filter(pl.col("event").is_in(LOCK_EVENTS)))
        op_parts.append(
            df.filter(pl.col("event").is_in(["zs_malloc", "zs_free"])).select(
                "tid", "ts_ns", "event", "size_bytes", "handle", "duration_ns"
            )
        )
    lock = pl.concat(lock_parts) if lock_parts else pl.DataFrame()
    has_slowpath = not lock.is_empty() and bool((lock["event"] == SPIN_SLOWPATH).any())
    if not lock.is_empty():
        lock = lock.with_columns(
            pl.col("lock_kind").cast(pl.Utf8).fill_null("other"),
            pl.col("lock_flags").fill_null(0),
            pl.col("stack_id").fill_null(-1),
        )
        ev = pl.col("event")
        lock = lock.filter(
            measured_waits(
                ev == SPIN_SLOWPATH, ev == LOCK_CONTENTION, pl.col("lock_flags"), has_slowpath
            )
        )
    ops = pl.concat(op_parts) if op_parts else pl.DataFrame()
    table = contention_table(lock.drop("event", "size_bytes", "handle") if len(lock) else lock)
    # sizes name only the class locks the kernel's own index did not (the inference joins
    # every zs_malloc/zs_free row: skipped when there is nothing left to name)
    kernel = _read_lock_classes(p)
    unnamed = (
        lock.filter(~pl.col("lock_addr").is_in(list(kernel))) if kernel and len(lock) else lock
    )
    classes, class_source = _class_names(
        _class_of_addr(unnamed, ops, meta) if len(unnamed) else {}, kernel
    )
    return Measured(
        table=table,
        stacks=_read_stacks(p),
        trace=str(p),
        meta={
            "kernel_release": meta.kernel_release,
            "nr_cpus": meta.nr_cpus,
            "probes": meta.extra.get("probes", ""),
            "host": meta.extra.get("host", ""),
            "lock_stacks": meta.extra.get("lock_stacks", ""),
            "waits": waits_source(has_slowpath),
            "class_names": class_source,
        },
        events=events,
        lost_events=meta.lost_events,
        has_hold=has_hold,
        class_of_addr=classes,
        not_captured=meta.extra.get("not_captured", ""),
    )


def _load_summary(p: Path, files: list[Path]) -> Measured:
    """A ``capture --summary`` directory: the intervals' lock rows summed into the
    contention table (max/min are over the whole capture already; histograms add up)."""
    import pyarrow.parquet as pq

    frames, md = [], {}
    for f in files:
        try:
            t = pq.read_table(f)
        except OSError as exc:
            raise TraceFormatError(f, f"not a summary file ({exc})") from None
        need = {"record", "lock_addr", "lock_kind", "lock_flags", "stack_id", "count"}
        if not need <= set(t.column_names):
            raise TraceFormatError(
                f, f"missing summary columns {sorted(need - set(t.column_names))}"
            )
        df = pl.from_arrow(t)
        assert isinstance(df, pl.DataFrame)
        frames.append(df)
        md = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    # version 1 files have no `event` (null here, or no column when every file is one):
    # their lock rows are all the tracepoint's
    rows = pl.concat(frames, how="diagonal_relaxed")
    if "event" not in rows.columns:
        rows = rows.with_columns(pl.lit(None, pl.Utf8).alias("event"))
    events = int(rows["count"].sum())
    locks = rows.filter(pl.col("record") == "lock").with_columns(
        pl.col("event").fill_null(LOCK_CONTENTION), pl.col("lock_flags").fill_null(0)
    )
    has_slowpath = bool((locks["event"] == SPIN_SLOWPATH).any())
    ev = pl.col("event")
    locks = locks.filter(
        measured_waits(
            ev == SPIN_SLOWPATH, ev == LOCK_CONTENTION, pl.col("lock_flags"), has_slowpath
        )
    )
    if locks.is_empty():
        table = contention_table(pl.DataFrame())
    else:
        hist = np.array(locks["hist"].to_list(), dtype=np.uint64)
        locks = locks.with_columns(pl.Series("_i", np.arange(len(locks)), dtype=pl.Int64))
        keys = ["lock_addr", "lock_kind", "lock_flags", "stack_id"]
        agg = (
            locks.group_by(keys)
            .agg(
                pl.col("count").sum().cast(pl.UInt64).alias("contended"),
                pl.col("total_ns").sum().cast(pl.UInt64).alias("wait_ns_total"),
                pl.col("max_ns").max().cast(pl.UInt64).alias("wait_ns_max"),
                pl.col("min_ns").min().cast(pl.UInt64).alias("wait_ns_min"),
                pl.lit(None, pl.UInt64).alias("hold_ns_total"),
                pl.col("_i"),
            )
            .sort(keys)
        )
        sums = [hist[np.asarray(ix)].sum(axis=0).tolist() for ix in agg["_i"].to_list()]
        table = agg.drop("_i").with_columns(pl.Series("hist", sums, dtype=pl.List(pl.UInt64)))
    # no object sizes in a summary: class names come from the kernel's struct or not at all
    classes, class_source = _class_names({}, _read_lock_classes(p))
    return Measured(
        table=table,
        stacks=_read_stacks(p),
        trace=str(p),
        meta={
            "kernel_release": md.get("ztrace.kernel_release", ""),
            "nr_cpus": int(md.get("ztrace.nr_cpus", "0") or 0),
            "probes": md.get("ztrace.extra.probes", ""),
            "host": md.get("ztrace.extra.host", ""),
            "lock_stacks": md.get("ztrace.extra.lock_stacks", ""),
            "mode": "summary",
            "intervals": len(files),
            "waits": waits_source(has_slowpath),
            "class_names": class_source,
        },
        events=events,
        lost_events=int(md.get("ztrace.lost_events", "0") or 0),
        has_hold=False,
        class_of_addr=classes,
        not_captured=md.get("ztrace.extra.not_captured", ""),
    )


# --------------------------------------------------------------------------- aggregations


def _finish(df: pl.DataFrame, sort_key: str, limit: int | None, has_hold: bool) -> pl.DataFrame:
    if not has_hold:  # a sum over no measurement is unknown, not 0
        df = df.with_columns(pl.lit(None, pl.UInt64).alias("hold_ns_total"))
    if sort_key not in SORT_KEYS:
        raise ConfigError(f"unknown sort key `{sort_key}` (valid: {', '.join(SORT_KEYS)})")
    if limit is not None and limit < 1:
        raise ConfigError(f"-E/--entries must be at least 1, got {limit}")
    df = df.with_columns(
        (pl.col("wait_ns_total") // pl.col("contended").clip(lower_bound=1))
        .cast(pl.UInt64)
        .alias("wait_ns_avg")
    )
    df = df.sort([_SORT_COLUMN[sort_key], "name"], descending=[True, False])
    return df.head(limit) if limit is not None else df


#: the columns every per-lock and per-caller row has, in perf's order
_WAIT_COLS = (
    "contended",
    "wait_ns_total",
    "wait_ns_max",
    "wait_ns_avg",
    "wait_ns_min",
    "hold_ns_total",
    "type",
    "name",
)


def _sums() -> list[pl.Expr]:
    return [
        pl.col("contended").sum().cast(pl.UInt64),
        pl.col("wait_ns_total").sum().cast(pl.UInt64),
        pl.col("wait_ns_max").max().cast(pl.UInt64),
        pl.col("wait_ns_min").min().cast(pl.UInt64),
        pl.col("hold_ns_total").sum().cast(pl.UInt64),
        # the lock type of most of the waits (a lock has one type; flags can add RT etc.)
        pl.col("type").sort_by("contended", descending=True).first(),
    ]


def _with_type(t: pl.DataFrame) -> pl.DataFrame:
    flags = t["lock_flags"].to_list()
    return t.with_columns(pl.Series("type", [lock_type(int(f)) for f in flags], dtype=pl.Utf8))


def by_lock(m: Measured, *, sort_key: str = "wait_total", limit: int | None = None) -> pl.DataFrame:
    """One row per lock address (perf ``lock contention -l``), named class[i]/pool/zspage/other."""
    t = _with_type(m.table)
    df = t.group_by("lock_addr", "lock_kind").agg(_sums())
    names = [
        f"class[{m.class_of_addr[a]}]" if k == "class" and a in m.class_of_addr else k
        for a, k in zip(df["lock_addr"].to_list(), df["lock_kind"].to_list(), strict=True)
    ]
    df = df.with_columns(
        pl.Series("name", names, dtype=pl.Utf8),
        pl.col("lock_addr").map_elements(lambda a: f"{a:#x}", return_dtype=pl.Utf8).alias("addr"),
    )
    return _finish(df, sort_key, limit, m.has_hold).select(*_WAIT_COLS, "addr", "lock_kind")


def by_kind(m: Measured) -> pl.DataFrame:
    """Totals per lock kind (class, pool, zspage, other): the headline table."""
    t = _with_type(m.table)
    df = t.group_by("lock_kind").agg(
        *_sums(), pl.col("lock_addr").n_unique().cast(pl.UInt64).alias("locks")
    )
    df = df.with_columns(pl.col("lock_kind").alias("name"))
    return _finish(df, "wait_total", None, m.has_hold).select("name", "locks", *_WAIT_COLS[:6])


def by_caller(
    m: Measured, *, sort_key: str = "wait_total", limit: int | None = None
) -> pl.DataFrame:
    """One row per caller (perf ``lock contention``'s default), from the symbolised stacks."""
    t = _with_type(m.table)
    callers = [
        caller_of(m.stacks.get(int(s), [])) if s >= 0 else "[no stack]"
        for s in t["stack_id"].to_list()
    ]
    t = t.with_columns(pl.Series("name", callers, dtype=pl.Utf8))
    df = t.group_by("name").agg(
        *_sums(),
        pl.col("lock_kind").sort_by("wait_ns_total", descending=True).first().alias("lock_kind"),
    )
    return _finish(df, sort_key, limit, m.has_hold).select(*_WAIT_COLS, "lock_kind")


def folded(m: Measured) -> str:
    """Folded stacks (root first, ``;``-joined), weighted by total wait in ns.

    The format of Brendan Gregg's stackcollapse-*.pl, read by flamegraph.pl and speedscope.
    Waits without a stack fold into ``[no stack]``, waits whose stack id is missing from
    stacks.json into ``[unknown stack]``, so the weights always sum to the total wait.
    """
    weights = folded_weights(m, "wait_ns_total")
    return "".join(f"{k} {v}\n" for k, v in sorted(weights.items()) if v > 0)


def folded_weights(m: Measured, column: str) -> dict[str, int]:
    """Folded line (root first, ``;``-joined, no weight) -> sum of ``column`` over its rows."""
    weights: dict[str, int] = {}
    for sid, kind, w in zip(
        m.table["stack_id"].to_list(),
        m.table["lock_kind"].to_list(),
        m.table[column].to_list(),
        strict=True,
    ):
        frames = ["[no stack]"] if sid < 0 else m.stacks.get(int(sid)) or ["[unknown stack]"]
        # the lock kind as the innermost frame: a flame graph then splits by lock too
        line = ";".join([*(f.replace(";", ":") for f in reversed(frames)), f"[{kind}]"])
        weights[line] = weights.get(line, 0) + int(w)
    return weights


def histogram(m: Measured) -> list[dict[str, Any]]:
    """log2 wait histogram over all locks (bcc-style buckets: [lo, hi) ns, count)."""
    if m.table.is_empty():
        return []
    h = np.sum(np.array(m.table["hist"].to_list(), dtype=np.uint64), axis=0)
    nz = np.flatnonzero(h)
    if not len(nz):
        return []
    return [
        {"lo_ns": 0 if b == 0 else 1 << b, "hi_ns": 1 << (b + 1), "count": int(h[b])}
        for b in range(int(nz[0]), int(nz[-1]) + 1)
    ]


def build_measured_report(
    m: Measured, *, sort_key: str = "wait_total", limit: int | None = None
) -> dict[str, Any]:
    """Everything ``ztrace report TRACE`` shows, as plain data with raw integer nanoseconds."""
    total = int(m.table["wait_ns_total"].sum()) if len(m.table) else 0
    contended = int(m.table["contended"].sum()) if len(m.table) else 0
    return {
        "trace": m.trace,
        "kind": "measured",
        "meta": m.meta,
        "totals": {
            "contended": contended,
            "wait_ns_total": total,
            "hold_measured": m.has_hold,
            "locks": int(m.table["lock_addr"].n_unique()) if len(m.table) else 0,
        },
        "by_kind": by_kind(m).to_dicts(),
        "by_lock": by_lock(m, sort_key=sort_key, limit=limit).to_dicts(),
        "by_caller": by_caller(m, sort_key=sort_key, limit=limit).to_dicts(),
        "wait_histogram": histogram(m),
        "trust": {
            "events": m.events,
            "lost_events": m.lost_events,
            "trace": m.trace,
            "source": "capture",
            "not_captured": m.not_captured,
            "stacks": len(m.stacks),
            "lock_stacks": m.meta.get("lock_stacks", ""),
            "waits": m.meta.get("waits", ""),
            "class_names": m.meta.get("class_names", ""),
        },
    }


# ------------------------------------------------------------------------------ renderers

CSV_FIELDS = ("contended", "total wait", "max wait", "avg wait", "type", "caller")
CSV_LOCK_FIELDS = ("contended", "total wait", "max wait", "avg wait", "type", "lock", "address")


def render_csv(report: dict[str, Any], sep: str = ",", *, locks: bool = False) -> str:
    """perf ``lock contention -x SEP`` (or ``-l -x SEP`` with ``locks``): ``# output:``
    header, raw ns, ``# debug:`` footer; SEP then a space between fields, as perf writes."""
    if sep in (":", "+", ".") or not sep:
        raise ConfigError(f"cannot use the separator {sep!r} (it occurs in type or lock names)")
    buf = io.StringIO()
    fields = CSV_LOCK_FIELDS if locks else CSV_FIELDS
    buf.write("# output: " + f"{sep} ".join(fields) + "\n")
    for r in report["by_lock" if locks else "by_caller"]:
        vals = [r["contended"], r["wait_ns_total"], r["wait_ns_max"], r["wait_ns_avg"], r["type"]]
        vals += [r["name"], r["addr"]] if locks else [r["name"]]
        buf.write(f"{sep} ".join(str(v) for v in vals) + "\n")
    t = report["trust"]
    buf.write(f"# debug: total={t['events']}{sep} lost={t['lost_events']}\n")
    return buf.getvalue()


def render_terminal(report: dict[str, Any]) -> str:
    """perf-lock-style tables as text (by lock kind, by lock, by caller, histogram, trust)."""
    console = text_console(130)
    hold = report["totals"]["hold_measured"]
    waits = [
        ("contended", "right"),
        ("total wait", "right"),
        ("max wait", "right"),
        ("avg wait", "right"),
    ]
    if hold:
        waits.append(("total hold", "right"))

    def cells(r: dict[str, Any]) -> list[str]:
        out = [
            f"{r['contended']:,}",
            human_ns(r["wait_ns_total"]),
            human_ns(r["wait_ns_max"]),
            human_ns(r["wait_ns_avg"]),
        ]
        if hold:
            out.append(human_ns(r["hold_ns_total"]))
        return out

    t = perf_table(
        "measured contention by lock kind", [("kind", "left"), ("locks", "right"), *waits]
    )
    for r in report["by_kind"]:
        t.add_row(r["name"], f"{r['locks']:,}", *cells(r))
    console.print(t)
    t = perf_table("by lock", [*waits, ("type", "right"), ("lock", "left"), ("address", "left")])
    for r in report["by_lock"]:
        t.add_row(*cells(r), r["type"], r["name"], r["addr"])
    console.print(t)
    t = perf_table("by caller", [*waits, ("type", "right"), ("caller", "left"), ("lock", "left")])
    for r in report["by_caller"]:
        t.add_row(*cells(r), r["type"], r["name"], r["lock_kind"])
    console.print(t)
    hist = report["wait_histogram"]
    if hist:
        t = perf_table(
            "wait histogram (all locks)", [("wait", "right"), ("count", "right"), ("", "")]
        )
        peak = max(h["count"] for h in hist) or 1
        for h in hist:
            bar = "*" * math.ceil(40 * h["count"] / peak) if h["count"] else ""
            t.add_row(f"{human_ns(h['lo_ns'])} .. {human_ns(h['hi_ns'])}", f"{h['count']:,}", bar)
        console.print(t)
    tr = report["trust"]
    lines = ["", "=== output for trust ===", ""]
    lost, total = tr["lost_events"], tr["events"] + tr["lost_events"]
    lines.append(f"lost: {lost}, total: {total}")
    lines.append(f"lost rate: {100.0 * lost / total if total else 0.0:.2f} %")
    if lost:
        lines.append("the capture dropped events; contention is undercounted")
    if not hold:
        lines.append("hold time: not measured by these probes (waits only)")
    if tr["not_captured"]:
        lines.append(f"not captured: {tr['not_captured']}")
    if tr.get("waits"):
        lines.append(f"waits: {tr['waits']}")
    lines.append(f"stacks: {tr['stacks']} symbolised (stacks.json)")
    if tr.get("class_names"):
        lines.append(f"class locks named: {tr['class_names']}")
    mode, _, rewalk = str(tr.get("lock_stacks", "")).partition(":")
    if mode == "per-lock":
        # capture --lock-stacks per-lock: the lock and its kind stay exact, the caller not
        # (extra.lock_stacks = "per-lock:N", N the capture's re-walk interval)
        lines.append(
            "callers: sampled (--lock-stacks per-lock: a lock's waits carry the stack of its "
            f"last walk, every {rewalk}th wait)"
        )
    lines.append(f"source: capture ({tr['trace']})")
    return console.file.getvalue() + "\n".join(lines) + "\n"  # type: ignore[attr-defined]


def render_json(report: dict[str, Any]) -> str:
    from ztrace.look import report as results_report

    return results_report.render_json(report)


def report_trace(
    path: str | Path,
    *,
    as_json: bool = False,
    as_csv: bool = False,
    sep: str = ",",
    sort_key: str = "wait_total",
    entries: int | None = None,
    as_folded: bool = False,
    csv_by_lock: bool = False,
) -> str:
    """``ztrace report TRACE``: the text to print for a capture."""
    if sum((as_json, as_csv, as_folded)) > 1:
        raise ConfigError("use only one of --json, --csv and --folded")
    m = load_measured(path)
    if as_folded:
        return folded(m)
    report = build_measured_report(m, sort_key=sort_key, limit=entries)
    if as_json:
        return render_json(report) + "\n"
    if as_csv:
        return render_csv(report, sep, locks=csv_by_lock)
    return render_terminal(report)
