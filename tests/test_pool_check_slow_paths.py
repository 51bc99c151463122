"""The LRU kernel check's pool pass (``kernel_pool_hits``) on hand-worked traces: two CPUs in
zs_malloc()'s slow path for one class make two zspages, as the kernel does.

6.12 mm/zsmalloc.c: zs_malloc() takes the class lock and calls find_get_zspage(); with no
room it drops the lock, calls alloc_zspage(), takes the lock again and puts the object into
the zspage it allocated, adding pages_per_zspage to pool->pages_allocated only then. The
guest run that showed it (session 21, kept at /work/s21/vm612_ci2): khugepaged's 2.1 ms
zs_malloc overlapped python3's in an 8-page class; replayed one step at a time the pool was
8 pages short for 35 s and the check gave 3,652 limit hits against the kernel's 7,075.

3624 B + the 8-byte handle -> class 225: a zspage of 8 pages holding 9 objects.
"""

from __future__ import annotations

from pathlib import Path

from ztrace.format import TraceMeta, make_events, write_trace
from ztrace.replay.lru.kernel_check import kernel_pool_hits

K612 = "6.12.95+deb12-amd64"
OBJ9 = 3624


def _hits(tmp_path: Path, rows: list[tuple[int, str, int, int, int]], limit: int) -> dict:
    ts, ev, cpu, handle, dur = zip(*rows, strict=True)
    tr = tmp_path / "t"
    table = make_events(
        ts_ns=list(ts),
        event=list(ev),
        cpu=list(cpu),
        handle=list(handle),
        size_bytes=[OBJ9 if e == "zs_malloc" else 0 for e in ev],
        duration_ns=list(dur),
    )
    write_trace(tr, table, TraceMeta(kernel_release=K612, nr_cpus=2))
    return kernel_pool_hits(tr, limit, K612)


def test_overlapping_slow_paths_make_two_zspages(tmp_path: Path) -> None:
    # CPU0's zs_malloc at 0 finds no room (empty class) and is in alloc_zspage() until 1,000.
    # CPU1's at 100 finds no room either (CPU0's zspage is not on the class list yet) and
    # returns at 300 with its own zspage: 8 pages from 300, 16 from 1,000. Stores at 200
    # (0 pages), 500 (8) and 1,500 (16), limit 16: one hit. One step at a time would have
    # put CPU1's object into CPU0's zspage: 8 pages at 1,500, no hit.
    rows = [
        (0, "zs_malloc", 0, 1, 1_000),
        (100, "zs_malloc", 1, 2, 200),
        (200, "zswap_store", 1, 0, 0),
        (500, "zswap_store", 1, 0, 0),
        (1_500, "zswap_store", 0, 0, 0),
    ]
    got = _hits(tmp_path, rows, limit=16)
    assert got == {"store_checks": 3, "pool_limit_hit": 1, "peak_pages": 16}


def test_a_slow_path_that_returned_leaves_room_for_the_next(tmp_path: Path) -> None:
    # The same two calls one after the other: CPU0's zspage (8 pages) is on the class list
    # from 1,000, so CPU1's zs_malloc at 1,100 takes its second slot: 8 pages, no hit at 16,
    # one at 8.
    rows = [
        (0, "zs_malloc", 0, 1, 1_000),
        (1_100, "zs_malloc", 1, 2, 200),
        (1_500, "zswap_store", 0, 0, 0),
    ]
    assert _hits(tmp_path, rows, limit=16)["pool_limit_hit"] == 0
    assert _hits(tmp_path / "b", rows, limit=8) == {
        "store_checks": 1,
        "pool_limit_hit": 1,
        "peak_pages": 8,
    }


def test_a_free_during_the_slow_path_does_not_take_the_new_zspage_back(tmp_path: Path) -> None:
    # CPU1's object (its own zspage from 50) is freed at 150 while CPU0 is still in
    # alloc_zspage() (0..1,000): that zspage empties and goes (0 pages); CPU0's object then
    # gets a zspage of its own at 1,000 (8 pages), not a slot freed meanwhile.
    rows = [
        (0, "zs_malloc", 0, 1, 1_000),
        (10, "zs_malloc", 1, 2, 40),
        (100, "zswap_store", 1, 0, 0),
        (150, "zs_free", 1, 2, 0),
        (200, "zswap_store", 1, 0, 0),
        (1_200, "zswap_store", 1, 0, 0),
    ]
    got = _hits(tmp_path, rows, limit=8)
    assert got == {"store_checks": 3, "pool_limit_hit": 2, "peak_pages": 8}
