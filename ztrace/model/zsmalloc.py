"""A numba-compiled, page-exact model of one zsmalloc pool.

The model keeps what decides how many pages a pool holds: every zspage with its object
slots and per-zspage free list, the fullness lists of every class with their exact order,
and the compaction algorithm. It does not keep object contents or addresses.

Usage (from Python or from inside ``@njit`` code; the pool is a numba ``structref``: plain
numpy arrays and scalars in one mutable struct, so every function here is ``cache=True`` and a
new process loads the compiled model from numba's disk cache instead of recompiling it)::

    pool = new_pool(build_classes(8), ratio_groups=True)    # 6.18-style pool
    a = pool.malloc(100)          # object id (>= 0), or -1 where zs_malloc() fails
    pool.free(a)
    pool.compact()                # pages freed, like zs_compact()
    pool.total_pages()            # zs_get_total_pages()
    pool.has_room(100)            # zs_malloc()'s fast path would find a zspage
    pool.malloc_new(100)          # zs_malloc()'s slow path: the object in a new zspage

Object ids are model-internal: they are recycled after ``free`` (memory scales with live
objects) and stay valid when compaction migrates an object to another zspage.

Two generations are modelled (``ratio_groups``):

* **≥ 6.4** (``True``): 12 fullness groups ``ZS_INUSE_RATIO_0, _10 .. _99, _100``
  (``get_fullness_group()``: 0 if empty, 11 if full, else ``100*inuse/objs/10 + 1``),
  ``insert_zspage()`` = ``list_add`` at the head, ``find_get_zspage()`` scans groups 99 → 0,
  and ``__zs_compact()`` keeps one destination zspage until it is full.
* **≤ 6.3** (``False``): groups ``ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL`` with
  ``fullness_threshold_frac = 4`` (almost-empty iff ``inuse <= 3 * objs / 4``),
  ``insert_zspage()`` puts a zspage *second* when its inuse is below the head's ("Put pages
  with higher ->inuse first", removed for v6.4), ``find_get_zspage()`` scans ALMOST_FULL,
  ALMOST_EMPTY, EMPTY, and the old nested ``__zs_compact()`` loop with
  ``isolate_zspage(class, source)``.

Not modelled (documented in docs/model.md): deferred zspage freeing when ``trylock_zspage()``
fails (page lock held by page migration), compaction cut short by lock contention
(``spin_is_contended`` / ``rwlock_is_contended``) or by a failed ``zspage_write_trylock()`` on
the source (a concurrent reader), and allocation failures. All need concurrency; the
single-threaded zram oracle (ztrace.checks.oracle) matched the 6.18 kernel page for page.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core.extending import overload_method
from numba.core.registry import CPUDispatcher
from numba.experimental import structref

from ztrace.model import classes as _classes_module
from ztrace.model.classes import ZS_HANDLE_SIZE, ClassTable
from ztrace.model.prefetch import prefetch
from ztrace.model.structs import A32, A64, UnliteralStructRef

#: Fullness group numbers of the ≥6.4 generation (enum fullness_group in mm/zsmalloc.c).
ZS_INUSE_RATIO_0 = 0
ZS_INUSE_RATIO_99 = 10
ZS_INUSE_RATIO_100 = 11
#: ≤6.3 generation (enum fullness_group: ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL).
ZS_EMPTY = 0
ZS_ALMOST_EMPTY = 1
ZS_ALMOST_FULL = 2
ZS_FULL = 3

# Column layout of the per-zspage record ``zp[z, :]`` (one 32-byte row of int32 per zspage,
# two to an aligned cache line, so one line holds everything an operation touches; replay
# is memory-bound. int32: every field is a class, a count, a slot or a zspage id, far
# below 2^31 (issue 15: half the bytes of the int64 rows for the same accesses)).
ZP_CLASS = 0  # class index (representative)
ZP_INUSE = 1  # objects in use
ZP_FG = 2  # fullness group it is listed in; -1 while isolated or released
ZP_FREE = 3  # head of the freed-slot stack (slot index), -1 = empty
ZP_BUMP = 4  # first never-used slot: the free list continues bump, bump + 1, ...
ZP_NEXT = 5  # fullness list links (zspage ids, -1 = none)
ZP_PREV = 6
ZP_BASE = 7  # first slot of this zspage's block in the slot arena
_ZP_COLS = 8


@structref.register
class ZsPoolType(UnliteralStructRef):
    """numba type of :class:`ZsPool` (a ``structref``: cacheable, unlike a ``jitclass``)."""


def _i64(*names: str) -> list[tuple[str, types.Type]]:
    """int64 scalar fields, in order."""
    return [(n, types.int64) for n in names]


_fields = [
    # ---- class table (index = class index; merged indices point at their representative)
    ("cls_size", A32),
    ("cls_pages", A32),
    ("cls_objs", A32),
    ("cls_rep", A32),
    *_i64("n_classes", "min_alloc", "delta", "max_alloc"),
    ("ratio_groups", types.boolean),
    ("ngroups", types.int64),
    # ---- fullness lists: head zspage per (class, group), doubly linked through zp rows
    ("list_head", A64),
    ("grp_count", A64),
    # ---- per-class stats (class->stats: ZS_OBJS_ALLOCATED, ZS_OBJS_INUSE)
    ("obj_allocated", A64),
    ("obj_used", A64),
    # ---- zspages: rows of _ZP_COLS; ids are recycled per class (a recycled id keeps its
    # slot block, which has the class's objs_per_zspage slots)
    ("zp", types.int32[:, ::1]),
    ("zp_count", types.int64),  # zspage ids handed out so far (high-water mark)
    ("cls_free_zp", A64),  # per class: stack (via ZP_NEXT) of released zspage ids
    # ---- slot arena: slot[k, 0] = free-stack link, slot[k, 1] = object id or -1
    ("slot", types.int32[:, ::1]),
    ("arena_used", types.int64),
    # ---- objects: obj[o, 0] = zspage id (-1 = not live), obj[o, 1] = slot (or the next id
    # on the free-id stack while not live). int32, like the slot arena: 8 bytes per object
    # id instead of 16 (ids, zspage ids and slots stay far below 2^31; issue 15: memory
    # follows live objects, 2.5 M of them in a 100 M-event replay)
    ("obj", types.int32[:, ::1]),
    *_i64("obj_free_head", "obj_count"),
    # ---- totals
    *_i64("pages_allocated", "live_objects", "live_zspages", "pages_compacted"),
]
_pool_t = ZsPoolType(_fields)
_SCALARS = tuple(n for n, t in _fields if not isinstance(t, types.Array))
_ARRAYS = tuple(n for n, t in _fields if isinstance(t, types.Array))


@njit(cache=True)
def _grow_rows32(a: np.ndarray, need: int) -> np.ndarray:
    n = a.shape[0]
    if need <= n:
        return a
    if need > 2**31 - 1:  # ids, slots and zspage ids are stored as int32
        raise OverflowError("zsmalloc model: more than 2^31 objects, slots or zspages")
    b = np.full((max(need, 2 * n, 64), a.shape[1]), -1, dtype=np.int32)
    b[:n] = a
    return b


@njit(cache=True)
def _m_new(size, pages, objs, rep, min_alloc, delta, max_alloc, ratio_groups):
    p = structref.new(_pool_t)
    p.cls_size = size
    p.cls_pages = pages
    p.cls_objs = objs
    p.cls_rep = rep
    p.n_classes = size.shape[0]
    p.min_alloc = min_alloc
    p.delta = delta
    p.max_alloc = max_alloc
    p.ratio_groups = ratio_groups
    p.ngroups = 12 if ratio_groups else 4
    p.list_head = np.full(p.n_classes * p.ngroups, -1, dtype=np.int64)
    p.grp_count = np.zeros(p.n_classes * p.ngroups, dtype=np.int64)
    p.obj_allocated = np.zeros(p.n_classes, dtype=np.int64)
    p.obj_used = np.zeros(p.n_classes, dtype=np.int64)
    p.zp = np.full((64, _ZP_COLS), -1, dtype=np.int32)
    p.zp_count = 0
    p.cls_free_zp = np.full(p.n_classes, -1, dtype=np.int64)
    p.slot = np.full((1024, 2), -1, dtype=np.int32)
    p.arena_used = 0
    p.obj = np.full((64, 2), -1, dtype=np.int32)
    p.obj_free_head = -1
    p.obj_count = 0
    p.pages_allocated = 0
    p.live_objects = 0
    p.live_zspages = 0
    p.pages_compacted = 0
    return p


# ------------------------------------------------------------------ size classes


@njit(cache=True)
def _m_class_index(zs, size):
    """Class (merged representative) that ``zs_malloc(pool, size)`` uses.

    zs_malloc(): ``size += ZS_HANDLE_SIZE`` ("extra space in chunk to keep the handle"),
    then ``pool->size_class[get_size_class_index(size)]``.
    """
    s = size + ZS_HANDLE_SIZE
    idx = 0
    if s > zs.min_alloc:
        idx = (s - zs.min_alloc + zs.delta - 1) // zs.delta
    if idx > zs.n_classes - 1:
        idx = zs.n_classes - 1
    return zs.cls_rep[idx]


# ------------------------------------------------------------------ fullness groups


@njit(cache=True)
def _m_fullness_of(zs, c, inuse):
    """get_fullness_group() of a zspage of class ``c`` holding ``inuse`` objects."""
    objs = zs.cls_objs[c]
    if zs.ratio_groups:
        # ≥6.4: ratio groups; "+ 1" so 1 object of 127 lands in ZS_INUSE_RATIO_10.
        if inuse == 0:
            return ZS_INUSE_RATIO_0
        if inuse == objs:
            return ZS_INUSE_RATIO_100
        return (100 * inuse // objs) // 10 + 1
    # ≤6.3: fullness_threshold_frac = 4.
    if inuse == 0:
        return ZS_EMPTY
    if inuse == objs:
        return ZS_FULL
    if inuse <= 3 * objs // 4:
        return ZS_ALMOST_EMPTY
    return ZS_ALMOST_FULL


@njit(cache=True)
def _m_insert(zs, z, fg):
    """insert_zspage(): list_add at the head (≥6.4); ≤6.3 puts z after the head when
    z->inuse < head->inuse ("We want to see more ZS_FULL pages ...")."""
    zp = zs.zp  # arrays are read into locals once: each attribute read costs a refcount
    h = zp[z, ZP_CLASS] * zs.ngroups + fg
    head = zs.list_head[h]
    zs.grp_count[h] += 1
    zp[z, ZP_FG] = fg
    if (not zs.ratio_groups) and head != -1 and zp[z, ZP_INUSE] < zp[head, ZP_INUSE]:
        nxt = zp[head, ZP_NEXT]
        zp[z, ZP_PREV] = head
        zp[z, ZP_NEXT] = nxt
        if nxt != -1:
            zp[nxt, ZP_PREV] = z
        zp[head, ZP_NEXT] = z
        return
    zp[z, ZP_PREV] = -1
    zp[z, ZP_NEXT] = head
    if head != -1:
        zp[head, ZP_PREV] = z
    zs.list_head[h] = z


@njit(cache=True)
def _m_remove(zs, z):
    """remove_zspage(): list_del_init from its current fullness list."""
    zp = zs.zp
    h = zp[z, ZP_CLASS] * zs.ngroups + zp[z, ZP_FG]
    p = zp[z, ZP_PREV]
    n = zp[z, ZP_NEXT]
    if p == -1:
        zs.list_head[h] = n
    else:
        zp[p, ZP_NEXT] = n
    if n != -1:
        zp[n, ZP_PREV] = p
    zp[z, ZP_PREV] = -1
    zp[z, ZP_NEXT] = -1
    zp[z, ZP_FG] = -1
    zs.grp_count[h] -= 1


@njit(cache=True)
def _m_fix_fullness(zs, z):
    """fix_fullness_group(): move only when the group changed (else keep the position)."""
    zp = zs.zp
    newfg = _m_fullness_of(zs, zp[z, ZP_CLASS], zp[z, ZP_INUSE])
    if newfg != zp[z, ZP_FG]:
        _m_remove(zs, z)
        _m_insert(zs, z, newfg)
    return newfg


@njit(cache=True)
def _m_first(zs, c, fg):
    return zs.list_head[c * zs.ngroups + fg]


@njit(cache=True)
def _m_find_get_zspage(zs, c):
    """find_get_zspage(): first zspage of the fullest non-full group.

    ≥6.4 scans ZS_INUSE_RATIO_99 .. ZS_INUSE_RATIO_0; ≤6.3 scans ZS_ALMOST_FULL,
    ZS_ALMOST_EMPTY, ZS_EMPTY (enum values 2, 1, 0).
    """
    list_head = zs.list_head
    h = c * zs.ngroups
    top = ZS_INUSE_RATIO_99 if zs.ratio_groups else ZS_ALMOST_FULL
    for fg in range(top, -1, -1):
        z = list_head[h + fg]
        if z != -1:
            return z
    return -1


# ------------------------------------------------------------------ zspages


@njit(cache=True)
def _m_alloc_zspage(zs, c):
    """alloc_zspage() + init_zspage(): free list 0 -> 1 -> ... -> objs-1, freeobj = 0.

    The kernel's free list is a stack (obj_free() pushes on the head, obj_malloc() pops
    it) on top of the untouched tail of init_zspage()'s sequence. The model keeps exactly
    that: a stack of freed slots (ZP_FREE / slot links) over a bump index (ZP_BUMP), so
    creating a zspage is O(1) instead of O(objs_per_zspage).
    """
    z = zs.cls_free_zp[c]
    if z != -1:
        zs.cls_free_zp[c] = zs.zp[z, ZP_NEXT]
    else:
        z = zs.zp_count
        zs.zp_count += 1
        if zs.zp_count > zs.zp.shape[0]:
            zs.zp = _grow_rows32(zs.zp, zs.zp_count)
        zs.zp[z, ZP_BASE] = zs.arena_used
        zs.arena_used += zs.cls_objs[c]
        if zs.arena_used > zs.slot.shape[0]:
            zs.slot = _grow_rows32(zs.slot, zs.arena_used)
    zp = zs.zp
    zp[z, ZP_CLASS] = c
    zp[z, ZP_INUSE] = 0
    zp[z, ZP_FG] = -1
    zp[z, ZP_FREE] = -1
    zp[z, ZP_BUMP] = 0
    zp[z, ZP_NEXT] = -1
    zp[z, ZP_PREV] = -1
    zs.live_zspages += 1
    return z


@njit(cache=True)
def _m_free_zspage(zs, z):
    """free_zspage(): remove_zspage() + __free_zspage(): pages and objects go away."""
    zp = zs.zp
    c = zp[z, ZP_CLASS]
    if zp[z, ZP_FG] != -1:
        _m_remove(zs, z)
    zs.obj_allocated[c] -= zs.cls_objs[c]
    zs.pages_allocated -= zs.cls_pages[c]
    zs.live_zspages -= 1
    zp[z, ZP_NEXT] = zs.cls_free_zp[c]  # the id is recycled for this class only
    zs.cls_free_zp[c] = z


@njit(cache=True)
def _m_obj_malloc(zs, z, o):
    """obj_malloc(): take the free-list head slot."""
    zp = zs.zp
    slot = zs.slot
    base = zp[z, ZP_BASE]
    s = zp[z, ZP_FREE]
    if s != -1:
        zp[z, ZP_FREE] = slot[base + s, 0]
    else:
        s = zp[z, ZP_BUMP]
        zp[z, ZP_BUMP] = s + 1
    slot[base + s, 1] = o
    zp[z, ZP_INUSE] += 1
    obj = zs.obj
    obj[o, 0] = z
    obj[o, 1] = s


@njit(cache=True)
def _m_obj_free(zs, z, s):
    """obj_free(): push the slot on the free-list head (``set_freeobj(zspage, idx)``)."""
    zp = zs.zp
    slot = zs.slot
    base = zp[z, ZP_BASE]
    slot[base + s, 0] = zp[z, ZP_FREE]
    slot[base + s, 1] = -1
    zp[z, ZP_FREE] = s
    zp[z, ZP_INUSE] -= 1


# ------------------------------------------------------------------ prefetch hints
# A caller that knows which object it will free a few operations ahead asks for its rows
# early (issue 15: the replay is latency-bound; see ztrace.model.prefetch). The arrays are
# the pool's ``obj``, ``zp`` and ``slot`` as read once by the caller: after the pool grows
# one of them, a stale array only makes the hint useless, never a value wrong.


@njit(cache=True)
def prefetch_object(obj, o):
    """Prefetch object ``o``'s row (zs_free's first read)."""
    if 0 <= o < obj.shape[0]:
        prefetch(obj, o * 2)


@njit(cache=True)
def prefetch_zspage_of(obj, zp, o):
    """Prefetch the zspage row of live object ``o`` (read after its object row)."""
    if 0 <= o < obj.shape[0]:
        z = obj[o, 0]
        if 0 <= z < zp.shape[0]:
            prefetch(zp, z * _ZP_COLS)


@njit(cache=True)
def prefetch_free_rest(obj, zp, slot, o):
    """Prefetch what freeing live object ``o`` touches after its zspage row: its slot and
    the zspage's fullness-list neighbours (remove_zspage() when the group changes)."""
    if 0 <= o < obj.shape[0]:
        z = obj[o, 0]
        if 0 <= z < zp.shape[0]:
            k = zp[z, ZP_BASE] + obj[o, 1]
            if 0 <= k < slot.shape[0]:
                prefetch(slot, k * 2)
            for nb in (zp[z, ZP_NEXT], zp[z, ZP_PREV]):
                if 0 <= nb < zp.shape[0]:
                    prefetch(zp, nb * _ZP_COLS)


