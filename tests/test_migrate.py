"""Issue 10, migration: a ``zs_migrate`` carries its class (the probe reads it from the
zspage, probes/zs_capture.bpf.c: zt_migrate_entry) and is replayed with the locks each
design's kernel takes, by hand.

6.1 (``pool``): zs_page_migrate() holds pool->lock for the move (Debian 6.1's backport of
the single pool lock, mm/zsmalloc.c: zs_page_migrate). 6.12 (``class``): write_lock(pool->
migrate_lock), then spin_lock(class->lock), both to the end (6.12 mm/zsmalloc.c:
zs_page_migrate): a malloc of the same class waits for the class lock, one of another class
takes no pool lock and does not wait, and a free of any class waits for the pool read lock
(zs_free: read_lock(&pool->migrate_lock)). ``BARE`` holds only the measured durations (20 ns
lookup); the release names no calibration, so each call holds its whole duration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ztrace.format import TraceMeta, make_events, write_trace
from ztrace.model.classes import build_classes
from ztrace.replay.costs import CostModel
from ztrace.replay.engine import replay

BARE = CostModel(write_after_malloc=False, alloc_zspage_ns=0, lookup_ns=20)
#: a release no calibration names (no hold share: the whole duration is held)
KNONE = "6.1.0-0-test-amd64"
CLASSES = build_classes(page_size=4096)
C100 = int(np.searchsorted(CLASSES.size, 100))  # the class of a 100-byte object (112 B)


def _replay(tmp_path: Path, design: str, **cols: list) -> tuple[int, int, dict[str, int]]:
    out = tmp_path / design
    write_trace(out, make_events(**cols), TraceMeta(kernel_release=KNONE, nr_cpus=2))
    res = replay(out, locks=[design], cost_model=BARE)
    s = res.summary[0]
    return s["contended"], s["wait_ns_total"], dict(res.counters)


def _migrate_then(size: int, **over: list) -> dict[str, list]:
    """t=0 CPU0 mallocs 100 B (class C100); t=10,000 CPU0 migrates a C100 page, 1,000 ns
    measured; t=10,500 CPU1 mallocs ``size`` bytes (10 ns)."""
    cols: dict[str, list] = {
        "ts_ns": [0, 10_000, 10_500],
        "event": ["zs_malloc", "zs_migrate", "zs_malloc"],
        "cpu": [0, 0, 1],
        "size_bytes": [100, 0, size],
        "handle": [1, 0, 2],
        "duration_ns": [100, 1000, 10],
        "class_idx": [-1, C100, -1],
    }
    return {**cols, **over}


@pytest.mark.parametrize(
    ("design", "size", "want"),
    [
        # pool: the migration holds the one pool spinlock 10,000-11,000: CPU1 waits 500
        ("pool", 100, (1, 500)),
        ("pool", 2000, (1, 500)),  # whatever its class
        # class: pool write lock (20 ns lookup) then the class lock for 1,000, both to
        # 11,020: a malloc of the same class waits 520 for the class lock ...
        ("class", 100, (1, 520)),
        # ... one of another class takes neither lock the migration holds
        ("class", 2000, (0, 0)),
    ],
)
def test_a_migration_holds_its_kernels_locks(
    tmp_path: Path, design: str, size: int, want: tuple[int, int]
) -> None:
    contended, wait, counters = _replay(tmp_path, design, **_migrate_then(size))
    assert (contended, wait) == want
    assert counters["migrates"] == 1 and counters["unknown_class"] == 0


@pytest.mark.parametrize(("design", "want"), [("pool", (1, 500)), ("class", (1, 520))])
def test_a_free_of_another_class_waits_for_the_pool_lock(
    tmp_path: Path, design: str, want: tuple[int, int]
) -> None:
    # t=5,000 CPU0 mallocs 2,000 B (handle 3); CPU1 frees it at 10,500: under `class` its
    # zs_free takes the pool read lock first, held for write by the migration to 11,020
    cols = {
        "ts_ns": [0, 5_000, 10_000, 10_500],
        "event": ["zs_malloc", "zs_malloc", "zs_migrate", "zs_free"],
        "cpu": [0, 0, 0, 1],
        "size_bytes": [100, 2000, 0, 0],
        "handle": [1, 3, 0, 3],
        "duration_ns": [100, 100, 1000, 10],
        "class_idx": [-1, -1, C100, -1],
    }
    assert _replay(tmp_path, design, **cols)[:2] == want


def test_a_migration_without_a_class_is_counted_not_replayed(tmp_path: Path) -> None:
    """No class (a probe that could not read the zspage) and no size: counted, no hold."""
    cols = _migrate_then(100, class_idx=[-1, -1, -1])
    contended, wait, counters = _replay(tmp_path, "pool", **cols)
    assert (contended, wait) == (0, 0)
    assert counters["migrates"] == 1 and counters["unknown_class"] == 1
