"""The formats every stage shares: traces (Parquet), results (Parquet + JSON), event names.

Modules: ``trace`` (trace format v1/v2, :func:`open_trace`, the writer), ``results`` (the
results format, its one reader and the one :class:`Results` type), ``events`` (event names
and their BPF codes). This package imports nothing of ztrace but ``ztrace.errors``; every
stage above it reads and writes data through it (docs/architecture.md).

The names below are re-exported so ``from ztrace.format import X`` works for all of them.
"""

from __future__ import annotations

from ztrace.format.events import (
    ALLOCATOR_EVENTS,
    EVENT_CODES,
    EVENT_NAMES,
    EVENTS,
    LOCK_EVENTS,
    LOCK_KINDS,
    SWAP_EVENTS,
    EventName,
    LockKind,
)
from ztrace.format.results import (
    LOCK_TYPES,
    RESULT_COLUMNS,
    RESULTS_VERSION,
    SCHEMAS,
    LockType,
    Results,
    is_results_dir,
    read_results,
    results_from_tables,
    write_results_dir,
)
from ztrace.format.trace import (
    LOCK_CLASSES_FILE,
    OPTIONAL_FIELDS,
    READABLE_VERSIONS,
    REQUIRED_COLUMNS,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    SOURCES,
    Source,
    Trace,
    TraceHandle,
    TraceMeta,
    TraceWriter,
    conform,
    field_for,
    inspect_file,
    iter_batches,
    make_events,
    open_trace,
    read_meta,
    read_trace,
    schema_for,
    trace_files,
    write_trace,
)

__all__ = [
    "ALLOCATOR_EVENTS",
    "EVENTS",
    "EVENT_CODES",
    "EVENT_NAMES",
    "LOCK_CLASSES_FILE",
    "LOCK_EVENTS",
    "LOCK_KINDS",
    "LOCK_TYPES",
    "OPTIONAL_FIELDS",
    "READABLE_VERSIONS",
    "REQUIRED_COLUMNS",
    "REQUIRED_FIELDS",
    "RESULTS_VERSION",
    "RESULT_COLUMNS",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "SOURCES",
    "SWAP_EVENTS",
    "EventName",
    "LockKind",
    "LockType",
    "Results",
    "Source",
    "Trace",
    "TraceHandle",
    "TraceMeta",
    "TraceWriter",
    "conform",
    "field_for",
    "inspect_file",
    "is_results_dir",
    "iter_batches",
    "make_events",
    "open_trace",
    "read_meta",
    "read_results",
    "read_trace",
    "results_from_tables",
    "schema_for",
    "trace_files",
    "write_results_dir",
    "write_trace",
]
