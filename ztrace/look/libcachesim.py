"""A trace as libCacheSim oracleGeneral records, so its cache policies run on ztrace captures.

oracleGeneral (libCacheSim ``traceReader/generalReader/oracleGeneral.h``): packed
little-endian records of ``uint32 clock_time`` (seconds), ``uint64 obj_id``, ``uint32
obj_size``, ``int64 next_access_vtime`` (index of the next request to the same object, -1
for none). Two streams:

- ``swap``: zswap stores and loads, object = swap entry, size = its compressed size (a load
  carries its store's size); invalidations and writebacks are not requests and are left out.
- ``alloc``: zs_malloc and zs_free, object = handle, size = the malloc's size (a free carries
  it); a free is the handle's last request.

Seconds are counted from the trace's first event (oracleGeneral's clock is 32-bit seconds).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

from ztrace.errors import ConfigError
from ztrace.format import open_trace
from ztrace.format.safeio import atomic_file

Stream = Literal["swap", "alloc"]
RECORD = np.dtype([("ts", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
_EVENTS = {"swap": ("zswap_store", "zswap_load"), "alloc": ("zs_malloc", "zs_free")}


def next_access(ids: np.ndarray) -> np.ndarray:
    """For each request, the index of the next request to the same object, else -1.

    >>> next_access(np.array([7, 8, 7, 7, 9])).tolist()
    [2, -1, 3, -1, -1]
    """
    order = np.argsort(ids, kind="stable")
    nxt = np.full(len(ids), -1, dtype=np.int64)
    same = ids[order[1:]] == ids[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def records(trace: str | os.PathLike[str], stream: Stream) -> np.ndarray:
    """The trace's ``stream`` as oracleGeneral records (in memory: 24 bytes a request)."""
    handle = open_trace(trace)
    want = _EVENTS[stream]
    if stream == "swap":
        if not handle.has_column("swap_entry"):
            raise ConfigError(f"{trace}: no swap_entry column: no swap stream (try --stream alloc)")
        cols = ["ts_ns", "event", "swap_entry", "compressed_bytes"]
    else:
        cols = ["ts_ns", "event", "handle", "size_bytes"]
    t = handle.read(columns=cols).table
    ev = np.asarray(t.column("event").to_pylist(), dtype=object)
    keep = np.isin(ev, want)
    if not keep.any():
        raise ConfigError(f"{trace}: no {' or '.join(want)} events: empty {stream} stream")
    ts = t.column("ts_ns").to_numpy()[keep]
    ids = t.column(cols[2]).fill_null(0).to_numpy()[keep].astype(np.uint64)
    size = t.column(cols[3]).fill_null(0).to_numpy()[keep].astype(np.int64)
    # loads/frees carry no size in the trace: give them the size of the object's last store/malloc
    known: dict[int, int] = {}
    for i, (o, s) in enumerate(zip(ids.tolist(), size.tolist(), strict=True)):
        if s > 0:
            known[o] = s
        else:
            size[i] = known.get(o, 0)
    rec = np.zeros(len(ids), dtype=RECORD)
    rec["ts"] = ((ts - ts[0]) // 1_000_000_000).astype(np.uint32)
    rec["id"] = ids
    rec["size"] = size.astype(np.uint32)
    rec["next"] = next_access(ids)
    return rec


def export_libcachesim(
    trace: str | os.PathLike[str], out: str | os.PathLike[str], stream: Stream = "swap"
) -> int:
    """Write ``out`` (oracleGeneral) from ``trace``; returns the number of requests."""
    rec = records(trace, stream)
    with atomic_file(out, inputs=[trace], mode="wb", encoding=None) as f:  # complete or none
        f.write(rec.tobytes())
    return len(rec)
