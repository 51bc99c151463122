"""The shrink worker in time (measured workqueue delay and time per writeback) and the
writeback failures the kernel has (-EEXIST on a page in the swap cache), on hand-built streams
whose every step is worked out in the comments (docs/lru-kernel-check.md, "Kernel timing")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ztrace.replay.lru import run_design
from ztrace.replay.lru.worker_timing import WorkerTiming, executions, measure, parse_ftrace
from ztrace.replay.lru.workload import OP_LOAD as L
from ztrace.replay.lru.workload import OP_STORE as S
from ztrace.replay.lru.workload import from_arrays


def row(r) -> tuple[int, ...]:
    s = r.summary
    return (s["stores"], s["rejects"], s["writebacks"], s["zswap_hits"], s["disk_swapins"])


def timed(rows: list[tuple[int, int, int, int]], delay: int, step: int):
    """rows: (ts, op, page, length); one-valued distributions make every draw known."""
    w = from_arrays(*(list(c) for c in zip(*rows, strict=True)))
    w.worker_timing = WorkerTiming(np.array([delay]), np.array([step]))
    return w


def test_worker_starts_after_the_delay_and_rejects_meanwhile():
    # 2nd chance, pool=bytes, limit 2 pages (full iff >= 2), thr 1 page; delay 25, step 5.
    # S1-S3 (0-20): 6144 B = 2 pages. S4 (30): full → reject, queue: starts at 55, its first
    # writeback completes at 60. S5 (40), S6 (50): still full → rejected (pending: no-op).
    # At 60: rotate 1, 2, 3 (referenced), write back 1 → 1 page ≤ thr: return. L1: disk,
    # L5: disk (rejected). S7 (80): 1 page ≤ thr → reached_full cleared, stored (2 pages).
    # S8 (90): full → reject, queued for 115: after the trace's end.
    rows = [(0, S, 1, 2048), (10, S, 2, 2048), (20, S, 3, 2048), (30, S, 4, 2048)]
    rows += [(40, S, 5, 2048), (50, S, 6, 2048), (60, L, 1, 0), (70, L, 5, 0)]
    rows += [(80, S, 7, 2048), (90, S, 8, 2048)]
    r = run_design(timed(rows, 25, 5), "entry-lru-2nd-chance", 2, "pool=bytes")
    s, c = r.summary, r.counters
    assert (s["stores"], s["rejects"], s["writebacks"]) == (4, 4, 1)
    assert (s["zswap_hits"], s["disk_swapins"]) == (0, 2)
    assert c["pool_limit_hit"] == 4 and c["shrink_rotations"] == 3
    assert (c["worker_runs"], c["worker_requeued"]) == (1, 0)
    # the same stream with the worker run at once (no timing): S5 is stored after S4's
    # writeback, so the lag is what rejected S5 and S6
    w = timed(rows, 25, 5)
    w.worker_timing = None
    r0 = run_design(w, "entry-lru-2nd-chance", 2, "pool=bytes")
    assert r0.summary["rejects"] < 4 and "worker_runs" not in r0.counters
    off = run_design(timed(rows, 25, 5), "entry-lru-2nd-chance", 2, "pool=bytes,worker_timing=off")
    assert row(off) == row(r0)


def test_queued_while_running_runs_again_when_it_returns():
    # delay 5, step 100. S4 (30): reject, start 35, first writeback completes at 135.
    # S5 (40): reject; the worker is running (PENDING cleared at start): requeued.
    # At 135: rotate 1, 2, 3, write back 1 → 1 page: return at 235; the requeued run starts
    # then (not 40 + 5). L1 (140): disk. S7 (240): 1 page ≤ thr → stored (2 pages).
    # At 335 the second run writes back 2 → 1 page: return. S8 (340): stored.
    rows = [(0, S, 1, 2048), (10, S, 2, 2048), (20, S, 3, 2048), (30, S, 4, 2048)]
    rows += [(40, S, 5, 2048), (140, L, 1, 0), (240, S, 7, 2048), (340, S, 8, 2048)]
    r = run_design(timed(rows, 5, 100), "entry-lru-2nd-chance", 2, "pool=bytes")
    s, c = r.summary, r.counters
    assert (s["stores"], s["rejects"], s["writebacks"], s["disk_swapins"]) == (5, 2, 2, 1)
    assert (c["worker_runs"], c["worker_requeued"]) == (2, 1)


def test_a_run_that_only_rotates_holds_the_worker_for_one_walk():
    # 2nd chance, pool=bytes, limit 2 pages (full iff >= 2), thr 1 page; delay 5, step 100,
    # walk 3. S1-S17 (0-160): 17 x 256 B = 4352 B, 2 pages (S17's check saw 1 page).
    # S18 (170): full → reject, queued, starts at 175; at 178 (one walk) it rotates 1-16
    # (referenced): 16 failures, it gives up and returns at 178. S19 (180): reject, queued
    # while idle: starts at 185; at 188 it rotates 17, writes 1 back: 4096 B = 1 page ≤ thr,
    # it returns. S20 (200): 1 page ≤ thr → reached_full cleared, stored.
    rows = [(10 * i, S, i + 1, 256) for i in range(17)]
    rows += [(170, S, 18, 256), (180, S, 19, 256), (200, S, 20, 256)]
    w = from_arrays(*(list(c) for c in zip(*rows, strict=True)))
    w.worker_timing = WorkerTiming(np.array([5]), np.array([100]), np.array([3]))
    r = run_design(w, "entry-lru-2nd-chance", 2, "pool=bytes")
    s, c = r.summary, r.counters
    assert (s["stores"], s["rejects"], s["writebacks"]) == (18, 2, 1)
    assert (c["worker_runs"], c["worker_requeued"], c["shrink_rotations"]) == (2, 0, 17)
    # without a measured walk the first outcome is one writeback step (100) after the start:
    # the first run holds the worker until 275, S19 finds it running (requeued), S20 is
    # rejected too, and nothing is written back before the trace ends
    w.worker_timing = WorkerTiming(np.array([5]), np.array([100]))
    r = run_design(w, "entry-lru-2nd-chance", 2, "pool=bytes")
    assert (r.summary["stores"], r.summary["rejects"], r.summary["writebacks"]) == (17, 3, 0)
    assert (r.counters["worker_runs"], r.counters["worker_requeued"]) == (1, 1)


def test_eexist_puts_a_loaded_entry_back_and_counts_toward_the_retries():
    # entry-lru with non-exclusive loads (6.5-6.7), pool=bytes, limit 2 (full iff > 2),
    # thr 1 (accept again iff < 1 page). S1, L1 (hit: 1 stays, loaded = in the swap cache),
    # S2-S5: 5 x 2048 = 3 pages. S6: 3 > 2 → reject; the worker: tail 1 → -EEXIST, back to
    # the head (failure 1); writes back 2, 3, 4, 5; then only 1 is left (1 page, not < 1):
    # -EEXIST 15 more times → 16 failures (MAX_RECLAIM_RETRIES): it returns. 1 stays.
    rows = [(0, S, 1, 2048), (10, L, 1, 0), (20, S, 2, 2048), (30, S, 3, 2048)]
    rows += [(40, S, 4, 2048), (50, S, 5, 2048), (60, S, 6, 2048)]
    w = from_arrays(*(list(c) for c in zip(*rows, strict=True)))
    r = run_design(w, "entry-lru", 2, "pool=bytes,exclusive_loads=no")
    assert (r.summary["writebacks"], r.summary["zswap_hits"]) == (4, 1)
    assert r.counters["reject_reclaim_fail"] == 16
    assert r.counters["stored_pages"] == 1


def test_eexist_in_zs_reclaim_page_stops_at_the_object_and_puts_the_zspage_back():
    # zspage-lru (6.2): 1000+8 B → class 1024, 4 objects in a 1-page zspage. Limit 1 page.
    # P1-P4 fill Z1 (slots 0-3). L2: hit, kept (non-exclusive): in the swap cache. P5: 1 is
    # not > 1 → stored in Z2 (2 pages). P6: 2 > 1 → reject; zs_reclaim_page: tail Z1 in
    # address order: P1 written back, P2 → -EEXIST: stop, Z1 back at the head with P2-P4;
    # retry: tail Z2: P5 written back, Z2 freed → 1 page. 2 writebacks, 1 zspage freed.
    rows = [(0, S, 1, 1000), (10, S, 2, 1000), (20, S, 3, 1000), (30, S, 4, 1000)]
    rows += [(40, L, 2, 0), (50, S, 5, 1000), (60, S, 6, 1000)]
    w = from_arrays(*(list(c) for c in zip(*rows, strict=True)))
    r = run_design(w, "zspage-lru", 1)
    assert (r.summary["stores"], r.summary["rejects"], r.summary["writebacks"]) == (5, 1, 2)
    assert r.counters["zspages_written_back"] == 1
    assert r.counters["reject_reclaim_fail"] == 0
    assert r.counters["stored_pages"] == 3  # P2, P3, P4


FTRACE = """\
# tracer: nop
#
       python3-212     [001] d..2.   100.000100: workqueue_queue_work: work struct=00000000a function=shrink_worker workqueue=zswap-shrink req_cpu=8192 cpu=4294967295
  kworker/u9:1-57      [000] .....   100.016100: workqueue_execute_start: work struct 00000000a: function shrink_worker
       python3-212     [001] d..2.   100.016200: workqueue_queue_work: work struct=00000000a function=shrink_worker workqueue=zswap-shrink req_cpu=8192 cpu=4294967295
  kworker/u9:1-57      [000] .....   100.016400: workqueue_execute_end: work struct 00000000a: function shrink_worker
  kworker/u9:1-57      [000] .....   100.016410: workqueue_execute_start: work struct 00000000a: function shrink_worker
  kworker/u9:1-57      [000] .....   100.016500: workqueue_execute_end: work struct 00000000a: function shrink_worker
