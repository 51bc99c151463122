"""The handle table (ztrace.replay.handles): 16-byte rows, filled to 3/4, against a dict."""

import numpy as np

from ztrace.replay import handles as H


def test_table_matches_a_dict_through_growth_and_deletes():
    rng = np.random.default_rng(7)
    hm = H.HandleMap(1 << 4)
    ref: dict[int, tuple[int, int]] = {}
    keys = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64)
    for step in range(20_000):
        k = int(keys[rng.integers(0, len(keys))])
        s = H.hm_find(hm.tab, k)
        if s >= 0:
            assert k in ref
            v = int(hm.tab[s, H.HM_VAL])
            assert (v >> H.HM_SHIFT, v & H.HM_CLS_MASK) == ref.pop(k)
            H.hm_delete(hm.tab, s)
            hm.n[0] -= 1
        else:
            assert k not in ref
            if H.hm_full(int(hm.n[0]), hm.tab.shape[0]):
                hm.grow()
                s = H.hm_find(hm.tab, k)
            obj, cls = step, step % 255
            s = -1 - s
            hm.tab[s, H.HM_KEY] = k
            hm.tab[s, H.HM_VAL] = obj << H.HM_SHIFT | cls
            hm.n[0] += 1
            ref[k] = (obj, cls)
        # at most 3/4 full, and every live key is found
        assert 4 * hm.n[0] <= 3 * hm.tab.shape[0]
    assert hm.n[0] == len(ref) == int((hm.tab[:, H.HM_VAL] >= 0).sum())
    for k, (obj, cls) in ref.items():
        v = int(hm.tab[H.hm_find(hm.tab, k), H.HM_VAL])
        assert (v >> H.HM_SHIFT, v & H.HM_CLS_MASK) == (obj, cls)
    assert hm.tab.dtype == np.int64 and hm.tab.shape[1] == 2  # 16 bytes a row
