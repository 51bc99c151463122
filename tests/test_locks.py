"""Lock designs and the lock core on hand-built op sequences: exact waits, no tolerance.

These drive :class:`ztrace.replay.locks._state.SimState` directly with op arrays (kind, class,
cost), so every expected number below can be checked with pencil and paper.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ztrace.errors import ConfigError
from ztrace.replay.costs import CostModel
from ztrace.replay.locks import (
    M_READ,
    M_SPIN,
    M_WRITE,
    N_MODES,
    N_OPS,
    OP_COMPACT,
    OP_FREE,
    OP_MAG_HIT,
    OP_MALLOC,
    OP_MALLOC_GROW,
    OP_READ,
    available,
    get_design,
    parse_designs,
    register,
)
from ztrace.replay.locks._sim import (
    S_ACQ,
    S_CONT,
    S_HOLD,
    S_WAIT,
    S_WMAX,
    hist_bounds,
    hist_index,
    hist_quantile,
)
from ztrace.replay.locks._state import SimState

LOOKUP = CostModel().lookup_ns  # 20 ns: the pool read-lock hold of a handle lookup


def run(
    design: str,
    ops: list[tuple[int, int, int, int, int]],
    *,
    ncpu: int = 4,
    write_after: bool = False,
    cost2: int = 0,
    cost3: int = 0,
) -> SimState:
    """ops: (arrival ns, cpu, kind, class, cost ns). Returns the finished state."""
    d = get_design(design)
    s = SimState(d, ncpu, 255, CostModel().as_array(), write_after)
    a = np.array(ops, dtype=np.int64).reshape(-1, 5)
    n = len(a)
    z = np.zeros(n, dtype=np.int64)
    s.feed(
        a[:, 0].copy(),
        a[:, 1].copy(),
        a[:, 2].copy(),
        a[:, 3].copy(),
        z,
        a[:, 4].copy(),
        np.full(n, cost2, dtype=np.int64),
        np.full(n, cost3, dtype=np.int64),
        z,
        final=True,
    )
    return s


def waits(s: SimState) -> tuple[int, int, int, int]:
    """(acquisitions, contended, total wait, max wait) over all locks."""
    ls = s.lstats
    return (
        int(ls[:, S_ACQ].sum()),
        int(ls[:, S_CONT].sum()),
        int(ls[:, S_WAIT].sum()),
        int(ls[:, S_WMAX].max()),
    )


# ------------------------------------------------------------------ registry


#: the designs before plug-ins, in their listing order ("all designs" runs, hashed results)
BUILT_IN = ["class", "pool", "pools", "striped", "magazine"]


def test_registry_names_and_aliases() -> None:
    names = available()
    # found by the package itself (no module list), still in the order of before
    assert [n for n in names if n in BUILT_IN] == BUILT_IN
    assert get_design("per-class").name == "class"
    assert get_design("6.2").name == "pool"
    assert get_design("zswap-pools").name == "pools:32"
    assert get_design("pools:4").n_locks == 4
    assert get_design("striped:8").n_locks == 1 + 8
    assert get_design("mag:8").params == {"capacity": 8}


def test_replay_help_lists_every_registered_design() -> None:
    # the CLI's design list comes from the registries: a new design file needs no CLI line
    from click.testing import CliRunner

    from ztrace.cli.main import cli
    from ztrace.replay.locks import listing
    from ztrace.replay.lru import REGISTRY

    out = CliRunner().invoke(cli, ["replay", "--help"], terminal_width=200).output
    assert [spec for spec, _, _ in listing()][:5] == [
        "class",
        "pool",
        "pools:32",
        "striped:8",
        "magazine:16",
    ]
    for spec, _, text in listing():
        assert f"{spec}  " in out and text in out
    for r in REGISTRY:
        assert f"{r.name}  " in out and r.summary in out


def test_unknown_design_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"^--locks nope: unknown lock design \(valid: class"):
        get_design("nope")
    with pytest.raises(ConfigError, match=r"^--locks pools:0: parameter must be 1\.\.4096"):
        get_design("pools:0")
    with pytest.raises(ConfigError, match=r"^--locks striped:x: parameter must be a whole number"):
        get_design("striped:x")
    with pytest.raises(ConfigError, match=r"^--locks class: given twice"):
        parse_designs("class,per-class")


def test_lock_names() -> None:
    d = get_design("pools:3")
    assert [d.lock_name(i) for i in range(3)] == ["pool#0", "pool#1", "pool#2"]
    c = get_design("class")
    assert c.lock_name(0) == "pool" and c.lock_name(38) == "class[37]"
    assert get_design("striped:4").lock_name(3) == "stripe[2]"


# ------------------------------------------------------------------ exact waits


def test_two_cpus_same_class_pool_and_class_wait_alike() -> None:
    # CPU0 mallocs class 10 at t=0 holding 100 ns; CPU1 the same class at t=10.
    ops = [(0, 0, OP_MALLOC, 10, 100), (10, 1, OP_MALLOC, 10, 100)]
    assert waits(run("class", ops)) == (2, 1, 90, 90)
    assert waits(run("pool", ops)) == (2, 1, 90, 90)


def test_two_cpus_different_classes_only_pool_waits() -> None:
    ops = [(0, 0, OP_MALLOC, 10, 100), (10, 1, OP_MALLOC, 11, 100)]
    assert waits(run("class", ops)) == (2, 0, 0, 0)
    assert waits(run("pool", ops)) == (2, 1, 90, 90)
    # striped:1 folds both classes on one stripe; striped:2 separates 10 and 11
    assert waits(run("striped:1", ops)) == (2, 1, 90, 90)
    assert waits(run("striped:2", ops)) == (2, 0, 0, 0)


def test_fifo_order_of_spinning_cpus() -> None:
    # Three CPUs queue on one lock at 0, 10, 20; each holds 100 ns: grants 0, 100, 200.
    ops = [(0, 0, OP_MALLOC, 5, 100), (10, 1, OP_MALLOC, 5, 100), (20, 2, OP_MALLOC, 5, 100)]
    s = run("pool", ops)
    assert waits(s) == (3, 2, 90 + 180, 180)
    assert list(s.cpu_free[:3]) == [100, 200, 300]
    assert int(s.lstats[0, S_HOLD]) == 300


def test_fifo_is_by_request_time_not_trace_order() -> None:
    # CPU1 is busy spinning until 200, so its op C (arrival 50) only requests class 7 at
    # 200. CPU0's op D arrives at 150 (later in the trace) and requests class 7 first:
    # D is granted at once and C waits for D (until 250).
    ops = [
        (0, 0, OP_MALLOC, 3, 100),  # A: CPU0 holds class 3 until 100
        (10, 1, OP_MALLOC, 3, 100),  # B: CPU1 spins 10..100, holds until 200
        (50, 1, OP_MALLOC, 7, 100),  # C: CPU1 busy -> starts at 200
        (150, 0, OP_MALLOC, 7, 100),  # D: CPU0 idle, class 7 free at 150
    ]
    s = run("class", ops)
    assert waits(s) == (4, 2, 90 + 50, 90)
    assert list(s.cpu_free[:2]) == [250, 350]


def test_busy_spin_delays_that_cpus_later_ops() -> None:
    # CPU1 spins 10..100 on class 3; its next op (other class, free lock) cannot start
    # before CPU1 is done at 200 even though it arrived at 20.
    ops = [(0, 0, OP_MALLOC, 3, 100), (10, 1, OP_MALLOC, 3, 100), (20, 1, OP_MALLOC, 9, 30)]
    s = run("class", ops)
    assert waits(s) == (3, 1, 90, 90)
    assert int(s.cpu_free[1]) == 230


def test_rwlock_readers_share_and_writer_is_fair() -> None:
    # class design: zs_free = pool read lock (lookup, 20 ns) handed over to the class lock.
    # Two frees of different classes at 0 and 5 share the pool lock; a compaction (pool
    # write lock, 1000 ns) at 10 waits for both readers (released at 20 and 25); a free at
    # 30 arrives while the writer holds the lock and waits for it (no reader barging).
    ops = [
        (0, 0, OP_FREE, 10, 100),
        (5, 1, OP_FREE, 11, 100),
        (10, 2, OP_COMPACT, -1, 1000),
        (30, 3, OP_FREE, 12, 100),
    ]
    s = run("class", ops)
    d = s.design
    rows = {
        (d.lock_name(r // N_MODES), r % N_MODES): tuple(
            int(x) for x in s.lstats[r, [S_ACQ, S_CONT, S_WAIT]]
        )
        for r in np.flatnonzero(s.lstats[:, S_ACQ])
    }
    assert rows[("pool", M_READ)] == (3, 1, 1025 - 30)  # only the late reader waited
    assert rows[("pool", M_WRITE)] == (1, 1, 25 - 10)  # the writer waited for both readers
    assert rows[("class[10]", M_SPIN)] == (1, 0, 0)
    # pool read holds: 0..20, 5..25, 1025..1045 = 60; write hold 25..1025 = 1000
    assert int(s.lstats[0 * N_MODES + M_READ, S_HOLD]) == 3 * LOOKUP
    assert int(s.lstats[0 * N_MODES + M_WRITE, S_HOLD]) == 1000


def test_pool_design_serialises_compaction_with_everything() -> None:
    ops = [(0, 0, OP_COMPACT, -1, 1000), (10, 1, OP_MALLOC, 4, 100), (20, 2, OP_FREE, 5, 100)]
    s = run("pool", ops)
    assert waits(s) == (3, 2, 990 + 1080, 1080)


def test_malloc_grow_drops_the_lock_while_allocating_the_zspage() -> None:
    # malloc_grow: class lock (lookup 20 ns), alloc_zspage outside (cost2 = 600), relock.
    # CPU1's malloc at 30 gets the class lock in CPU0's unlocked window (20..620).
    ops = [(0, 0, OP_MALLOC_GROW, 8, 100), (30, 1, OP_MALLOC, 8, 100)]
    s = run("class", ops, cost2=600)
    assert waits(s) == (3, 0, 0, 0)
    assert int(s.cpu_free[0]) == 20 + 600 + 100


def test_write_after_malloc_takes_the_pool_lock() -> None:
    # zram writes the object right after zs_malloc: pool spinlock (6.2-6.10) for the lookup
    # (20 ns), then the copy (cost3 = 50) under the zspage lock only.
    ops = [(0, 0, OP_MALLOC, 1, 100), (110, 1, OP_MALLOC, 2, 100)]
    s = run("pool", ops, write_after=True, cost3=50)
    # CPU0: pool 0..100, pool 100..120 (write lookup), copy until 170. CPU1 at 110 waits 10.
    assert waits(s) == (4, 1, 10, 10)
    s = run("class", ops, write_after=True, cost3=50)
    assert waits(s) == (4, 0, 0, 0)  # class locks differ, pool read locks share


def test_magazine_hit_takes_no_lock() -> None:
    ops = [(0, 0, OP_MAG_HIT, 3, 0), (0, 1, OP_MAG_HIT, 3, 0)]
    s = run("magazine", ops)
    assert waits(s) == (0, 0, 0, 0)
    assert list(s.cpu_free[:2]) == [CostModel().mag_hit_ns] * 2


def test_backlog_is_bounded_by_queued_ops_and_drains() -> None:
    # 1000 ops on one CPU arriving every 1 ns, each holding 100 ns: the CPU saturates, ops
    # queue, and all of them still run in order.
    ops = [(i, 0, OP_MALLOC, 1, 100) for i in range(1000)]
    s = run("pool", ops)
    assert s.queued == 0
    assert int(s.cpu_free[0]) == 100 * 1000
    assert waits(s) == (1000, 0, 0, 0)  # one CPU never waits for itself


def test_histogram_buckets() -> None:
    for v in (0, 1, 1023, 1024, 1025, 4097, 10**9, 2**62):
        lo, hi = hist_bounds(hist_index(v))
        assert lo <= v <= hi
        assert (hi - lo) <= max(0, lo // 500)
    h = np.zeros(30000, dtype=np.int64)
    for v in (10, 20, 30, 40):
        h[hist_index(v)] += 1
    assert hist_quantile(h, 0.5) == 20
    assert hist_quantile(h, 0.99) == 40


# ------------------------------------------------------------------ one source for the core


def test_duplicate_design_name_or_alias_fails_at_registration() -> None:
    def factory(param: int | None, n_classes: int) -> None:
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="lock design `class` registered twice"):
        register("class", rank=999)(factory)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"alias `6\.2` already names `pool`"):
        register("new-design", "6.2", rank=999)(factory)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank 20 already taken by `pool`"):
        register("new-design", rank=20)(factory)  # type: ignore[arg-type]
    assert "new-design" not in available()


#: a whole lock design in one file (the `class` steps under another name, rank 45)
DROPPED_DESIGN = """
from ztrace.replay.locks import design, no_param, register
from ztrace.replay.locks.classlock import CLASS_STEPS

