"""Check numpy's sorts in the guest against a reference: argsort/unique of int64 keys shaped like
the capture's lock keys ((stack_id << 32) | flags, session.py: _table), and uint64 timestamps.

Run by npsort.sh once with numpy's CPU dispatch as it is and once with the AVX2/AVX-512 targets
disabled; prints one JSON line per round so a crash still leaves the rounds before it.
"""

import importlib
import json
import os
import sys

import numpy as np

_umath = importlib.import_module("numpy._core._multiarray_umath")  # numpy's CPU dispatch tables


def main(rounds: int) -> None:
    rng = np.random.default_rng(1)
    on = sorted(k for k in _umath.__cpu_dispatch__ if _umath.__cpu_features__.get(k))
    print(
        json.dumps(
            {
                "numpy": np.__version__,
                "dispatch_on": on,
                "disabled": os.environ.get("NPY_DISABLE_CPU_FEATURES", ""),
            }
        ),
        flush=True,
    )
    bad = 0
    for r in range(rounds):
        n = int(rng.integers(1, 40_000))
        sid = rng.integers(-1, 4096, n).astype(np.int64)
        flags = rng.choice(np.array([1, 2, 0x101, 0x102, 0x4], np.int64), n)
        key = (sid << 32) | (flags & 0xFFFFFFFF)
        perm = key.argsort(kind="quicksort")
        ok_perm = bool(np.array_equal(np.sort(perm, kind="stable"), np.arange(n)))
        ok_order = bool(np.all(np.diff(key[perm]) >= 0)) if ok_perm else False
        uniq, inv = np.unique(key, return_inverse=True)
        ok_unique = bool(np.array_equal(uniq[inv.reshape(-1)], key))
        ts = rng.integers(0, 1 << 40, n).astype(np.uint64)
        ok_ts = bool(np.array_equal(np.sort(ts), np.sort(ts, kind="stable")))
        good = ok_perm and ok_order and ok_unique and ok_ts
        bad += not good
        if not good or r % 50 == 0:
            print(
                json.dumps(
                    {
                        "round": r,
                        "n": n,
                        "perm": ok_perm,
                        "order": ok_order,
                        "unique": ok_unique,
                        "ts_sort": ok_ts,
                    }
                ),
                flush=True,
            )
    print(json.dumps({"rounds": rounds, "bad": bad}), flush=True)


if __name__ == "__main__":  # a guest script: importing it (doctest collection) runs nothing
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