# ------------------------------------------------------------------ public API


@njit(cache=True)
def _m_take_obj_id(zs):
    """An object id for a new allocation: the most recently freed one, else a new row."""
    if zs.obj_free_head != -1:
        o = zs.obj_free_head
        zs.obj_free_head = np.int64(zs.obj[o, 1])
    else:
        o = zs.obj_count
        zs.obj_count += 1
        if zs.obj_count > zs.obj.shape[0]:
            zs.obj = _grow_rows32(zs.obj, zs.obj_count)
    return o


@njit(cache=True)
def _m_malloc_as(zs, size, fast_path):
    """zs_malloc(pool, size), or with ``fast_path`` False its slow path alone (below).

    6.1.192 / 6.12.118 mm/zsmalloc.c:zs_malloc: under the lock, ``find_get_zspage()``; with
    no room, the lock is dropped for ``alloc_zspage()``, then taken again to put the object
    into that new zspage and count its pages."""
    if size <= 0 or size > zs.max_alloc:
        return -1  # -EINVAL / -ENOSPC in the kernel
    o = _m_take_obj_id(zs)
    c = _m_class_index(zs, size)
    z = _m_find_get_zspage(zs, c) if fast_path else -1
    if z != -1:
        _m_obj_malloc(zs, z, o)
        _m_fix_fullness(zs, z)  # "Now move the zspage to another fullness group"
    else:
        z = _m_alloc_zspage(zs, c)
        _m_obj_malloc(zs, z, o)
        _m_insert(zs, z, _m_fullness_of(zs, c, 1))
        zs.pages_allocated += zs.cls_pages[c]
        zs.obj_allocated[c] += zs.cls_objs[c]
    zs.obj_used[c] += 1
    zs.live_objects += 1
    return o


