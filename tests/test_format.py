"""Trace format v1: round trips, rotation, and one clear error per kind of bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from ztrace.errors import TraceFormatError
from ztrace.format import (
    REQUIRED_COLUMNS,
    TraceMeta,
    TraceWriter,
    make_events,
    open_trace,
    read_meta,
    read_trace,
    write_trace,
)

META = TraceMeta(kernel_release="6.18.0-test", nr_cpus=2, source="synth")


def small_table(n: int = 10) -> pa.Table:
    return make_events(
        ts_ns=np.arange(n, dtype=np.uint64) * 100,
        event=["zs_malloc", "zs_free"] * (n // 2),
        cpu=np.arange(n) % 2,
        size_bytes=np.full(n, 512),
        handle=np.arange(n) // 2 + 1,
    )


def test_round_trip_keeps_types_and_metadata(tmp_path):
    write_trace(tmp_path / "t", small_table(), META)
    t = read_trace(tmp_path / "t")
    assert t.num_events == 10
    assert t.table.schema.names[: len(REQUIRED_COLUMNS)] == list(REQUIRED_COLUMNS)
    assert t.table.schema.field("ts_ns").type == pa.uint64()
    assert t.table.schema.field("event").type == pa.dictionary(pa.int32(), pa.string())
    assert t.meta.kernel_release == "6.18.0-test"
    assert t.meta.nr_cpus == 2 and t.meta.schema_version == 1
    assert t.table.column("event").to_pylist()[:2] == ["zs_malloc", "zs_free"]


def test_writer_rotates_atomically_and_counts_lost_events(tmp_path):
    w = TraceWriter(tmp_path / "t", META, rotate_bytes=1)
    for i in range(3):
        tbl = small_table()
        tbl = tbl.set_column(0, "ts_ns", pa.array(np.arange(10, dtype=np.uint64) + 100 * i))
        w.write(tbl)
    files = w.close(lost_events=7)
    # three data files, then an empty trailer carrying the final lost count
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
    assert pq.ParquetFile(files[-1]).metadata.num_rows == 0
    assert not list((tmp_path / "t").glob(".*.tmp"))
    t = read_trace(tmp_path / "t")
    assert t.num_events == 30
    assert read_meta(tmp_path / "t").lost_events == 7


def test_in_progress_temp_files_are_ignored(tmp_path):
    write_trace(tmp_path / "t", small_table(), META)
    (tmp_path / "t" / ".part-00001.parquet.tmp").write_bytes(b"PAR1 partial")
    assert read_trace(tmp_path / "t").num_events == 10


def _write_raw(path, table, kv):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(kv), path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_column", "missing required column `handle`"),
        ("wrong_type", "column `size_bytes` has type int64, expected uint32"),
        ("unknown_version", "unknown schema version 9"),
        ("truncated", "not a readable Parquet file (truncated or corrupt"),
        ("empty_dir", "empty dataset: no .parquet files"),
        ("no_rows", "empty dataset: the trace has no events"),
        ("not_ztrace", "not a ztrace trace (no ztrace.schema_version metadata)"),
        ("missing_path", "no such file or directory"),
        ("out_of_order", "rows are not in ts_ns order"),
    ],
)
def test_bad_input_gets_one_line_error_naming_the_file(tmp_path, case, expected):
    d = tmp_path / "trace"
    good = small_table()
    kv = META.to_kv()
    bad_file = d / "part-00000.parquet"
    if case == "missing_column":
        _write_raw(bad_file, good.drop(["handle"]), kv)
    elif case == "wrong_type":
        i = good.schema.get_field_index("size_bytes")
        _write_raw(
            bad_file, good.set_column(i, "size_bytes", good["size_bytes"].cast(pa.int64())), kv
        )
    elif case == "unknown_version":
        kv = dict(kv)
        kv[b"ztrace.schema_version"] = b"9"
        _write_raw(bad_file, good, kv)
    elif case == "truncated":
        write_trace(d, good, META)
        data = bad_file.read_bytes()
        bad_file.write_bytes(data[: len(data) // 2])
    elif case == "empty_dir":
        d.mkdir()
        bad_file = d
    elif case == "no_rows":
        write_trace(d, good.slice(0, 0), META)
        bad_file = d
    elif case == "not_ztrace":
        _write_raw(bad_file, good, {b"other": b"1"})
    elif case == "missing_path":
        bad_file = d
    elif case == "out_of_order":
        rev = good.take(pa.array(np.arange(9, -1, -1)))
        _write_raw(bad_file, rev, kv)

    with pytest.raises(TraceFormatError) as err:
        read_trace(d)
    assert expected in str(err.value)
    assert str(bad_file) in str(err.value)

    # The CLI says the same in one line on stderr, exit code 2, no traceback. A trace of no
    # rows (a capture that saw no event) is valid to validate-trace since session 22: it
    # reports 0 events (tests/test_robust_s22_capture.py).
    r = run_cli("validate-trace", str(d))
    if case == "no_rows":
        assert r.returncode == 0 and " 0 events in 1 file(s)" in r.stdout, r
        return
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ztrace: error: ") and expected in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


# ------------------------------------------------------------------ open_trace


def _two_part_trace(tmp_path, second: TraceMeta):
    """A dataset of two files whose second file carries ``second`` as metadata."""
    d = tmp_path / "t"
    w = TraceWriter(d, META, rotate_bytes=1)
    w.write(small_table())
    w.meta = second
    tbl = small_table().set_column(0, "ts_ns", pa.array(np.arange(10, dtype=np.uint64) + 5000))
    w.write(tbl)
    w.close()
    return d


def test_open_trace_lists_once_and_merges_metadata(tmp_path):
    d = _two_part_trace(tmp_path, META.replace(lost_events=3, extra={"consumer_cpu_s": "0.1"}))
    tr = open_trace(d)
    assert [f.name for f in tr.files] == ["part-00000.parquet", "part-00001.parquet"]
    assert tr.num_rows == 20 and tr.meta.lost_events == 3
    assert tr.column_max("ts_ns") == 5009 and tr.column_max("no_such_column") is None
    assert sum(b.num_rows for b in tr.iter_batches(batch_rows=7)) == 20
    assert tr.read(columns=["ts_ns"]).table.column_names == ["ts_ns"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kernel_release": "6.1.0-test"}, "kernel_release"),
        ({"page_size": 16384}, "page_size"),
        ({"zsmalloc_chain_size": 4}, "zsmalloc_chain_size"),
        ({"nr_cpus": 64}, "nr_cpus"),
        ({"source": "capture"}, "source"),
    ],
)
def test_open_trace_refuses_conflicting_files(tmp_path, change, field):
    d = _two_part_trace(tmp_path, META.replace(**change))
    with pytest.raises(TraceFormatError) as exc:
        open_trace(d)
    msg = str(exc.value)
    assert "\n" not in msg
    # names both files and the field
    assert "part-00001.parquet" in msg and "part-00000.parquet" in msg and field in msg
    r = run_cli("validate-trace", str(d))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("ztrace: error: ") and "conflicts with" in r.stderr


# ------------------------------------------------------------------ event vocabulary


def test_bpf_header_codes_are_the_python_definition():
    """probes/zs_events.h's ZT_EV_* codes and ztrace.format.events agree, both ways."""
    import re
    from pathlib import Path

    from ztrace.format import events

    header = (Path(__file__).parents[1] / "probes" / "zs_events.h").read_text()
    c_codes = {name: int(v) for name, v in re.findall(r"#define ZT_EV_(\w+)\s+(\d+)", header)}
    py_codes = {
        name[len("EV_") :]: value
        for name, value in vars(events).items()
        if name.startswith("EV_") and isinstance(value, int)
    }
    assert c_codes == py_codes
    assert set(events.EVENT_NAMES) == set(c_codes.values())
    assert set(events.EVENT_NAMES.values()) <= set(events.EVENTS)