"""  # noqa: E501


def test_ftrace_delays_and_steps(tmp_path: Path):
    # one idle queue (delay 16 ms) and one requeue while running (no delay sample); the
    # first run [100.016100, 100.016400] has writebacks completing at +100 and +250 µs:
    # steps 100, 150, 50 µs; the second run has none.
    f = tmp_path / "shrink_wq.trace"
    f.write_text(FTRACE)
    ts, kinds = parse_ftrace(f)
    assert len(ts) == 6
    delays, runs = executions(ts, kinds)
    assert delays.tolist() == [16_000_000]
    assert runs == [(100_016_100_000, 100_016_400_000), (100_016_410_000, 100_016_500_000)]
    wb_ts = np.array([100_016_150_000, 100_016_300_000])
    t = measure(f, wb_ts, np.array([50_000, 50_000]))
    assert t is not None
    assert t.step_ns.tolist() == [100_000, 150_000, 50_000]
    assert t.walk_ns.tolist() == [90_000]  # the second run wrote nothing back
    assert t.summary["worker_writebacks_inside_executions"] == 2
    assert measure(f, None, None) is None


SCANS = """\
       python3-325     [001] .....   230.000100: zt_scan: (zswap_shrinker_scan+0x0/0x2a0) nr_to_scan=2 memcg=18446612682302996480
       python3-325     [001] .....   230.000200: zt_scan_ret: (do_shrink_slab+0x13e/0x3e0 <- zswap_shrinker_scan) ret=18446744073709551615
       python3-325     [001] .....   230.000300: zt_scan: (zswap_shrinker_scan+0x0/0x2a0) nr_to_scan=3 memcg=18446612682302996480
       python3-325     [001] .....   230.000400: zt_scan_ret: (do_shrink_slab+0x13e/0x3e0 <- zswap_shrinker_scan) ret=2