@njit(cache=True)
def _m_malloc(zs, size):
    """zs_malloc(pool, size): returns an object id, or -1 for size 0 / > PAGE_SIZE."""
    return _m_malloc_as(zs, size, True)


@njit(cache=True)
def _m_has_room(zs, size):
    """zs_malloc()'s fast path would succeed: ``find_get_zspage()`` finds a zspage of
    ``size``'s class with a free slot (False for size 0 / > PAGE_SIZE)."""
    if size <= 0 or size > zs.max_alloc:
        return False
    return _m_find_get_zspage(zs, _m_class_index(zs, size)) != -1


@njit(cache=True)
def _m_malloc_new(zs, size):
    """zs_malloc()'s slow path on its own: the object goes into a zspage of its own, as when
    ``alloc_zspage()`` ran outside the pool lock. A caller replaying two CPUs uses it for an
    allocation that found no room on entry: meanwhile another CPU may have found none either
    and allocated its own zspage, or a free may have made room, and the kernel still puts
    the object in the zspage it allocated. Object id, or -1 for size 0 / > PAGE_SIZE."""
    return _m_malloc_as(zs, size, False)


@njit(cache=True)
def _m_free(zs, o):
    """zs_free(pool, handle): release; an emptied zspage is freed at once.

    Returns False (and changes nothing) for an id that is not live.
    """
    obj = zs.obj
    if o < 0 or o >= zs.obj_count or obj[o, 0] == -1:
        return False
    z = np.int64(obj[o, 0])
    c = zs.zp[z, ZP_CLASS]
    zs.obj_used[c] -= 1
    _m_obj_free(zs, z, np.int64(obj[o, 1]))
    obj[o, 0] = -1
    obj[o, 1] = zs.obj_free_head
    zs.obj_free_head = o
    zs.live_objects -= 1
    if _m_fix_fullness(zs, z) == 0:  # ZS_INUSE_RATIO_0 / ZS_EMPTY
        _m_free_zspage(zs, z)
    return True


