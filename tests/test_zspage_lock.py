"""The zspage lock (issue 10): a compactor write-locks its source zspage and, up to 6.14,
waits for the readers still copying from it, pool (and class) lock held; from 6.15 it only
tries (``class-6.15``). Waits worked out on paper, as in test_compaction.py.

Kernel: 6.1 / 6.12 mm/zsmalloc.c, __zs_compact(): ``migrate_write_lock(src_zspage)`` =
``write_lock(&zspage->lock)`` under the pool lock; zs_map_object(): the pool lock, then
``migrate_read_lock(zspage)``, the pool lock dropped, the copy until zs_unmap_object().
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ztrace.format import TraceMeta, make_events, write_trace
from ztrace.replay.costs import CostModel
from ztrace.replay.engine import replay
from ztrace.replay.locks import (
    M_READ,
    M_SPIN,
    M_WRITE,
    N_MODES,
    OP_COMPACT_SRC,
    OP_FREE,
    OP_MALLOC,
    OP_READ,
    get_design,
)
from ztrace.replay.locks._sim import OPEN_LOOP, S_ACQ, S_CONT, S_HOLD, S_WAIT
from ztrace.replay.locks._state import SimState

LOOKUP = CostModel().lookup_ns  # 20 ns: the map path's pool-lock hold (not measured: lookup_ns)


def run(
    design: str,
    rows: list[tuple[int, int, int, int, int, int]],
    write_after: bool = False,
    cost3: int = 0,
) -> SimState:
    """rows: (arrival, cpu, kind, class, cost, zspage) straight into the lock core."""
    s = SimState(get_design(design), 4, 255, CostModel().as_array(), write_after)
    a = np.array(rows, dtype=np.int64)
    z = np.zeros(len(a), dtype=np.int64)
    s.feed(
        a[:, 0],
        a[:, 1],
        a[:, 2],
        a[:, 3],
        z,
        a[:, 4],
        z,
        z + cost3,
        z,
        credit=np.full(len(a), OPEN_LOOP, dtype=np.int64),
        final=True,
        zsp=a[:, 5],
    )
    return s


def stat(s: SimState, lock: str, mode: int) -> tuple[int, int, int, int]:
    """(acquisitions, contended, wait ns, hold ns) of one lock and mode; ``zspage`` = every
    zspage lock's writers."""
    d = s.design
    names = [d.lock_name(i) for i in range(d.n_locks + 1)]
    r = names.index(lock) * N_MODES + mode
    return tuple(int(x) for x in s.lstats[r, [S_ACQ, S_CONT, S_WAIT, S_HOLD]])  # type: ignore[return-value]


# CPU1 reads an object of zspage 5 (class 7) at 0: lookup under the pool lock 0..20, copy
# 20..520 under zspage 5's read lock. CPU0 compacts source zspage 5 (or 6) at 100 for 1000.
READ = (0, 1, OP_READ, 7, 500, 5)


def test_pool_compactor_waits_for_the_readers_of_its_source_zspage() -> None:
    # pool: spin_lock(pool) granted at 100 (the read's lookup ended at 20); write_lock(zspage
    # 5) waits for the copy until 520 (420 ns), pool held 100..1520. CPU2's zs_malloc at 200
    # (100 ns) waits for the pool lock until 1520 (1320 ns).
    s = run("pool", [READ, (100, 0, OP_COMPACT_SRC, 7, 1000, 5), (200, 2, OP_MALLOC, 7, 100, -1)])
    assert stat(s, "zspage", M_WRITE) == (1, 1, 420, 1000)
    assert stat(s, "pool", M_SPIN) == (3, 1, 1320, LOOKUP + 1420 + 100)
    assert s.cpu_free[:3].tolist() == [1520, 520, 1620]
    # another zspage (6): no reader to wait for; the malloc waits 1100 - 200 = 900
    s = run("pool", [READ, (100, 0, OP_COMPACT_SRC, 7, 1000, 6), (200, 2, OP_MALLOC, 7, 100, -1)])
    assert stat(s, "zspage", M_WRITE) == (1, 0, 0, 1000)
    assert stat(s, "pool", M_SPIN) == (3, 1, 900, LOOKUP + 1000 + 100)


def test_class_compactor_waits_with_pool_write_and_class_lock_held() -> None:
    # class (6.12): write_lock(pool) at 100 (the read's read lock ended at 20), then
    # class[7], then write_lock(zspage 5) until 520: class[7] held 100..1520, the pool write
    # lock to the end (1520). CPU2's zs_free (class 9) at 200: read_lock(pool) waits until
    # 1520 (1320), lookup 20, class[9] 1540..1640.
    rows = [READ, (100, 0, OP_COMPACT_SRC, 7, 1000, 5), (200, 2, OP_FREE, 9, 100, -1)]
    s = run("class", rows)
    assert stat(s, "zspage", M_WRITE) == (1, 1, 420, 1000)
    assert stat(s, "class[7]", M_SPIN) == (1, 0, 0, 1420)
    assert stat(s, "pool", M_WRITE) == (1, 0, 0, 1420)
    assert stat(s, "pool", M_READ) == (2, 1, 1320, 2 * LOOKUP)
    assert s.cpu_free[:3].tolist() == [1520, 520, 1640]
    # >=6.15 only tries the zspage lock: nobody waits for the copy; the free waits 1000
    s = run("class-6.15", rows)
    assert stat(s, "zspage", M_WRITE) == (0, 0, 0, 0)
    assert stat(s, "class[7]", M_SPIN) == (1, 0, 0, 1000)
    assert stat(s, "pool", M_READ) == (2, 1, 1100 - 200, 2 * LOOKUP)
    assert s.cpu_free[:3].tolist() == [1100, 520, 1220]