"""  # noqa: E501


def test_shrinker_scans_walk_the_design_lru(tmp_path: Path):
    # S1-S3 stored (no limit in reach). Scan of 2: 1 and 2 are referenced → rotated, nothing
    # written back (the kernel returned SHRINK_STOP). Scan of 3: 3 rotated, then 1 and 2
    # (cleared) written back. L1, L2: disk; L3: hit. The OP_SHRINK row (the trace's one
    # shrinker writeback) is not replayed when the scans are there.
    from ztrace.replay.lru.worker_timing import parse_scans
    from ztrace.replay.lru.workload import OP_SHRINK, with_scans

    f = tmp_path / "shrink_wq.trace"
    f.write_text(SCANS)
    ts, n, summary = parse_scans(f)
    assert n.tolist() == [2, 3] and ts.tolist() == [230_000_100_000, 230_000_300_000]
    assert (summary["calls"], summary["freed_total"], summary["shrink_stop"]) == (2, 2, 1)
    rows = [(0, S, 1, 2048), (10, S, 2, 2048), (20, S, 3, 2048), (25, OP_SHRINK, 1, 0)]
    rows += [(230_000_500_000, L, 1, 0), (230_000_600_000, L, 2, 0), (230_000_700_000, L, 3, 0)]
    w = from_arrays(*(list(c) for c in zip(*rows, strict=True)))
    r = run_design(with_scans(w, ts, n), "entry-lru-2nd-chance", 100, "pool=bytes")
    assert (r.summary["writebacks"], r.summary["disk_swapins"], r.summary["zswap_hits"]) == (
        2,
        2,
        1,
    )
    assert r.counters["shrink_rotations"] == 3
    # as demand instead: the one OP_SHRINK row writes back one entry (1, after rotating 1-3)
    d = run_design(with_scans(w, ts, n), "entry-lru-2nd-chance", 100, "pool=bytes,shrinker=demand")
    assert d.summary["writebacks"] == 1