@njit(cache=True)
def _m_is_live(zs, o):
    return 0 <= o < zs.obj_count and zs.obj[o, 0] != -1


@njit(cache=True)
def _m_total_pages(zs):
    """zs_get_total_pages(): pool->pages_allocated."""
    return zs.pages_allocated


@njit(cache=True)
def _m_can_compact(zs, c):
    """zs_can_compact(): whole zspages' worth of unused allocated objects, in pages."""
    alloc = zs.obj_allocated[c]
    used = zs.obj_used[c]
    if alloc <= used:
        return 0
    return (alloc - used) // zs.cls_objs[c] * zs.cls_pages[c]


@njit(cache=True)
def _m_isolate(zs, c, groups_lo, groups_hi, step):
    for fg in range(groups_lo, groups_hi, step):
        z = _m_first(zs, c, fg)
        if z != -1:
            _m_remove(zs, z)
            return z
    return -1


@njit(cache=True)
def _m_putback(zs, z):
    """putback_zspage(): insert by current fullness, return the group."""
    fg = _m_fullness_of(zs, zs.zp[z, ZP_CLASS], zs.zp[z, ZP_INUSE])
    _m_insert(zs, z, fg)
    return fg


@njit(cache=True)
def _m_move_obj(zs, src, dst, s):
    o = zs.slot[zs.zp[src, ZP_BASE] + s, 1]
    _m_obj_malloc(zs, dst, o)  # record_obj(handle, free_obj): the id follows the object
    _m_obj_free(zs, src, s)


