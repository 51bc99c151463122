"""What the project's numba ``structref`` states share: their base type and field types.

A structref (``numba.experimental.structref``) is one mutable struct of typed fields that,
unlike a ``jitclass``, numba's disk cache can keep. Two are built on this base: the zsmalloc
pool (``model.zsmalloc.ZsPoolType``) and the LRU replay state (``replay.lru._core``).
"""

from __future__ import annotations

from typing import Any

from numba import types

#: contiguous 1-D arrays, the field types of both states
A8 = types.int8[::1]
A32 = types.int32[::1]
A64 = types.int64[::1]


class UnliteralStructRef(types.StructRef):
    """Base of the structref types: each field keeps its unliteral type, so a struct built
    from constants (``0``, ``True``) has the one type its functions were compiled and cached
    for, not one per literal value."""

    def preprocess_fields(self, fields: Any) -> Any:
        return tuple((n, types.unliteral(t)) for n, t in fields)
