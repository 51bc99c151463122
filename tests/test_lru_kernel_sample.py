"""The 6.12 design against the bundled 6.12 guest capture's own kernel counters.

``replays/samples/guest-6.12-zswap`` is a real capture (stock Debian 6.12 guest, zswap on
zsmalloc, ``shrinker_enabled=Y``), with the guest's ``/proc/vmstat`` and debugfs ``zswap/*``
snapshots in ``guest-6.12-zswap.kernel/counters``. Its pool never reached the limit
(``pool_limit_hit`` 0); every one of its 1 002 writebacks was done by the memory-pressure
shrinker in the reclaiming task. Replayed with no fitted parameter — the workload, the pool
limit the guest used, and the shrinker's writebacks as recorded demand — every counter is
equal (docs/lru-kernel-check.md). Without the shrinker demand the replay misses exactly the
1 002 writebacks and the faults they caused.
"""

from __future__ import annotations

from pathlib import Path

from ztrace.replay.lru.kernel_check import check

SAMPLES = Path(__file__).resolve().parents[1] / "replays" / "samples"


def test_612_sample_counters_exact(tmp_path: Path) -> None:
    (tmp_path / "trace").symlink_to(SAMPLES / "guest-6.12-zswap")
    (tmp_path / "counters").symlink_to(SAMPLES / "guest-6.12-zswap.kernel" / "counters")
    res = check(tmp_path, ["entry-lru-2nd-chance", "entry-lru-2nd-chance:shrinker=off"])
    assert res["release"].startswith("6.12.")
    assert res["trace_ops"]["shrinker_writebacks"] == 1002
    k = res["kernel"]
    got = res["designs"]["entry-lru-2nd-chance"]["counters"]
    assert got["zswpout"] == k["zswpout"] == 64478
    assert got["pool_limit_hit"] == k["pool_limit_hit"] == 0
    assert got["reject_compress_poor"] == k["reject_compress_fail+reject_compress_poor"] == 7413
    assert got["written_back_pages"] == k["written_back_pages"] == 1002
    assert got["zswpin"] == k["zswpin"] == 45669
    assert got["disk_writes"] == k["pswpout"] == 8415
    assert got["disk_swapin"] == k["pswpin"] == 6176
    assert got["stored_pages"] == k["stored_pages"] == 0
    off = res["designs"]["entry-lru-2nd-chance (shrinker=off)"]["counters"]
    assert off["written_back_pages"] == 0
    assert k["pswpin"] - off["disk_swapin"] == 1006  # faults on the pages it kept instead


def test_shrinker_writebacks_are_demand_worker_writebacks_are_outcomes() -> None:
    # Hand-built 6.12 stream, pool=bytes, limit 100 pages (never reached), 2048-byte pages:
    # S1 S2 S3, then a writeback by the reclaiming task (shrinker) and one by a kworker
    # (the pool-limit worker: an outcome, ignored), then L1 L2. With shrinker=trace the
    # 6.12 design walks its LRU at the shrinker row: 1, 2, 3 are referenced → rotated,
    # then 1 (cleared) is written back. L1 is a disk swap-in, L2 a hit.
    import numpy as np
    import pyarrow as pa

    from ztrace.format import Trace, TraceMeta, make_events
    from ztrace.replay.lru import run_design
    from ztrace.replay.lru.workload import OP_LOAD, OP_SHRINK, OP_STORE, load_workload

    rows = [
        ("zswap_store", 1, 2048, "stored", "app"),
        ("zswap_store", 2, 2048, "stored", "app"),
        ("zswap_store", 3, 2048, "stored", "app"),
        ("zswap_writeback", 9, 2048, "written", "app"),
        ("zswap_writeback", 8, 2048, "written", "kworker/u8:2"),
        ("zswap_load", 1, None, "miss", "app"),
        ("zswap_load", 2, 2048, "hit", "app"),
    ]
    t = make_events(
        ts_ns=np.arange(len(rows), dtype=np.uint64) * 10,
        event=pa.array([r[0] for r in rows]).dictionary_encode(),
        swap_entry=np.asarray([r[1] for r in rows], dtype=np.uint64),
        compressed_bytes=pa.array([r[2] for r in rows], pa.uint32()),
        outcome=pa.array([r[3] for r in rows], pa.string()).dictionary_encode(),
        comm=pa.array([r[4] for r in rows], pa.string()).dictionary_encode(),
    )
    meta = TraceMeta(kernel_release="6.12", schema_version=2)
    w = load_workload(Trace(table=t, meta=meta, files=[]))
    assert w.op.tolist() == [OP_STORE] * 3 + [OP_SHRINK, OP_LOAD, OP_LOAD]
    assert w.recorded["shrinker_writebacks"] == 1
    r = run_design(w, "entry-lru-2nd-chance", 100, "pool=bytes")
    c = r.counters
    assert (c["written_back_pages"], c["shrink_rotations"]) == (1, 3)
    assert (r.summary["disk_swapins"], r.summary["zswap_hits"]) == (1, 1)
    off = run_design(w, "entry-lru-2nd-chance", 100, "pool=bytes,shrinker=off")
    assert (off.counters["written_back_pages"], off.summary["zswap_hits"]) == (0, 2)
    # designs without a memory-pressure shrinker ignore the row
    assert run_design(w, "entry-lru", 100, "pool=bytes").counters["written_back_pages"] == 0


def test_concurrent_stores_both_pass_the_limit_check() -> None:
    # 6.1 checks zswap_is_full() at a store's entry and allocates later, without a lock.
    # pool=bytes, limit 1 page, 3000-byte pages. S1 (atomic) → 1 page. S2 and S3 enter at
    # ts 10 on two CPUs (durations 100 and 150 ns): both see 1 page (1 is not > 1) and pass;
    # they allocate at 110 and 160 (3 pages). S4 at 200: 3 > 1 → rejected.
    # Without durations each store is atomic: S3 sees S2's page and is rejected too.
    import numpy as np

    from ztrace.replay.lru import run_design
    from ztrace.replay.lru.workload import OP_STORE, from_arrays

    def w(dur: list[int]):  # type: ignore[no-untyped-def]
        out = from_arrays([0, 10, 10, 200], [OP_STORE] * 4, [1, 2, 3, 4], [3000] * 4)
        out.dur = np.asarray(dur, dtype=np.int64)
        return out

    split = run_design(w([0, 100, 150, 0]), "none", 1, "pool=bytes").summary
    assert (split["stores"], split["rejects"]) == (3, 1)
    atomic = run_design(w([0, 0, 0, 0]), "none", 1, "pool=bytes").summary
    assert (atomic["stores"], atomic["rejects"]) == (2, 2)