#: columns of a compaction log row (:func:`compact_log`): one row per source zspage that
#: ``__zs_compact()`` migrated from, in the kernel's order; ``CL_SRC`` is that source
#: zspage's id (the zspage lock the compactor write-locks: migrate_write_lock(src_zspage))
CL_CLASS, CL_MOVED, CL_FREED, CL_DST_FULL, CL_SRC = range(5)
N_CL = 5


@njit(cache=True, inline="always")
def _m_log(log, n, c, moved, freed, dst_full, src):
    """Record one source zspage's work (row ``n`` when it fits); the next row index."""
    if n < log.shape[0]:
        log[n, CL_CLASS] = c
        log[n, CL_MOVED] = moved
        log[n, CL_FREED] = freed
        log[n, CL_DST_FULL] = dst_full
        log[n, CL_SRC] = src
    return n + 1


@njit(cache=True)
def _m_compact_class_ratio(zs, c, log, n):
    """__zs_compact() ≥6.4: keep dst until full; src drained in slot order.

    Returns (pages freed, next log row). One log row per source zspage (the unit after
    which 6.4+ kernels may drop the locks: when dst is full, or on contention)."""
    freed = 0
    dst = -1
    objs = zs.cls_objs[c]
    while _m_can_compact(zs, c) > 0:
        if dst == -1:
            # isolate_dst_zspage(): groups 99 -> 10, first entry
            dst = _m_isolate(zs, c, ZS_INUSE_RATIO_99, 0, -1)
            if dst == -1:
                break
        # isolate_src_zspage(): groups 10 -> 99, first entry
        src = _m_isolate(zs, c, 1, ZS_INUSE_RATIO_99 + 1, 1)
        if src == -1:
            break
        # migrate_zspage(): find_alloced_obj() walks the objects in index order; stop
        # when dst is full or src is empty.
        moved = 0
        base = zs.zp[src, ZP_BASE]
        for s in range(zs.zp[src, ZP_BUMP]):  # slots >= bump were never used
            if zs.slot[base + s, 1] != -1:
                _m_move_obj(zs, src, dst, s)
                moved += 1
                if zs.zp[dst, ZP_INUSE] == objs or zs.zp[src, ZP_INUSE] == 0:
                    break
        pages = 0
        if _m_putback(zs, src) == ZS_INUSE_RATIO_0:
            _m_free_zspage(zs, src)
            pages = zs.cls_pages[c]
            freed += pages
        full = 0
        if _m_fullness_of(zs, c, zs.zp[dst, ZP_INUSE]) == ZS_INUSE_RATIO_100:
            _m_putback(zs, dst)
            dst = -1
            full = 1
        n = _m_log(log, n, c, moved, pages, full, src)
    if dst != -1:
        _m_putback(zs, dst)
    return freed, n


