"""Session 21 robustness sweep: the one reader (ztrace/format/trace.py) and its consumers.

- item 2: parts of one dataset with different but compatible schemas (column order,
  nullability, an optional column only some parts carry) read as one table; a genuine type
  conflict is one line naming the second file and the column;
- item 10: a part that is not a regular file (FIFO, directory) is refused before it is opened;
- item 9: ``export libcachesim`` on a v2 trace without ``compressed_bytes``;
- item 18: ``export libcachesim`` validates as replay does; ``validate-trace`` refuses a null
  ``swap_entry`` on a zswap store/load/invalidate row, as ``replay --lru`` does.

Traces come from ``ztrace synth`` and are re-cut with pyarrow directly (tests/safety_util.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.safety_util import assert_usage_error, cli, part, read_part, set_value, write_part
from ztrace.format import open_trace

#: oracleGeneral records (ztrace/look/libcachesim.py)
RECORD = np.dtype([("ts", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
SPLIT = 2000  # rows of the first part in the two-part traces below


@pytest.fixture(scope="module")
def swap_table(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """A synthetic v2 swap trace (stores, loads, memcg_id, compressed_bytes) as one table."""
    d = tmp_path_factory.mktemp("s21") / "pc"
    p = cli("synth", "--profile", "phase-change", "--scale", "0.1", "-o", d)
    assert p.returncode == 0, p.stderr
    t = read_part(part(d))
    assert t.num_rows > 2 * SPLIT and "memcg_id" in t.column_names
    return t


@pytest.fixture(scope="module")
def alloc_table(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    d = tmp_path_factory.mktemp("s21") / "a"
    p = cli("synth", "--events", "4000", "--cpus", "4", "-o", d)
    assert p.returncode == 0, p.stderr
    return read_part(part(d))


def _two_parts(out: Path, first: pa.Table, second: pa.Table, meta: dict[bytes, bytes]) -> Path:
    write_part(part(out, 0), first, meta)
    write_part(part(out, 1), second, meta)
    return out


def _nullable(t: pa.Table) -> pa.Table:
    """``t`` with every field nullable, as polars writes it."""
    return t.cast(pa.schema([f.with_nullable(True) for f in t.schema], metadata=t.schema.metadata))


def _lru_summary(trace: Path, out: Path) -> pa.Table:
    p = cli("replay", trace, "--lru", "entry-lru", "--pool-limit", "512", "-q", "-o", out)
    assert p.returncode == 0, p.stderr
    return pq.read_table(out / "lru_summary.parquet")


def _lock_results(trace: Path, out: Path) -> dict[str, pa.Table]:
    p = cli("replay", trace, "--locks", "class,pool", "-q", "-o", out)
    assert p.returncode == 0, p.stderr
    return {n: pq.read_table(out / n) for n in ("locks_summary.parquet", "classes.parquet")}


def _export(trace: Path, out: Path, *args: str) -> bytes:
    p = cli("export", "libcachesim", trace, *args, "-o", out)
    assert p.returncode == 0, p.stderr
    return out.read_bytes()


# ---------------------------------------------------------------------- item 2: mixed parts


def test_optional_column_in_one_part_reads_as_nulls(swap_table: pa.Table, tmp_path: Path) -> None:
    """A part without memcg_id replays, sweeps and exports exactly like the same rows written
    as one part with memcg_id null in those rows."""
    t, meta = swap_table, swap_table.schema.metadata
    mixed = _two_parts(
        tmp_path / "mixed", t.slice(0, SPLIT).drop_columns(["memcg_id"]), t.slice(SPLIT), meta
    )
    i = t.schema.get_field_index("memcg_id")
    memcg = t.column("memcg_id").to_pylist()
    nulled = t.set_column(
        i, pa.field("memcg_id", pa.uint64()), pa.array([None] * SPLIT + memcg[SPLIT:], pa.uint64())
    )
    one = tmp_path / "one"
    write_part(part(one), nulled, meta)

    p = cli("validate-trace", mixed)
    assert p.returncode == 0 and "2 file(s)" in p.stdout, p.stderr
    assert _lru_summary(mixed, tmp_path / "r1").equals(_lru_summary(one, tmp_path / "r2"))
    for d in ("mixed", "one"):
        s = cli("sweep", tmp_path / d, "--lru", "entry-lru", "--pool-limits", "512", "-q",
                "-o", tmp_path / f"sw-{d}")  # fmt: skip
        assert s.returncode == 0, s.stderr
    sw = [pq.read_table(tmp_path / f"sw-{d}" / "sweep.parquet") for d in ("mixed", "one")]
    assert sw[0].equals(sw[1])
    assert _export(mixed, tmp_path / "m.og") == _export(one, tmp_path / "o.og")

    # the streaming reader hands out every batch in the one unified schema
    h = open_trace(mixed)
    batches = list(h.iter_batches(columns=["ts_ns", "memcg_id"], batch_rows=500))
    want = pa.schema([h.schema.field("ts_ns"), h.schema.field("memcg_id")])
    assert all(b.schema.equals(want) for b in batches) and len(batches) > 1
    got = pa.Table.from_batches(batches).column("memcg_id").to_pylist()
    assert got == [None] * SPLIT + memcg[SPLIT:]


def test_column_order_and_nullability_may_differ(swap_table: pa.Table, tmp_path: Path) -> None:
    """Reordered columns in one part and nullable required columns in the other: the same
    results as the original one-part trace, for the LRU replay and export."""
    t, meta = swap_table, swap_table.schema.metadata
    first = t.slice(0, SPLIT).select(list(reversed(t.column_names)))
    mixed = _two_parts(tmp_path / "mixed", first, _nullable(t.slice(SPLIT)), meta)
    one = tmp_path / "one"
    write_part(part(one), t, meta)

    p = cli("validate-trace", mixed)
    assert p.returncode == 0, p.stderr
    assert _lru_summary(mixed, tmp_path / "r1").equals(_lru_summary(one, tmp_path / "r2"))
    assert _export(mixed, tmp_path / "m.og") == _export(one, tmp_path / "o.og")


def test_allocator_parts_stream_alike_in_a_lock_replay(
    alloc_table: pa.Table, tmp_path: Path
) -> None:
    """The engine's batched reader: a nullable part after a reordered one replays as one."""
    t, meta = alloc_table, alloc_table.schema.metadata
    first = t.slice(0, SPLIT).select(list(reversed(t.column_names)))
    mixed = _two_parts(tmp_path / "mixed", first, _nullable(t.slice(SPLIT)), meta)
    one = tmp_path / "one"
    write_part(part(one), t, meta)
    assert cli("validate-trace", mixed).returncode == 0
    a, b = _lock_results(mixed, tmp_path / "r1"), _lock_results(one, tmp_path / "r2")
    for name in a:
        assert a[name].equals(b[name]), name


