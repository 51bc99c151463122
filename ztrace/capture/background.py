"""Run the capture's Arrow encoding and Parquet writing beside the ring-draining thread.

The ring must be drained within the time it takes to fill (64 MiB: under a second at 1 M
events/s), while one Parquet write of a flush's rows takes a third of the consumer's CPU
(benchmarks/README.md "capture"). In one thread every write delays the next drain by its full
length. Here the draining thread hands each flush's rows to a worker thread and goes back to
the ring; pyarrow releases the GIL while it encodes, compresses and writes
(``ParquetWriter.write_table``), and numpy does for its array work, so on a host with a free
core the two overlap.

The queue is bounded: if the worker falls behind, ``submit`` blocks, the ring fills and the
kernel counts what it drops (``ringbuf_full``), as when one thread was too slow. A failure in
the worker is raised again in the caller, at the next ``submit`` or at ``close``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_STOP = object()


class BackgroundWorker(Generic[T]):
    """One thread calling ``work(item)`` for every submitted item, in submission order."""

    def __init__(self, work: Callable[[T], None], *, depth: int = 4, name: str = "worker") -> None:
        self._work = work
        self._q: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        #: CPU seconds the worker thread used (set when it ends)
        self.cpu_s = 0.0

    def _loop(self) -> None:
        t0 = time.thread_time()
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    return
                if self._error is None:  # after a failure, drain without working
                    try:
                        self._work(item)  # type: ignore[arg-type]
                    except BaseException as exc:  # re-raised in the caller's thread
                        self._error = exc
        finally:
            self.cpu_s = time.thread_time() - t0

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, item: T) -> None:
        """Queue ``item`` (blocks while ``depth`` items wait); raises a worker failure."""
        self._raise()
        self._q.put(item)

    def close(self) -> None:
        """Finish every queued item, stop the thread, raise a failure it had."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join()
        self._raise()
