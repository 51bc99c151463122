"""The handle table (ztrace.replay.handles): 16-byte rows, filled to 3/4, against a dict."""

import numpy as np

from ztrace.replay.handles import (
    HM_CLS_MASK,
    HM_KEY,
    HM_SHIFT,
    HM_VAL,
    HandleMap,
    hm_delete,
    hm_find,
    hm_full,
)


def test_table_matches_a_dict_through_growth_and_deletes():
    rng = np.random.default_rng(7)
    hm = HandleMap(1 << 4)
    ref: dict[int, tuple[int, int]] = {}
    keys = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64)
    for step in range(20_000):
        k = int(keys[rng.integers(0, len(keys))])
        s = hm_find(hm.tab, k)
        if s >= 0:
            assert k in ref
            v = int(hm.tab[s, HM_VAL])
            assert (v >> HM_SHIFT, v & HM_CLS_MASK) == ref.pop(k)
            hm_delete(hm.tab, s)
            hm.n[0] -= 1
        else:
            assert k not in ref
            if hm_full(int(hm.n[0]), hm.tab.shape[0]):
                hm.grow()
                s = hm_find(hm.tab, k)
            obj, cls = step, step % 255
            s = -1 - s
            hm.tab[s, HM_KEY] = k
            hm.tab[s, HM_VAL] = obj << HM_SHIFT | cls
            hm.n[0] += 1
            ref[k] = (obj, cls)
        # at most 3/4 full, and every live key is found
        assert 4 * hm.n[0] <= 3 * hm.tab.shape[0]
    assert hm.n[0] == len(ref) == int((hm.tab[:, HM_VAL] >= 0).sum())
    for k, (obj, cls) in ref.items():
        v = int(hm.tab[hm_find(hm.tab, k), HM_VAL])
        assert (v >> HM_SHIFT, v & HM_CLS_MASK) == (obj, cls)
    assert hm.tab.dtype == np.int64 and hm.tab.shape[1] == 2  # 16 bytes a row
