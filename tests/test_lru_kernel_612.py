"""The 6.12 design against a fresh 6.12 guest that reaches the pool limit, with the shrink
worker in time and the shrinker's scans, both measured in the guest (``zswap-lru`` scenario;
docs/lru-kernel-check.md, "Kernel timing").

A ~10 min guest run, so ``vm_long``. Set ZTRACE_LRU_VM612=DIR to reuse an earlier run's output
directory instead of booting.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.guest_run import guest_run
from ztrace.format import read_meta
from ztrace.replay.lru.kernel_check import check

pytestmark = [pytest.mark.vm, pytest.mark.vm_long, pytest.mark.slow]


@pytest.fixture(scope="module")
def vm612(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return guest_run(tmp_path_factory, "ZTRACE_LRU_VM612", "6.12", "zswap-lru", timeout=1800)


def test_612_worker_in_time_counters(vm612: Path) -> None:
    res = check(vm612, ["entry-lru-2nd-chance"], pool_check=True)
    assert res["release"].startswith("6.12.")
    t = res["worker_timing"]
    assert t is not None and t["worker_writebacks"] > 0
    # the ftrace (mono) and the capture (bpf_ktime_get_ns) share a clock: every writeback of
    # the worker lies inside one of its executions
    assert t["worker_writebacks_inside_executions"] == t["worker_writebacks"]
    k = res["kernel"]
    got = res["designs"]["entry-lru-2nd-chance"]["counters"]
    assert "worker_runs" in got  # the worker ran in time
    for ours, theirs in (
        ("zswpout", "zswpout"),
        ("written_back_pages", "written_back_pages"),
        ("disk_swapin", "pswpin"),
    ):
        assert abs(got[ours] - k[theirs]) <= 0.10 * k[theirs], (ours, got[ours], k[theirs])
    # the pool model and the limit check are exact on the kernel's own allocations, which
    # needs every one of them: a capture that lost events that can hide a zs_malloc/zs_free
    # (the TCG consumer falling behind a burst; the footer says how many) cannot be held to
    # exactness
    touching = losses_touching_allocations(read_meta(vm612 / "trace").extra)
    if touching:
        hits = res["kernel_pool_hits"]["pool_limit_hit"]
        pytest.xfail(f"capture lost {touching}: pool check {hits} vs {k['pool_limit_hit']}")
    assert res["kernel_pool_hits"]["pool_limit_hit"] == k["pool_limit_hit"] > 0


def losses_touching_allocations(extra: dict[str, str]) -> list[str]:
    """The capture's losses (trace metadata ``lost_detail``, ``probe_misses``) that can hide
    an allocation: all but the zswap writeback pair's. The shrink worker's writeback reclaims
    into the zswap shrinker, which writes back from inside the outer call, so the outer
    call's event is lost (session 6, 6.12 mm/zswap.c: zswap_writeback_entry); the object it
    frees is a zs_free of its own, traced by the zsmalloc probes.

    >>> losses_touching_allocations({"lost_detail": "ringbuf_full=0,late_for_reorder=0",
    ...     "probe_misses": "return_missed:zswap_writeback=11,prog:zt_zswap_wb_return=2"})
    []
    >>> losses_touching_allocations({"lost_detail": "ringbuf_full=64,inflight_full=0",
    ...     "probe_misses": "return_missed:zs_free=1"})
    ['ringbuf_full=64', 'return_missed:zs_free=1']
    """
    detail = dict(kv.split("=", 1) for kv in extra.get("lost_detail", "").split(",") if kv)
    drops = (
        "ringbuf_full",
        "ring_refused",
        "ring_malformed",
        "inflight_full",
        "summary_map_full",
        "late_for_reorder",
    )
    bad = [f"{k}={detail[k]}" for k in drops if int(detail.get(k, 0))]
    misses = extra.get("probe_misses", "").split(",")
    return bad + [m for m in misses if m and not re.search(r"writeback|_wb_", m)]