def test_bpf_header_summary_constants_are_the_python_ones():
    """The two numbers --summary's reader shares with probes/zs_events.h: the histogram's
    bucket count and the lock key's slowpath bit (a mismatch would mislabel every wait)."""
    import re
    from pathlib import Path

    from ztrace.capture import summary

    header = (Path(__file__).parents[1] / "probes" / "zs_events.h").read_text()
    buckets = re.search(r"#define ZT_HIST_BUCKETS\s+(\d+)", header)
    bit = re.search(r"#define ZT_AGG_SLOWPATH\s+(0x[0-9a-fA-F]+)u?", header)
    assert buckets and bit
    assert int(buckets[1]) == summary.HIST_BUCKETS
    assert int(bit[1], 16) == summary.AGG_SLOWPATH
    assert summary.AGG_SLOWPATH > 0x3F  # above every LCB_F_* flag (bits 0-5)


def test_capture_uses_the_one_event_definition():
    from ztrace.capture import session, summary
    from ztrace.format import events

    # capture reads the codes from the format, not from a copy of its own
    assert session.EVENT_NAMES is events.EVENT_NAMES
    assert summary.EVENT_NAMES is events.EVENT_NAMES
    assert session.EV_LOCK == events.EV_LOCK


def test_lock_types_of_the_replay_are_the_results_vocabulary():
    from ztrace.format import LOCK_TYPES
    from ztrace.replay.locks import MODE_TYPES

    assert set(MODE_TYPES) == set(LOCK_TYPES)