def test_the_write_after_malloc_is_a_reader_too() -> None:
    # zs_malloc at 0 on CPU1 (100 ns, pool lock 0..100), then its object write (zs_map_object:
    # lookup 100..120, copy 300 ns 120..420 under zspage 5). The compactor of zspage 5 at
    # 150 waits 270 for it, pool held 150..1420.
    s = run(
        "pool",
        [(0, 1, OP_MALLOC, 7, 100, 5), (150, 0, OP_COMPACT_SRC, 7, 1000, 5)],
        write_after=True,
        cost3=300,
    )
    assert stat(s, "zspage", M_WRITE) == (1, 1, 270, 1000)
    assert int(s.cpu_free[0]) == 1420


def test_zspage_ids_of_different_pools_are_different_locks() -> None:
    # pools:2: each pool has its own model, so zspage 5 of pool 0 is not zspage 5 of pool 1
    a = np.array([READ, (100, 0, OP_COMPACT_SRC, 7, 1000, 5)], dtype=np.int64)
    z = np.zeros(2, dtype=np.int64)
    for pools, waited in (([0, 1], 0), ([1, 1], 420)):
        s = SimState(get_design("pools:2"), 4, 255, CostModel().as_array(), False)
        s.feed(
            a[:, 0], a[:, 1], a[:, 2], a[:, 3], np.array(pools), a[:, 4], z, z, z,
            credit=np.full(2, OPEN_LOOP, dtype=np.int64), final=True, zsp=a[:, 5],
        )  # fmt: skip
        assert stat(s, "zspage", M_WRITE)[2] == waited


def test_a_migration_without_a_known_zspage_waits_for_no_reader() -> None:
    # zs_page_migrate names a page, not a model zspage (-1): no zspage lock replayed
    s = run("pool", [READ, (100, 0, 5, 7, 1000, -1)])  # 5 = OP_MIGRATE
    assert stat(s, "zspage", M_WRITE) == (0, 0, 0, 0)
    assert int(s.cpu_free[0]) == 1100


# ------------------------------------------------------------------ end to end, from a trace


@pytest.mark.parametrize("design, waits", [("pool", True), ("class", True), ("class-6.15", False)])
def test_replay_finds_the_compacted_zspage_of_a_read(
    tmp_path: Path, design: str, waits: bool
) -> None:
    # Size 1000 (4 objects in one page). Handles 1-4 fill zspage A, handle 5
    # opens zspage B; handles 1 and 2 are freed: A 2/4, B 1/4. zs_compact at 10,010 moves
    # handle 5 from B (the emptiest: the source) to A. CPU1 reads handle 5 at 10,000:
    # lookup 10,000..10,020, copy of the class size (write_base + size * per-KiB / 1024) under
    # B's read lock. The compactor asks at 10,010, gets the pool lock at 10,020 (10 ns) and
    # then waits for the copy: ``copy`` ns, in the pool and class designs.
    cm = CostModel(write_after_malloc=False, alloc_zspage_ns=0, lookup_ns=LOOKUP)
    ts = [0, 1000, 2000, 3000, 4000, 5000, 6000, 10_000, 10_010]
    tr = tmp_path / "t"
    write_trace(
        tr,
        make_events(
            ts_ns=ts,
            event=["zs_malloc"] * 5 + ["zs_free"] * 2 + ["zs_map_object", "zs_compact"],
            cpu=[0] * 7 + [1, 0],
            size_bytes=[1000] * 5 + [0] * 4,
            handle=[1, 2, 3, 4, 5, 1, 2, 5, 0],
            duration_ns=[50] * 7 + [0, 500],
        ),
        TraceMeta(kernel_release="6.18.0", nr_cpus=2),
    )
    res = replay(tr, locks=[design], cost_model=cm)
    (size,) = set(res.tables["locks_by_class"].column("class_size").to_pylist())
    copy = cm.write_base_ns + size * cm.write_ns_per_kib // 1024  # the kernel's class size
    rows = {r["lock"]: r for r in res.tables["locks_by_lock"].to_pylist()}
    if waits:
        z = rows["zspage"]
        assert (z["acquisitions"], z["contended"], z["wait_ns_total"]) == (1, 1, copy)
        assert res.summary[0]["wait_ns_total"] == 10 + copy
    else:
        assert "zspage" not in rows
        assert res.summary[0]["wait_ns_total"] == 10


@pytest.mark.parametrize(
    "release, design",
    [("6.1.0-57-amd64", "pool"), ("6.10.3", "pool"), ("6.12.95+deb12-amd64", "class"),
     ("6.14.2", "class"), ("6.15.0", "class-6.15"), ("6.18.44", "class-6.15")],
)  # fmt: skip
def test_each_kernel_replays_under_its_own_zspage_lock(release: str, design: str) -> None:
    from ztrace.checks.crosskernel import design_for_kernel

    assert design_for_kernel(release) == design
