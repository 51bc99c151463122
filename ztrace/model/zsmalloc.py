"""A numba-compiled, page-exact model of one zsmalloc pool.

The model keeps what decides how many pages a pool holds: every zspage with its object
slots and per-zspage free list, the fullness lists of every class with their exact order,
and the compaction algorithm. It does not keep object contents or addresses.

Usage (from Python or from inside ``@njit`` code; the pool is a numba ``jitclass``)::

    pool = new_pool(build_classes(8), ratio_groups=True)    # 6.18-style pool
    a = pool.malloc(100)          # object id (>= 0), or -1 where zs_malloc() fails
    pool.free(a)
    pool.compact()                # pages freed, like zs_compact()
    pool.total_pages()            # zs_get_total_pages()

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
single-threaded zram oracle (ztrace.oracle.zram) matched the 6.18 kernel page for page.
"""

from __future__ import annotations

import numpy as np
from numba import boolean, int32, int64, njit
from numba.experimental import jitclass

from ztrace.model.classes import ZS_HANDLE_SIZE, ClassTable

#: Fullness group numbers of the ≥6.4 generation (enum fullness_group in mm/zsmalloc.c).
ZS_INUSE_RATIO_0 = 0
ZS_INUSE_RATIO_99 = 10
ZS_INUSE_RATIO_100 = 11
#: ≤6.3 generation (enum fullness_group: ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL).
ZS_EMPTY = 0
ZS_ALMOST_EMPTY = 1
ZS_ALMOST_FULL = 2
ZS_FULL = 3

# Column layout of the per-zspage record ``zp[z, :]`` (one 64-byte row per zspage, so one
# cache line holds everything an operation touches; replay is memory-bound).
ZP_CLASS = 0  # class index (representative)
ZP_INUSE = 1  # objects in use
ZP_FG = 2  # fullness group it is listed in; -1 while isolated or released
ZP_FREE = 3  # head of the freed-slot stack (slot index), -1 = empty
ZP_BUMP = 4  # first never-used slot: the free list continues bump, bump + 1, ...
ZP_NEXT = 5  # fullness list links (zspage ids, -1 = none)
ZP_PREV = 6
ZP_BASE = 7  # first slot of this zspage's block in the slot arena
_ZP_COLS = 8

_spec = [
    # ---- class table (index = class index; merged indices point at their representative)
    ("cls_size", int32[:]),
    ("cls_pages", int32[:]),
    ("cls_objs", int32[:]),
    ("cls_rep", int32[:]),
    ("n_classes", int64),
    ("min_alloc", int64),
    ("delta", int64),
    ("max_alloc", int64),
    ("ratio_groups", boolean),
    ("ngroups", int64),
    # ---- fullness lists: head zspage per (class, group), doubly linked through zp rows
    ("list_head", int64[:]),
    ("grp_count", int64[:]),
    # ---- per-class stats (class->stats: ZS_OBJS_ALLOCATED, ZS_OBJS_INUSE)
    ("obj_allocated", int64[:]),
    ("obj_used", int64[:]),
    # ---- zspages: rows of _ZP_COLS; ids are recycled per class (a recycled id keeps its
    # slot block, which has the class's objs_per_zspage slots)
    ("zp", int64[:, :]),
    ("zp_count", int64),  # zspage ids handed out so far (high-water mark)
    ("cls_free_zp", int64[:]),  # per class: stack (via ZP_NEXT) of released zspage ids
    # ---- slot arena: slot[k, 0] = free-stack link, slot[k, 1] = object id or -1
    ("slot", int32[:, :]),
    ("arena_used", int64),
    # ---- objects: obj[o, 0] = zspage id (-1 = not live), obj[o, 1] = slot (or the next id
    # on the free-id stack while not live)
    ("obj", int64[:, :]),
    ("obj_free_head", int64),
    ("obj_count", int64),
    # ---- totals
    ("pages_allocated", int64),
    ("live_objects", int64),
    ("live_zspages", int64),
    ("pages_compacted", int64),
]


@njit(cache=True)
def _grow_rows64(a: np.ndarray, need: int) -> np.ndarray:
    n = a.shape[0]
    if need <= n:
        return a
    b = np.full((max(need, 2 * n, 64), a.shape[1]), -1, dtype=np.int64)
    b[:n] = a
    return b


@njit(cache=True)
def _grow_rows32(a: np.ndarray, need: int) -> np.ndarray:
    n = a.shape[0]
    if need <= n:
        return a
    b = np.full((max(need, 2 * n, 64), a.shape[1]), -1, dtype=np.int32)
    b[:n] = a
    return b


