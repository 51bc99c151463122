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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.errors import TraceFormatError
from ztrace.format.safeio import MANIFEST, atomic_dir, verify_manifest

if TYPE_CHECKING:  # polars loads only when a look tool asks for a frame (capture stays light)
    import polars as pl

RESULTS_VERSION = 1

#: Values of the ``lock_type`` column of ``locks_by_lock`` (perf lock contention's words; an
#: rwlock's readers and writer are reported apart).
LockType = Literal["spinlock", "rwlock:R", "rwlock:W"]
LOCK_TYPES: tuple[LockType, ...] = get_args(LockType)
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
    # issue 10: intervals over replicas (``ztrace replay --replicas N``); one row per
    # design x metric (wait_ns_total, wait_ns_per_op, wait_ns_p99, contended, acquisitions)
    "locks_interval": {
        "lock_design": _STR,
        "metric": _STR,
        "value": _F64,
        "lo": _F64,
        "hi": _F64,
        "runs": pa.uint32(),
        "jitter_ns": _U64,
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
    # issue 13: per design x memory cgroup, written only for a workload with several memcgs
    "lru_memcg": {
        "lru_design": _STR,
        "pool_limit_pages": _U64,
        "memcg_id": _U64,
        "stored": _U64,
        "zswap_hits": _U64,
        "written_back": _U64,
        "rejects": _U64,
        "disk_faults": _U64,
        "avoidable_disk_faults": _U64,
        "cross_memcg_inversions": _U64,
        "cross_memcg_avoidable_disk_faults": _U64,
        "expected_fault_latency_ns": _F64,
    },
}
REQUIRED_META = ("ztrace.results_version", "ztrace.trace", "ztrace.seed")


#: Required columns of every results table, by file stem (the writer's schema).
RESULT_COLUMNS: dict[str, tuple[str, ...]] = {stem: tuple(cols) for stem, cols in SCHEMAS.items()}


@dataclass
class Results:
    """A validated results directory (or in-memory replay tables): the one results type.

    ``tables`` are Arrow tables by stem (only those present); ``results[name]`` is the same
    table as a polars frame, converted once, for the look tools.
    """

    tables: dict[str, pa.Table]
    #: ``ztrace.*`` key-value metadata of the first file (trace path, seed, version).
    meta: dict[str, str] = field(default_factory=dict)
    #: summary.json, when present.
    summary: dict[str, Any] = field(default_factory=dict)
    #: the directory read, None for in-memory results
    path: Path | None = None
    _frames: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    def has(self, name: str) -> bool:
        """True when table ``name`` exists and has at least one row."""
        t = self.tables.get(name)
        return t is not None and t.num_rows > 0

    def __getitem__(self, name: str) -> pl.DataFrame:
        if name not in self._frames:
            import polars as pl

            df = pl.from_arrow(self.tables[name])
            assert isinstance(df, pl.DataFrame)
            self._frames[name] = df
        return self._frames[name]

    @property
    def trace_path(self) -> str | None:
        """The trace these results were replayed from (``ztrace.trace``), when recorded."""
        return self.meta.get("ztrace.trace")


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
    *,
    force: bool = False,
    inputs: tuple[str | os.PathLike[str], ...] = (),
) -> list[Path]:
    """Write ``tables`` (stem -> table) and ``summary.json`` to ``out_dir``; return the files.

    Every table is checked against :data:`SCHEMAS` first, so a writer bug fails here and not
    in somebody's dashboard. The directory is written whole beside ``out_dir``, marked
    complete by ``manifest.json`` and swapped into place
    (:func:`ztrace.format.safeio.atomic_dir`): an existing non-empty ``out_dir`` is refused,
    or with ``force`` replaced whole, never merged; writing onto or inside one of ``inputs``
    is refused.
    """
    for k in REQUIRED_META:
        if k not in meta:
            raise ValueError(f"results metadata needs `{k}`")
    for stem in sorted(tables):
        _check(stem, tables[stem], f"{stem} (writer)")
    out = Path(out_dir)
    kv = {k.encode(): str(v).encode() for k, v in sorted(meta.items())}
    with atomic_dir(out, force=force, inputs=inputs) as tmp:
        for stem in sorted(tables):
            pq.write_table(
                tables[stem].replace_schema_metadata(kv),
                tmp / f"{stem}.parquet",
                compression="zstd",
            )
        (tmp / "summary.json").write_text(json.dumps(summary, sort_keys=True, indent=2) + "\n")
    return [out / f"{stem}.parquet" for stem in sorted(tables)] + [out / "summary.json"]


