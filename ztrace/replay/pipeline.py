"""Per batch: run every allocator group once, then feed its ops to each lock design.

The engine hands each decoded trace batch to :class:`DesignPipeline`. With ``threads=1``
the work runs in the calling thread, in the order it always did. With more threads:

* every allocator group (:class:`ztrace.replay.ingest.AllocGroup`) and every lock design
  (:class:`ztrace.replay.locks._state.SimState`) gets its own single-worker executor, so
  each one still sees its batches one after another, in trace order: the results are the
  same bytes as the serial run (each state is touched by one thread at a time and reads
  only its own inputs);
* a design's batch waits for its group's ops of that batch, and nothing else: the designs
  of batch ``k`` run while the groups ingest later batches (up to :data:`IN_FLIGHT`
  batches in flight, so memory grows by a few batches, not by the trace);
* the numba entry points (``_ingest``, ``sim_batch``) are compiled with ``nogil=True``, so
  the threads really run at once; a semaphore caps how many run at a time at ``threads``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ztrace.replay.compaction import OP_ARRAYS, split_compactions
from ztrace.replay.ingest import AllocGroup
from ztrace.replay.locks._state import SimState

#: batches whose work may still run while the engine decodes the next one. More than one lets
#: an allocator group run ahead of a slower group's designs instead of waiting at every batch
#: for all of them. Five designs on 2 threads, wall parallel ÷ serial, 18 interleaved pairs
#: each (benchmarks/README.md, session 13): 1 → median 0.640, 4 → 0.576; 8 was no better.
#: Each extra batch keeps ~500 bytes per row alive (engine.BATCH_ROWS).
IN_FLIGHT = 4


def group_ops(
    g: AllocGroup, b: dict[str, np.ndarray], arr: np.ndarray, cm: np.ndarray
) -> dict[str, np.ndarray]:
    """One batch through one allocator group: the :data:`OP_ARRAYS` its designs replay,
    each zs_compact split into its per-source-zspage phases."""
    o = g.ingest(b, cm)
    cols = {
        "arr": arr,
        "cpu": b["cpu"],
        **{c: o[c] for c in OP_ARRAYS[2:-3]},
        "bin": b["bin"],
        # what the traced call spent not working: the engine's (waits, switched out) and
        # the stall that ingest cut from it (ztrace.replay.stalls)
        "credit": b["credit"] + o["cut"],
        "zsp": o["zsp"],
    }
    return split_compactions(cols, o["compact"])


def feed(s: SimState, ops: dict[str, np.ndarray]) -> None:
    """One batch of ops into one design's lock simulation."""
    o = ops
    s.feed(
        o["arr"],
        o["cpu"],
        o["kind"],
        o["cls"],
        o["pool"],
        o["cost"],
        o["cost2"],
        o["cost3"],
        o["bin"],
        o["credit"],
        zsp=o["zsp"],
    )


class DesignPipeline:
    """Runs each batch's groups and designs, in the calling thread or on ``threads``."""

    def __init__(
        self,
        groups: dict[Any, AllocGroup],
        sims: list[SimState],
        cm: np.ndarray,
        threads: int,
    ) -> None:
        self.groups = groups
        self.sims = sims
        self.cm = cm
        self.threads = threads
        #: CPU seconds spent in each worker thread's tasks (by thread name), for benchmarks
        self.thread_cpu_s: dict[str, float] = {}
        self._pending: deque[list[Future[Any]]] = deque()
        self._gx: dict[Any, ThreadPoolExecutor] = {}
        self._sx: list[ThreadPoolExecutor] = []
        if threads > 1:
            self._slots = threading.BoundedSemaphore(threads)
            self._gx = {k: ThreadPoolExecutor(1, f"ztrace-alloc-{i}") for i, k in enumerate(groups)}
            self._sx = [ThreadPoolExecutor(1, f"ztrace-lock-{i}") for i in range(len(sims))]

    def submit(self, b: dict[str, np.ndarray], arr: np.ndarray) -> None:
        """Replay one batch (``b``: the ingest columns, ``arr``: arrival times)."""
        if self.threads <= 1:
            ops = {k: group_ops(g, b, arr, self.cm) for k, g in self.groups.items()}
            for s in self.sims:
                feed(s, ops[s.design.allocator_key])
            return
        gf = {
            k: self._gx[k].submit(self._slot, group_ops, g, b, arr, self.cm)
            for k, g in self.groups.items()
        }
        sf = [
            x.submit(self._feed_when_ready, s, gf[s.design.allocator_key])
            for x, s in zip(self._sx, self.sims, strict=True)
        ]
        self._pending.append([*gf.values(), *sf])
        while len(self._pending) > IN_FLIGHT:
            _wait(self._pending.popleft())

    def _slot(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._slots:
            t = time.thread_time()
            try:
                return fn(*args)
            finally:
                name = threading.current_thread().name
                dt = time.thread_time() - t
                self.thread_cpu_s[name] = self.thread_cpu_s.get(name, 0.0) + dt

    def _feed_when_ready(self, s: SimState, ops: Future[dict[str, np.ndarray]]) -> None:
        o = ops.result()  # outside the semaphore: a waiting design holds no slot
        self._slot(feed, s, o)

    def close(self) -> None:
        """Wait for every batch; re-raise the first error. Idempotent."""
        try:
            while self._pending:
                _wait(self._pending.popleft())
        finally:
            for x in [*self._gx.values(), *self._sx]:
                x.shutdown(wait=True, cancel_futures=True)
            self._gx, self._sx = {}, []


def _wait(futures: Iterable[Future[Any]]) -> None:
    for f in futures:
        f.result()