@jitclass(_spec)
class ZsPool:
    """State of one modelled zs_pool. Build it with :func:`new_pool`."""

    def __init__(self, size, pages, objs, rep, min_alloc, delta, max_alloc, ratio_groups):
        self.cls_size = size
        self.cls_pages = pages
        self.cls_objs = objs
        self.cls_rep = rep
        self.n_classes = size.shape[0]
        self.min_alloc = min_alloc
        self.delta = delta
        self.max_alloc = max_alloc
        self.ratio_groups = ratio_groups
        self.ngroups = 12 if ratio_groups else 4
        self.list_head = np.full(self.n_classes * self.ngroups, -1, dtype=np.int64)
        self.grp_count = np.zeros(self.n_classes * self.ngroups, dtype=np.int64)
        self.obj_allocated = np.zeros(self.n_classes, dtype=np.int64)
        self.obj_used = np.zeros(self.n_classes, dtype=np.int64)
        self.zp = np.full((64, _ZP_COLS), -1, dtype=np.int64)
        self.zp_count = 0
        self.cls_free_zp = np.full(self.n_classes, -1, dtype=np.int64)
        self.slot = np.full((1024, 2), -1, dtype=np.int32)
        self.arena_used = 0
        self.obj = np.full((64, 2), -1, dtype=np.int64)
        self.obj_free_head = -1
        self.obj_count = 0
        self.pages_allocated = 0
        self.live_objects = 0
        self.live_zspages = 0
        self.pages_compacted = 0

    # ------------------------------------------------------------------ size classes

    def class_index(self, size):
        """Class (merged representative) that ``zs_malloc(pool, size)`` uses.

        zs_malloc(): ``size += ZS_HANDLE_SIZE`` ("extra space in chunk to keep the handle"),
        then ``pool->size_class[get_size_class_index(size)]``.
        """
        s = size + ZS_HANDLE_SIZE
        idx = 0
        if s > self.min_alloc:
            idx = (s - self.min_alloc + self.delta - 1) // self.delta
        if idx > self.n_classes - 1:
            idx = self.n_classes - 1
        return self.cls_rep[idx]

    # ------------------------------------------------------------------ fullness groups

    def fullness_of(self, c, inuse):
        """get_fullness_group() of a zspage of class ``c`` holding ``inuse`` objects."""
        objs = self.cls_objs[c]
        if self.ratio_groups:
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

    def _insert(self, z, fg):
        """insert_zspage(): list_add at the head (≥6.4); ≤6.3 puts z after the head when
        z->inuse < head->inuse ("We want to see more ZS_FULL pages ...")."""
        zp = self.zp  # arrays are read into locals once: each attribute read costs a refcount
        h = zp[z, ZP_CLASS] * self.ngroups + fg
        head = self.list_head[h]
        self.grp_count[h] += 1
        zp[z, ZP_FG] = fg
        if (not self.ratio_groups) and head != -1 and zp[z, ZP_INUSE] < zp[head, ZP_INUSE]:
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
        self.list_head[h] = z

    def _remove(self, z):
        """remove_zspage(): list_del_init from its current fullness list."""
        zp = self.zp
        h = zp[z, ZP_CLASS] * self.ngroups + zp[z, ZP_FG]
        p = zp[z, ZP_PREV]
        n = zp[z, ZP_NEXT]
        if p == -1:
            self.list_head[h] = n
        else:
            zp[p, ZP_NEXT] = n
        if n != -1:
            zp[n, ZP_PREV] = p
        zp[z, ZP_PREV] = -1
        zp[z, ZP_NEXT] = -1
        zp[z, ZP_FG] = -1
        self.grp_count[h] -= 1

    def _fix_fullness(self, z):
        """fix_fullness_group(): move only when the group changed (else keep the position)."""
        zp = self.zp
        newfg = self.fullness_of(zp[z, ZP_CLASS], zp[z, ZP_INUSE])
        if newfg != zp[z, ZP_FG]:
            self._remove(z)
            self._insert(z, newfg)
        return newfg

    def _first(self, c, fg):
        return self.list_head[c * self.ngroups + fg]

    def _find_get_zspage(self, c):
        """find_get_zspage(): first zspage of the fullest non-full group.

        ≥6.4 scans ZS_INUSE_RATIO_99 .. ZS_INUSE_RATIO_0; ≤6.3 scans ZS_ALMOST_FULL,
        ZS_ALMOST_EMPTY, ZS_EMPTY (enum values 2, 1, 0).
        """
        list_head = self.list_head
        h = c * self.ngroups
        top = ZS_INUSE_RATIO_99 if self.ratio_groups else ZS_ALMOST_FULL
        for fg in range(top, -1, -1):
            z = list_head[h + fg]
            if z != -1:
                return z
        return -1

    # ------------------------------------------------------------------ zspages

    def _alloc_zspage(self, c):
        """alloc_zspage() + init_zspage(): free list 0 -> 1 -> ... -> objs-1, freeobj = 0.

        The kernel's free list is a stack (obj_free() pushes on the head, obj_malloc() pops
        it) on top of the untouched tail of init_zspage()'s sequence. The model keeps exactly
        that: a stack of freed slots (ZP_FREE / slot links) over a bump index (ZP_BUMP), so
        creating a zspage is O(1) instead of O(objs_per_zspage).
        """
        z = self.cls_free_zp[c]
        if z != -1:
            self.cls_free_zp[c] = self.zp[z, ZP_NEXT]
        else:
            z = self.zp_count
            self.zp_count += 1
            if self.zp_count > self.zp.shape[0]:
                self.zp = _grow_rows64(self.zp, self.zp_count)
            self.zp[z, ZP_BASE] = self.arena_used
            self.arena_used += self.cls_objs[c]
            if self.arena_used > self.slot.shape[0]:
                self.slot = _grow_rows32(self.slot, self.arena_used)
        zp = self.zp
        zp[z, ZP_CLASS] = c
        zp[z, ZP_INUSE] = 0
        zp[z, ZP_FG] = -1
        zp[z, ZP_FREE] = -1
        zp[z, ZP_BUMP] = 0
        zp[z, ZP_NEXT] = -1
        zp[z, ZP_PREV] = -1
        self.live_zspages += 1
        return z

    def _free_zspage(self, z):
        """free_zspage(): remove_zspage() + __free_zspage(): pages and objects go away."""
        zp = self.zp
        c = zp[z, ZP_CLASS]
        if zp[z, ZP_FG] != -1:
            self._remove(z)
        self.obj_allocated[c] -= self.cls_objs[c]
        self.pages_allocated -= self.cls_pages[c]
        self.live_zspages -= 1
        zp[z, ZP_NEXT] = self.cls_free_zp[c]  # the id is recycled for this class only
        self.cls_free_zp[c] = z

    def _obj_malloc(self, z, o):
        """obj_malloc(): take the free-list head slot."""
        zp = self.zp
        slot = self.slot
        base = zp[z, ZP_BASE]
        s = zp[z, ZP_FREE]
        if s != -1:
            zp[z, ZP_FREE] = slot[base + s, 0]
        else:
            s = zp[z, ZP_BUMP]
            zp[z, ZP_BUMP] = s + 1
        slot[base + s, 1] = o
        zp[z, ZP_INUSE] += 1
        obj = self.obj
        obj[o, 0] = z
        obj[o, 1] = s

    def _obj_free(self, z, s):
        """obj_free(): push the slot on the free-list head (``set_freeobj(zspage, idx)``)."""
        zp = self.zp
        slot = self.slot
        base = zp[z, ZP_BASE]
        slot[base + s, 0] = zp[z, ZP_FREE]
        slot[base + s, 1] = -1
        zp[z, ZP_FREE] = s
        zp[z, ZP_INUSE] -= 1

    # ------------------------------------------------------------------ public API

    def malloc(self, size):
        """zs_malloc(pool, size): returns an object id, or -1 for size 0 / > PAGE_SIZE."""
        if size <= 0 or size > self.max_alloc:
            return -1  # -EINVAL / -ENOSPC in the kernel
        if self.obj_free_head != -1:
            o = self.obj_free_head
            self.obj_free_head = self.obj[o, 1]
        else:
            o = self.obj_count
            self.obj_count += 1
            if self.obj_count > self.obj.shape[0]:
                self.obj = _grow_rows64(self.obj, self.obj_count)
        c = self.class_index(size)
        z = self._find_get_zspage(c)
        if z != -1:
            self._obj_malloc(z, o)
            self._fix_fullness(z)  # "Now move the zspage to another fullness group"
        else:
            z = self._alloc_zspage(c)
            self._obj_malloc(z, o)
            self._insert(z, self.fullness_of(c, 1))
            self.pages_allocated += self.cls_pages[c]
            self.obj_allocated[c] += self.cls_objs[c]
        self.obj_used[c] += 1
        self.live_objects += 1
        return o

    def free(self, o):
        """zs_free(pool, handle): release; an emptied zspage is freed at once.

        Returns False (and changes nothing) for an id that is not live.
        """
        obj = self.obj
        if o < 0 or o >= self.obj_count or obj[o, 0] == -1:
            return False
        z = obj[o, 0]
        c = self.zp[z, ZP_CLASS]
        self.obj_used[c] -= 1
        self._obj_free(z, obj[o, 1])
        obj[o, 0] = -1
        obj[o, 1] = self.obj_free_head
        self.obj_free_head = o
        self.live_objects -= 1
        if self._fix_fullness(z) == 0:  # ZS_INUSE_RATIO_0 / ZS_EMPTY
            self._free_zspage(z)
        return True

    def is_live(self, o):
        return 0 <= o < self.obj_count and self.obj[o, 0] != -1

    def total_pages(self):
        """zs_get_total_pages(): pool->pages_allocated."""
        return self.pages_allocated

    def can_compact(self, c):
        """zs_can_compact(): whole zspages' worth of unused allocated objects, in pages."""
        alloc = self.obj_allocated[c]
        used = self.obj_used[c]
        if alloc <= used:
            return 0
        return (alloc - used) // self.cls_objs[c] * self.cls_pages[c]

    def _isolate(self, c, groups_lo, groups_hi, step):
        for fg in range(groups_lo, groups_hi, step):
            z = self._first(c, fg)
            if z != -1:
                self._remove(z)
                return z
        return -1

    def _putback(self, z):
        """putback_zspage(): insert by current fullness, return the group."""
        fg = self.fullness_of(self.zp[z, ZP_CLASS], self.zp[z, ZP_INUSE])
        self._insert(z, fg)
        return fg

    def _move_obj(self, src, dst, s):
        o = self.slot[self.zp[src, ZP_BASE] + s, 1]
        self._obj_malloc(dst, o)  # record_obj(handle, free_obj): the id follows the object
        self._obj_free(src, s)

    def _compact_class_ratio(self, c):
        """__zs_compact() ≥6.4: keep dst until full; src drained in slot order."""
        freed = 0
        dst = -1
        objs = self.cls_objs[c]
        while self.can_compact(c) > 0:
            if dst == -1:
                # isolate_dst_zspage(): groups 99 -> 10, first entry
                dst = self._isolate(c, ZS_INUSE_RATIO_99, 0, -1)
                if dst == -1:
                    break
            # isolate_src_zspage(): groups 10 -> 99, first entry
            src = self._isolate(c, 1, ZS_INUSE_RATIO_99 + 1, 1)
            if src == -1:
                break
            # migrate_zspage(): find_alloced_obj() walks the objects in index order; stop
            # when dst is full or src is empty.
            base = self.zp[src, ZP_BASE]
            for s in range(self.zp[src, ZP_BUMP]):  # slots >= bump were never used
                if self.slot[base + s, 1] != -1:
                    self._move_obj(src, dst, s)
                    if self.zp[dst, ZP_INUSE] == objs or self.zp[src, ZP_INUSE] == 0:
                        break
            if self._putback(src) == ZS_INUSE_RATIO_0:
                self._free_zspage(src)
                freed += self.cls_pages[c]
            if self.fullness_of(c, self.zp[dst, ZP_INUSE]) == ZS_INUSE_RATIO_100:
                self._putback(dst)
                dst = -1
        if dst != -1:
            self._putback(dst)
        return freed

    def _compact_class_legacy(self, c):
        """__zs_compact() ≤6.3: for each source, walk destinations until src is drained."""
        freed = 0
        objs = self.cls_objs[c]
        while True:
            # isolate_zspage(class, true): ZS_ALMOST_EMPTY, then ZS_ALMOST_FULL
            src = self._isolate(c, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL + 1, 1)
            if src == -1:
                break
            if self.can_compact(c) == 0:
                self._putback(src)
                break
            dst = -1
            while True:
                # isolate_zspage(class, false): ZS_ALMOST_FULL, then ZS_ALMOST_EMPTY
                dst = self._isolate(c, ZS_ALMOST_FULL, ZS_ALMOST_EMPTY - 1, -1)
                if dst == -1:
                    break
                # migrate_zspage(): returns -ENOMEM when dst is full before the next object,
                # 0 when src has no object left.
                drained = True
                base = self.zp[src, ZP_BASE]
                for s in range(self.zp[src, ZP_BUMP]):
                    if self.slot[base + s, 1] != -1:
                        if self.zp[dst, ZP_INUSE] == objs:
                            drained = False
                            break
                        self._move_obj(src, dst, s)
                if drained:
                    break
                self._putback(dst)
                dst = -1
            if dst == -1:  # "Stop if we couldn't find slot"
                self._putback(src)
                break
            self._putback(dst)
            if self._putback(src) == ZS_EMPTY:
                self._free_zspage(src)
                freed += self.cls_pages[c]
        return freed

    def compact(self):
        """zs_compact(): classes from the highest index down, merged indices skipped."""
        freed = 0
        for i in range(self.n_classes - 1, -1, -1):
            if self.cls_rep[i] != i:
                continue
            if self.ratio_groups:
                freed += self._compact_class_ratio(i)
            else:
                freed += self._compact_class_legacy(i)
        self.pages_compacted += freed
        return freed

    # ------------------------------------------------------------------ introspection

    def class_stats(self):
        """Per class index, like debugfs ``classes``: rows of
        (obj_allocated, obj_used, pages_used, freeable); zero rows for merged indices."""
        out = np.zeros((self.n_classes, 4), dtype=np.int64)
        for i in range(self.n_classes):
            if self.cls_rep[i] != i:
                continue
            out[i, 0] = self.obj_allocated[i]
            out[i, 1] = self.obj_used[i]
            out[i, 2] = self.obj_allocated[i] // self.cls_objs[i] * self.cls_pages[i]
            out[i, 3] = self.can_compact(i)
        return out

    def list_zspages(self, c, fg):
        """zspage ids on fullness list (class c, group fg), head first."""
        out = np.empty(self.grp_count[c * self.ngroups + fg], dtype=np.int64)
        z = self._first(c, fg)
        k = 0
        while z != -1:
            out[k] = z
            k += 1
            z = self.zp[z, ZP_NEXT]
        return out

    def list_inuse(self, c, fg):
        """inuse of each zspage on fullness list (class c, group fg), head first."""
        ids = self.list_zspages(c, fg)
        out = np.empty(ids.shape[0], dtype=np.int64)
        for k in range(ids.shape[0]):
            out[k] = self.zp[ids[k], ZP_INUSE]
        return out

    def zspage_of(self, o):
        """(zspage id, slot index) of a live object, (-1, -1) otherwise."""
        if not self.is_live(o):
            return (np.int64(-1), np.int64(-1))
        return (self.obj[o, 0], self.obj[o, 1])

    def zspage_inuse(self, z):
        return self.zp[z, ZP_INUSE]

    def check(self):
        """Cross-check internal invariants; returns an error code (0 = consistent)."""
        total_pages = 0
        for c in range(self.n_classes):
            if self.cls_rep[c] != c:
                continue
            used = 0
            nzp = 0
            for fg in range(self.ngroups):
                z = self._first(c, fg)
                cnt = 0
                prev = -1
                while z != -1:
                    if self.zp[z, ZP_PREV] != prev or self.zp[z, ZP_FG] != fg:
                        return 1
                    if self.fullness_of(c, self.zp[z, ZP_INUSE]) != fg:
                        return 2
                    # inuse equals the allocated slots below the bump index
                    base = self.zp[z, ZP_BASE]
                    n_alloc = 0
                    for s in range(self.zp[z, ZP_BUMP]):
                        if self.slot[base + s, 1] != -1:
                            n_alloc += 1
                    if n_alloc != self.zp[z, ZP_INUSE]:
                        return 7
                    used += self.zp[z, ZP_INUSE]
                    cnt += 1
                    prev = z
                    z = self.zp[z, ZP_NEXT]
                if cnt != self.grp_count[c * self.ngroups + fg]:
                    return 3
                nzp += cnt
            if used != self.obj_used[c]:
                return 4
            if nzp * self.cls_objs[c] != self.obj_allocated[c]:
                return 5
            total_pages += nzp * self.cls_pages[c]
        if total_pages != self.pages_allocated:
            return 6
        return 0


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


# Free-function interface for numba loops (thin wrappers; inlined by numba).


@njit
def malloc(pool: ZsPool, size: int) -> int:
    """``zs_malloc``: object id or -1."""
    return pool.malloc(size)


@njit
def free(pool: ZsPool, obj: int) -> bool:
    """``zs_free``: False when ``obj`` is not live."""
    return pool.free(obj)


@njit
def compact(pool: ZsPool) -> int:
    """``zs_compact``: pages freed."""
    return pool.compact()


@njit
def total_pages(pool: ZsPool) -> int:
    """``zs_get_total_pages``."""
    return pool.total_pages()


@njit
def class_index(pool: ZsPool, size: int) -> int:
    """Class (merged representative) used by ``zs_malloc(size)``."""
    return pool.class_index(size)