@njit(cache=True)
def _m_compact_class_legacy(zs, c, log, n):
    """__zs_compact() ≤6.3: for each source, walk destinations until src is drained.

    Returns (pages freed, next log row); one row per source zspage (6.1-6.3 drop the
    lock after every one), ``CL_DST_FULL`` = destinations filled meanwhile."""
    freed = 0
    objs = zs.cls_objs[c]
    while True:
        # isolate_zspage(class, true): ZS_ALMOST_EMPTY, then ZS_ALMOST_FULL
        src = _m_isolate(zs, c, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL + 1, 1)
        if src == -1:
            break
        if _m_can_compact(zs, c) == 0:
            _m_putback(zs, src)
            break
        dst = -1
        moved = 0
        filled = 0
        while True:
            # isolate_zspage(class, false): ZS_ALMOST_FULL, then ZS_ALMOST_EMPTY
            dst = _m_isolate(zs, c, ZS_ALMOST_FULL, ZS_ALMOST_EMPTY - 1, -1)
            if dst == -1:
                break
            # migrate_zspage(): returns -ENOMEM when dst is full before the next object,
            # 0 when src has no object left.
            drained = True
            base = zs.zp[src, ZP_BASE]
            for s in range(zs.zp[src, ZP_BUMP]):
                if zs.slot[base + s, 1] != -1:
                    if zs.zp[dst, ZP_INUSE] == objs:
                        drained = False
                        break
                    _m_move_obj(zs, src, dst, s)
                    moved += 1
            if drained:
                break
            _m_putback(zs, dst)
            filled += 1
            dst = -1
        if dst == -1:  # "Stop if we couldn't find slot"
            _m_putback(zs, src)
            if moved > 0:
                n = _m_log(log, n, c, moved, 0, filled, src)
            break
        _m_putback(zs, dst)
        pages = 0
        if _m_putback(zs, src) == ZS_EMPTY:
            _m_free_zspage(zs, src)
            pages = zs.cls_pages[c]
            freed += pages
        n = _m_log(log, n, c, moved, pages, filled, src)
    return freed, n


@njit(cache=True)
def _m_compact_log(zs, log):
    """zs_compact(): classes from the highest index down, merged indices skipped.

    Fills ``log`` (int64, N_CL columns) with one row per source zspage migrated from
    (rows past its end are counted, not written); returns (pages freed, rows)."""
    freed = 0
    n = 0
    for i in range(zs.n_classes - 1, -1, -1):
        if zs.cls_rep[i] != i:
            continue
        if zs.ratio_groups:
            f, n = _m_compact_class_ratio(zs, i, log, n)
        else:
            f, n = _m_compact_class_legacy(zs, i, log, n)
        freed += f
    zs.pages_compacted += freed
    return freed, n


@njit(cache=True)
def _m_compact(zs):
    """zs_compact(): pages freed."""
    return _m_compact_log(zs, np.zeros((0, N_CL), dtype=np.int64))[0]


@njit(cache=True)
def _m_compact_log_rows(zs):
    """Rows a :func:`compact_log` of the pool's current state can need: every row frees a
    source zspage or fills a destination (ratio) / ends a class (legacy), and a pool has
    at most ``pages_allocated`` zspages."""
    return 2 * zs.pages_allocated + zs.n_classes + 1


# ------------------------------------------------------------------ introspection