def test_conflicting_column_types_name_second_file(alloc_table: pa.Table, tmp_path: Path) -> None:
    t, meta = alloc_table, alloc_table.schema.metadata
    first = t.slice(0, SPLIT).append_column("note", pa.array(np.zeros(SPLIT, np.int32)))
    rest = t.slice(SPLIT)
    second = rest.append_column("note", pa.array(["x"] * rest.num_rows, pa.string()))
    d = _two_parts(tmp_path / "t", first, second, meta)
    for args in (("validate-trace", d), ("replay", d, "--locks", "class", "-q")):
        line = assert_usage_error(cli(*args), part(d, 1), "`note`")
        assert "int32" in line and "string" in line


def test_part_without_swap_entry_is_refused_like_nulls(
    swap_table: pa.Table, tmp_path: Path
) -> None:
    """A part lacking swap_entry holds nulls there: its first store row is refused by name,
    in validate-trace and replay --lru alike."""
    t, meta = swap_table, swap_table.schema.metadata
    d = _two_parts(tmp_path / "t", t.slice(SPLIT).drop_columns(["swap_entry"]), t.slice(0, 0), meta)
    ev = t.slice(SPLIT).column("event").cast(pa.string()).to_pylist()
    row = next(i for i, e in enumerate(ev) if e in ("zswap_store", "zswap_load"))
    line = assert_usage_error(cli("validate-trace", d), part(d, 0), f"row {row}:", "swap_entry")
    assert assert_usage_error(cli("export", "libcachesim", d, "-o", tmp_path / "x")) == line


