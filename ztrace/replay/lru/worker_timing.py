"""The zswap shrink worker's timing, measured on a guest, for replaying the worker in time.

The pool-limit shrink worker is a work item: ``zswap_store``'s ``reject:`` path does
``queue_work(shrink_wq, &zswap_shrink_work)`` while ``zswap_pool_reached_full`` (6.10+,
mm/zswap.c: zswap_store), the workqueue runs ``shrink_worker`` some time later, and the worker
writes entries back one ``shrink_memcg()`` at a time until the pool is at the accept threshold
(mm/zswap.c: shrink_worker). Meanwhile ``zswap_check_limits`` keeps rejecting. How long the
work waits and how long each writeback takes are scheduling and I/O facts no zswap trace holds,
so the ``zswap-lru`` VM scenario records them with ftrace (``shrink_wq.trace``: the
``workqueue_queue_work`` / ``workqueue_execute_start`` / ``workqueue_execute_end`` tracepoints
filtered to ``shrink_worker``, clock ``mono`` = the capture's ``bpf_ktime_get_ns``).

The same file holds the memory-pressure shrinker's calls (kprobe events ``zt_scan`` on
``zswap_shrinker_scan``, with ``sc->nr_to_scan``, and ``zt_scan_ret``): :func:`parse_scans`.

Two empirical distributions come out, and the replay draws from them (``_core._sample``):

* ``delay_ns``: ``queue_work`` → ``execute_start`` for a work queued while the worker was idle.
  (Queued while running, the work runs again right after the running one returns:
  process_one_work clears PENDING before calling the function; not part of this sample.)
* ``step_ns``: the worker's time per writeback. An execution from ``s`` to ``e`` whose
  ``zswap_writeback`` rows (capture, ``kworker``) complete at ``c1 < … < ck`` gives the k + 1
  intervals ``c1 - s, c2 - c1, …, e - ck``; the replay draws one after each writeback (the
  last is the way out), and, for a workload without ``walk_ns``, one when a run starts.
  Executions without a writeback add nothing to it.
* ``walk_ns``: start to end of an execution that wrote nothing back. In the 6.12 guests
  almost every execution is one: the walk meets referenced entries, rotates them and gives
  up after MAX_RECLAIM_RETRIES (stop 21's CI run: 6 562 of 6 583 executions, median 43 µs,
  while the 21 others wrote back 9 016 entries at a median 98 µs apart). The replay draws a
  run's first outcome one walk after the run starts, so a run that only rotates holds the
  worker as briefly as the kernel's does; drawn from ``step_ns`` instead, it held it for a
  writeback step (mean 337 µs), the replayed worker ran 4 271 times against the kernel's
  6 583, rotated fewer entries, and the measured shrinker scans met more referenced ones
  (stored −10.9 %).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ztrace.errors import TraceFormatError

#: `<task>-<pid> [cpu] flags  <sec>.<usec>: workqueue_<kind>: ...`
_LINE = re.compile(r"\s(\d+)\.(\d+):\s+workqueue_(queue_work|execute_start|execute_end):")
Q, S, E = 0, 1, 2
_KIND = {"queue_work": Q, "execute_start": S, "execute_end": E}


@dataclass(frozen=True)
class WorkerTiming:
    """Measured shrink-worker timing; ``summary`` describes it (JSON-ready)."""

    delay_ns: np.ndarray
    step_ns: np.ndarray
    #: executions that wrote nothing back, start to end (empty: the replay draws ``step_ns``)
    walk_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    summary: dict[str, Any] = field(default_factory=dict)


def parse_ftrace(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Times (ns) and kinds (``Q``, ``S``, ``E``) of the workqueue events in an ftrace text
    dump, in time order. Lines of other events and comments are skipped."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as exc:
        raise TraceFormatError(p, f"cannot read ({exc})") from None
    ts: list[int] = []
    kinds: list[int] = []
    for m in _LINE.finditer(text):
        ts.append(_ns(m.group(1), m.group(2)))
        kinds.append(_KIND[m.group(3)])
    t = np.asarray(ts, dtype=np.int64)
    k = np.asarray(kinds, dtype=np.int8)
    order = np.argsort(t, kind="stable")
    return t[order], k[order]


_SCAN = re.compile(r"\s(\d+)\.(\d+):\s+zt_scan:.*?nr_to_scan=(\d+)")
_SCAN_RET = re.compile(r"\s(\d+)\.(\d+):\s+zt_scan_ret:.*?ret=(\d+)")


def _ns(sec: str, frac: str) -> int:
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def parse_scans(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The shrinker's calls in an ftrace dump: entry times (ns), ``nr_to_scan`` each, and a
    summary (calls, entries it may walk, what the calls returned)."""
    text = Path(path).read_text(errors="replace")
    ts, n = [], []
    for m in _SCAN.finditer(text):
        ts.append(_ns(m.group(1), m.group(2)))
        n.append(int(m.group(3)))
    rets = [int(m.group(3)) for m in _SCAN_RET.finditer(text)]
    stop = (1 << 64) - 1  # SHRINK_STOP
    summary = {
        "calls": len(ts),
        "nr_to_scan_total": int(sum(n)),
        "returns": len(rets),
        "freed_total": int(sum(r for r in rets if r != stop)),
        "shrink_stop": sum(1 for r in rets if r == stop),
    }
    return np.asarray(ts, np.int64), np.asarray(n, np.int64), summary


