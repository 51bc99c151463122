"""``prefetch(a, k)``: ask the CPU to bring element ``k`` of array ``a`` into cache (numba only).

The replay's ingest loop is latency-bound: each event's handle-table row, object row and
zspage row are random reads over tens of MB, one after another, and the out-of-order window
of one event never reaches the next. A prefetch issued a few events ahead lets those reads
overlap (issue 15). It is a hint (LLVM's ``llvm.prefetch``, an x86 ``prefetcht0``): it
changes no value, so results cannot depend on it, and a stale or useless address costs
only the instruction. ``k`` is the flat (C-order) element index; callers keep it in bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _prefetch(typingctx: Any, a: types.Type, k: types.Type) -> Any:
    """Prefetch element ``k`` (flat index) of the C-contiguous array ``a`` for reading."""
    if not isinstance(a, types.Array) or not isinstance(k, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aty, kty = signature.args
        arr = context.make_array(aty)(context, builder, args[0])
        k = context.cast(builder, args[1], kty, types.intp)
        ptr = builder.gep(arr.data, [k])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read (0), high temporal locality (3), data cache (1)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(a, k), codegen


#: the intrinsic itself (numba resolves the call), typed as jitted code calls it
prefetch = cast(Callable[[np.ndarray, Any], None], _prefetch)
