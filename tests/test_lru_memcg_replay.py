"""Several memory cgroups in the LRU replay (issue 13, item 3), on hand-built streams worked
out on paper: per-memcg lists in ``entry-lru-2nd-chance`` (6.12 ``zswap_list_lru`` is a
memcg-aware list_lru), 6.12 ``shrink_worker``'s round-robin over memcgs, the per-memcg
counters and the cross-memcg inversion (defined with the future, like
``avoidable_disk_faults``). A workload with one memcg id, or none, replays exactly as before.
"""

from __future__ import annotations

import numpy as np

from ztrace.replay.lru import run_design, run_lru
from ztrace.replay.lru.workload import (
    OP_LOAD,
    OP_SHRINK_SCAN,
    OP_STORE,
    from_arrays,
    with_scans,
)

A, B = 10, 20  # memcg (cgroup) ids: A sorts first, so the worker's walk is A, B, NULL
D = "entry-lru-2nd-chance"
P = "pool=bytes"  # 2048-byte entries: two per page; limit 3 pages, threshold 2 pages

# (op, page, memcg). S1–S5 fill 2.5 pages; S6 (B) sees 3 pages ≥ 3: rejected, worker runs.
# Per memcg lists (oldest first): A [1, 2, 5], B [3, 4], every entry referenced. The walk:
# A rotates 1, B rotates 3, NULL (attempts 2: no failure), A rotates 2, B rotates 4, NULL,
# A rotates 5, B writes back 3 (unreferenced now) → 2 pages = threshold: the worker returns.
# With one LRU [1..5] it rotates 1..5 and writes back 1 instead.
# S7 (A) is stored (2 pages ≤ threshold clears reached_full); S8 (A) sees 3 pages: rejected;
# the worker's cursor is at B, so it steps to NULL (no attempt in this walk yet: failure 1),
# then A writes back 1 (rotated in the first run) → 2 pages.
# Loads then: 6, 3, 4, 8, 1; pages 2, 5, 7 are never faulted again.
STREAM = [
    (OP_STORE, 1, A),
    (OP_STORE, 2, A),
    (OP_STORE, 3, B),
    (OP_STORE, 4, B),
    (OP_STORE, 5, A),
    (OP_STORE, 6, B),
    (OP_STORE, 7, A),
    (OP_STORE, 8, A),
    (OP_LOAD, 6, B),
    (OP_LOAD, 3, B),
    (OP_LOAD, 4, B),
    (OP_LOAD, 8, A),
    (OP_LOAD, 1, A),
]


def stream(memcgs: bool | int = True) -> object:
    op = [o for o, _, _ in STREAM]
    page = [p for _, p, _ in STREAM]
    mc = None if memcgs is False else [m if memcgs is True else memcgs for _, _, m in STREAM]
    clen = [2048 if o == OP_STORE else 0 for o in op]
    return from_arrays(np.arange(len(op)) * 100, op, page, clen, memcg=mc)


def test_round_robin_worker_and_per_memcg_counters() -> None:
    r = run_design(stream(), D, 3, P)
    s = r.summary
    assert (s["stores"], s["rejects"], s["writebacks"], s["zswap_hits"]) == (6, 2, 2, 1)
    # disk copies and what zswap held then (next faults: 6→L9, 3→L10, 4→L11, 8→L12, 1→L13):
    # reject 6 (B): A's 2, 5 are never faulted → avoidable, and another memcg's: cross;
    # write back 3 (B): the same; reject 8 (A, L12): A's 2, 5, 7 never faulted → avoidable,
    # but B's only entry 4 is faulted at L11 < L12 → not cross; write back 1 (A, L13): same.
    assert (s["disk_faults"], s["avoidable_disk_faults"]) == (4, 4)
    lat_z, lat_d = s["latency_zswap_ns"], s["latency_disk_ns"]
    assert r.memcg == {
        str(A): {
            "stored": 4,
            "zswap_hits": 0,
            "written_back": 1,
            "rejects": 1,
            "disk_faults": 2,
            "avoidable_disk_faults": 2,
            "cross_memcg_inversions": 0,
            "cross_memcg_avoidable_disk_faults": 0,
            "expected_fault_latency_ns": lat_d,
        },
        str(B): {
            "stored": 2,
            "zswap_hits": 1,
            "written_back": 1,
            "rejects": 1,
            "disk_faults": 2,
            "avoidable_disk_faults": 2,
            "cross_memcg_inversions": 2,
            "cross_memcg_avoidable_disk_faults": 2,
            "expected_fault_latency_ns": (lat_z + 2 * lat_d) / 3,
        },
    }
    assert r.counters["shrink_rotations"] == 5