_SCAN_CG = re.compile(r"\s(\d+)\.(\d+):\s+zt_scan:.*?nr_to_scan=\d+(?:.*?\scg=(\d+))?")


def parse_scan_memcgs(path: str | Path) -> np.ndarray:
    """Per shrinker call of :func:`parse_scans` (same order): ``sc->memcg`` as a cgroup id
    (the ``zswap-lru`` scenario's BTF argument ``cg``, 6.7+), 0 where the dump has none."""
    text = Path(path).read_text(errors="replace")
    return np.asarray([int(m.group(3) or 0) for m in _SCAN_CG.finditer(text)], np.uint64)


def executions(ts: np.ndarray, kinds: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(delays of works queued while idle, [(start, end)] of every execution).

    A queue event while an execution is open is a requeue (no delay sample); an execution
    whose start has no idle queue before it (the dump began mid-way) gives no delay either.
    """
    delays: list[int] = []
    runs: list[tuple[int, int]] = []
    queued_at = -1  # an idle queue waiting for its start
    requeued = False
    start = -1
    for t, k in zip(ts.tolist(), kinds.tolist(), strict=True):
        if k == Q:
            if start >= 0:
                requeued = True
            elif queued_at < 0:
                queued_at = t
        elif k == S:
            if queued_at >= 0 and not requeued:
                delays.append(t - queued_at)
            queued_at = -1
            requeued = False
            start = t
        elif start >= 0:  # E
            runs.append((start, t))
            start = -1
    return np.asarray(delays, dtype=np.int64), runs


def step_times(
    runs: list[tuple[int, int]], wb_ts: np.ndarray, wb_dur: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The worker's time per writeback and its walks that wrote nothing back (see the module
    doc), and how many of the worker's writebacks fell inside an execution (a check that the
    two clocks agree)."""
    done = np.sort(wb_ts + (wb_dur if wb_dur is not None else 0))
    out: list[int] = []
    walks: list[int] = []
    inside = 0
    for s, e in runs:
        lo, hi = np.searchsorted(done, [s, e], side="left")
        c = done[lo:hi]
        if len(c) == 0:
            walks.append(e - s)
            continue
        inside += len(c)
        out.append(int(c[0] - s))
        out.extend(np.diff(c).tolist())
        out.append(int(e - c[-1]))
    return np.asarray(out, dtype=np.int64), np.asarray(walks, dtype=np.int64), inside


def _q(a: np.ndarray) -> dict[str, float]:
    if len(a) == 0:
        return {"n": 0}
    p = np.percentile(a, [10, 50, 90, 99])
    return {
        "n": len(a),
        "p10_us": round(p[0] / 1e3, 1),
        "median_us": round(p[1] / 1e3, 1),
        "p90_us": round(p[2] / 1e3, 1),
        "p99_us": round(p[3] / 1e3, 1),
        "mean_us": round(float(a.mean()) / 1e3, 1),
    }


def measure(
    ftrace: str | Path, wb_ts: np.ndarray | None, wb_dur: np.ndarray | None
) -> WorkerTiming | None:
    """The timing from a guest's ``shrink_wq.trace`` and the capture's worker writebacks;
    None when either has nothing to measure (the worker never ran with a writeback)."""
    ts, kinds = parse_ftrace(ftrace)
    delays, runs = executions(ts, kinds)
    if wb_ts is None or len(wb_ts) == 0 or len(delays) == 0:
        return None
    steps, walks, inside = step_times(runs, wb_ts, wb_dur)
    if len(steps) == 0:
        return None
    summary = {
        "source": str(ftrace),
        "queued": int((kinds == Q).sum()),
        "executions": len(runs),
        "delay_idle_queue": _q(delays),
        "step_per_writeback": _q(steps),
        "walk_without_writeback": _q(walks),
        "worker_writebacks": len(wb_ts),
        "worker_writebacks_inside_executions": inside,
    }
    return WorkerTiming(delay_ns=delays, step_ns=steps, walk_ns=walks, summary=summary)
