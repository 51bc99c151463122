"""Capture pieces that need no kernel: the record layout, parsing, attribution rules."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ztrace.capture.attribute import classify, lock_type
from ztrace.capture.events import (
    BATCH_HDR_DTYPE,
    EVENT_DTYPE,
    record_bytes,
)
from ztrace.capture.loader import pool_id, pool_name, probes_dir
from ztrace.cli.capture import parse_duration
from ztrace.errors import ConfigError
from ztrace.format.events import EVENT_NAMES, EVENTS

_C_SIZES = {"__u64": 8, "__s64": 8, "__u32": 4, "__s32": 4, "__u16": 2, "__u8": 1, "char": 1}


def _header_fields(struct_name: str = "zs_event") -> list[tuple[str, int]]:
    text = (probes_dir() / "zs_events.h").read_text()
    body = re.search(rf"struct {struct_name} \{{(.*?)\}};", text, re.S)
    assert body
    fields = []
    for ctype, name, arr in re.findall(r"^\s*(\w+)\s+(\w+)(?:\[(\d+)\])?;", body.group(1), re.M):
        fields.append((name, _C_SIZES[ctype] * (int(arr) if arr else 1)))
    return fields


def test_dtype_mirrors_the_c_header() -> None:
    fields = _header_fields()
    assert [n for n, _ in fields] == list(EVENT_DTYPE.names)
    offset = 0
    for name, size in fields:
        assert EVENT_DTYPE.fields[name][1] == offset, name
        assert EVENT_DTYPE.fields[name][0].itemsize == size, name
        offset += size
    assert offset == EVENT_DTYPE.itemsize == 80
    # a ring record: 8-byte ring header, 16-byte batch header, n events
    assert record_bytes(1) == 104 and record_bytes(64) == 8 + 16 + 64 * 80


def test_batch_header_mirrors_the_c_header() -> None:
    fields = _header_fields("zs_batch_hdr")
    assert [n for n, _ in fields] == list(BATCH_HDR_DTYPE.names)
    assert [s for _, s in fields] == [BATCH_HDR_DTYPE.fields[n][0].itemsize for n, _ in fields]


def test_cli_default_ring_size_is_the_loaders() -> None:
    from ztrace.capture.loader import DEFAULT_RINGBUF_PAGES, MAX_RINGBUF_PAGES
    from ztrace.cli import capture as cli

    assert cli.DEFAULT_RINGBUF_PAGES == DEFAULT_RINGBUF_PAGES
    assert cli.MAX_RINGBUF_PAGES == MAX_RINGBUF_PAGES  # --help states the loader's ceiling
    text = (probes_dir().parent / "docs" / "capture.md").read_text()
    assert f"default {DEFAULT_RINGBUF_PAGES} " in text


def test_header_event_codes_match_python() -> None:
    text = (probes_dir() / "zs_events.h").read_text()
    codes = {int(v): k for k, v in re.findall(r"#define ZT_EV_(\w+)\s+(\d+)", text)}
    assert sorted(codes) == sorted(EVENT_NAMES)
    # every name the capture writes is one the trace format defines
    assert set(EVENT_NAMES.values()) <= set(EVENTS)


def test_drop_slots_match_the_c_header() -> None:
    """ZT_DROP_* slot numbers and DROP_SLOTS' order agree: a slot added on one side only
    would shift every counter after it in the footer and in ``extra.lost_detail``."""
    from ztrace.capture.events import DROP_SLOTS

    text = (probes_dir() / "zs_events.h").read_text()
    slots = {k: int(v) for k, v in re.findall(r"#define ZT_DROP_(\w+)\s+(\d+)", text)}
    assert slots.pop("SLOTS") == len(DROP_SLOTS)
    assert sorted(slots.values()) == list(range(len(DROP_SLOTS)))
    assert slots["STACK_REUSED"] == DROP_SLOTS.index("stack_reused")
    assert slots["OWN_RING"] == DROP_SLOTS.index("spin_own_ring")
    assert slots["RINGBUF"] == DROP_SLOTS.index("ringbuf_full")


def test_lock_stacks_choices_are_the_loaders() -> None:
    """``--lock-stacks`` offers the loader's modes, and the loader refuses any other."""
    from ztrace.capture.loader import LOCK_STACKS, STACK_REWALK, make_plan
    from ztrace.cli import capture as cli

    assert (cli.LOCK_STACKS, cli.STACK_REWALK) == (LOCK_STACKS, STACK_REWALK)
    opt = next(p for p in cli.command.params if p.name == "lock_stacks")
    assert tuple(opt.type.choices) == LOCK_STACKS and opt.default == "each"
    with pytest.raises(ConfigError, match="--lock-stacks"):
        # refused before the kernel's features are looked at
        make_plan(None, ["locks"], lock_stacks="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "secs"), [("30s", 30), ("5m", 300), ("250ms", 0.25), ("2", 2), ("1h", 3600)]
)
def test_parse_duration(text: str, secs: float) -> None:
    assert parse_duration(text) == pytest.approx(secs)


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="--duration"):
        parse_duration("soon")


