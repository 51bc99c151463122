"""A trace as libCacheSim oracleGeneral records, so its cache policies run on ztrace captures.

oracleGeneral (libCacheSim ``traceReader/generalReader/oracleGeneral.h``): packed
little-endian records of ``uint32 clock_time`` (seconds), ``uint64 obj_id``, ``uint32
obj_size``, ``int64 next_access_vtime`` (index of the next request to the same object, -1
for none). Two streams:

- ``swap``: zswap stores and loads, object = swap entry, size = its compressed size (a load
  carries its store's size); invalidations and writebacks are not requests and are left out.
  An unknown length (null, or no ``compressed_bytes`` column at all: the column is optional)
  is resolved as ``replay --lru`` resolves it (docs/lru-inversion.md, "Lengths"): the
  object's most recent earlier length, else its next later one, else the median of the known
  store lengths, else half a page.
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
from ztrace.format.safeio import output_file

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


def carry_sizes(ids: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Each request without a size (0) takes its object's most recent earlier size, else
    stays 0 (loads and frees carry no size in the trace)."""
    out = size.copy()
    known: dict[int, int] = {}
    for i, (o, s) in enumerate(zip(ids.tolist(), size.tolist(), strict=True)):
        if s > 0:
            known[o] = s
        else:
            out[i] = known.get(o, 0)
    return out


def resolve_swap_sizes(
    ids: np.ndarray, size: np.ndarray, is_store: np.ndarray, page_size: int
) -> np.ndarray:
    """Swap-stream sizes with unknown (0) lengths filled by ``replay --lru``'s rule
    (Workload.resolved_clen): the object's most recent earlier length, else its next later
    one, else the median of the known store lengths, else half a page.

    >>> resolve_swap_sizes(np.array([1, 1, 2, 3]), np.array([0, 100, 0, 300]),
    ...                    np.array([True, False, True, True]), 4096).tolist()
    [100, 100, 300, 300]
    """
    out = carry_sizes(ids, size)
    later = carry_sizes(ids[::-1], size[::-1])[::-1]
    out = np.where(out > 0, out, later)
    known = size[is_store & (size > 0) & (size <= page_size)]
    fallback = int(np.median(known)) if known.size else page_size // 2
    return np.where(out > 0, out, fallback)


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
    # validate_all: every column validate-trace checks is read and checked (cpu, nulls in
    # required columns, swap rows without a swap_entry, ...), as replay does, not only these
    t = handle.read(columns=cols, validate_all=True).table
    ev = np.asarray(t.column("event").to_pylist(), dtype=object)
    keep = np.isin(ev, want)
    if not keep.any():
        raise ConfigError(f"{trace}: no {' or '.join(want)} events: empty {stream} stream")
    ts = t.column("ts_ns").to_numpy()[keep]
    ids = t.column(cols[2]).fill_null(0).to_numpy()[keep].astype(np.uint64)
    if cols[3] in t.column_names:
        size = t.column(cols[3]).fill_null(0).to_numpy()[keep].astype(np.int64)
    else:  # an optional column the trace lacks: null on every row (docs/trace-format.md)
        size = np.zeros(len(ids), np.int64)
    if stream == "swap":
        size = resolve_swap_sizes(ids, size, ev[keep] == "zswap_store", handle.meta.page_size)
    else:  # a free takes its handle's malloc size
        size = carry_sizes(ids, size)
    rec = np.zeros(len(ids), dtype=RECORD)
    rec["ts"] = ((ts - ts[0]) // 1_000_000_000).astype(np.uint32)
    rec["id"] = ids
    rec["size"] = size.astype(np.uint32)
    rec["next"] = next_access(ids)
    return rec


def export_libcachesim(
    trace: str | os.PathLike[str],
    out: str | os.PathLike[str],
    stream: Stream = "swap",
    *,
    force: bool = False,
) -> int:
    """Write ``out`` (oracleGeneral) from ``trace``; returns the number of requests. An
    existing ``out`` file is replaced only with ``force`` (safeio.output_file)."""
    rec = records(trace, stream)
    # complete or none; a device or FIFO is written into (safeio.output_file)
    with output_file(out, force=force, inputs=[trace], binary=True) as f:
        f.write(rec.tobytes())
    return len(rec)
