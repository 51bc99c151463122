"""Read a results directory (docs/results-format.md) into polars frames for the look tools.

Validation goes through ``ztrace.results.read_results`` when that module exists (it is the
one reader the contract names); the checks here are the same contract, kept so that the look
tools work on results written before that module existed and fail with one line naming the
file either way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.errors import TraceFormatError
from ztrace.results import SCHEMAS

#: Required columns of every results file: the writer's schema (docs/results-format.md).
RESULT_COLUMNS: dict[str, tuple[str, ...]] = {stem: tuple(cols) for stem, cols in SCHEMAS.items()}

RESULTS_VERSION_KEY = b"ztrace.results_version"
READABLE_RESULTS_VERSIONS = frozenset({"1"})


@dataclass
class Results:
    """The tables of one results directory (only those present), as polars frames."""

    path: Path | None
    tables: dict[str, pl.DataFrame]
    #: ``ztrace.*`` key-value metadata of the first file (trace path, seed, version).
    meta: dict[str, str] = field(default_factory=dict)
    #: summary.json, when present.
    summary: dict[str, Any] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        """True when table ``name`` exists and has at least one row."""
        df = self.tables.get(name)
        return df is not None and df.height > 0

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.tables[name]

    @property
    def trace_path(self) -> str | None:
        return self.meta.get("ztrace.trace")


def is_results_dir(path: str | os.PathLike[str]) -> bool:
    """A directory holding at least one results file or summary.json (not trace parts)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return (p / "summary.json").exists() or any(
        (p / f"{name}.parquet").exists() for name in RESULT_COLUMNS
    )


def _check_columns(path: Path, name: str, names: list[str]) -> None:
    for col in RESULT_COLUMNS[name]:
        if col not in names:
            raise TraceFormatError(path, f"missing required column `{col}` of {name}")


def _read_one(path: Path, name: str) -> tuple[pl.DataFrame, dict[str, str]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TraceFormatError(path, f"not a readable Parquet file ({msg})") from None
    kv = table.schema.metadata or {}
    version = kv.get(RESULTS_VERSION_KEY)
    if version is None:
        raise TraceFormatError(path, "not a ztrace results file (no ztrace.results_version)")
    if version.decode() not in READABLE_RESULTS_VERSIONS:
        raise TraceFormatError(path, f"unknown results version {version.decode()!r}")
    _check_columns(path, name, table.column_names)
    meta = {k.decode(): v.decode() for k, v in kv.items() if k.startswith(b"ztrace.")}
    df = pl.from_arrow(table.replace_schema_metadata(None))
    assert isinstance(df, pl.DataFrame)
    return df, meta


def load_results(path: str | os.PathLike[str]) -> Results:
    """Read and validate every results file in ``path``.

    Raises :class:`TraceFormatError` naming the file for a missing directory, a directory with
    no results, an unreadable or foreign Parquet file, or a missing column.
    """
    p = Path(path)
    if not p.exists():
        raise TraceFormatError(p, "no such file or directory")
    if not p.is_dir():
        raise TraceFormatError(p, "not a results directory (expected a directory)")
    if not is_results_dir(p):
        raise TraceFormatError(
            p,
            "not a results directory (no locks_summary.parquet, timeline.parquet, ... "
            "or summary.json; write one with `ztrace replay TRACE -o DIR`)",
        )
    contract = _contract_reader()
    if contract is not None:
        # The project's reader validates names, versions and column types; use its tables.
        r = contract(p)
        tables = {}
        for name, t in r.tables.items():
            if name in RESULT_COLUMNS:
                df = pl.from_arrow(t)
                assert isinstance(df, pl.DataFrame)
                _check_columns(p / f"{name}.parquet", name, df.columns)
                tables[name] = df
        summary = r.summary if isinstance(r.summary, dict) else {}
        return Results(path=p, tables=tables, meta=dict(r.meta), summary=summary)
    tables: dict[str, pl.DataFrame] = {}
    meta: dict[str, str] = {}
    for name in RESULT_COLUMNS:
        f = p / f"{name}.parquet"
        if f.exists():
            df, kv = _read_one(f, name)
            tables[name] = df
            meta = meta or kv
    summary: dict[str, Any] = {}
    sj = p / "summary.json"
    if sj.exists():
        try:
            loaded = json.loads(sj.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TraceFormatError(sj, f"not valid JSON ({exc})") from None
        if isinstance(loaded, dict):
            summary = loaded
    return Results(path=p, tables=tables, meta=meta, summary=summary)


def _contract_reader() -> Any:
    """``ztrace.results.read_results`` when it exists (the contract's own reader), else None."""
    try:
        from ztrace.results import read_results  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return read_results


def results_from_tables(
    tables: dict[str, Any],
    *,
    meta: dict[str, str] | None = None,
    summary: dict[str, Any] | None = None,
) -> Results:
    """Wrap in-memory replay tables (pyarrow or polars) in a :class:`Results`."""
    out: dict[str, pl.DataFrame] = {}
    for name, t in tables.items():
        if name not in RESULT_COLUMNS or t is None:
            continue
        df = t if isinstance(t, pl.DataFrame) else pl.from_arrow(t)
        assert isinstance(df, pl.DataFrame)
        _check_columns(Path(f"<{name}>"), name, df.columns)
        out[name] = df
    return Results(path=None, tables=out, meta=dict(meta or {}), summary=dict(summary or {}))
