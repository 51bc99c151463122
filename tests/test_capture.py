"""Capture pieces that need no kernel: the record layout, parsing, attribution rules."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ztrace.capture.attribute import classify, lock_type
from ztrace.capture.events import EVENT_DTYPE, EVENT_NAMES, RECORD_BYTES
from ztrace.capture.loader import pool_id, pool_name, probes_dir
from ztrace.cli.capture import parse_duration
from ztrace.errors import ConfigError
from ztrace.format import ALLOCATOR_EVENTS, LOCK_EVENTS, SWAP_EVENTS

_C_SIZES = {"__u64": 8, "__s64": 8, "__u32": 4, "__s32": 4, "__u16": 2, "__u8": 1, "char": 1}


def _header_fields() -> list[tuple[str, int]]:
    text = (probes_dir() / "zs_events.h").read_text()
    body = re.search(r"struct zs_event \{(.*?)\};", text, re.S)
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
    assert RECORD_BYTES == 88  # 8-byte ring buffer header + record


def test_header_event_codes_match_python() -> None:
    text = (probes_dir() / "zs_events.h").read_text()
    codes = {int(v): k for k, v in re.findall(r"#define ZT_EV_(\w+)\s+(\d+)", text)}
    assert sorted(codes) == sorted(EVENT_NAMES)
    # every name the capture writes is one the trace format defines
    assert set(EVENT_NAMES.values()) <= set(ALLOCATOR_EVENTS + LOCK_EVENTS + SWAP_EVENTS)


@pytest.mark.parametrize(
    ("text", "secs"), [("30s", 30), ("5m", 300), ("250ms", 0.25), ("2", 2), ("1h", 3600)]
)
def test_parse_duration(text: str, secs: float) -> None:
    assert parse_duration(text) == pytest.approx(secs)


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="--duration"):
        parse_duration("soon")


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
        (["queued_spin_lock_slowpath", "try_to_wake_up"], 1, (6, 18), "other", ""),
        (["mutex_lock", "zs_malloc"], 32, (6, 18), "other", "zs_malloc"),
    ],
)
def test_classify(
    frames: list[str], flags: int, version: tuple[int, int], kind: str, caller: str
) -> None:
    assert classify(frames, flags, version=version) == (kind, caller)


def test_ring_reader_parses_a_fake_ring(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RingReader over a memfd laid out like the kernel's ring (no BPF needed)."""
    import mmap
    import os
    import struct

    from ztrace.capture.events import RECORD_DTYPE, RingReader

    page = mmap.PAGESIZE
    size = 4 * page
    fd = os.memfd_create("ring")
    # memfd cannot double-map the data area like the kernel does, so stay clear of the wrap
    os.ftruncate(fd, page + page + 2 * size)
    recs = np.zeros(3, RECORD_DTYPE)
    recs["len"] = [80, 80, 80 | (1 << 31)]  # the third is still being written (BUSY)
    recs["ev"]["ts_ns"] = [10, 20, 30]
    recs["ev"]["type"] = [1, 2, 5]
    os.pwrite(fd, recs.tobytes(), 2 * page)
    os.pwrite(fd, struct.pack("<Q", 3 * RECORD_BYTES), page)  # producer position
    r = RingReader(fd, size)
    out = r.read()
    assert list(out["ts_ns"]) == [10, 20]
    assert struct.unpack("<Q", os.pread(fd, 8, 0))[0] == 2 * RECORD_BYTES  # consumer moved
    assert len(r.read()) == 0  # stops at the busy record again
    r.close()
    os.close(fd)


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