def test_one_list_writes_back_the_other_memcgs_page() -> None:
    # the same stream with one LRU: S6's worker writes back 1 (A), S8's writes back 2 (A):
    # B's 3 stays and hits at L10, A's 1 and 2 went to disk → 1's fault is a disk fault
    r = run_design(stream(False), D, 3, P)
    assert r.memcg == {}
    s = r.summary
    assert (s["writebacks"], s["zswap_hits"], s["disk_faults"]) == (2, 2, 3)


def test_one_memcg_id_is_the_one_list_replay() -> None:
    # a trace whose stores all carry one memcg id replays exactly as one without ids
    one = run_design(stream(A), D, 3, P)
    none = run_design(stream(False), D, 3, P)
    assert (one.summary, one.counters, one.memcg) == (none.summary, none.counters, {})
    for design in ("none", "entry-lru", "zspage-lru", "swap-lru", "optimal"):
        a, b = run_design(stream(A), design, 3, P), run_design(stream(False), design, 3, P)
        assert (a.summary, a.counters) == (b.summary, b.counters), design


def test_lru_memcg_table_only_with_several_memcgs() -> None:
    t = run_lru(stream(), [D, "entry-lru"], pool_limit=3, params=P)
    m = t["lru_memcg"].to_pylist()
    assert [(r["lru_design"], r["memcg_id"]) for r in m] == [
        (D, A),
        (D, B),
        ("entry-lru", A),
        ("entry-lru", B),
    ]
    # entry-lru keeps one list (6.5–6.7) but its counters are still split by memcg
    summ = {r["lru_design"]: r for r in t["lru_summary"].to_pylist()}
    for d in (D, "entry-lru"):
        rows = [r for r in m if r["lru_design"] == d]
        assert sum(r["stored"] for r in rows) == summ[d]["stores"]
        assert sum(r["disk_faults"] for r in rows) == summ[d]["disk_faults"]
        assert sum(r["written_back"] for r in rows) == summ[d]["writebacks"]
    assert "lru_memcg" not in run_lru(stream(False), [D], pool_limit=3, params=P)


def test_shrinker_scan_walks_the_reclaimed_memcgs_list() -> None:
    # S1–S4 as above (A [1, 2], B [3, 4]), then one measured shrinker call on B (nr_to_scan
    # 3): rotate 3, rotate 4, write back 3; A's entries stay. Without its memcg, the scan
    # walks the last store's memcg (B here as well); with A's id it walks A's list.
    w = from_arrays(
        np.arange(4) * 100,
        [OP_STORE] * 4,
        [1, 2, 3, 4],
        [2048] * 4,
        memcg=[A, A, B, B],
    )
    for scan_mc, wb in ((B, {A: 0, B: 1}), (0, {A: 0, B: 1}), (A, {A: 1, B: 0})):
        ws = with_scans(w, np.array([350]), np.array([3]), np.array([scan_mc], np.uint64))
        assert (ws.op == OP_SHRINK_SCAN).sum() == 1
        r = run_design(ws, D, 100, P)
        assert {int(k): v["written_back"] for k, v in r.memcg.items()} == wb, scan_mc


def test_report_and_dashboard_show_each_memcg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ztrace.format import results_from_tables
    from ztrace.look.dashboard import MEMCG_CHART, build_sections, prepare
    from ztrace.look.report import build_report, render_terminal

    res = results_from_tables(run_lru(stream(), [D], pool_limit=3, params=P))
    rep = build_report(res)
    assert [(r["memcg_id"], r["cross_memcg_avoidable_disk_faults"]) for r in rep["lru_memcg"]] == [
        (A, 0),
        (B, 2),
    ]
    text = render_terminal(rep)
    assert "LRU per memory cgroup" in text and "cross-memcg" in text
    d = prepare(res)
    assert d.lru_memcg is not None
    # one bar per design x memcg x measure
    assert d.lru_memcg.height == 2 * 5
    lru = [s for s in build_sections(d) if s.id == "lru"]
    assert lru and "lru_memcg" in lru[0].charts and MEMCG_CHART in str(lru[0].spec)
    # one memcg: no per-memcg part anywhere
    one = results_from_tables(run_lru(stream(False), [D], pool_limit=3, params=P))
    assert "lru_memcg" not in build_report(one) and prepare(one).lru_memcg is None