# ------------------------------------------------------------- item 10: non-regular parts


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_non_regular_part_is_refused_unopened(
    alloc_table: pa.Table, tmp_path: Path, kind: str
) -> None:
    d = tmp_path / "t"
    write_part(part(d, 0), alloc_table)
    odd = part(d, 1)
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.mkdir()
    want = "a FIFO" if kind == "fifo" else "a directory"
    for args in (("validate-trace", d), ("replay", d, "--locks", "class", "-q")):
        line = assert_usage_error(cli(*args, timeout=30), odd, "not a regular file")
        assert want in line


# --------------------------------------------------- item 9: export without compressed_bytes


def test_export_without_compressed_bytes_sizes_like_lru(
    swap_table: pa.Table, tmp_path: Path
) -> None:
    """No compressed_bytes column = every length unknown (the column is optional): export
    succeeds and sizes as replay --lru does with no known length (half a page), the same as
    a column of nulls."""
    t, meta = swap_table, swap_table.schema.metadata
    absent = tmp_path / "absent"
    write_part(part(absent), t.drop_columns(["compressed_bytes"]), meta)
    nulls = tmp_path / "nulls"
    i = t.schema.get_field_index("compressed_bytes")
    write_part(
        part(nulls),
        t.set_column(
            i, pa.field("compressed_bytes", pa.uint32()), pa.nulls(t.num_rows, pa.uint32())
        ),
        meta,
    )
    assert cli("validate-trace", absent).returncode == 0
    assert cli("replay", absent, "--lru", "entry-lru", "--pool-limit", "512", "-q").returncode == 0
    got = _export(absent, tmp_path / "a.og")
    assert got == _export(nulls, tmp_path / "n.og")
    rec = np.frombuffer(got, dtype=RECORD)
    ev = t.column("event").cast(pa.string()).to_pylist()
    assert len(rec) == sum(e in ("zswap_store", "zswap_load") for e in ev)
    assert set(rec["size"].tolist()) == {4096 // 2}


# ------------------------------------------------ item 18: export and validate agree with replay


@pytest.mark.parametrize("value", [8192, None], ids=["cpu-8192", "null-cpu"])
def test_export_alloc_refuses_what_validate_refuses(
    alloc_table: pa.Table, tmp_path: Path, value: int | None
) -> None:
    d = tmp_path / "t"
    write_part(part(d), set_value(alloc_table, "cpu", 7, value), alloc_table.schema.metadata)
    line = assert_usage_error(cli("validate-trace", d), part(d), "row 7:", "`cpu`")
    out = tmp_path / "x.og"
    p = cli("export", "libcachesim", d, "--stream", "alloc", "-o", out)
    assert assert_usage_error(p) == line
    assert not out.exists()


@pytest.mark.parametrize("event", ["zswap_store", "zswap_load"])
def test_null_swap_entry_on_a_page_row_is_refused(
    swap_table: pa.Table, tmp_path: Path, event: str
) -> None:
    t = swap_table
    ev = t.column("event").cast(pa.string()).to_pylist()
    row = ev.index(event)
    d = tmp_path / "t"
    write_part(part(d), set_value(t, "swap_entry", row, None), t.schema.metadata)
    line = assert_usage_error(cli("validate-trace", d), part(d), f"row {row}:", "swap_entry")
    assert event in line
    out = tmp_path / "x.og"
    assert assert_usage_error(cli("export", "libcachesim", d, "-o", out)) == line
    assert not out.exists()
    lru = cli("replay", d, "--lru", "entry-lru", "--pool-limit", "512", "-q")
    assert_usage_error(lru, "swap_entry")
