"""The zsmalloc pool model on hand-worked sequences (expected values derived in comments).

Most sequences use malloc(3624): 3624 + ZS_HANDLE_SIZE = 3632 -> class 225, a zspage of
8 pages holding 9 objects (chain size 8), so each step is easy to follow by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from ztrace.model.classes import build_classes
from ztrace.model.zsmalloc import (
    ZS_ALMOST_EMPTY,
    ZS_INUSE_RATIO_100,
    compact,
    free,
    malloc,
    new_pool,
    total_pages,
)

OBJ9 = 3624  # class 225: 8 pages, 9 objects


@pytest.fixture(scope="module")
def t8():
    return build_classes(8)


def test_single_object_and_release(t8) -> None:
    p = new_pool(t8)
    a = p.malloc(100)  # 108 B -> class 5 (112 B): 7 pages, 256 objects
    assert p.class_index(100) == 5
    assert p.total_pages() == 7
    st = p.class_stats()
    assert tuple(st[5]) == (256, 1, 7, 0)  # obj_allocated, obj_used, pages_used, freeable
    assert p.free(a)
    assert p.total_pages() == 0  # empty zspage released at once (free_zspage)
    assert not p.free(a)  # double free is refused, not corrupting
    assert p.check() == 0


def test_invalid_sizes(t8) -> None:
    p = new_pool(t8)
    assert p.malloc(0) == -1  # -EINVAL
    assert p.malloc(4097) == -1  # -ENOSPC: size > ZS_MAX_ALLOC_SIZE
    assert p.total_pages() == 0


def test_huge_objects(t8) -> None:
    p = new_pool(t8)
    h = [p.malloc(4096) for _ in range(3)]  # 4104 B -> clamped to class 254 (4096): 1 page
    assert p.total_pages() == 3
    assert p.class_index(3625) == 254  # huge_class_size: smallest size that is huge
    x = p.malloc(3625)
    assert p.total_pages() == 4
    y = p.malloc(OBJ9)  # not huge: a new 8-page zspage
    assert p.total_pages() == 12
    p.free(h[1])
    assert p.total_pages() == 11
    # huge class: obj_allocated == obj_used always, so compaction has nothing to do there
    assert p.compact() == 0
    for o in (h[0], h[2], x, y):
        p.free(o)
    assert p.total_pages() == 0


def test_zspage_fill_and_slots(t8) -> None:
    p = new_pool(t8)
    objs = [p.malloc(OBJ9) for _ in range(9)]
    assert p.total_pages() == 8
    z = p.zspage_of(objs[0])[0]
    # init_zspage(): free list 0 -> 1 -> ... so the k-th allocation takes slot k
    assert [p.zspage_of(o) for o in objs] == [(z, k) for k in range(9)]
    assert p.list_inuse(225, ZS_INUSE_RATIO_100).tolist() == [9]
    extra = p.malloc(OBJ9)  # full -> second zspage
    assert p.total_pages() == 16
    assert p.zspage_of(extra)[0] != z
    # obj_free() pushes on the free-list head: the next allocation reuses the last freed slot
    p.free(objs[2])
    p.free(objs[6])
    again = p.malloc(OBJ9)
    assert p.zspage_of(again) == (z, 6)
    again2 = p.malloc(OBJ9)
    assert p.zspage_of(again2) == (z, 2)


def test_two_slow_paths_make_two_zspages(t8) -> None:
    """zs_malloc() drops the pool lock for alloc_zspage() (6.1 and 6.12 mm/zsmalloc.c:
    zs_malloc): two CPUs that both find no room in a class make a zspage each, and each
    object lands in the zspage its own call made; malloc() alone would share one."""
    p = new_pool(t8)
    assert not p.has_room(OBJ9)  # empty class: the slow path
    a = p.malloc_new(OBJ9)  # CPU 0's zspage: 8 pages, 1 of 9 slots used
    assert p.has_room(OBJ9) and p.total_pages() == 8
    b = p.malloc_new(OBJ9)  # CPU 1 found no room on entry too: a second zspage
    assert p.total_pages() == 16
    assert p.zspage_of(a)[0] != p.zspage_of(b)[0]
    assert p.zspage_of(a)[1] == p.zspage_of(b)[1] == 0  # each object in slot 0 of its own
    c = p.malloc(OBJ9)  # a later fast path fills one of them: no new pages
    assert p.total_pages() == 16 and p.check() == 0
    assert p.malloc_new(0) == -1 and not p.has_room(0) and not p.has_room(4097)
    for o in (a, b, c):
        p.free(o)
    assert p.total_pages() == 0 and p.check() == 0


def test_placement_order_ratio_groups(t8) -> None:
    """≥6.4: insert_zspage() = list_add (head); find_get_zspage() takes the head."""
    p = new_pool(t8, ratio_groups=True)
    a = [p.malloc(OBJ9) for _ in range(9)]  # Z1 full
    b = p.malloc(OBJ9)  # Z2 with 1 object: group 1*100/9 = 11 -> 11 // 10 + 1 = 2
    z1, z2 = p.zspage_of(a[8])[0], p.zspage_of(b)[0]
    for o in a[:8]:  # Z1: 9 -> 1 object; it moves group by group, ending in group 2
        p.free(o)
    # Z1 entered group 2 last, at the head: [Z1, Z2]
    assert p.list_zspages(225, 2).tolist() == [z1, z2]
    c = p.malloc(OBJ9)
    assert p.zspage_of(c) == (z1, 7)  # head of the fullest group; slot of a[7] (freed last)
    # compaction: dst = isolate_dst_zspage() = Z1 (group 3 now), src = Z2 (group 2);
    # b moves to Z1's free-list head, slot 6 (a[6] was freed before a[7]); Z2 is released.
    assert p.can_compact(225) == 8
    assert compact(p) == 8
    assert total_pages(p) == 8
    assert p.zspage_of(b) == (z1, 6)
    # the object id survived the migration: it can be freed
    assert free(p, b)
    for o in (a[8], c):
        assert free(p, o)
    assert total_pages(p) == 0 and p.check() == 0


def _three_zspages_scenario(p):
    """Zh, Zd, Zs full, then Zh 9->6, Zd 9->2, Zs 9->1 (frees in slot order)."""
    zh = [p.malloc(OBJ9) for _ in range(9)]
    zd = [p.malloc(OBJ9) for _ in range(9)]
    zs = [p.malloc(OBJ9) for _ in range(9)]
    for o in zh[:3]:
        p.free(o)
    for o in zd[:7]:
        p.free(o)
    for o in zs[:8]:
        p.free(o)
    return zh, zd, zs


def test_compaction_ratio_groups(t8) -> None:
    """6.18 __zs_compact(): dst kept until full, src taken from the emptiest group."""
    p = new_pool(t8, ratio_groups=True)
    zh, zd, zs = _three_zspages_scenario(p)
    idh = p.zspage_of(zh[3])[0]
    assert p.total_pages() == 24
    assert p.list_inuse(225, 7).tolist() == [6]  # Zh: 66% -> group 7
    assert p.list_inuse(225, 3).tolist() == [2]  # Zd: 22% -> group 3
    assert p.list_inuse(225, 2).tolist() == [1]  # Zs: 11% -> group 2
    # dst = Zh (group 7); src = Zs: zs[8] -> Zh slot 2 (free list 2 -> 1 -> 0), Zs freed;
    # Zh (7/9) not full, stays dst; src = Zd: zd[7] -> slot 1, zd[8] -> slot 0, Zh full,
    # Zd freed. zs_can_compact() is then 0.
    assert p.compact() == 16
    assert p.total_pages() == 8
    assert p.zspage_of(zs[8]) == (idh, 2)
    assert p.zspage_of(zd[7]) == (idh, 1)
    assert p.zspage_of(zd[8]) == (idh, 0)
    assert p.zspage_of(zh[3]) == (idh, 3)
    assert p.pages_compacted == 16
    assert p.check() == 0


def test_compaction_legacy_groups_and_insert_quirk(t8) -> None:
    """≤6.3: four groups, "higher ->inuse first" insert, old nested compaction loop."""
    p = new_pool(t8, ratio_groups=False)
    zh, zd, zs = _three_zspages_scenario(p)
    idd = p.zspage_of(zd[8])[0]
    # 9 objects: ZS_ALMOST_EMPTY iff inuse <= 3 * 9 / 4 = 6. Each zspage entered
    # ALMOST_EMPTY at inuse 6 (>= the head's), so at the head: [Zs, Zd, Zh].
    assert p.list_inuse(225, ZS_ALMOST_EMPTY).tolist() == [1, 2, 6]
    # src = Zs (head of ALMOST_EMPTY); dst: ALMOST_FULL is empty -> Zd (next in ALMOST_EMPTY).
    # zs[8] -> Zd slot 6 (Zd's free list 6 -> 5 -> ... -> 0); Zs drained and freed.
    # putback Zd (inuse 3): 3 < head Zh's 6, so it goes *second*: [Zh, Zd].
    # Next src = Zh, dst = Zd: zh[3..8] -> Zd slots 5, 4, 3, 2, 1, 0; Zd full, Zh freed.
    assert p.compact() == 16
    assert p.total_pages() == 8
    assert p.zspage_of(zs[8]) == (idd, 6)
    assert [p.zspage_of(o) for o in zh[3:]] == [(idd, s) for s in (5, 4, 3, 2, 1, 0)]
    assert p.zspage_of(zd[7]) == (idd, 7)  # never moved
    assert p.check() == 0


def test_merged_classes_share_zspages(t8) -> None:
    # 3640+8 = 3648 (class 226) and 4096 both map to class 254 (1 page, 1 object)
    p = new_pool(t8)
    assert p.class_index(3640) == p.class_index(4096) == 254
    # chain 8: classes 0 (32 B) and the 128-object classes are distinct; find two indices
    # merged into one representative and check objects share a zspage
    rep = t8.merged_into
    i = next(k for k in range(255) if rep[k] != k and t8.pages_per_zspage[rep[k]] > 1)
    lo = int(t8.size[i]) - 8  # malloc size landing exactly on index i
    hi = int(t8.size[rep[i]]) - 8  # landing on the representative
    a, b = p.malloc(lo), p.malloc(hi)
    assert p.zspage_of(a)[0] == p.zspage_of(b)[0]
    assert p.total_pages() == int(t8.pages_per_zspage[rep[i]])


@pytest.mark.parametrize("ratio", [True, False])
def test_random_churn_invariants(t8, ratio: bool) -> None:
    """Random malloc/free/compact keeps every internal invariant and frees to zero."""
    rng = np.random.default_rng(3)
    p = new_pool(t8, ratio_groups=ratio)
    live: list[int] = []
    for step in range(30_000):
        if live and rng.random() < 0.45:
            j = int(rng.integers(len(live)))
            live[j], live[-1] = live[-1], live[j]
            assert free(p, live.pop())
        else:
            live.append(malloc(p, int(rng.integers(1, 4097))))
        if step % 7_000 == 6_999:
            before = total_pages(p)
            freed = compact(p)
            assert total_pages(p) == before - freed
            assert p.class_stats()[:, 3].sum() <= before
            assert p.check() == 0
    st = p.class_stats()
    assert st[:, 2].sum() == total_pages(p)
    assert st[:, 1].sum() == len(live) == p.live_objects
    assert p.check() == 0
    for o in live:
        assert free(p, o)
    assert total_pages(p) == 0 and p.live_zspages == 0


def test_memory_scales_with_live_objects(t8) -> None:
    p = new_pool(t8)
    for _ in range(20):
        objs = [p.malloc(200) for _ in range(5000)]
        for o in objs:
            p.free(o)
    assert p.obj_count == 5000  # ids recycled, not grown per allocation
    assert p.zp_count <= 5000 // int(t8.objs_per_zspage[t8.class_for_malloc(200)]) + 2


def test_callable_from_njit(t8) -> None:
    from numba import njit

    @njit
    def run(pool, sizes):
        ids = np.empty(sizes.shape[0], dtype=np.int64)
        for i in range(sizes.shape[0]):
            ids[i] = malloc(pool, sizes[i])
        for i in range(0, sizes.shape[0], 2):
            free(pool, ids[i])
        return compact(pool), total_pages(pool)

    p = new_pool(t8)
    freed, pages = run(p, np.full(2000, 500, dtype=np.int64))
    assert pages == p.total_pages() and freed >= 0 and p.live_objects == 1000
    assert p.check() == 0


def test_methods_are_the_functions_in_python_and_njit(t8) -> None:
    """``ZsPool``'s methods are the model's functions themselves (one list: the class), and
    the same names are methods inside ``@njit`` code (overloads made from the class)."""
    from numba import njit

    from ztrace.model import zsmalloc as Z

    assert Z.ZsPool.malloc is Z.malloc and Z.ZsPool.compact is Z.compact

    @njit
    def run(pool):
        a = pool.malloc(100)  # class 5: a zspage of 7 pages
        b = pool.malloc(OBJ9)  # class 225: 8 pages
        pool.free(a)  # class 5's zspage is released at once
        return pool.is_live(a), pool.is_live(b), pool.class_index(100), pool.total_pages()

    p = new_pool(t8)
    assert run(p) == (False, True, 5, 8)
    assert p.check() == 0


def test_model_and_replay_core_are_disk_cached() -> None:
    """Every model function and the replay ingest are ``cache=True`` (the pool is a
    structref, not a jitclass): a new process loads them instead of compiling ~20 s."""
    from ztrace.model import zsmalloc as Z
    from ztrace.replay import ingest as E

    fns = (
        Z.malloc,
        Z.free,
        Z.compact,
        Z.total_pages,
        Z.class_index,
        Z._m_new,
        Z._m_class_stats,
        Z._m_check,
        E._ingest,
        E._snapshot,
    )
    assert all(type(f._cache).__name__ == "FunctionCache" for f in fns)
