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
