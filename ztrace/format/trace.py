"""Trace format v1: an Arrow schema for zsmalloc event traces, stored as a Parquet dataset.

A trace is a directory holding ``part-NNNNN.parquet`` files (one capture), or a single
``.parquet`` file. Rows, taken in file-name order, are in non-decreasing ``ts_ns`` order.
Every file carries the same ``ztrace.*`` key-value metadata. See ``docs/trace-format.md``.

All reading goes through :func:`open_trace`: it lists the files once, validates every
footer, merges the metadata (refusing files from different captures) and hands out rows.
:func:`read_trace`, :func:`read_meta` and :func:`iter_batches` are one-line conveniences
over it. Every problem is a :class:`~ztrace.errors.TraceFormatError` naming the file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ztrace.errors import TraceFormatError
from ztrace.format.safeio import atomic_dir, check_capture_dir, node_kind

SCHEMA_VERSION = 1
#: Versions this reader understands. v2 adds swap events (docs/trace-format.md).
READABLE_VERSIONS = frozenset({1, 2})

Source = Literal["capture", "synth", "oracle"]
SOURCES: tuple[str, ...] = ("capture", "synth", "oracle")

_EVENT_TYPE = pa.dictionary(pa.int32(), pa.string())

#: Required in every trace, in this order and with these types.
REQUIRED_FIELDS: tuple[pa.Field, ...] = (
    pa.field("ts_ns", pa.uint64(), nullable=False),
    pa.field("cpu", pa.uint16(), nullable=False),
    pa.field("tid", pa.uint32(), nullable=False),
    pa.field("event", _EVENT_TYPE, nullable=False),
    pa.field("pool", pa.uint64(), nullable=False),
    pa.field("size_bytes", pa.uint32(), nullable=False),
    pa.field("handle", pa.uint64(), nullable=False),
    pa.field("duration_ns", pa.uint64(), nullable=False),
)

#: Optional columns; null where an event has no such value.
OPTIONAL_FIELDS: tuple[pa.Field, ...] = (
    # allocator
    pa.field("class_idx", pa.int16()),
    pa.field("pool_pages", pa.uint64()),  # pages the kernel reported (oracle checkpoints)
    # ns the calling thread was switched out inside a measured zs_* call (kprobe captures
    # since session 9; no lock is held while switched out)
    pa.field("offcpu_ns", pa.uint64()),
    # lock events (event = lock_contention)
    pa.field("lock_addr", pa.uint64()),
    pa.field("lock_kind", _EVENT_TYPE),  # class | pool | zspage | other
    pa.field("wait_ns", pa.uint64()),
    pa.field("hold_ns", pa.uint64()),
    pa.field("lock_flags", pa.uint32()),
    pa.field("stack_id", pa.int32()),
    # spin_slowpath rows (kprobe captures since session 29): ns from the waiter's CPU's last
    # switch to another mm's page tables to the wait's stamp (TCG empties its TLB there)
    pa.field("mm_switch_ns", pa.uint64()),
    # swap events (schema v2, event = zswap_* / swap_*)
    pa.field("swap_entry", pa.uint64()),
    pa.field("outcome", _EVENT_TYPE),
    pa.field("compressed_bytes", pa.uint32()),
    pa.field("memcg_id", pa.uint64()),
    # anonymisable process identity
    pa.field("pid", pa.uint32()),
    pa.field("comm", _EVENT_TYPE),
)

#: A capture's sidecar beside its parts (since session 29): lock address -> the size class
#: index the kernel stores in that lock's ``struct size_class``, as the probes read it.
#: Written by ``ztrace.capture``, read by ``report`` (ztrace.look.measured) and the VM checks.
LOCK_CLASSES_FILE = "lock_classes.json"

_FIELDS: dict[str, pa.Field] = {f.name: f for f in REQUIRED_FIELDS + OPTIONAL_FIELDS}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(f.name for f in REQUIRED_FIELDS)

_META_PREFIX = "ztrace."


@dataclass(frozen=True)
class TraceMeta:
    """File metadata of a trace; stored as ``ztrace.<name>`` Parquet key-value pairs."""

    kernel_release: str
    page_size: int = 4096
    nr_cpus: int = 1
    zsmalloc_chain_size: int = 8
    source: Source = "synth"
    lost_events: int = 0
    #: CLOCK_MONOTONIC ns at capture start (0 when not a capture)
    capture_start_ns: int = 0
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_kv(self) -> dict[bytes, bytes]:
        d = asdict(self)
        extra = d.pop("extra")
        kv = {f"{_META_PREFIX}{k}": str(v) for k, v in d.items()}
        kv.update({f"{_META_PREFIX}extra.{k}": str(v) for k, v in extra.items()})
        return {k.encode(): v.encode() for k, v in kv.items()}

    @classmethod
    def from_kv(cls, kv: Mapping[bytes, bytes] | None, path: object) -> TraceMeta:
        raw = _decode_kv(kv, path)
        if f"{_META_PREFIX}schema_version" not in raw:
            raise TraceFormatError(path, "not a ztrace trace (no ztrace.schema_version metadata)")
        try:
            version = int(raw[f"{_META_PREFIX}schema_version"])
        except ValueError:
            raise TraceFormatError(
                path, f"bad schema version {raw[f'{_META_PREFIX}schema_version']!r}"
            ) from None
        if version not in READABLE_VERSIONS:
            raise TraceFormatError(
                path,
                f"unknown schema version {version} (this ztrace reads "
                f"{', '.join(map(str, sorted(READABLE_VERSIONS)))})",
            )

        def get(name: str, conv: type, default: Any) -> Any:
            val = raw.get(f"{_META_PREFIX}{name}")
            if val is None:
                return default
            try:
                return conv(val)
            except ValueError:
                raise TraceFormatError(path, f"bad metadata ztrace.{name}={val!r}") from None

        source = get("source", str, "synth")
        if source not in SOURCES:
            raise TraceFormatError(path, f"bad metadata ztrace.source={source!r}")
        extra = {
            k[len(_META_PREFIX) + 6 :]: v
            for k, v in raw.items()
            if k.startswith(f"{_META_PREFIX}extra.")
        }
        meta = cls(
            kernel_release=get("kernel_release", str, "unknown"),
            page_size=get("page_size", int, 4096),
            nr_cpus=get("nr_cpus", int, 1),
            zsmalloc_chain_size=get("zsmalloc_chain_size", int, 8),
            source=source,
            lost_events=get("lost_events", int, 0),
            capture_start_ns=get("capture_start_ns", int, 0),
            schema_version=version,
            extra=extra,
        )
        _check_meta_bounds(meta, path)
        return meta

    def replace(self, **changes: Any) -> TraceMeta:
        d = asdict(self)
        d.update(changes)
        return TraceMeta(**d)


# ---------------------------------------------------------------------------- limits
# What the replay relies on, checked by the one reader (issue 11). Nothing that passes these
# may crash a replay or size an allocation from a hostile value.

#: Largest ``ts_ns``: the replay clock is int64 ns and adds waits, holds and costs to arrival
#: times; 2^62 ns (146 years of CLOCK_MONOTONIC) leaves that arithmetic room.
MAX_TS_NS = 1 << 62
#: Largest ``duration_ns`` / ``wait_ns`` / ``hold_ns``: the replay reads them as int64 ns.
MAX_DURATION_NS = (1 << 62) - 1
#: Hard ceiling on ``nr_cpus``: the kernel's own, CONFIG_NR_CPUS <= 8192 (arch/x86/Kconfig
#: NR_CPUS_RANGE_END with MAXSMP; arm64 and powerpc stop at 4096 and 8192). Per-CPU state
#: in the replay is sized from the CPUs a trace holds, never from more than this.
MAX_CPUS = 8192
#: Page sizes Linux builds for (4K; 16K and 64K on arm64/powerpc: arch/arm64/Kconfig).
PAGE_SIZES = (4096, 16384, 65536)
#: CONFIG_ZSMALLOC_CHAIN_SIZE range (mm/Kconfig, 6.3+: "range 4 16"); older kernels record 8.
CHAIN_SIZES = range(4, 17)

#: column -> (largest allowed value, why); checked on every batch the reader hands out.
_ROW_LIMITS: dict[str, tuple[int, str]] = {
    "ts_ns": (MAX_TS_NS, "beyond 2^62 ns, the replay clock's range"),
    "duration_ns": (MAX_DURATION_NS, "beyond 2^62 ns, the replay's int64 range"),
    "wait_ns": (MAX_DURATION_NS, "beyond 2^62 ns, the replay's int64 range"),
    "hold_ns": (MAX_DURATION_NS, "beyond 2^62 ns, the replay's int64 range"),
}


def _decode_kv(kv: Mapping[bytes, bytes] | None, path: object) -> dict[str, str]:
    """Metadata as text; a key or value that is not UTF-8 is an error naming it."""
    raw: dict[str, str] = {}
    for k, v in (kv or {}).items():
        try:
            key = k.decode("utf-8")
        except UnicodeDecodeError:
            raise TraceFormatError(
                path, f"metadata key {k.decode('utf-8', 'replace')!r} is not UTF-8"
            ) from None
        try:
            raw[key] = v.decode("utf-8")
        except UnicodeDecodeError:
            if not key.startswith(_META_PREFIX):
                continue  # a foreign tool's binary metadata (e.g. ARROW:schema) is not ours
            raise TraceFormatError(path, f"metadata {key} is not UTF-8 text") from None
    return raw


def _check_meta_bounds(m: TraceMeta, path: object) -> None:
    def bad(name: str, value: object, want: str) -> TraceFormatError:
        return TraceFormatError(path, f"metadata ztrace.{name}={value!r}: {want}")

    if m.page_size not in PAGE_SIZES:
        raise bad("page_size", m.page_size, "want 4096, 16384 or 65536")
    if not 1 <= m.nr_cpus <= MAX_CPUS:
        raise bad("nr_cpus", m.nr_cpus, f"want 1..{MAX_CPUS} (CONFIG_NR_CPUS ceiling)")
    if m.zsmalloc_chain_size not in CHAIN_SIZES:
        raise bad("zsmalloc_chain_size", m.zsmalloc_chain_size, "want 4..16")
    if not 0 <= m.lost_events < 1 << 63:
        raise bad("lost_events", m.lost_events, "want a count >= 0")
    if not 0 <= m.capture_start_ns <= MAX_TS_NS:
        raise bad("capture_start_ns", m.capture_start_ns, "want 0..2^62 ns")
    if len(m.kernel_release) > 256 or not m.kernel_release.isprintable():
        raise bad("kernel_release", m.kernel_release[:40], "want a printable release string")


def check_rows(f: Path, batch: pa.RecordBatch, first_row: int, meta: TraceMeta) -> None:
    """Refuse nulls in required columns and values beyond the replay's ranges (CPU ids
    included), naming the file and the first bad row (counted from 0 in the file)."""
    names = batch.schema.names
    for name in REQUIRED_COLUMNS:
        if name in names:
            col = batch.column(name)
            if col.null_count:
                row = first_row + int(pc.index(col.is_null(), True).as_py())
                raise TraceFormatError(f, f"row {row}: null in required column `{name}`")
    for name, (limit, why) in _ROW_LIMITS.items():
        if name in names:
            _check_max(f, batch.column(name), first_row, name, limit, why)
    if "wait_ns" in names and "event" in names and batch.column("wait_ns").null_count:
        # wait_ns is optional, but a lock_contention row is its wait (what report and the
        # dashboard's measured side read); other rows leave it null
        ev = batch.column("event")
        ev = ev.cast(pa.string()) if pa.types.is_dictionary(ev.type) else ev
        bad = pc.and_(pc.equal(ev, "lock_contention"), batch.column("wait_ns").is_null())
        if pc.any(bad).as_py():
            row = first_row + int(pc.index(bad, True).as_py())
            raise TraceFormatError(f, f"row {row}: null `wait_ns` in a lock_contention row")
    if "swap_entry" in names and "event" in names and batch.column("swap_entry").null_count:
        _check_swap_entry(f, batch, first_row)
    if "cpu" in names:
        # the kernel's ceiling, not ztrace.nr_cpus: traces built by hand often leave nr_cpus
        # at its default; per-CPU replay state is sized from the CPUs the rows hold
        _check_max(
            f, batch.column("cpu"), first_row, "cpu", MAX_CPUS - 1, "beyond CONFIG_NR_CPUS's 8192"
        )


#: Swap events that name a page: the LRU replay (replay/lru/workload.py) takes each as a
#: store, load or invalidate of its ``swap_entry`` and refuses one without it.
_PAGE_EVENTS = ("zswap_store", "zswap_load", "zswap_invalidate")


def _check_swap_entry(f: Path, batch: pa.RecordBatch, first_row: int) -> None:
    """Refuse a null ``swap_entry`` (the page's identity) on a zswap store, load or
    invalidate row, as ``replay --lru`` does, so validation and replay agree."""
    ev = batch.column("event")
    ev = ev.cast(pa.string()) if pa.types.is_dictionary(ev.type) else ev
    bad = pc.and_(pc.is_in(ev, pa.array(_PAGE_EVENTS)), batch.column("swap_entry").is_null())
    if pc.any(bad).as_py():
        i = int(pc.index(bad, True).as_py())
        raise TraceFormatError(
            f, f"row {first_row + i}: null `swap_entry` in a {ev[i].as_py()} row"
        )


def _check_max(f: Path, col: pa.Array, first_row: int, name: str, limit: int, why: str) -> None:
    top = pc.max(col).as_py()
    if top is not None and top > limit:
        over = pc.greater(col, pa.scalar(min(limit, (1 << 63) - 1), type=col.type))
        row = first_row + int(pc.index(over, True).as_py())
        val = col[row - first_row].as_py()
        raise TraceFormatError(f, f"row {row}: `{name}`={val} is {why}")


@dataclass
class Trace:
    """A validated trace held in memory."""

    table: pa.Table
    meta: TraceMeta
    files: list[Path]

    @property
    def num_events(self) -> int:
        return self.table.num_rows


# ---------------------------------------------------------------------------- building


def field_for(name: str) -> pa.Field:
    """The canonical Arrow field of column ``name`` (required or optional)."""
    try:
        return _FIELDS[name]
    except KeyError:
        raise KeyError(f"unknown trace column `{name}`") from None


def schema_for(columns: list[str] | tuple[str, ...]) -> pa.Schema:
    """Schema with the required columns followed by the given optional ones."""
    extra = [c for c in columns if c not in REQUIRED_COLUMNS]
    return pa.schema(list(REQUIRED_FIELDS) + [field_for(c) for c in extra])


def _column(name: str, values: Any, n: int) -> pa.Array:
    f = field_for(name)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(f.type):
        if isinstance(values, pa.Array):
            arr = values if values.type == f.type else values.cast(pa.string()).dictionary_encode()
        else:
            if isinstance(values, str):
                values = [values] * n
            arr = pa.array(values, type=pa.string()).dictionary_encode()
        return arr.cast(f.type) if arr.type != f.type else arr
    if isinstance(values, pa.Array):
        return values.cast(f.type)
    if np.isscalar(values):
        values = np.full(n, values)
    return pa.array(values, type=f.type)


def make_events(
    *,
    ts_ns: Any,
    event: Any,
    cpu: Any = 0,
    tid: Any = 0,
    pool: Any = 0,
    size_bytes: Any = 0,
    handle: Any = 0,
    duration_ns: Any = 0,
    **optional: Any,
) -> pa.Table:
    """Build an events table with the canonical column types.

    Array-likes are converted column by column (no Python object per event); scalars are
    broadcast. Optional columns are passed by name (``wait_ns=...``) and may contain nulls.
    """
    n = len(ts_ns)
    cols = {
        "ts_ns": ts_ns,
        "cpu": cpu,
        "tid": tid,
        "event": event,
        "pool": pool,
        "size_bytes": size_bytes,
        "handle": handle,
        "duration_ns": duration_ns,
        **optional,
    }
    arrays = [_column(name, values, n) for name, values in cols.items()]
    schema = schema_for(list(cols))
    return pa.Table.from_arrays(arrays, schema=schema)


def conform(table: pa.Table) -> pa.Table:
    """Cast a table's known columns to their canonical types, keeping column order canonical."""
    names = [f.name for f in REQUIRED_FIELDS] + [
        f.name for f in OPTIONAL_FIELDS if f.name in table.column_names
    ]
    arrays = [_column(name, table.column(name), table.num_rows) for name in names]
    return pa.Table.from_arrays(arrays, schema=schema_for(names))


# ---------------------------------------------------------------------------- writing


def write_trace(
    out: str | os.PathLike[str],
    table: pa.Table,
    meta: TraceMeta,
    *,
    force: bool = False,
    inputs: tuple[str | os.PathLike[str], ...] = (),
) -> Path:
    """Write ``table`` as a one-file trace dataset in directory ``out``; return the file.

    The dataset is written into a fresh private directory beside ``out`` and swapped into
    place when complete (:func:`ztrace.format.safeio.atomic_dir`), so a reader never sees a
    partial trace and an older trace is never mixed in: an existing non-empty ``out`` is
    refused, or with ``force`` replaced whole.
    """
    out = Path(out)
    table = conform(table)
    ts = table.column("ts_ns").to_numpy()
    if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
        table = table.sort_by("ts_ns")
    name = "part-00000.parquet"
    with atomic_dir(out, force=force, inputs=inputs, manifest=False) as tmp:
        pq.write_table(table.replace_schema_metadata(meta.to_kv()), tmp / name, compression="zstd")
    return out / name


class TraceWriter:
    """Write a trace dataset in rotating files.

    Each file is written under a temporary name and renamed when it is complete, so after a
    crash (even ``kill -9``) every ``part-*.parquet`` file is valid. ``lost_events`` in a
    file's metadata is the count known when that file was closed.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        meta: TraceMeta,
        *,
        columns: tuple[str, ...] | list[str] = REQUIRED_COLUMNS,
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float | None = None,
    ) -> None:
        self.out = check_capture_dir(out)  # files of another capture would mix with these
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.schema = schema_for(list(columns))
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.files: list[Path] = []
        self.rows_written = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._bytes = 0
        self._opened_at = 0.0
        self._index = 0

    def _open(self) -> None:
        import time

        self._final = self.out / f"part-{self._index:05d}.parquet"
        # a fresh O_EXCL temporary (mkstemp): a link planted at a guessable name is never
        # followed; written through our own descriptor, renamed when complete
        fd, tmp = tempfile.mkstemp(prefix=f".{self._final.name}.", suffix=".tmp", dir=self.out)
        os.fchmod(fd, 0o644)
        self._tmp = Path(tmp)
        self._sink = os.fdopen(fd, "wb")
        self._index += 1
        self._writer = pq.ParquetWriter(
            self._sink,
            self.schema.with_metadata(self.meta.to_kv()),
            compression="zstd",
            **self._parquet_options(),
        )
        self._bytes = 0
        self._opened_at = time.monotonic()

    def _parquet_options(self) -> dict[str, Any]:
        """Extra ``pq.ParquetWriter`` options for each file (subclasses tune encoding)."""
        return {}

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        """Append rows (already in ``ts_ns`` order); rotate when the file is big or old."""
        import time

        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if table.num_rows == 0:
            return
        table = conform(table).select(self.schema.names)
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_table(table.cast(self.schema))
        self._bytes += table.nbytes
        self.rows_written += table.num_rows
        too_old = (
            self.rotate_seconds is not None
            and time.monotonic() - self._opened_at >= self.rotate_seconds
        )
        if self._bytes >= self.rotate_bytes or too_old:
            self.rotate()

    def rotate(self, lost_events: int | None = None) -> None:
        """Close the current file (if any) and make it visible under its final name."""
        if self._writer is None:
            return
        if lost_events is not None:
            self.meta = self.meta.replace(lost_events=lost_events)
        self._writer.add_key_value_metadata(
            {k.decode(): v.decode() for k, v in self.meta.to_kv().items()}
        )
        self._writer.close()
        self._sink.close()
        assert self._tmp is not None and self._final is not None
        os.replace(self._tmp, self._final)
        self.files.append(self._final)
        self._writer = None

    def close(self, lost_events: int | None = None) -> list[Path]:
        """Finish the dataset and return its files.

        An empty capture still gets one (empty) file with metadata. When the final
        ``lost_events`` differs from what the last closed file recorded, a last empty file
        carries it, so the count is never lost to an earlier rotation.
        """
        stale = lost_events is not None and lost_events != self.meta.lost_events
        if self._writer is None and (not self.files or stale):
            self._open()
        self.rotate(lost_events)
        return self.files

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- reading


def trace_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of a trace, in order. Temporary (in-progress) files are ignored."""
    p = Path(path)
    try:  # a name over 255 bytes, or a parent we may not search: one line, not a traceback
        if not p.exists():
            raise TraceFormatError(p, "no such file or directory")
        if p.is_file():
            return [p]
        files = sorted(f for f in p.glob("*.parquet") if not f.name.startswith("."))
    except OSError as exc:
        raise TraceFormatError(p, f"cannot use this path ({exc.strerror or exc})") from None
    if not files:
        raise TraceFormatError(p, "empty dataset: no .parquet files")
    return files


def _check_schema(path: Path, schema: pa.Schema, required: tuple[str, ...]) -> None:
    names = set(schema.names)
    for name in required:
        if name not in names:
            raise TraceFormatError(path, f"missing required column `{name}`")
    for f in schema:
        want = _FIELDS.get(f.name)
        if want is None:
            continue  # unknown extra columns are allowed (forward compatibility)
        if f.type != want.type:
            raise TraceFormatError(
                path, f"column `{f.name}` has type {f.type}, expected {want.type}"
            )


def check_regular_file(path: Path) -> None:
    """Refuse a listed part that is not a regular file, before anything opens it: opening a
    FIFO blocks until a writer comes (a hang), opening a device can act on it, and a
    directory named ``*.parquet`` is no part. A symlink to a regular file is fine."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise TraceFormatError(path, exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(mode):
        raise TraceFormatError(path, f"not a regular file ({node_kind(mode)})")


def inspect_file(
    path: Path, *, required: tuple[str, ...] = REQUIRED_COLUMNS
) -> tuple[TraceMeta, pq.ParquetFile]:
    """Open one file, validate its footer, schema and metadata. Reads no row data."""
    check_regular_file(path)
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TraceFormatError(
            path, f"not a readable Parquet file (truncated or corrupt: {msg})"
        ) from None
    meta = TraceMeta.from_kv(pf.metadata.metadata, path)
    _check_schema(path, schema, required)
    return meta, pf


#: Metadata every file of one trace must agree on (lost_events grows file by file and
#: extra.* carries per-file capture notes, so those two may differ).
_MUST_AGREE: tuple[str, ...] = (
    "schema_version",
    "kernel_release",
    "page_size",
    "nr_cpus",
    "zsmalloc_chain_size",
    "source",
    "capture_start_ns",
)


def _merge_meta(metas: list[TraceMeta], files: list[Path]) -> TraceMeta:
    """One metadata for the trace; refuse files that come from different captures."""
    first = metas[0]
    for m, f in zip(metas[1:], files[1:], strict=True):
        for name in _MUST_AGREE:
            mine, theirs = getattr(m, name), getattr(first, name)
            if mine != theirs:
                raise TraceFormatError(
                    f, f"ztrace.{name}={mine!r} conflicts with {files[0]}'s {theirs!r}"
                )
    return first.replace(lost_events=max(m.lost_events for m in metas))


def _unify_schemas(files: list[Path], schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for all parts of a trace.

    Parts may differ in column order, in nullability (pyarrow writes the required columns
    non-null, polars writes every column nullable) and in which optional or extra columns
    they carry: a part without a column holds nulls there, so the column becomes nullable.
    The order is the first part's, then columns as later parts add them. One column with two
    types is refused, naming the second file (required and known optional columns already
    matched their canonical types in ``_check_schema``; this catches unknown extra ones).
    """
    first = schemas[0]
    if all(s.equals(first) for s in schemas[1:]):
        return first  # the usual case: parts written by one writer
    fields: dict[str, pa.Field] = {}
    origin: dict[str, Path] = {}
    for f, s in zip(files, schemas, strict=True):
        for fld in s:
            have = fields.get(fld.name)
            if have is None:
                fields[fld.name], origin[fld.name] = fld, f
            elif have.type != fld.type:
                raise TraceFormatError(
                    f,
                    f"column `{fld.name}` has type {fld.type}, "
                    f"but {have.type} in {origin[fld.name]}",
                )
            elif fld.nullable and not have.nullable:
                fields[fld.name] = have.with_nullable(True)
    everywhere = set.intersection(*(set(s.names) for s in schemas))
    return pa.schema(
        [fld if fld.name in everywhere else fld.with_nullable(True) for fld in fields.values()],
        metadata=first.metadata,
    )


def _fit_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """``batch`` laid out as ``target``: its columns in target order, nulls for a column
    its part lacks (read exactly as a null optional value)."""
    if batch.schema.equals(target):
        return batch
    have = batch.schema.names
    arrays = [
        batch.column(fld.name) if fld.name in have else pa.nulls(batch.num_rows, fld.type)
        for fld in target
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=target)


#: Columns :func:`check_rows` looks at, read by ``iter_batches(validate_all=True)`` even
#: when the caller does not ask for them.
_CHECKED_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, "wait_ns", "hold_ns", "swap_entry")


