"""Kernel handle -> (model object id, class index): an open-addressing table in numpy.

Linear probing without tombstones (backward-shift deletion), one int64 row of four columns
per slot (32 bytes: one probe touches one cache line), kept at most half full. Memory is
proportional to the live objects; numba code calls the ``hm_*`` functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ztrace.replay.hashing import splitmix64

#: columns of the handle table rows (``HM_CLS = -1`` marks a free row)
HM_KEY, HM_OBJ, HM_CLS = 0, 1, 2
HM_COLS = 4


@njit(cache=True)
def hm_find(tab, key):
    """Row of ``key`` (int64 bits of the handle), or ``-1 - free row`` when absent."""
    mask = tab.shape[0] - 1
    i = np.int64(splitmix64(np.uint64(key)) & np.uint64(mask))
    while tab[i, HM_CLS] >= 0:
        if tab[i, HM_KEY] == key:
            return i
        i = (i + 1) & mask
    return -1 - i


@njit(cache=True)
def hm_delete(tab, i):
    """Backward-shift deletion (linear probing without tombstones)."""
    mask = tab.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if tab[j, HM_CLS] < 0:
            break
        k = np.int64(splitmix64(np.uint64(tab[j, HM_KEY])) & np.uint64(mask))
        # keep j where it is if its home k lies cyclically in (i, j]
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        tab[i, HM_KEY] = tab[j, HM_KEY]
        tab[i, HM_OBJ] = tab[j, HM_OBJ]
        tab[i, HM_CLS] = tab[j, HM_CLS]
        i = j
    tab[i, HM_CLS] = -1


@njit(cache=True)
def _hm_rehash(tab, new):
    for i in range(tab.shape[0]):
        if tab[i, HM_CLS] >= 0:
            s = -1 - hm_find(new, tab[i, HM_KEY])
            new[s, HM_KEY] = tab[i, HM_KEY]
            new[s, HM_OBJ] = tab[i, HM_OBJ]
            new[s, HM_CLS] = tab[i, HM_CLS]


class HandleMap:
    """The table and its live count (``n[0]``); doubles when half full."""

    def __init__(self, cap: int = 1 << 12) -> None:
        self.tab = np.full((cap, HM_COLS), -1, dtype=np.int64)
        self.n = np.zeros(1, dtype=np.int64)

    def grow(self) -> None:
        new = np.full((2 * self.tab.shape[0], HM_COLS), -1, dtype=np.int64)
        _hm_rehash(self.tab, new)
        self.tab = new
