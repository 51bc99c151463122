"""The `none` design against a real 6.1 kernel (stock Debian guest, zswap on zsmalloc).

Boots the 6.1 guest and runs the ``zswap`` scenario (memory cgroup of 64 MiB over a swapfile,
max_pool_percent=3, 300 MiB touched twice) under ``ztrace capture``, then replays the capture
with ``none`` — what 6.1 runs: zsmalloc has no ``.shrink`` before 6.2 — and compares with the
kernel's own counters. With the page-exact zsmalloc model every limit decision is the
kernel's, so the counts must be *equal*. Set ZTRACE_LRU_VM61=DIR to reuse an earlier run's
output directory instead of booting (docs/lru-kernel-check.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.guest_run import guest_run
from ztrace.replay.lru.kernel_check import check

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def vm61(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return guest_run(tmp_path_factory, "ZTRACE_LRU_VM61", "6.1", "zswap", timeout=900)


def test_none_design_reproduces_61_counters(vm61: Path) -> None:
    res = check(vm61, ["none"])
    assert res["release"].startswith("6.1.")
    kern = res["kernel"]
    pred = res["designs"]["none"]["counters"]
    rec = res["recorded"]
    assert pred["zswpout"] == kern["zswpout"]
    assert pred["pool_limit_hit"] == kern["pool_limit_hit"]
    assert pred["reject_pool_limit"] == rec["zswap_store:reject_pool_limit"]
    assert pred["zswpin"] == kern["zswpin"]
    assert pred["written_back_pages"] == kern["written_back_pages"] == 0
    assert pred["stored_pages"] == kern["stored_pages"]
    assert pred["pool_total_pages"] == kern["pool_total_size"]
    # every rejected page is a disk write (6.1 has no writeback)
    assert pred["disk_writes"] == kern["pswpout"]
    # the worker fails once per run; the kernel coalesces runs queued while one is pending,
    # so it counts at most one per pool_limit_hit
    assert 0 < kern["reject_reclaim_fail"] <= pred["reject_reclaim_fail"]