def is_results_dir(path: str | os.PathLike[str]) -> bool:
    """A directory holding at least one results file or summary.json (not trace parts)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return (
        (p / "summary.json").exists()
        or (p / MANIFEST).exists()
        or any((p / f"{name}.parquet").exists() for name in SCHEMAS)
    )


def read_results(path: str | os.PathLike[str]) -> Results:
    """Read and validate a results directory: the one results reader.

    Raises :class:`TraceFormatError` naming the offending file for a missing directory, a
    directory with no results, an unreadable/truncated Parquet file, missing or unknown
    ``ztrace.results_version``, a missing/mistyped column, or a summary.json that is not JSON.
    """
    d = Path(path)
    if not d.exists():
        raise TraceFormatError(d, "no such results directory")
    if not d.is_dir():
        raise TraceFormatError(d, "not a results directory (expected a directory)")
    if not is_results_dir(d):
        raise TraceFormatError(
            d,
            "not a results directory (no locks_summary.parquet, timeline.parquet, ... "
            "or summary.json; write one with `ztrace replay TRACE -o DIR`)",
        )
    verify_manifest(d)  # complete, and nothing added or changed since it was written
    files = sorted(f for f in d.glob("*.parquet") if not f.name.startswith("."))
    tables: dict[str, pa.Table] = {}
    meta: dict[str, str] = {}
    for f in files:
        try:
            t = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TraceFormatError(f, f"not a readable Parquet file ({msg})") from None
        try:
            kv = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
        except UnicodeDecodeError:
            raise TraceFormatError(f, "metadata is not UTF-8 text") from None
        version = kv.get("ztrace.results_version")
        if version is None:
            raise TraceFormatError(f, "not a ztrace results file (no ztrace.results_version)")
        if version != str(RESULTS_VERSION):
            raise TraceFormatError(f, f"unknown results version {version!r} (reads 1)")
        _check(f.stem, t, f)
        tables[f.stem] = t.replace_schema_metadata(None)
        meta = meta or {k: v for k, v in kv.items() if k.startswith("ztrace.")}
    summary: dict[str, Any] = {}
    sj = d / "summary.json"
    if sj.exists():
        try:
            loaded = json.loads(sj.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TraceFormatError(sj, f"not valid JSON ({exc})") from None
        if isinstance(loaded, dict):
            summary = loaded
    return Results(tables=tables, meta=meta, summary=summary, path=d)


def results_from_tables(
    tables: Mapping[str, pa.Table | pl.DataFrame | None],
    *,
    meta: dict[str, str] | None = None,
    summary: dict[str, Any] | None = None,
) -> Results:
    """Wrap in-memory tables (a replay's, or a summary's; Arrow or polars) in :class:`Results`.

    Tables of unknown stems are dropped; known ones must have their required columns.
    """
    out: dict[str, pa.Table] = {}
    for name, t in tables.items():
        if name not in SCHEMAS or t is None:
            continue
        table = t if isinstance(t, pa.Table) else t.to_arrow()
        for col in RESULT_COLUMNS[name]:
            if col not in table.column_names:
                raise TraceFormatError(f"<{name}>", f"missing required column `{col}` of {name}")
        out[name] = table
    return Results(tables=out, meta=dict(meta or {}), summary=dict(summary or {}))
