"""Kernel handle -> (model object id, class index): an open-addressing table in numpy.

Linear probing without tombstones (backward-shift deletion), kept at most 3/4 full. One
row is two int64 (16 bytes: four rows per cache line, so a probe sequence usually stays in
one line): the key (the handle's bits) and a value packing the object id and the class
index, ``obj << HM_SHIFT | cls``; a negative value marks a free row. 16 bytes instead of
the four-column 32 bytes halves the table, which is the largest live-object state of a long
replay. Filling to 3/4 rather than 1/2 halves it again: 2.49 M live handles (issue 15's
100 M-event replay) fit 2^22 rows, 67 MB and 100 MB while it doubles, against 2^23 rows of
32 bytes, 268 MB and 402 MB. With four rows to a cache line, a probe at 3/4 still reads
one or two lines. Memory is proportional to the live objects; numba code calls the ``hm_*``
functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ztrace.model.prefetch import prefetch
from ztrace.replay.hashing import splitmix64

#: columns of the handle table rows: the key, and the packed value (``-1``: a free row)
HM_KEY, HM_VAL = 0, 1
HM_COLS = 2
#: the class index is the value's low HM_SHIFT bits (zsmalloc has at most 256 classes:
#: 6.1 mm/zsmalloc.c ZS_SIZE_CLASSES; CLASS_BITS = 8), the object id the bits above
HM_SHIFT = 16
HM_CLS_MASK = (1 << HM_SHIFT) - 1


@njit(cache=True)
def hm_full(n, cap):
    """Whether one more key would take a table of ``cap`` rows holding ``n`` past 3/4 full
    (the caller grows it first: linear probing needs free rows to end a search)."""
    return 4 * (n + 1) > 3 * cap


@njit(cache=True)
def hm_find(tab, key):
    """Row of ``key`` (int64 bits of the handle), or ``-1 - free row`` when absent."""
    mask = tab.shape[0] - 1
    i = np.int64(splitmix64(np.uint64(key)) & np.uint64(mask))
    while tab[i, HM_VAL] >= 0:
        if tab[i, HM_KEY] == key:
            return i
        i = (i + 1) & mask
    return -1 - i


@njit(cache=True)
def hm_prefetch(tab, key):
    """Prefetch the row where :func:`hm_find` starts looking for ``key`` (a hint only)."""
    mask = tab.shape[0] - 1
    prefetch(tab, np.int64(splitmix64(np.uint64(key)) & np.uint64(mask)) * HM_COLS)


@njit(cache=True)
def hm_delete(tab, i):
    """Backward-shift deletion (linear probing without tombstones)."""
    mask = tab.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if tab[j, HM_VAL] < 0:
            break
        k = np.int64(splitmix64(np.uint64(tab[j, HM_KEY])) & np.uint64(mask))
        # keep j where it is if its home k lies cyclically in (i, j]
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        tab[i, HM_KEY] = tab[j, HM_KEY]
        tab[i, HM_VAL] = tab[j, HM_VAL]
        i = j
    tab[i, HM_VAL] = -1


@njit(cache=True)
def _hm_rehash(tab, new):
    for i in range(tab.shape[0]):
        if tab[i, HM_VAL] >= 0:
            s = -1 - hm_find(new, tab[i, HM_KEY])
            new[s, HM_KEY] = tab[i, HM_KEY]
            new[s, HM_VAL] = tab[i, HM_VAL]


class HandleMap:
    """The table and its live count (``n[0]``); doubles when 3/4 full (:func:`hm_full`)."""

    def __init__(self, cap: int = 1 << 12) -> None:
        self.tab = np.full((cap, HM_COLS), -1, dtype=np.int64)
        self.n = np.zeros(1, dtype=np.int64)

    def grow(self) -> None:
        new = np.full((2 * self.tab.shape[0], HM_COLS), -1, dtype=np.int64)
        _hm_rehash(self.tab, new)
        self.tab = new