@pytest.mark.parametrize("text", ["0", "0s", "0.0ms"])
def test_parse_duration_rejects_zero(text: str) -> None:
    # both callers (--duration, --interval) need a positive duration: the parser refuses it
    with pytest.raises(ConfigError, match=r"--interval .*: must be positive"):
        parse_duration(text, "--interval")


def test_pool_id_round_trip() -> None:
    assert pool_id("zram0") == int.from_bytes(b"zram0\0\0\0", "little")
    assert pool_name(pool_id("zram0")) == "zram0"
    assert pool_id("zswap-pool-long") == pool_id("zswap-po")  # first 8 bytes only


def test_lock_type_names_follow_the_kernel() -> None:
    assert lock_type(1) == "spinlock"
    assert lock_type(1 | 2) == "rwlock:R"
    assert lock_type(1 | 4) == "rwlock:W"
    assert lock_type(32) == "mutex"
    assert lock_type(2) == "rwsem:R"


@pytest.mark.parametrize(
    ("frames", "flags", "version", "kind", "caller"),
    [
        (
            ["__pv_queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc"],
            1,
            (6, 18),
            "class",
            "zs_malloc",
        ),
        (
            ["queued_spin_lock_slowpath", "_raw_spin_lock", "zs_free", "zram_free_page"],
            1,
            (6, 18),
            "class",
            "zs_free",
        ),
        (
            ["queued_read_lock_slowpath", "_raw_read_lock", "zs_free"],
            1 | 2,
            (6, 18),
            "pool",
            "zs_free",
        ),
        (
            ["queued_write_lock_slowpath", "__zs_compact.isra.0", "zs_compact"],
            1 | 4,
            (6, 18),
            "pool",
            "__zs_compact",
        ),
        # 6.1.y (consolidated lock) .. 6.8: the spinlock zs_malloc takes is the pool's
        (
            ["queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc"],
            1,
            (6, 1),
            "pool",
            "zs_malloc",
        ),
        (["queued_read_lock_slowpath", "zs_map_object"], 1 | 2, (6, 1), "zspage", "zs_map_object"),
        # below 6.9 the pool lock is a spinlock: compaction's rwlock is its source zspage's
        (["queued_write_lock_slowpath", "__zs_compact"], 1 | 4, (6, 1), "zspage", "__zs_compact"),
        # 6.9-6.14: read_lock(&pool->migrate_lock) inlined into zs_map_object (session 31: a
        # 6.12 compacting zsstress run's 214 such waits were all at that lock's address)
        (["queued_read_lock_slowpath", "zs_map_object"], 1 | 2, (6, 12), "pool", "zs_map_object"),
        (["queued_spin_lock_slowpath", "try_to_wake_up"], 1, (6, 18), "other", ""),
        (["mutex_lock", "zs_malloc"], 32, (6, 18), "other", "zs_malloc"),
        # a lock that a function zsmalloc called took is not zsmalloc's (session 29: the
        # runqueue lock of a cond_resched inside zs_malloc's handle allocation, 6.12 guest)
        (
            [
                "native_queued_spin_lock_slowpath",
                "_raw_spin_lock",
                "__schedule",
                "__cond_resched",
                "kmem_cache_alloc_noprof",
                "zs_malloc",
            ],
            1,
            (6, 12),
            "other",
            "zs_malloc",
        ),
        # ... but a zsmalloc helper that takes the lock itself, not inlined, is (6.12
        # zs_map_object -> migrate_read_lock(zspage))
        (
            ["queued_read_lock_slowpath", "_raw_read_lock", "migrate_read_lock", "zs_map_object"],
            1 | 2,
            (6, 12),
            "zspage",
            "zs_map_object",
        ),
    ],
)
def test_classify(
    frames: list[str], flags: int, version: tuple[int, int], kind: str, caller: str
) -> None:
    assert classify(frames, flags, version=version) == (kind, caller)