@register("dropped", "dr", rank=45)
def make(param, n_classes):
    no_param("dropped", param)
    return design(CLASS_STEPS, "dropped", "a design in one file")
"""


def test_a_design_file_dropped_into_the_package_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package imports every public module on its path: a new file registers itself, in
    # its rank's place; a public module that registers nothing is refused (helpers are
    # _private). The file lives in a second folder of the package's __path__.
    import ztrace.replay.locks as pkg
    from tests.support.dropin import drop_in, forget

    for name in ("_REGISTRY", "_ALIASES", "_RANK"):  # the test's registrations go with it
        monkeypatch.setattr(pkg, name, dict(getattr(pkg, name)))
    write = drop_in(monkeypatch, pkg, tmp_path)
    write("zz_dropped", DROPPED_DESIGN)
    try:
        pkg._discover()
        # rank 45: between striped (40) and magazine (50), whatever the file is called
        names = [n for n in available() if n in (*BUILT_IN, "dropped")]
        assert names == ["class", "pool", "pools", "striped", "dropped", "magazine"]
        assert get_design("dr").name == "dropped"
        write("zz_helper", "X = 1\n")
        with pytest.raises(ValueError, match=r"locks\.zz_helper registers no lock design"):
            pkg._discover()
    finally:
        forget(pkg, "zz_dropped", "zz_helper")


#: sha256 of the state every design leaves after the random ops below, as left by the lock
#: core of cd87723 (session 4: the generated module, one copy of the phase body per call
#: site); the core with one phase body must leave the same bytes.
GOLDEN_STATE = {
    "class": "b9401aca8e0d9513530852023a3ad79f275202c7f4a0f0c1d7d5f027809c88d6",
    "pool": "4dee55960288e2a9c212362231e6bae6115f4e90de2a2b1e920929e4cfc10e18",
    "pools:3": "0fdc5d7c990b7b43e3c70cb434349f9b6e7b6d2cbfb7d7b547be686207e4b306",
    "striped:4": "6047b3f7b533f18d8b5f49d35637b9795cdeb3e97e91d2f316a5f8b8cdf38f06",
    "magazine:8": "586f196488b17988b23b7aa48bc46e32b9bacdecf0bc9026cef738bb8fecb474",
}


def state_digest(s: SimState) -> str:
    """The state's bytes; lstats without the zspage lock's rows (session 31: lock id
    ``n_locks``), which must be untouched here: these ops have no zspage."""
    import hashlib

    h = hashlib.sha256()
    n_rows = s.design.n_locks * N_MODES
    assert not s.lstats[n_rows:, S_ACQ].any() and not s.lstats[n_rows:, S_WAIT].any()
    for name in ("lstats", "cstats", "hist", "l2h", "tl", "cpu_free", "lock_free", "sc"):
        a = getattr(s, name)[:n_rows] if name == "lstats" else getattr(s, name)
        a = np.ascontiguousarray(a, dtype="<i8")
        h.update(name.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def test_lock_core_leaves_the_same_state_as_the_session_4_core() -> None:
    # Every op kind on every design, 4 CPUs, random arrivals/classes/costs: every path of
    # the core runs (queued starts, at-once starts with their follow-on phases, hand-overs,
    # outer locks, waits), and the state it leaves is the one the previous core left.
    rng = np.random.default_rng(7)
    n = 3000
    ops = list(
        zip(
            np.cumsum(rng.integers(0, 60, n)).tolist(),
            rng.integers(0, 4, n).tolist(),
            rng.integers(0, N_OPS, n).tolist(),
            rng.integers(0, 40, n).tolist(),
            rng.integers(1, 300, n).tolist(),
            strict=True,
        )
    )
    got = {}
    for design in GOLDEN_STATE:
        s = run(design, ops, write_after=True, cost2=500, cost3=40)
        assert waits(s)[1] > 0, design  # contended: the interesting paths ran
        got[design] = state_digest(s)
    assert got == GOLDEN_STATE


_CACHE_PROBE = """
import numpy as np, ztrace
from ztrace.replay.engine import replay  # registers the cache dependencies
from ztrace.replay.locks import _sim, get_design
from ztrace.replay.locks._state import SimState
from ztrace.replay.costs import CostModel
assert ztrace.__file__.startswith({root!r}), ztrace.__file__
s = SimState(get_design("class"), 2, 255, CostModel().as_array(), True)
e = np.zeros(1, dtype=np.int64)
s.feed(e, e, e, e + 3, e, e + 100, e, e, e, final=True)
from ztrace.replay.locks import available
print(len(available()), sum(_sim.sim_batch.stats.cache_hits.values()))
"""


@pytest.mark.slow  # five fresh processes, two of them compile the core
def test_numba_cache_is_invalidated_by_a_module_the_core_reads(tmp_path: Path) -> None:
    # A copy of the package with its own numba cache: the second process loads sim_batch
    # from the cache; after an edit to locks/__init__.py (whose constants sim_batch's
    # machine code includes, but which is not sim_batch's own file) the third process must
    # compile again. A new design file without a front is data the core reads at run time:
    # dropping one in is found (one design more) and compiles nothing.
    import shutil
    import subprocess
    import sys

    import ztrace

    root = tmp_path / "src"
    shutil.copytree(
        Path(ztrace.__file__).parent, root / "ztrace", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    code = _CACHE_PROBE.format(root=str(root))

    def hits() -> int:
        r = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tmp_path,  # not the checkout: `-c` puts the working directory on sys.path
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        n_designs, n_hits = r.stdout.split()[-2:]
        assert int(n_designs) == len(available()) + (new_design.exists())
        return int(n_hits)

    locks = root / "ztrace" / "replay" / "locks"
    new_design = locks / "zz_one_file.py"
    assert hits() == 0  # cold: compiles
    assert hits() == 1  # warm: from the cache
    consts = locks / "__init__.py"
    consts.write_text(consts.read_text() + "\n# an edit\n")
    assert hits() == 0  # the edit invalidated sim_batch's cache entry
    assert hits() == 1
    new_design.write_text(DROPPED_DESIGN)
    assert hits() == 1  # found, and still from the cache


# ------------------------------------------------------------------ reads (issue 10)


def test_read_takes_the_pool_spinlock_under_pool_and_the_read_lock_under_class() -> None:
    # CPU0 mallocs class 3 at 0 (hold 100). CPU1 reads an object of class 4 at 10: the
    # lookup holds the pool lock 20 ns (LOOKUP), then the copy (cost 50) runs unlocked.
    # pool (6.2-6.10, Debian 6.1): one spinlock: the read waits 90 (granted at 100).
    # class: zs_malloc takes only class[3]; the read's pool *read* lock is free: no wait.
    ops = [(0, 0, OP_MALLOC, 3, 100), (10, 1, OP_READ, 4, 50)]
    s = run("pool", ops)
    assert waits(s) == (2, 1, 90, 90)
    assert int(s.cpu_free[1]) == 100 + LOOKUP + 50
    s = run("class", ops)
    assert waits(s) == (2, 0, 0, 0)
    assert int(s.cpu_free[1]) == 10 + LOOKUP + 50


def test_reads_share_the_pool_read_lock_but_wait_for_compaction() -> None:
    # class design: two reads at 0 and 5 share the pool read lock; compaction (pool write
    # lock, 1000 ns) requested at 10 waits for both lookups (until 25); a read at 30 waits
    # for the writer (no reader barging): 1025 - 30 = 995.
    ops = [
        (0, 0, OP_READ, 4, 50),
        (5, 1, OP_READ, 5, 50),
        (10, 2, OP_COMPACT, -1, 1000),
        (30, 3, OP_READ, 6, 50),
    ]
    s = run("class", ops)
    assert waits(s) == (4, 2, 15 + 995, 995)
    assert int(s.cpu_free[3]) == 1025 + LOOKUP + 50