class TraceHandle:
    """An opened trace: its files (listed once), their validated footers and merged metadata.

    Made by :func:`open_trace`; reads no row data until asked. ``meta.lost_events`` is the
    largest count any file recorded (the last file's, for a capture).
    """

    def __init__(
        self, path: Path, files: list[Path], parquet: list[pq.ParquetFile], meta: TraceMeta
    ) -> None:
        self.path = path
        self.files = files
        self.meta = meta
        self._parquet = parquet
        self._schema = _unify_schemas(files, [pf.schema_arrow for pf in parquet])

    @property
    def num_rows(self) -> int:
        """Rows in all files, from the footers."""
        return sum(pf.metadata.num_rows for pf in self._parquet)

    @property
    def schema(self) -> pa.Schema:
        """The trace's Arrow schema, unified over its files (column order, nullability and
        columns only some parts carry; see ``_unify_schemas``). Rows are handed out in it."""
        return self._schema

    def has_column(self, name: str) -> bool:
        """True when the trace has column ``name`` (a part without it reads as nulls)."""
        return name in self._schema.names

    def column_max(self, column: str) -> int | None:
        """Max of an integer column from the row-group statistics (no data read), or None
        when the column is absent or any row group lacks statistics."""
        if column not in self._schema.names:
            return None
        best = 0
        for pf in self._parquet:
            md = pf.metadata
            if column not in pf.schema_arrow.names:
                continue  # this part's rows are null there: no value to count
            j = md.schema.to_arrow_schema().get_field_index(column)
            if j < 0:
                return None
            for r in range(md.num_row_groups):
                st = md.row_group(r).column(j).statistics
                if st is None or not st.has_min_max:
                    return None
                best = max(best, int(st.max))
        return best

    def iter_batches(
        self,
        *,
        columns: list[str] | None = None,
        batch_rows: int = 1 << 20,
        validate_all: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows in order, every batch in :attr:`schema` (``columns`` only, when
        given; names the trace lacks are left out); memory stays bounded by ``batch_rows``.

        Rows are checked (:func:`check_rows`) on the columns read; ``validate_all`` also reads
        and checks the columns the validator covers that ``columns`` leaves out, as
        ``validate-trace`` does, and still hands out ``columns`` only.

        Raises :class:`TraceFormatError` (naming the file) for unreadable data or rows out of
        ``ts_ns`` order.
        """
        names = self._schema.names
        want = list(names) if columns is None else [c for c in columns if c in names]
        read = list(want)
        if validate_all:
            read += [c for c in _CHECKED_COLUMNS if c in names and c not in read]
        target = pa.schema([self._schema.field(c) for c in read])
        last_ts = -1
        for f, pf in zip(self.files, self._parquet, strict=True):
            row = 0
            own = pf.schema_arrow.names
            # a part lacking a column reads the others and gets nulls there (_fit_batch)
            file_cols = [c for c in read if c in own] or own[:1]
            try:
                for raw in _file_batches(pf, batch_rows, file_cols):
                    batch = _fit_batch(raw, target)
                    check_rows(f, batch, row, self.meta)
                    row += batch.num_rows
                    if "ts_ns" in batch.schema.names and batch.num_rows:
                        ts = batch.column("ts_ns").to_numpy()
                        if ts[0] < last_ts or (len(ts) > 1 and np.any(ts[1:] < ts[:-1])):
                            raise TraceFormatError(f, "rows are not in ts_ns order")
                        last_ts = int(ts[-1])
                    yield batch if len(read) == len(want) else batch.select(want)
            except (pa.ArrowInvalid, OSError) as exc:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise TraceFormatError(
                    f, f"unreadable data (truncated or corrupt: {msg})"
                ) from None

    def read(
        self,
        *,
        columns: list[str] | None = None,
        allow_empty: bool = False,
        validate_all: bool = False,
    ) -> Trace:
        """The whole trace in memory (``columns`` only, when given; ``validate_all`` as in
        :meth:`iter_batches`)."""
        batches = list(self.iter_batches(columns=columns, validate_all=validate_all))
        if batches:
            table = pa.Table.from_batches(batches)
        else:
            schema = self.schema
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
            table = schema.empty_table()
        if table.num_rows == 0 and not allow_empty:
            raise TraceFormatError(self.path, "empty dataset: the trace has no events")
        return Trace(table=table, meta=self.meta, files=list(self.files))


def open_trace(
    path: str | os.PathLike[str], *, required: tuple[str, ...] = REQUIRED_COLUMNS
) -> TraceHandle:
    """Open a trace: the one place that lists, validates and merges a trace's files.

    Raises :class:`TraceFormatError` (naming the file) for a missing path, an empty dataset,
    a truncated or non-Parquet file, missing ztrace metadata, an unknown schema version, a
    missing required column, a column of the wrong type, or two files whose metadata
    conflict (different kernel release, page size, chain size, CPU count, source, ...).
    """
    p = Path(path)
    files = trace_files(p)
    opened = [inspect_file(f, required=required) for f in files]
    meta = _merge_meta([m for m, _ in opened], files)
    return TraceHandle(p, files, [pf for _, pf in opened], meta)


def read_meta(path: str | os.PathLike[str]) -> TraceMeta:
    """Validated, merged metadata of a trace (``open_trace(path).meta``)."""
    return open_trace(path).meta


def _file_batches(
    pf: pq.ParquetFile, batch_rows: int, columns: list[str] | None
) -> Iterator[pa.RecordBatch]:
    """One file's rows in batches, one reader per row group: pyarrow 26's single reader over
    a whole file keeps allocating as it goes (a 30 M-event trace in row groups of 2^20 rows:
    ~6 bytes per row read, 179 MB by its end, 600 MB for 100 M events; issue 15), while a
    reader per row group stays at one row group's buffers (14 MB)."""
    for rg in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[rg])


def iter_batches(
    path: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    batch_rows: int = 1 << 20,
    required: tuple[str, ...] = REQUIRED_COLUMNS,
) -> Iterator[pa.RecordBatch]:
    """Stream a trace's rows in order, validating every file before the first row is yielded."""
    return open_trace(path, required=required).iter_batches(columns=columns, batch_rows=batch_rows)


def read_trace(
    path: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    required: tuple[str, ...] = REQUIRED_COLUMNS,
    allow_empty: bool = False,
) -> Trace:
    """Read and validate a whole trace (see :func:`open_trace` for what is refused)."""
    return open_trace(path, required=required).read(columns=columns, allow_empty=allow_empty)