def _fake_record(events: np.ndarray, *, busy: bool = False, discard: bool = False) -> bytes:
    """One ring record as the kernel lays it out: ring header, batch header, events."""
    import struct

    body = np.zeros(1, BATCH_HDR_DTYPE)
    body["n"] = len(events)
    data = body.tobytes() + events.tobytes()
    ln = len(data) | (1 << 31 if busy else 0) | (1 << 30 if discard else 0)
    rec = struct.pack("<II", ln, 0) + data
    return rec + bytes(-len(rec) % 8)


def test_ring_reader_parses_a_fake_ring(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RingReader over a memfd laid out like the kernel's ring (no BPF needed): batches of
    several events, a discarded record, and a record still being written."""
    import mmap
    import os
    import struct

    from ztrace.capture.events import RingReader

    page = mmap.PAGESIZE
    size = 4 * page
    fd = os.memfd_create("ring")
    # memfd cannot double-map the data area like the kernel does, so stay clear of the wrap
    os.ftruncate(fd, page + page + 2 * size)
    ev = np.zeros(6, EVENT_DTYPE)
    ev["ts_ns"] = [10, 20, 30, 40, 50, 60]
    ev["type"] = [1, 2, 5, 1, 2, 1]
    recs = [
        _fake_record(ev[:3]),
        _fake_record(ev[3:4], discard=True),
        _fake_record(ev[4:5]),
        _fake_record(ev[5:], busy=True),
    ]
    os.pwrite(fd, b"".join(recs), 2 * page)
    prod = sum(len(r) for r in recs)
    os.pwrite(fd, struct.pack("<Q", prod), page)  # producer position
    r = RingReader(fd, size)
    out = r.read()
    assert list(out["ts_ns"]) == [10, 20, 30, 50]
    assert list(out["type"]) == [1, 2, 5, 2]
    consumed = sum(len(x) for x in recs[:3])
    assert struct.unpack("<Q", os.pread(fd, 8, 0))[0] == consumed  # consumer moved
    assert len(r.read()) == 0  # stops at the busy record again
    r.close()
    os.close(fd)


def test_ring_reader_reads_runs_of_full_batches_at_once() -> None:
    """Runs of full batches are found and copied with numpy (RingReader._full_records), the
    rest record by record; the events come out in ring order either way, a discarded record
    is skipped, and a busy full batch stops the read."""
    import mmap
    import os
    import struct

    from ztrace.capture.events import RingReader

    page = mmap.PAGESIZE
    size = 8 * page
    fd = os.memfd_create("ring")
    os.ftruncate(fd, page + page + 2 * size)
    ev = np.zeros(16, EVENT_DTYPE)
    ev["ts_ns"] = np.arange(16) * 10
    ev["handle"] = np.arange(16) + 100
    b = 2  # events per full record
    recs = [
        _fake_record(ev[0:2]),
        _fake_record(ev[2:4]),
        _fake_record(ev[4:6]),  # three full ones: one vectorised copy
        _fake_record(ev[6:7]),  # a short batch: record by record
        _fake_record(ev[7:9], discard=True),  # full but discarded: skipped
        _fake_record(ev[9:11]),
        _fake_record(ev[11:13]),
        _fake_record(ev[13:15], busy=True),  # full but still being written: stop
    ]
    os.pwrite(fd, b"".join(recs), 2 * page)
    os.pwrite(fd, struct.pack("<Q", sum(len(r) for r in recs)), page)
    r = RingReader(fd, size, batch=b)
    runs: list[int] = []
    copy_full = r._copy_full
    r._copy_full = lambda pos, k: runs.append(k) or copy_full(pos, k)  # type: ignore[method-assign]
    out = r.read()
    assert runs == [3, 2]
    want = [*range(0, 7), *range(9, 13)]
    assert out["ts_ns"].tolist() == [10 * i for i in want]
    assert out["handle"].tolist() == [100 + i for i in want]
    assert r.records == 6
    assert struct.unpack("<Q", os.pread(fd, 8, 0))[0] == sum(len(x) for x in recs[:7])
    assert len(r.read(max_events=4)) == 0  # the busy record again
    r.close()
    os.close(fd)


def test_ring_reader_skips_and_counts_a_record_it_does_not_understand() -> None:
    """A record whose count does not match its size (the 6.1 guest's "96 bytes is not a batch
    of 0 events") is skipped by its kernel length and its events counted as lost; the records
    around it are still read and the consumer moves past all of them."""
    import mmap
    import os
    import struct

    from ztrace.capture.events import RingReader

    page = mmap.PAGESIZE
    fd = os.memfd_create("ring")
    os.ftruncate(fd, page + page + 8 * page)
    ev = np.zeros(3, EVENT_DTYPE)
    ev["ts_ns"] = [10, 20, 30]
    bad = bytearray(_fake_record(ev[1:2]))
    struct.pack_into("<I", bad, 8, 0)  # one event's size, a count of 0
    recs = [_fake_record(ev[0:1]), bytes(bad), _fake_record(ev[2:3])]
    os.pwrite(fd, b"".join(recs), 2 * page)
    os.pwrite(fd, struct.pack("<Q", sum(len(r) for r in recs)), page)
    r = RingReader(fd, 4 * page)
    out = r.read()
    assert out["ts_ns"].tolist() == [10, 30]
    assert (r.malformed_records, r.malformed_events) == (1, 1)
    assert r.records == 2
    assert struct.unpack("<Q", os.pread(fd, 8, 0))[0] == sum(len(x) for x in recs)
    r.close()
    os.close(fd)


def test_ring_reader_refuses_a_ring_it_cannot_parse_at_all() -> None:
    """Records of a layout the reader does not know (every count wrong): an error naming the
    mismatch, not a capture that reports everything as lost."""
    import mmap
    import os
    import struct

    from ztrace.capture.events import RingReader

    page = mmap.PAGESIZE
    fd = os.memfd_create("ring")
    os.ftruncate(fd, page + page + 8 * page)
    ev = np.zeros(1, EVENT_DTYPE)
    bad = bytearray(_fake_record(ev))
    struct.pack_into("<I", bad, 8, 2)  # one event's size, a count of 2
    os.pwrite(fd, bytes(bad) * 64, 2 * page)
    os.pwrite(fd, struct.pack("<Q", 64 * len(bad)), page)
    r = RingReader(fd, 4 * page)
    with pytest.raises(RuntimeError, match="64 of 64 ring records"):
        r.read()
    r.close()
    os.close(fd)


def test_lost_total_counts_malformed_ring_records() -> None:
    from ztrace.capture.session import lost_total

    assert lost_total({"ring_malformed": 3, "ring_refused": 2, "end_without_begin": 9}) == 5


def test_btf_finds_the_fields_the_raw_tracepoints_need() -> None:
    """The minimal BTF reader against this machine's kernel (every CI kernel has BTF)."""
    from ztrace.capture import btf

    b = btf.vmlinux()
    if b is None:
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    # task_struct.pid sits after hundreds of bytes of scheduler state, never at 0
    assert (b.member_offset("task_struct", "pid") or 0) > 0
    assert b.member_offset("task_struct", "no_such_field") is None
    assert b.raw_tracepoint_args("contention_end") in (None, ["void *", "int"])
    assert b.raw_tracepoint_args("no_such_tracepoint") is None


def test_capture_path_imports_nothing_heavy() -> None:
    """Guests run capture with system python3 + python3-bpfcc + pyarrow/numpy/click/rich only."""
    import subprocess
    import sys

    code = (
        "import sys, ztrace.cli.capture, ztrace.cli.doctor, ztrace.capture.session;"
        "bad = [m for m in ('polars', 'numba', 'altair') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("500M", 500 << 20),
        ("2G", 2 << 30),
        ("64k", 65536),
        ("1.5GiB", int(1.5 * (1 << 30))),
        ("4096", 4096),
    ],
)
def test_parse_size(text: str, n: int) -> None:
    from ztrace.cli.capture import parse_size

    assert parse_size(text, "--max-size") == n


def test_parse_cpu_list() -> None:
    import os

    from ztrace.cli.capture import parse_cpu_list

    assert parse_cpu_list("0") == [0]
    if (os.cpu_count() or 1) >= 2:
        assert parse_cpu_list("0-1") == [0, 1] and parse_cpu_list("1,0") == [0, 1]
    for bad in ("x", "3-1", "", "0-"):
        with pytest.raises(ConfigError, match="--cpu"):
            parse_cpu_list(bad)
    with pytest.raises(ConfigError, match="no CPU 4096"):
        parse_cpu_list("4096")


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--max-size", "lots"], "--max-size"),
        (["--max-files", "0"], "--max-files"),
        (["--cpu", "9999"], "--cpu"),
        (["--interval", "soon"], "--interval"),
        (["--rotate-seconds", "0"], "--rotate-seconds"),
        (["--rotate-seconds", "-5"], "--rotate-seconds"),
        (["--rotate-mb", "0"], "--rotate-mb"),
        (["--reorder-window", "0s"], "--reorder-window"),
        (["--reorder-window", "later"], "--reorder-window"),
        (["--cgroup", "/nonexistent"], "--cgroup"),
    ],
)
def test_capture_cli_bad_operations_options_are_one_line(tmp_path, args, msg) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests.conftest import ROOT

    p = subprocess.run(
        [sys.executable, "-m", "ztrace", "capture", "-o", str(tmp_path / "t"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("ztrace: error:") and msg in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()  # nothing written on bad input


def _bare_events(ts: list[int]) -> np.ndarray:
    """Ring records of zs_malloc events at these times (distinct handles)."""
    ev = np.zeros(len(ts), EVENT_DTYPE)
    ev["ts_ns"] = ts
    ev["type"], ev["src"], ev["pool"] = 1, 2, pool_id("zram0")
    ev["handle"] = 0x1000 + 8 * np.arange(len(ts))
    ev["size"], ev["duration_ns"] = 100, 7
    ev["tid"], ev["pid"], ev["comm"] = 5, 5, b"w"
    return ev


def _bare_capture(tmp_path, reads: list[np.ndarray]):  # type: ignore[no-untyped-def]
    """A Capture's data path (ring reads -> reorder -> Parquet) without BPF: ``reads`` are
    what successive ring reads return; nothing is in flight in the kernel."""
    from ztrace.capture import session as s
    from ztrace.capture.background import BackgroundWorker
    from ztrace.capture.loader import ProbeMisses
    from ztrace.format import TraceMeta

    class Ring:
        def read(self, n: int) -> np.ndarray:
            return reads.pop(0) if reads else np.empty(0, EVENT_DTYPE)

        def drops(self) -> dict[str, int]:
            return {}

        def probe_misses(self, *, pair_seen: bool = True) -> ProbeMisses:
            return ProbeMisses({}, {}, set())

        maxactive = 0

    cap = object.__new__(s.Capture)
    cap.opts = s.CaptureOptions(out=tmp_path / "t", probes=["zsmalloc"])
    cap.plan = type("Plan", (), {"modes": {"zsmalloc": "kmem-tracepoint"}})()
    cap.columns, cap._anon, cap._comms, cap._pools = ["pid", "comm"], None, s._CommCache(), {}
    cap._pending, cap._pending_rows, cap._last_written = [], 0, 0
    cap._inflight = [None, None]  # nothing in flight in the kernel (reorder_watermark)
    cap.summary, cap.loaded = s.CaptureSummary(), Ring()
    meta = TraceMeta(
        kernel_release="6.18.0", page_size=4096, nr_cpus=2, source="capture", capture_start_ns=0
    )
    cap.writer = s._CaptureWriter(cap.opts.out, meta, columns=cap._all_columns())
    cap._meta, cap._misses, cap._misses_at = meta, None, 0.0
    # the writes go through the worker thread, as in a capture
    cap._bg = BackgroundWorker(cap._write_out)
    return cap


def _bare_close(cap) -> list[int]:  # type: ignore[no-untyped-def]
    """Finish a bare capture; the written ts_ns."""
    from ztrace.format import read_trace

    cap._flush(final=True)
    cap._bg.close()
    cap.writer.close(lost_events=cap.summary.late_dropped)
    return read_trace(cap.opts.out).table.column("ts_ns").to_pylist()  # type: ignore[no-any-return]


def test_consumer_orders_drops_late_rows_and_encodes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The consumer's data path (ring reads -> reorder -> Parquet) without BPF: reads whose
    events interleave across reads come out in ts order; a row older than what was already
    written is counted late (a prefix of the sorted batch) and dropped; ts_ns is
    delta-encoded and only ts_ns/duration_ns/size_bytes carry statistics (column_max)."""
    import pyarrow.parquet as pq

    from ztrace.format import open_trace

    reads = [_bare_events([30, 10, 20]), _bare_events([25, 40]), _bare_events([5, 50])]
    cap = _bare_capture(tmp_path, reads)  # 5: after 40 is written
    cap._drain()  # one read of 3 (_drain stops at a short read)
    cap._drain()
    cap._flush(final=False, drained_at_ns=40 + int(cap.opts.reorder_window_ms * 1e6))
    cap._drain()
    assert _bare_close(cap) == [10, 20, 25, 30, 40, 50]
    assert cap.summary.late_dropped == 1
    tr = open_trace(cap.opts.out)
    md = pq.ParquetFile(tr.files[0]).metadata.row_group(0)
    cols = {md.column(j).path_in_schema: md.column(j) for j in range(md.num_columns)}
    assert "DELTA_BINARY_PACKED" in cols["ts_ns"].encodings
    with_stats = {n for n, c in cols.items() if c.is_stats_set}
    assert with_stats == {"ts_ns", "duration_ns", "size_bytes"}
    assert tr.column_max("size_bytes") == 100 and tr.column_max("duration_ns") == 7


def test_a_burst_larger_than_a_part_is_split_across_parts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A part holds at most --rotate-mb of rows, however large the flush: one burst of
    10,000 events read and written at once fills parts of the rotation size one after
    another, and the ring (--max-files 2) keeps the newest two, whose rows are the burst's
    last ones in order. (Stop 37's CI: a guest burst in one flush made a ring of one part.)"""
    import pyarrow.parquet as pq

    n = 10_000
    cap = _bare_capture(tmp_path, [_bare_events(list(range(1, n + 1)))])
    w = cap.writer
    w.max_files = 2
    cap._drain()
    assert cap._pending_rows == n  # one read: the whole burst is one flush
    w.rotate_bytes = 1 << 14
    cap._flush(final=True)
    cap._bg.close()
    w.close(lost_events=0)
    per_part = [pq.ParquetFile(f).metadata.num_rows for f in w.files]
    assert len(w.files) == 2 and w.ring_deleted_files >= 3, (per_part, w.ring_deleted_files)
    assert sum(per_part) + w.ring_deleted_rows == n
    # the parts before the last are full, all of one size: what fits in the rotation size
    # (Arrow in-memory bytes, as the writer counts them; read back, a part's dictionary
    # columns weigh a little more than the writer's share of them)
    assert w.ring_deleted_rows == w.ring_deleted_files * per_part[0] >= per_part[1]
    assert pq.read_table(w.files[0]).nbytes <= 1.05 * w.rotate_bytes
    ts = np.concatenate([pq.read_table(f, columns=["ts_ns"]).column(0).to_numpy() for f in w.files])
    assert ts.tolist() == list(range(n - len(ts) + 1, n + 1))


def test_consumer_waits_for_an_event_still_in_flight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same data path with an event in flight in the kernel (begun at 15, say a lock
    wait): a flush long after the window writes only what began before it, so when the event
    arrives (stamped 15, read after 40) it is written in order and nothing is late. One look
    later the event has ended (no longer in flight) but the previous look still holds the
    writer back, as a CPU's batch may still hold it; the look after that does not."""
    reads = [_bare_events([30, 10, 20]), _bare_events([25, 40]), _bare_events([15, 50])]
    cap = _bare_capture(tmp_path, reads)
    late = 40 + int(cap.opts.reorder_window_ms * 1e6)  # 40 is well out of the window
    cap._inflight = [None, 15]
    cap._drain()
    cap._drain()
    cap._flush(final=False, drained_at_ns=late)
    assert cap._last_written == 10  # only 10 began before the event in flight
    cap._inflight = [15, None]  # it ended: the previous look still counts
    cap._flush(final=False, drained_at_ns=late)
    assert cap._last_written == 10
    cap._drain()  # now it arrives
    cap._inflight = [None, None]
    cap._flush(final=False, drained_at_ns=late)
    assert cap._last_written == 40
    assert _bare_close(cap) == [10, 15, 20, 25, 30, 40, 50]
    assert cap.summary.late_dropped == 0


def test_probe_misses_count_lost_pairs_and_report_reentries() -> None:
    """Which kernel miss counters are lost events: kprobe pairs' kretprobe misses and skipped
    runs are; the spinlock slowpath's misses, the lock programs' and the kmem/comm programs'
    skipped runs are only reported (re-entries, or runs that record nothing)."""
    from ztrace.capture.loader import ProbeMisses
    from ztrace.capture.session import lost_total

    m = ProbeMisses(
        {"r_native_queued_spin_lock_slowpath": 4, "r_zswap_store": 2},
        {
            "zt_spin_slow_entry": 1,
            "zt_spin_slow_return": 1,
            "zt_zswap_store_return": 3,
            "raw_tracepoint__contention_begin": 7,
            "raw_tracepoint__kmem_cache_alloc": 9,
        },
        {"zt_spin_slow_entry", "zt_spin_slow_return", "zt_zswap_store_entry"}
        | {"zt_zswap_store_return"},
        {"return_missed:zswap_store": 2},
    )
    assert (m.pair_nmissed, m.pair_lost, m.spin_reentry) == (2, 5, 6)
    assert (m.lock_lost, m.other_skipped) == (7, 9)
    assert m.describe().startswith("return_missed:zswap_store=2,kprobe_profile:")
    # probe_missed is part of lost_events; the reported-only counters are not
    lost = {"ringbuf_full": 1, "end_without_begin": 5, "spin_reentry": 6, "probe_missed": 5}
    assert lost_total(lost) == 6


def test_comm_ends_at_its_first_nul_and_one_name_is_one_entry() -> None:
    """6.1's bpf_get_current_comm() copies with strscpy(), so a reused batch slot keeps the
    previous event's bytes after the name (seen in a 6.1 guest capture: "fio\\0ker/u4:1",
    "python3\\0/0"). The column holds the name up to its NUL, and tails that differ give
    one dictionary entry, not one per tail."""
    from ztrace.capture import session as s

    ev = np.zeros(5, EVENT_DTYPE)
    ev["tid"] = [7, 7, 8, 9, 9]
    ev["comm"] = [b"fio\0ker/u4:1", b"fio\0od\0s/0", b"fio", b"python3\0/0", b"zsstress/0"]
    col = s._CommCache().encode(ev, None)
    assert col.to_pylist() == ["fio", "fio", "fio", "python3", "zsstress/0"]
    assert sorted(col.dictionary.to_pylist()) == ["fio", "python3", "zsstress/0"]
