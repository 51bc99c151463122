"""The allocator front: how a design turns zs_malloc/zs_free into pool-model calls.

Most designs call the pool model once per operation (:class:`PlainFront`, below). A design
that keeps objects outside the pool -- magazine's per-CPU caches -- brings its own front in
its own file: a ``NamedTuple`` of numpy arrays holding its state, plus the two functions
below for that type, decorated with :func:`malloc_impl` / :func:`free_impl`. The engine's
ingest loop (:mod:`ztrace.replay.ingest`) calls :func:`front_malloc` / :func:`front_free`;
numba picks the implementation from the front's type at compile time (no call through a
pointer, and the compiled ingest stays in numba's disk cache, one specialisation per front
type; a function passed as an argument would defeat that cache).

Interface (all integers are int64)::

    front_malloc(front, model, cpu, cls, size, dur, cm) -> (obj, op_kind, cost)
        obj < 0: the pool could not allocate (counted ``bad_alloc``); ``cost`` is the hold
        of the locked part; the caller adds alloc_zspage for pages the model grew.
    front_free(front, model, cpu, cls, obj, dur, cm) -> (op_kind, cost)
        ``dur``: the zs_free's measured duration (0: not measured). A measured duration
        already contains everything the call did (free_zspage included): never add to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numba.core import types
from numba.extending import overload

from ztrace.model import zsmalloc as zsm
from ztrace.replay.costs import C_FREE, C_FREE_ZSPAGE, C_MALLOC
from ztrace.replay.locks import OP_FREE, OP_MALLOC, OP_MALLOC_GROW

Impl = Callable[..., Any]


def front_malloc(front, model, cpu, cls, size, dur, cm):  # type: ignore[no-untyped-def]
    """Allocate one object through ``front`` (numba only; each front type overloads it)."""
    raise NotImplementedError("front_malloc runs inside numba-compiled code only")


def front_free(front, model, cpu, cls, obj, dur, cm):  # type: ignore[no-untyped-def]
    """Free one object through ``front`` (numba only; each front type overloads it)."""
    raise NotImplementedError("front_free runs inside numba-compiled code only")


def _is_front(numba_type: types.Type, front_type: type) -> bool:
    """In an overload: is ``numba_type`` the numba type of the NamedTuple class ``front_type``?"""
    cls = getattr(numba_type, "instance_class", None)  # set on NamedTuple types only
    return isinstance(numba_type, types.BaseNamedTuple) and cls is front_type


#: source files of every front implementation: the compiled ingest inlines them, so they go
#: into numba's cache stamp (:mod:`ztrace.replay._cache`); a design without a front does not
FRONT_FILES: set[str] = set()


def _front_impl(generic: Callable[..., Any], front_type: type) -> Callable[[Impl], Impl]:
    """Decorator: the function is ``generic`` (:func:`front_malloc` or :func:`front_free`) for
    the NamedTuple ``front_type``. ``strict=False``: numba then does not require the typer's
    parameter names to be the implementation's, so one typer (``front, *args``) serves both."""

    def deco(impl: Impl) -> Impl:
        @overload(generic, strict=False)
        def typer(front: types.Type, *args: types.Type) -> Impl | None:
            return impl if _is_front(front, front_type) else None

        FRONT_FILES.add(impl.__code__.co_filename)
        return impl

    return deco


def malloc_impl(front_type: type) -> Callable[[Impl], Impl]:
    """``@malloc_impl(FrontType)``: the function is :func:`front_malloc` for that NamedTuple."""
    return _front_impl(front_malloc, front_type)


def free_impl(front_type: type) -> Callable[[Impl], Impl]:
    """``@free_impl(FrontType)``: the function is :func:`front_free` for that NamedTuple."""
    return _front_impl(front_free, front_type)


class PlainFront(NamedTuple):
    """No front: every zs_malloc/zs_free goes straight to the pool (the kernel's way)."""

    unused: np.ndarray


def plain_front(n_cpus: int, n_classes: int) -> PlainFront:
    """Front state factory of the designs without a front."""
    return PlainFront(np.zeros(1, dtype=np.int64))


@malloc_impl(PlainFront)
def _plain_malloc(front, model, cpu, cls, size, dur, cm):  # type: ignore[no-untyped-def]
    p0 = model.pages_allocated
    obj = zsm.malloc(model, size)
    if obj < 0:
        return obj, OP_MALLOC, 0
    kind = OP_MALLOC_GROW if model.pages_allocated > p0 else OP_MALLOC
    return obj, kind, dur if dur > 0 else cm[C_MALLOC]


@free_impl(PlainFront)
def _plain_free(front, model, cpu, cls, obj, dur, cm):  # type: ignore[no-untyped-def]
    p0 = model.pages_allocated
    zsm.free(model, obj)
    if dur > 0:  # measured: free_zspage() of an emptied zspage is inside it
        return OP_FREE, dur
    return OP_FREE, cm[C_FREE] + (p0 - model.pages_allocated) * cm[C_FREE_ZSPAGE]
