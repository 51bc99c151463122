"""Compaction as the kernel runs it: per class, per source zspage, with the lock breaks.

Model log rows are checked against the hand-traced scenarios of tests/test_zsmalloc_model.py;
the lock waits are worked out on paper in each test's comment (no tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_zsmalloc_model import _three_zspages_scenario
from ztrace.model.classes import build_classes
from ztrace.model.zsmalloc import N_CL, compact_log, compact_log_rows, new_pool
from ztrace.replay.compaction import N_R, OP_ARRAYS, split_compactions, split_costs
from ztrace.replay.costs import CostModel
from ztrace.replay.locks import (
    M_READ,
    M_SPIN,
    M_WRITE,
    N_MODES,
    OP_COMPACT,
    OP_COMPACT_SRC,
    OP_FREE,
    OP_MALLOC,
    get_design,
)
from ztrace.replay.locks._sim import OPEN_LOOP, S_ACQ, S_CONT, S_HOLD, S_WAIT
from ztrace.replay.locks._state import SimState

LOOKUP = CostModel().lookup_ns  # 20 ns: zs_free's pool read-lock hold


@pytest.fixture(scope="module")
def t8():
    return build_classes(8)


@pytest.mark.parametrize(
    "ratio, rows",
    [
        # >=6.4: src Zs (1 object) -> dst Zh, Zs freed (8 pages), Zh 7/9 not full;
        # src Zd (2 objects) -> Zh, Zd freed, Zh full.
        # (the last column: the source zspage, the zspage lock the compactor write-locks)
        (True, [[225, 1, 8, 0, "Zs"], [225, 2, 8, 1, "Zd"]]),
        # <=6.3: src Zs (1) -> dst Zd, Zs freed; src Zh (6) -> Zd, Zh freed; Zd became full
        # with the last object, so no destination was *left* full (migrate_zspage returned 0)
        (False, [[225, 1, 8, 0, "Zs"], [225, 6, 8, 0, "Zh"]]),
    ],
)
def test_compact_log_rows_per_source_zspage(t8, ratio: bool, rows: list[list[object]]) -> None:
    p = new_pool(t8, ratio_groups=ratio)
    zh, zd, zs = _three_zspages_scenario(p)
    ids = {"Zh": p.zspage_of(zh[3])[0], "Zd": p.zspage_of(zd[7])[0], "Zs": p.zspage_of(zs[8])[0]}
    assert len(set(ids.values())) == 3
    rows = [[ids.get(v, v) if isinstance(v, str) else v for v in r] for r in rows]
    assert compact_log_rows(p) >= len(rows)
    log = np.full((8, N_CL), -1, dtype=np.int64)
    freed, n = compact_log(p, log)
    assert (freed, n) == (16, len(rows))
    assert log[:n].tolist() == rows
    assert p.total_pages() == 8 and p.pages_compacted == 16 and p.check() == 0


@pytest.mark.parametrize("ratio", [True, False])
def test_compact_log_leaves_the_page_exact_result_alone(t8, ratio: bool) -> None:
    """Random churn in two identical pools: compact() and compact_log() free the same pages
    and leave the same per-class state; the log's freed pages sum to the total."""
    rng = np.random.default_rng(7)
    a, b = new_pool(t8, ratio_groups=ratio), new_pool(t8, ratio_groups=ratio)
    live: list[tuple[int, int]] = []
    for _ in range(3):
        for s in rng.integers(32, 3000, 4000):
            live.append((a.malloc(int(s)), b.malloc(int(s))))
        rng.shuffle(live)
        keep = len(live) // 3
        for oa, ob in live[keep:]:
            a.free(oa)
            b.free(ob)
        live = live[:keep]
        log = np.zeros((compact_log_rows(b), N_CL), dtype=np.int64)
        fa = a.compact()
        fb, n = compact_log(b, log)
        assert fa == fb > 0
        assert n <= len(log)
        assert int(log[:n, 2].sum()) == fb
        assert (log[:n, 1] > 0).all()  # every row moved something
        assert np.array_equal(a.class_stats(), b.class_stats())
        assert a.total_pages() == b.total_pages()


def test_split_costs_sums_exactly() -> None:
    total = np.array([1000, 0, 1001], dtype=np.int64)
    # group 0: weights 3, 1 -> 750, 250; group 2: 1, 1, 1 -> 333, 334, 334
    parts = split_costs(total, np.array([3, 1, 1, 1, 1]), np.array([0, 0, 2, 2, 2]))
    assert parts.tolist() == [750, 250, 333, 334, 334]


