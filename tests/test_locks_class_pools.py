"""``class-pools:N`` (zswap's 6.6–6.10 pools on ≥6.11's class locks): exact waits on hand-built
ops, each checkable with pencil and paper, against ``class`` (one pool, class locks) and
``pools:N`` (N pools, one spinlock each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ztrace.errors import ConfigError
from ztrace.format import write_trace
from ztrace.replay.costs import CostModel
from ztrace.replay.engine import replay
from ztrace.replay.locks import N_OPS, OP_COMPACT, OP_FREE, OP_MALLOC, get_design
from ztrace.replay.locks._state import SimState
from ztrace.workloads.synth import synth, synth_meta

#: one op: (arrival ns, cpu, kind, class, pool, cost ns)
Op = tuple[int, int, int, int, int, int]


def run(design: str, ops: list[Op], ncpu: int = 4) -> SimState:
    """Replay ``ops`` (trace order) under ``design``; the pool of each op is given."""
    s = SimState(get_design(design), ncpu, 255, CostModel().as_array(), False)
    a = np.array(ops, dtype=np.int64).reshape(-1, 6)
    z = np.zeros(len(a), dtype=np.int64)
    arr, cpu, kind, cls, pool, cost = (a[:, i].copy() for i in range(6))
    s.feed(arr, cpu, kind, cls, pool, cost, z, z, z, final=True)
    return s


def waits(s: SimState) -> tuple[int, int, int]:
    """(acquisitions, contended, total wait ns) over all locks."""
    from ztrace.replay.locks._sim import S_ACQ, S_CONT, S_WAIT

    ls = s.lstats
    return int(ls[:, S_ACQ].sum()), int(ls[:, S_CONT].sum()), int(ls[:, S_WAIT].sum())


def test_a_hot_class_split_over_pools_stops_waiting() -> None:
    # CPU0 mallocs class 10 at 0 (hold 100), CPU1 class 10 at 10. In two pools: class[10]#0
    # and class[10]#1 are two locks, no wait. In one pool: CPU1 waits 100 - 10 = 90, as
    # under `class`; `pools:2` splits by pool too (its pool spinlocks).
    two = [(0, 0, OP_MALLOC, 10, 0, 100), (10, 1, OP_MALLOC, 10, 1, 100)]
    one = [(0, 0, OP_MALLOC, 10, 0, 100), (10, 1, OP_MALLOC, 10, 0, 100)]
    assert waits(run("class-pools:2", two)) == (2, 0, 0)
    assert waits(run("class-pools:2", one)) == (2, 1, 90)
    assert waits(run("class", one)) == (2, 1, 90)  # one pool: every op is in pool 0
    assert waits(run("pools:2", two)) == (2, 0, 0)


def test_within_a_pool_classes_do_not_wait_for_each_other() -> None:
    # Same pool, classes 10 and 11: `pools:2` has one spinlock per pool (CPU1 waits 90);
    # class-pools:2 has a class lock each (no wait): the 6.11 revert, inside every pool.
    ops = [(0, 0, OP_MALLOC, 10, 1, 100), (10, 1, OP_MALLOC, 11, 1, 100)]
    assert waits(run("pools:2", ops)) == (2, 1, 90)
    assert waits(run("class-pools:2", ops)) == (2, 0, 0)


def test_compaction_stalls_only_its_own_pools_frees() -> None:
    # Compaction of pool 0 holds pool#0's write lock 0..1000. A zs_free at 10 takes its
    # pool's read lock (lookup) and hands over to the class lock. In pool 0 it waits for the
    # writer: 1000 - 10 = 990. In pool 1 its read lock is free: no wait. 3 acquisitions:
    # the compaction's write lock, the free's read lock and class lock.
    same = [(0, 0, OP_COMPACT, -1, 0, 1000), (10, 1, OP_FREE, 5, 0, 50)]
    other = [(0, 0, OP_COMPACT, -1, 0, 1000), (10, 1, OP_FREE, 5, 1, 50)]
    assert waits(run("class-pools:2", same)) == (3, 1, 990)
    assert waits(run("class-pools:2", other)) == (3, 0, 0)
    assert waits(run("class", same)) == (3, 1, 990)  # one pool rwlock for everything


def test_one_pool_is_the_class_design() -> None:
    # Random ops of every kind on 4 CPUs, all in pool 0: class-pools:1 leaves exactly the
    # state `class` leaves (same steps, same lock layout).
    rng = np.random.default_rng(11)
    n = 2000
    cols = (
        np.cumsum(rng.integers(0, 60, n)),
        rng.integers(0, 4, n),
        rng.integers(0, N_OPS, n),
        rng.integers(0, 40, n),
        np.zeros(n, dtype=np.int64),
        rng.integers(1, 300, n),
    )
    ops: list[Op] = [tuple(int(c[i]) for c in cols) for i in range(n)]  # type: ignore[misc]
    a, b = run("class-pools:1", ops), run("class", ops)
    assert waits(a)[1] > 0  # contended: the waiting paths ran
    for name in ("lstats", "cstats", "hist", "l2h", "tl", "cpu_free", "lock_free", "sc"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_registry_layout_and_memory_of_pools() -> None:
    d = get_design("class-pools")
    assert d.name == "class-pools:32" and d.family == "class-pools"
    assert get_design("pools-class:4").name == "class-pools:4"
    d = get_design("class-pools:2", n_classes=255)
    assert d.n_locks == 2 * (1 + 255) and d.pool_lock_type == "rwlock"
    assert [d.lock_name(i) for i in (0, 1, 38, 256, 294)] == [
        "pool#0",
        "class[0]#0",
        "class[37]#0",
        "pool#1",
        "class[37]#1",
    ]
    # the same pools as pools:2, object for object: one allocator model serves both
    assert d.allocator_key == get_design("pools:2").allocator_key
    h = np.arange(1, 1000, dtype=np.int64) * 4096
    assert d.pool_of is not None and (p := get_design("pools:2").pool_of) is not None
    assert np.array_equal(d.pool_of(h, 3), p(h, 3))
    with pytest.raises(ConfigError, match=r"^--locks class-pools:0: parameter must be 1\.\.4096"):
        get_design("class-pools:0")


def test_replay_memory_is_that_of_pools_n(tmp_path: Path) -> None:
    # A whole replay: class-pools:4 and pools:4 hold the same objects in the same pools, so
    # every memory column is equal; only the locking differs.
    t = synth("hot-class", events=8000, seed=5, cpus=4)
    write_trace(tmp_path / "t", t, synth_meta("hot-class", cpus=4, seed=5, events=8000))
    res = replay(tmp_path / "t", locks=["pools:4", "class-pools:4"], progress=False)
    a, b = res.summary
    assert (a["lock_design"], b["lock_design"]) == ("pools:4", "class-pools:4")
    mem = [k for k in a if k.startswith("pages_")]
    assert mem and all(a[k] == b[k] for k in mem)
    assert a["acquisitions"] > 0 and b["acquisitions"] > 0
