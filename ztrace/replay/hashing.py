"""splitmix64, the one hash of the replay (handle table, ``pools:N`` pool choice, ``--cpus``).

One definition for numba and numpy: numba code calls :func:`splitmix64` on a scalar
``np.uint64``; Python code calls :func:`splitmix64_array` (the same function body, run by
numpy on a ``uint64`` array).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def splitmix64(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser: a well-spread 64-bit hash."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def splitmix64_array(x: np.ndarray) -> np.ndarray:
    """:func:`splitmix64` of every element of a ``uint64`` array."""
    # the same Python body, run by numpy on the whole array (the scalar ops broadcast)
    body = cast(Callable[[np.ndarray], np.ndarray], splitmix64.py_func)
    return body(x)