@njit(cache=True)
def _m_class_stats(zs):
    """Per class index, like debugfs ``classes``: rows of
    (obj_allocated, obj_used, pages_used, freeable); zero rows for merged indices."""
    out = np.zeros((zs.n_classes, 4), dtype=np.int64)
    for i in range(zs.n_classes):
        if zs.cls_rep[i] != i:
            continue
        out[i, 0] = zs.obj_allocated[i]
        out[i, 1] = zs.obj_used[i]
        out[i, 2] = zs.obj_allocated[i] // zs.cls_objs[i] * zs.cls_pages[i]
        out[i, 3] = _m_can_compact(zs, i)
    return out


@njit(cache=True)
def _m_list_zspages(zs, c, fg):
    """zspage ids on fullness list (class c, group fg), head first."""
    out = np.empty(zs.grp_count[c * zs.ngroups + fg], dtype=np.int64)
    z = _m_first(zs, c, fg)
    k = 0
    while z != -1:
        out[k] = z
        k += 1
        z = zs.zp[z, ZP_NEXT]
    return out


@njit(cache=True)
def _m_list_inuse(zs, c, fg):
    """inuse of each zspage on fullness list (class c, group fg), head first."""
    ids = _m_list_zspages(zs, c, fg)
    out = np.empty(ids.shape[0], dtype=np.int64)
    for k in range(ids.shape[0]):
        out[k] = zs.zp[ids[k], ZP_INUSE]
    return out


@njit(cache=True)
def _m_zspage_of(zs, o):
    """(zspage id, slot index) of a live object, (-1, -1) otherwise."""
    if not _m_is_live(zs, o):
        return (np.int64(-1), np.int64(-1))
    return (np.int64(zs.obj[o, 0]), np.int64(zs.obj[o, 1]))


@njit(cache=True)
def _m_zspage_inuse(zs, z):
    return zs.zp[z, ZP_INUSE]


@njit(cache=True)
def _m_check(zs):
    """Cross-check internal invariants; returns an error code (0 = consistent)."""
    total_pages = 0
    for c in range(zs.n_classes):
        if zs.cls_rep[c] != c:
            continue
        used = 0
        nzp = 0
        for fg in range(zs.ngroups):
            z = _m_first(zs, c, fg)
            cnt = 0
            prev = -1
            while z != -1:
                if zs.zp[z, ZP_PREV] != prev or zs.zp[z, ZP_FG] != fg:
                    return 1
                if _m_fullness_of(zs, c, zs.zp[z, ZP_INUSE]) != fg:
                    return 2
                # inuse equals the allocated slots below the bump index
                base = zs.zp[z, ZP_BASE]
                n_alloc = 0
                for s in range(zs.zp[z, ZP_BUMP]):
                    if zs.slot[base + s, 1] != -1:
                        n_alloc += 1
                if n_alloc != zs.zp[z, ZP_INUSE]:
                    return 7
                used += zs.zp[z, ZP_INUSE]
                cnt += 1
                prev = z
                z = zs.zp[z, ZP_NEXT]
            if cnt != zs.grp_count[c * zs.ngroups + fg]:
                return 3
            nzp += cnt
        if used != zs.obj_used[c]:
            return 4
        if nzp * zs.cls_objs[c] != zs.obj_allocated[c]:
            return 5
        total_pages += nzp * zs.cls_pages[c]
    if total_pages != zs.pages_allocated:
        return 6
    return 0


@njit(cache=True)
def _m_scalars(p):
    return (
        p.n_classes,
        p.min_alloc,
        p.delta,
        p.max_alloc,
        p.ratio_groups,
        p.ngroups,
        p.zp_count,
        p.arena_used,
        p.obj_free_head,
        p.obj_count,
        p.pages_allocated,
        p.live_objects,
        p.live_zspages,
        p.pages_compacted,
    )


@njit(cache=True)
def _m_arrays(p):
    return (
        p.cls_size,
        p.cls_pages,
        p.cls_objs,
        p.cls_rep,
        p.list_head,
        p.grp_count,
        p.obj_allocated,
        p.obj_used,
        p.zp,
        p.cls_free_zp,
        p.slot,
        p.obj,
    )


def _returned_fields(fn) -> tuple[str, ...]:
    """The ``p.<field>`` names ``fn`` returns, in order (read from its source)."""
    import inspect
    import re

    return tuple(re.findall(r"\bp\.(\w+)", inspect.getsource(fn.py_func)))


# the proxy's attributes index these tuples by the order of _fields: a field added to the
# struct but not returned, or returned out of order, fails here at import
assert _returned_fields(_m_scalars) == _SCALARS and _returned_fields(_m_arrays) == _ARRAYS


def _scalar_prop(k: int) -> property:
    return property(lambda self: _m_scalars(self)[k])


def _array_prop(k: int) -> property:
    return property(lambda self: _m_arrays(self)[k])