def _ops(rows: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    """(arrival, cpu, kind, class, cost[, zspage]) rows -> op arrays (zspage -1: none)."""
    a = np.array([r if len(r) > 5 else (*r, -1) for r in rows], dtype=np.int64)
    z = np.zeros(len(a), dtype=np.int64)
    return {
        "arr": a[:, 0],
        "cpu": a[:, 1],
        "kind": a[:, 2],
        "cls": a[:, 3],
        "pool": z,
        "cost": a[:, 4],
        "cost2": z,
        "cost3": z,
        "bin": z,
        "credit": np.full(len(z), OPEN_LOOP, dtype=np.int64),
        "zsp": a[:, 5],
    }


def test_split_compactions_replaces_the_op_by_its_phases() -> None:
    ops = _ops([(0, 0, OP_MALLOC, 4, 100), (5, 1, OP_COMPACT, -1, 3000), (9, 2, OP_FREE, 4, 50)])
    # compaction (event 1): class 7 moved 2 (weight 3), class 7 moved 0 (1), class 3 moved 1 (2)
    # (last column: the source zspage)
    rows = np.array([[1, 7, 2, 8, 1, 40], [1, 7, 0, 0, 0, 41], [1, 3, 1, 4, 0, 9]], dtype=np.int64)
    assert rows.shape[1] == N_R
    out = split_compactions(ops, rows)
    assert out["kind"].tolist() == [OP_MALLOC] + [OP_COMPACT_SRC] * 3 + [OP_FREE]
    assert out["cls"].tolist() == [4, 7, 7, 3, 4]
    assert out["zsp"].tolist() == [-1, 40, 41, 9, -1]  # each phase write-locks its source
    assert out["cost"].tolist() == [100, 1500, 500, 1000, 50]  # 3000 split 3:1:2
    assert out["arr"].tolist() == [0, 5, 5, 5, 9] and out["cpu"].tolist() == [0, 1, 1, 1, 2]
    # closed loop: a later phase is credited the phases before it (they start it late)
    ops["credit"] = np.array([7, 20, 9], dtype=np.int64)
    assert split_compactions(ops, rows)["credit"].tolist() == [7, 20, 1520, 2020, 9]
    assert split_compactions(ops, np.zeros((0, N_R), dtype=np.int64)) is ops


def run(design: str, rows: list[tuple[int, ...]]) -> SimState:
    """rows: (arrival ns, cpu, kind, class, cost ns[, zspage]) fed straight to the lock core."""
    s = SimState(get_design(design), 4, 255, CostModel().as_array(), False)
    o = _ops(rows)
    a = [o[c].copy() for c in OP_ARRAYS]
    s.feed(*a[:9], credit=a[9], final=True, zsp=a[10])
    return s


def stat(s: SimState, lock: str, mode: int) -> tuple[int, int, int, int]:
    """(acquisitions, contended, wait ns, hold ns) of one lock and mode."""
    names = [s.design.lock_name(i) for i in range(s.design.n_locks)]
    r = names.index(lock) * N_MODES + mode
    return tuple(int(x) for x in s.lstats[r, [S_ACQ, S_CONT, S_WAIT, S_HOLD]])  # type: ignore[return-value]


# A compaction of class 7 on CPU0 at t=0 that the trace measured at 3000 ns, three source
# zspages of 1000 ns each (PHASED), or the same class as one unbroken hold (NO_BREAK).
PHASED = [(0, 0, OP_COMPACT_SRC, 7, 1000)] * 3
NO_BREAK = [(0, 0, OP_COMPACT_SRC, 7, 3000)]


@pytest.mark.parametrize("design", ["pool", "class"])
def test_malloc_mid_compaction_waits_for_the_source_zspage(design: str) -> None:
    # zs_malloc of class 7 at 1500 on CPU1 (100 ns). Phases hold 0..1000, 1000..2000: the
    # malloc (pool spinlock in `pool`, class[7] in `class`) is granted at 2000 (waits 500),
    # holds 2000..2100; the compactor's third zspage then waits 100 and ends at 3100.
    s = run(design, [*PHASED, (1500, 1, OP_MALLOC, 7, 100)])
    lock = "pool" if design == "pool" else "class[7]"
    mode = M_SPIN
    # acquisitions: 3 phases + the malloc; waits 500 (malloc) + 100 (compactor)
    assert stat(s, lock, mode) == (4, 2, 600, 3100)
    assert int(s.cpu_free[0]) == 3100 and int(s.cpu_free[1]) == 2100
    # no break: the malloc waits for the whole class, 3000 - 1500 = 1500
    s = run(design, [*NO_BREAK, (1500, 1, OP_MALLOC, 7, 100)])
    assert stat(s, lock, mode) == (2, 1, 1500, 3100)
    assert int(s.cpu_free[0]) == 3000 and int(s.cpu_free[1]) == 3100


def test_class_design_compaction_takes_pool_write_then_class_lock() -> None:
    # zs_free of class 9 at 1500 (CPU1): read_lock(pool) waits for the compactor's pool
    # write lock, released after the second source zspage at 2000 (wait 500); lookup 20 ns,
    # hand-over to class[9] (free 100 ns, 2020..2120). The third zspage's write_lock(pool)
    # at 2000 waits for that reader until 2020 (20), then class[7] 2020..3020.
    s = run("class", [*PHASED, (1500, 1, OP_FREE, 9, 100)])
    # pool write held 0..1000, 1000..2000, 2020..3020 (through each class[7] hold)
    assert stat(s, "pool", M_WRITE) == (3, 1, 20, 3000)
    assert stat(s, "pool", M_READ) == (1, 1, 500, LOOKUP)
    assert stat(s, "class[7]", M_SPIN) == (3, 0, 0, 3000)
    assert int(s.cpu_free[0]) == 3020 and int(s.cpu_free[1]) == 2120
    # no break (and the old replay, one pool write hold): the free waits 3000 - 1500
    s = run("class", [*NO_BREAK, (1500, 1, OP_FREE, 9, 100)])
    assert stat(s, "pool", M_READ) == (1, 1, 1500, LOOKUP)
    s = run("class", [(0, 0, OP_COMPACT, -1, 3000), (1500, 1, OP_FREE, 9, 100)])
    assert stat(s, "pool", M_READ) == (1, 1, 1500, LOOKUP)


def test_uncontended_compaction_costs_its_duration_once() -> None:
    # alone, the phases run back to back: 3 x 1000 = the measured 3000, nothing added
    for design in ("pool", "class", "striped:4", "magazine"):
        s = run(design, PHASED)
        assert int(s.cpu_free[0]) == 3000, design
        assert int(s.lstats[:, S_CONT].sum()) == 0 and int(s.lstats[:, S_WAIT].sum()) == 0


def test_replay_splits_a_measured_compaction_and_lets_a_free_in(tmp_path) -> None:
    """End to end: 27 mallocs of 3624 B (class 225, 9 per 8-page zspage), frees down to the
    6/2/1 scenario above, a zs_compact measured at 3000 ns at T, and a zs_free of a class-225
    object at T+500 on another CPU (1 ns steps of 1000 ns apart before: no contention).

    The model logs two source zspages (1 and 2 objects moved: weights 2 and 3), so the
    3000 ns split into 1200 + 1800 (T..T+1200, then the second zspage).
    ``pool``: the free (80 ns = 100 measured - 20 lookup) waits 700 until T+1200; the second
    zspage then waits 80 for it: 2 contended, 780 ns.
    ``class``: the free's pool read lock waits 700, hands over to class[225] at T+1220 and
    holds it until T+1300; the second zspage's pool write lock waits 20 (the reader), its
    class lock 80 more: 3 contended, 800 ns.
    """
    from ztrace.format import TraceMeta, make_events, write_trace
    from ztrace.replay.engine import replay

    bare = CostModel(write_after_malloc=False, alloc_zspage_ns=0, lookup_ns=20)
    frees = [*range(1, 4), *range(10, 17), *range(19, 27)]
    ev = ["zs_malloc"] * 27 + ["zs_free"] * len(frees) + ["zs_compact", "zs_free"]
    n = len(ev)
    t_c = 1000 * (n - 1)
    tr = tmp_path / "t"
    write_trace(
        tr,
        make_events(
            ts_ns=[1000 * k for k in range(n - 2)] + [t_c, t_c + 500],
            event=ev,
            cpu=[0] * (n - 1) + [1],
            size_bytes=[3624] * 27 + [0] * (len(frees) + 2),
            handle=[*range(1, 28), *frees, 0, 4],
            duration_ns=[100] * (n - 2) + [3000, 100],
        ),
        TraceMeta(kernel_release="6.18.0", nr_cpus=2),
    )
    res = replay(tr, locks=["class", "pool"], cost_model=bare)
    s = {r["lock_design"]: r for r in res.summary}
    assert (s["pool"]["contended"], s["pool"]["wait_ns_total"]) == (2, 780)
    assert (s["class"]["contended"], s["class"]["wait_ns_total"]) == (3, 800)
    # the page-exact result is the model's: 3 zspages of 8 pages, 2 freed by compaction
    assert s["pool"]["pages_used_peak"] == s["class"]["pages_used_peak"] == 24
    tl = res.tables["timeline"].to_pylist()
    last = {r["lock_design"]: r["pages_used"] for r in tl}  # each design's last bin
    assert last == {"class": 8, "pool": 8}
