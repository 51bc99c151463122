"""Find traces and their identity: host, capture id, kernel release, path, content hash.

A *trace* is a file ``*.parquet`` or a directory that directly holds ``*.parquet`` files
(``format.trace.trace_files``). A directory given on the command line that holds no
Parquet file itself is walked; every directory below it that holds Parquet files is one
trace (its subdirectories are not searched further). Hive-style path components
(``host=web-17``, ``capture=2026-12-01``) name the host and capture; otherwise the trace's
metadata (``ztrace.extra.host``, ``ztrace.extra.capture_id``) and finally the trace's
directory name are used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import open_trace, trace_files

_ALLOC_EVENTS = {"zs_malloc", "zs_free"}
_SWAP_EVENTS = {"zswap_store", "zswap_load", "zswap_invalidate"}
_HOST_KEYS = ("host", "hostname")
_CAPTURE_KEYS = ("capture", "capture_id")


@dataclass(frozen=True)
class TraceRef:
    """One trace of the fleet: where it is, what it is, whose it is."""

    path: str  # absolute, resolved
    sha256: str  # of the trace's files' bytes, in order (names excluded: survives a move)
    host: str
    capture_id: str | None
    kernel_release: str
    has_alloc: bool  # zs_malloc/zs_free events: lock tasks apply
    has_swap: bool  # zswap events: LRU tasks apply
    #: event counts, for the runner's longest-first order only (never in a task's row)
    alloc_events: int = 0
    swap_events: int = 0


def content_hash(files: list[Path]) -> str:
    """SHA-256 over the bytes of ``files`` in order (1 MiB reads: bounded memory)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _hive(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in path.parts:
        k, sep, v = part.partition("=")
        if sep and k and v:
            out[k] = v
    return out


def _event_counts(files: list[Path]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in files:
        col = pq.read_table(f, columns=["event"]).column("event")
        for vc in pc.value_counts(col).to_pylist():
            if vc["values"] is not None:
                name = str(vc["values"])
                counts[name] = counts.get(name, 0) + int(vc["counts"])
    return counts


def identify(path: str | os.PathLike[str]) -> TraceRef:
    """Open one trace (validating it) and describe it."""
    p = Path(path).resolve()
    handle = open_trace(p)
    meta = handle.meta
    hive = _hive(p)
    host = next((hive[k] for k in _HOST_KEYS if k in hive), None)
    host = host or meta.extra.get("host") or (p.parent.name if p.is_file() else p.name)
    capture = next((hive[k] for k in _CAPTURE_KEYS if k in hive), None)
    capture = capture or meta.extra.get("capture_id")
    counts = _event_counts(handle.files)
    n_alloc = sum(counts.get(e, 0) for e in _ALLOC_EVENTS)
    n_swap = sum(counts.get(e, 0) for e in _SWAP_EVENTS)
    return TraceRef(
        path=str(p),
        sha256=content_hash(handle.files),
        host=host,
        capture_id=capture,
        kernel_release=meta.kernel_release,
        has_alloc=n_alloc > 0,
        has_swap=n_swap > 0 and handle.has_column("swap_entry"),
        alloc_events=n_alloc,
        swap_events=n_swap,
    )


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if any(f.endswith(".parquet") and not f.startswith(".") for f in filenames):
            found.append(Path(dirpath))
            dirnames[:] = []  # a trace's subdirectories are not other traces
    return found


def discover(paths: list[str]) -> list[TraceRef]:
    """Every trace under ``paths``, identified, sorted by path; duplicates collapse.

    Raises :class:`ConfigError` when a path does not exist or holds no trace, and
    :class:`TraceFormatError` (naming the file) for a broken trace.
    """
    if not paths:
        raise ConfigError("no traces given")
    dirs: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ConfigError(f"{raw}: no such file or directory")
        if p.is_file():
            dirs.append(p)
            continue
        try:
            trace_files(p)
            dirs.append(p)
        except TraceFormatError:
            below = _walk(p)
            if not below:
                raise ConfigError(f"{raw}: no trace (.parquet files) found below") from None
            dirs.extend(below)
    unique = sorted({str(d.resolve()) for d in dirs})
    return [identify(d) for d in unique]