class ZsPool(structref.StructRefProxy):
    """State of one modelled zs_pool (Python handle of a :class:`ZsPoolType` struct).

    Build it with :func:`new_pool`. Methods and attributes mirror the free functions and
    struct fields; inside ``@njit`` code use the same methods or the free functions. Each
    method *is* its ``_m_*`` function: a numba dispatcher binds to an instance as a function
    does (``Dispatcher.__get__``), and the loop after the class makes the same names methods
    inside ``@njit`` code.
    """

    def __new__(cls, size, pages, objs, rep, min_alloc, delta, max_alloc, ratio_groups):
        return _m_new(size, pages, objs, rep, min_alloc, delta, max_alloc, ratio_groups)

    class_index = _m_class_index
    fullness_of = _m_fullness_of
    malloc = _m_malloc
    has_room = _m_has_room
    malloc_new = _m_malloc_new
    free = _m_free
    is_live = _m_is_live
    total_pages = _m_total_pages
    can_compact = _m_can_compact
    compact = _m_compact
    class_stats = _m_class_stats
    list_zspages = _m_list_zspages
    list_inuse = _m_list_inuse
    zspage_of = _m_zspage_of
    zspage_inuse = _m_zspage_inuse
    check = _m_check


for _k, _n in enumerate(_SCALARS):
    setattr(ZsPool, _n, _scalar_prop(_k))
for _k, _n in enumerate(_ARRAYS):
    setattr(ZsPool, _n, _array_prop(_k))

structref.define_boxing(ZsPoolType, ZsPool)


def _njit_method(name, impl_fn):
    """``pool.<name>(...)`` inside ``@njit`` code calls ``impl_fn(pool, ...)``."""
    import inspect

    nargs = len(inspect.signature(impl_fn.py_func).parameters) - 1
    if nargs == 0:

        @overload_method(ZsPoolType, name)
        def _ol0(p):
            return lambda p: impl_fn(p)
    elif nargs == 1:

        @overload_method(ZsPoolType, name)
        def _ol1(p, a):
            return lambda p, a: impl_fn(p, a)
    else:

        @overload_method(ZsPoolType, name)
        def _ol2(p, a, b):
            return lambda p, a, b: impl_fn(p, a, b)


for _name, _fn in list(vars(ZsPool).items()):
    if isinstance(_fn, CPUDispatcher):
        _njit_method(_name, _fn)


def cache_depends_on(dispatchers, *files) -> None:
    """Make numba's disk cache of ``dispatchers`` also depend on ``files``.

    numba reuses a cached function while *its own* source file is unchanged, although the
    machine code also holds the functions it calls and the constants it reads from other
    modules. Mixing in those files' contents means an edit to, e.g., the pool model never
    replays with stale code. Call at import time, before the first call. (Uses numba
    internals; if they change, numba's own per-file rule applies.)
    """
    import hashlib

    extra = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            extra.update(fh.read())
    for d in dispatchers:
        try:
            cf = d._cache._cache_file
            cf._source_stamp = hashlib.sha256(
                repr(cf._source_stamp).encode() + extra.digest()
            ).digest()
        except AttributeError:
            pass


def _own_dispatchers() -> list:
    from numba.core.registry import CPUDispatcher

    return [v for v in globals().values() if isinstance(v, CPUDispatcher)]


# ZS_HANDLE_SIZE is compiled in from ztrace.model.classes
cache_depends_on(_own_dispatchers(), _classes_module.__file__)


def new_pool(table: ClassTable, ratio_groups: bool = True) -> ZsPool:
    """An empty modelled pool for ``table``; ``ratio_groups`` selects the ≥6.4 generation."""
    return ZsPool(
        np.ascontiguousarray(table.size, dtype=np.int32),
        np.ascontiguousarray(table.pages_per_zspage, dtype=np.int32),
        np.ascontiguousarray(table.objs_per_zspage, dtype=np.int32),
        np.ascontiguousarray(table.merged_into, dtype=np.int32),
        np.int64(table.min_alloc_size),
        np.int64(table.size_delta),
        np.int64(table.page_size),
        bool(ratio_groups),
    )


# Free-function interface (callable from Python and from ``@njit`` code; all cached).
#: ``zs_malloc``: object id or -1.
malloc = _m_malloc
#: ``zs_malloc``'s fast path would find room for ``size``.
has_room = _m_has_room
#: ``zs_malloc``'s slow path alone (the object in a new zspage): object id or -1.
malloc_new = _m_malloc_new
#: ``zs_free``: False when ``obj`` is not live.
free = _m_free
#: ``zs_compact``: pages freed.
compact = _m_compact
#: ``zs_compact`` recording its work per source zspage: ``(pages freed, rows)``; see CL_*.
compact_log = _m_compact_log
#: (zspage id, slot) of a live object, (-1, -1) otherwise
zspage_of = _m_zspage_of
#: an upper bound on the rows :data:`compact_log` writes from the current state
compact_log_rows = _m_compact_log_rows
#: ``zs_get_total_pages``.
total_pages = _m_total_pages
#: Class (merged representative) used by ``zs_malloc(size)``.
class_index = _m_class_index
