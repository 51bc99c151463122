"""Results format v1: writer and validating reader (docs/results-format.md).

A results directory holds one Parquet file per table (``locks_summary.parquet`` ...), each
with the key-value metadata ``ztrace.results_version=1``, ``ztrace.trace``, ``ztrace.seed``
(plus the run's other parameters), and ``summary.json`` with what ``--json`` printed.

Writing is deterministic: same tables and metadata give byte-identical files (no
timestamps; files are written under a temporary name and renamed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.errors import TraceFormatError

RESULTS_VERSION = 1
_U64, _F64, _STR = pa.uint64(), pa.float64(), pa.string()
_LRU_COLS = {
    "lru_design": _STR,
    "pool_limit_pages": _U64,
    "stores": _U64,
    "rejects": _U64,
    "writebacks": _U64,
    "written_back_bytes": _U64,
    "inversions": _U64,
    "inversion_rate": _F64,
    "age_gap_ns_p50": _U64,
    "age_gap_ns_max": _U64,
    "zswap_hits": _U64,
    "disk_swapins": _U64,
    "expected_fault_latency_ns": _F64,
    "disk_faults": _U64,
    "avoidable_disk_faults": _U64,
    "optimal_gap": pa.int64(),
    "latency_zswap_ns": _F64,
    "latency_disk_ns": _F64,
}

#: file stem -> required columns and types (extra columns are allowed: forward compatible)
SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "locks_summary": {
        "lock_design": _STR,
        "acquisitions": _U64,
        "contended": _U64,
        "contention_rate": _F64,
        "wait_ns_total": _U64,
        "wait_ns_avg": _F64,
        "wait_ns_p50": _U64,
        "wait_ns_p99": _U64,
        "wait_ns_max": _U64,
        "hold_ns_total": _U64,
    },
    "locks_by_lock": {
        "lock_design": _STR,
        "lock": _STR,
        "lock_type": _STR,
        "acquisitions": _U64,
        "contended": _U64,
        "wait_ns_total": _U64,
        "wait_ns_max": _U64,
        "wait_ns_min": _U64,
        "hold_ns_total": _U64,
    },
    "locks_by_class": {
        "lock_design": _STR,
        "class_idx": pa.int16(),
        "class_size": pa.uint32(),
        "acquisitions": _U64,
        "contended": _U64,
        "wait_ns_total": _U64,
    },
    "wait_hist": {
        "lock_design": _STR,
        "bucket_lo_ns": _U64,
        "bucket_hi_ns": _U64,
        "count": _U64,
    },
    "timeline": {
        "lock_design": _STR,
        "bin_start_ns": _U64,
        "bin_ns": _U64,
        "ops": _U64,
        "acquisitions": _U64,
        "contended": _U64,
        "wait_ns_total": _U64,
        "pages_used": _U64,
    },
    "classes": {
        "bin_start_ns": _U64,
        "class_idx": pa.int16(),
        "class_size": pa.uint32(),
        "obj_allocated": _U64,
        "obj_used": _U64,
        "pages_used": _U64,
    },
    "lru_summary": _LRU_COLS,
    "lru_timeline": {
        "lru_design": _STR,
        "bin_start_ns": _U64,
        "pool_pages": _U64,
        "inversions": _U64,
        "zswap_hits": _U64,
        "disk_swapins": _U64,
        "writebacks": _U64,
    },
    "sweep": _LRU_COLS,
}
REQUIRED_META = ("ztrace.results_version", "ztrace.trace", "ztrace.seed")


@dataclass
class Results:
    """A validated results directory: tables by stem, metadata, and summary.json."""

    tables: dict[str, pa.Table]
    meta: dict[str, str]
    summary: dict[str, Any]
    path: Path


def _check(stem: str, table: pa.Table, where: object) -> None:
    want = SCHEMAS.get(stem)
    if want is None:
        return
    for name, typ in want.items():
        if name not in table.column_names:
            raise TraceFormatError(where, f"missing column `{name}`")
        got = table.schema.field(name).type
        if got != typ:
            raise TraceFormatError(where, f"column `{name}` has type {got}, expected {typ}")


def write_results_dir(
    out_dir: str | os.PathLike[str],
    tables: dict[str, pa.Table],
    meta: dict[str, str],
    summary: dict[str, Any],
) -> list[Path]:
    """Write ``tables`` (stem -> table) and ``summary.json`` to ``out_dir``; return the files.

    Every table is checked against :data:`SCHEMAS` first, so a writer bug fails here and not
    in somebody's dashboard.
    """
    for k in REQUIRED_META:
        if k not in meta:
            raise ValueError(f"results metadata needs `{k}`")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    kv = {k.encode(): str(v).encode() for k, v in sorted(meta.items())}
    for stem in sorted(tables):
        t = tables[stem]
        _check(stem, t, f"{stem} (writer)")
        path = out / f"{stem}.parquet"
        tmp = out / f".{stem}.parquet.tmp"
        pq.write_table(t.replace_schema_metadata(kv), tmp, compression="zstd")
        os.replace(tmp, path)
        files.append(path)
    path = out / "summary.json"
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, sort_keys=True, indent=2) + "\n")
    os.replace(tmp, path)
    files.append(path)
    return files


def read_results(path: str | os.PathLike[str]) -> Results:
    """Read and validate a results directory.

    Raises :class:`TraceFormatError` naming the offending file for a missing directory, no
    results files, an unreadable/truncated Parquet file, missing or unknown
    ``ztrace.results_version``, or a missing/mistyped column.
    """
    d = Path(path)
    if not d.is_dir():
        raise TraceFormatError(d, "no such results directory")
    files = sorted(f for f in d.glob("*.parquet") if not f.name.startswith("."))
    if not files:
        raise TraceFormatError(d, "no results files (*.parquet)")
    tables: dict[str, pa.Table] = {}
    meta: dict[str, str] = {}
    for f in files:
        try:
            t = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TraceFormatError(f, f"not a readable Parquet file ({msg})") from None
        kv = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
        version = kv.get("ztrace.results_version")
        if version is None:
            raise TraceFormatError(f, "not a ztrace results file (no ztrace.results_version)")
        if version != str(RESULTS_VERSION):
            raise TraceFormatError(f, f"unknown results version {version!r} (reads 1)")
        _check(f.stem, t, f)
        tables[f.stem] = t.replace_schema_metadata(None)
        meta = meta or kv
    summary: dict[str, Any] = {}
    sj = d / "summary.json"
    if sj.exists():
        try:
            summary = json.loads(sj.read_text())
        except json.JSONDecodeError as exc:
            raise TraceFormatError(sj, f"not valid JSON ({exc.msg})") from None
    return Results(tables=tables, meta=meta, summary=summary, path=d)
