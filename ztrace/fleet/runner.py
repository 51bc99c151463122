"""Run a sweep's pending tasks: on Ray (a local Ray started on demand, or ``ray_address``)
or in this process, with the same per-task code, so both give byte-identical files.

Resume: a task whose ``tasks/<id>.parquet`` exists is finished and not run again (files
appear only complete: :func:`ztrace.fleet.task.write_atomic`). A failed task is reported
with its trace and error; the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from ztrace.errors import ConfigError
from ztrace.fleet.dataset import assemble, check_output_dir
from ztrace.fleet.discover import TraceRef
from ztrace.fleet.plan import Axes, Plan, Task, plan
from ztrace.fleet.task import run_and_store, task_path
from ztrace.format.safeio import check_output
from ztrace.progress import progress

#: Ray's object store: tasks return two short strings, rows go to files (Ray's minimum is
#: 75 MiB; the machine is shared, so stay there)
OBJECT_STORE_BYTES = 80 * 1024 * 1024


@dataclass
class SweepReport:
    """What a sweep did."""

    tasks: int
    already_done: int
    ran: int
    failed: list[tuple[Task, str]] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    dataset: Path | None = None
    backend: str = "serial"
    #: seconds: starting (or joining) Ray, on its own thread (the driver works meanwhile);
    #: the driver idle at the end, waiting for Ray's last tasks; running the pending tasks
    #: (first start to last result)
    startup_s: float = 0.0
    driver_idle_s: float = 0.0
    tasks_s: float = 0.0
    #: tasks the driver ran itself (``-j N``: it is one of the N processes)
    in_driver: int = 0
    #: Ray's CPUs (local: ``N - 1`` workers)
    ray_workers: int = 0


#: Ray's head-node helper processes that a one-node sweep never uses, by the private
#: ``ray._private.node.Node`` method that starts each: the autoscaler monitor (a fixed local
#: node never scales), the log monitor (streams workers' stdout to drivers; we pass
#: ``log_to_driver=False``) and the API server (with the dashboard off it runs only Ray's
#: usage-stats reporter). ``ray.init`` has no option for any of them (Ray 2.60; ray-project/ray
#: issue 46732 asks for one). Each is a Python process that imports Ray first (~0.6 CPU s).
#: Skipping them, measured here (benchmarks/README.md, "fleet", session 8): a local start to a
#: worker's first task 4.8 -> 2.9 CPU s (benchmarks/bench_ray_start.py, 5 rounds); a 24-task
#: ``-j 2`` sweep 2.2-3.9 CPU s and 2.9-5.4 s of wall less (median of 4 and 3 paired rounds at
#: load 2-4: on 2 cores that CPU is taken from the tasks). Ray's documented knobs
#: (``RAY_USAGE_STATS_ENABLED=0``, ``enable_metrics_collection``, ``log_to_driver``) saved
#: nothing measurable. ``ZTRACE_RAY_HELPERS=1`` starts the helpers as usual.
_UNUSED_HELPERS = ("start_monitor", "start_log_monitor", "start_api_server")


@contextlib.contextmanager
def _without_unused_helpers() -> Iterator[None]:
    """While a local Ray starts, make :data:`_UNUSED_HELPERS` no-ops (restored after). A Ray
    without one of these methods (private API: renamed some day) starts as usual."""
    try:
        from ray._private.node import Node
    except ImportError:
        yield
        return
    saved = {n: Node.__dict__.get(n) for n in _UNUSED_HELPERS}
    if os.environ.get("ZTRACE_RAY_HELPERS") == "1" or None in saved.values():
        yield
        return

    def skip(self: Any, *args: Any, **kwargs: Any) -> None:
        return None  # the API server's URL stays None, as with no dashboard

    try:
        for n in _UNUSED_HELPERS:
            setattr(Node, n, skip)
        yield
    finally:
        for n, f in saved.items():
            setattr(Node, n, f)


def start_local_ray(ray: Any, workers: int) -> None:
    """``ray.init`` a local Ray with ``workers`` CPUs, as a sweep needs it: no dashboard, none
    of :data:`_UNUSED_HELPERS`, workers at the driver's priority."""
    with _without_unused_helpers():
        ray.init(
            num_cpus=workers,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            # no log monitor to stream workers' output (a task's failure comes back as its
            # result: failed/<id>.json); workers' logs stay in Ray's session directory
            log_to_driver=False,
            logging_level="WARNING",
            # Ray starts workers at nice 15 (its worker_niceness default), so on a busy box
            # they lose the CPU to everything, this driver included: at load 7 here one Ray
            # worker ran 3 of 24 tasks while the driver ran 21. The driver and its workers
            # share the work, so they share the priority.
            _system_config={"worker_niceness": 0},
        )


def _ray() -> Any | None:
    try:
        import ray
    except ImportError:
        return None
    return ray


def _serial(pending: list[Task], out: str) -> Iterator[tuple[str, str | None]]:
    for t in pending:
        yield run_and_store(t, out)


#: estimated CPU seconds per event of a task, for the longest-first order only (measured on
#: this machine's bench fleet, benchmarks/README.md "fleet": a lock task ~1.1 µs per
#: allocator event with one thread, an LRU task ~7 µs per swap event: it replays the swap
#: stream through the kernel-exact pool model and the harm metrics' next-fault heap)
_LOCK_S_PER_EVENT = 1.1e-6
_LRU_S_PER_EVENT = 7e-6


def estimated_cost(task: Task) -> float:
    """A task's expected run time in seconds (an ordering key, not a promise)."""
    if task.kind == "locks":
        return task.trace.alloc_events * _LOCK_S_PER_EVENT
    return task.trace.swap_events * _LRU_S_PER_EVENT


def longest_first(tasks: list[Task]) -> list[Task]:
    """Tasks by estimated cost, longest first (LPT scheduling: the last tasks to start are
    the short ones, so workers finish together). Stable: ties keep plan order. The order
    never reaches the dataset, which is assembled in plan order."""
    return sorted(tasks, key=estimated_cost, reverse=True)


class _RayStart:
    """A local Ray (or a cluster) fed from the shared queue on its own thread.

    ``-j N`` means N processes run tasks: this one (the driver) and ``N - 1`` local Ray
    workers. A local Ray takes seconds to start (GCS, raylet, agents; ~2.3 s on an idle
    2-core host, 5 s and more while the driver works), and every worker process imports Ray,
    ztrace and the cached replay before its first task. The driver does not wait for any of
    that: it runs the *shortest* queued tasks itself from the start to the end of the sweep
    (:meth:`next_for_driver`), while this thread hands the *longest* to Ray, one per worker
    as each finishes (nothing queued at the raylet that the driver could have run at the
    end; the replay cores are compiled ``nogil``, so this thread runs while the driver
    replays). Session
    5 measured the old split (every task to ``N`` Ray workers, the driver idle once Ray was
    up) at 1.49× on 2 cores: one more process to start and feed than there are cores, and
    the driver's core idle while Ray's workers warmed up (benchmarks/README.md, "fleet").
    A task runs in exactly one place, through the same :func:`run_and_store`, so the files
    are the same wherever it ran.

    On a cluster (``address``) the driver only submits and collects: every task goes to
    Ray at once, and the cluster schedules them.
    """

    def __init__(self, ray: Any, queue: deque[Task], out: str, jobs: int,
                 address: str | None) -> None:  # fmt: skip
        self.ray = ray
        self.queue = queue
        self.lock = threading.Lock()
        #: finished Ray tasks' object refs, for the driver to ``ray.get``; None = no more
        self.done: Queue[Any] = Queue()
        self.error: BaseException | None = None
        self.started = False  # we started a local Ray (and so shut it down)
        self.workers = 0  # Ray's CPUs once it is up
        self.submitted = 0  # tasks handed to Ray so far
        self._stop = threading.Event()
        self.seconds = 0.0
        self._old_sigterm: Any = None
        self._out, self._address = out, address
        #: local Ray workers: the driver is the N-th process
        self._ray_workers = max(1, jobs - 1)
        self._thread = threading.Thread(target=self._run, name="ztrace-ray", daemon=True)

    def start(self) -> None:
        # Ray's driver installs a SIGTERM handler that exits (so its atexit shutdown runs),
        # but only from the main thread: do the same here, and drop its warning about it
        logging.getLogger("ray._private.worker").addFilter(_NOT_MAIN_THREAD_WARNING)
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._thread.start()

    def _init(self) -> None:
        t0 = time.perf_counter()
        if not self.ray.is_initialized():
            if self._address:
                self.ray.init(address=self._address, logging_level="WARNING", log_to_driver=True)
            else:
                start_local_ray(self.ray, self._ray_workers)
            self.started = True
        self.workers = int(self.ray.cluster_resources().get("CPU", 0))
        self.seconds = time.perf_counter() - t0

    def _pop(self) -> Task | None:
        with self.lock:
            if not self.queue:
                return None
            self.submitted += 1
            return self.queue.popleft()

    def _feed(self) -> None:
        """Keep Ray's workers busy until the queue is empty, then pass on the last results."""
        remote = self.ray.remote(num_cpus=1, max_retries=0)(run_and_store)
        # a cluster takes everything at once; a local Ray one task per worker, so that the
        # driver keeps the rest (the replay cores release the GIL, so this thread hands a
        # worker its next task within milliseconds even while the driver replays)
        limit = None if self._address else self._ray_workers
        running: list[Any] = []
        while True:
            while limit is None or len(running) < limit:
                task = self._pop()
                if task is None:
                    break
                running.append(remote.remote(task, self._out))
            if not running:
                return
            finished, running = self.ray.wait(running, num_returns=1)
            for ref in finished:
                self.done.put(ref)

    def _run(self) -> None:
        try:
            self._init()
            self._feed()
        except BaseException as exc:  # reported in the driver's thread
            self.error = exc
            with self.lock:
                self.queue.clear()  # the driver stops taking tasks too
        finally:
            self.done.put(None)
        # Ray's own processes (GCS, raylet) die with the *thread* that started them: they
        # are spawned with PR_SET_PDEATHSIG (ray/_private/services.py: start_ray_process ->
        # utils.set_kill_on_parent_death_linux), and Linux sends that signal when the
        # parent *thread* exits. So this thread lives until the sweep is over, and shuts
        # Ray down itself
        self._stop.wait()
        if self.started:
            self.ray.shutdown()

    def next_for_driver(self) -> Task | None:
        """The shortest queued task for the driver to run itself, or None. Never on a
        cluster, and the last ``N - 1`` tasks wait for Ray until Ray has had one, so that
        every Ray sweep runs tasks on Ray's workers."""
        with self.lock:
            if self._address or not self.queue:
                return None
            if self.submitted == 0 and len(self.queue) <= self._ray_workers:
                return None
            return self.queue.pop()

    def begin_shutdown(self) -> None:
        """Let the thread shut Ray down (if it started it), without waiting: the driver
        assembles the dataset meanwhile (``ray.shutdown`` takes ~0.5-1 s of wall)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)


class _NotMainThreadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not the main thread" not in record.getMessage()


#: one instance, so that a process running many sweeps adds the filter once (addFilter skips
#: a filter it already has)
_NOT_MAIN_THREAD_WARNING = _NotMainThreadWarning()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)


def _on_ray(starter: _RayStart, out: str, rep: SweepReport) -> Iterator[tuple[str, str | None]]:
    """The results of every pending task, run on Ray and in this process. The caller closes
    ``starter``: after the last result it only begins Ray's shutdown, which then overlaps
    the assembly of the dataset."""

    def finished(block: bool) -> Iterator[Any]:
        while True:
            try:
                ref = starter.done.get(block=block)
            except Empty:
                return
            if ref is None:
                starter.done.put(None)  # stays the last item for the next call
                return
            yield ref

    while (task := starter.next_for_driver()) is not None:
        rep.in_driver += 1
        yield run_and_store(task, out)
        for ref in finished(block=False):
            yield starter.ray.get(ref)
    t0 = time.perf_counter()
    for ref in finished(block=True):
        yield starter.ray.get(ref)
    rep.driver_idle_s = time.perf_counter() - t0
    if starter.error is not None:
        raise starter.error
    rep.startup_s = starter.seconds
    rep.ray_workers = starter.workers
    starter.begin_shutdown()


def sweep(
    traces: list[TraceRef],
    axes: Axes,
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    ray_address: str | None = None,
    quiet: bool = False,
    on_failure: Callable[[Task, str], None] | None = None,
) -> SweepReport:
    """Plan, skip finished tasks, run the rest (Ray when ``jobs > 1`` or ``ray_address``),
    then assemble ``fleet.parquet`` and ``fleet.json`` under ``out``."""
    if jobs < 1:
        raise ConfigError(f"-j must be at least 1, got {jobs}")
    o = Path(out).resolve()
    check_output(o, [t.path for t in traces])  # never into (or onto) a trace
    check_output_dir(o)
    o.mkdir(parents=True, exist_ok=True)
    the_plan: Plan = plan(traces, axes)
    pending = [t for t in the_plan.tasks if not task_path(o, t).exists()]
    report = SweepReport(
        tasks=len(the_plan.tasks),
        already_done=len(the_plan.tasks) - len(pending),
        ran=0,
        not_applicable=the_plan.not_applicable,
    )
    for d, pattern in ((o / "tasks", ".*.tmp"), (o / "failed", ".*.tmp"), (o, ".fleet.*.tmp")):
        for f in d.glob(pattern) if d.is_dir() else ():  # temporaries of a killed run
            f.unlink(missing_ok=True)
    by_id = {t.task_id: t for t in pending}
    # one pending task is not worth starting Ray for (its start-up costs seconds)
    use_ray = (len(pending) > 1 and jobs > 1) or (bool(pending) and ray_address is not None)
    ray = _ray() if use_ray else None
    if use_ray and ray is None:
        if ray_address:
            raise ConfigError("--ray-address: Ray is not installed (pip install 'ztrace[ray]')")
        print("ztrace: Ray is not installed: running the sweep serially", file=sys.stderr)
    starter = (
        _RayStart(ray, deque(longest_first(pending)), str(o), jobs, ray_address) if ray else None
    )
    results = _on_ray(starter, str(o), report) if starter else _serial(pending, str(o))
    report.backend = "ray" if ray else "serial"
    failed: dict[str, str] = {}
    desc = f"fleet ({report.already_done} done before)" if report.already_done else "fleet"
    if starter:
        starter.start()
    try:
        with progress(len(pending), desc=desc, quiet=quiet, unit="tasks") as bar:
            t0 = time.perf_counter()
            for task_id, err in results:
                report.ran += 1
                if err is not None:
                    failed[task_id] = err
                    report.failed.append((by_id[task_id], err))
                    if on_failure:
                        on_failure(by_id[task_id], err)
                bar.advance()
            report.tasks_s = time.perf_counter() - t0
        report.failed.sort(key=lambda te: the_plan.tasks.index(te[0]))
        report.dataset = assemble(o, traces, axes, the_plan, failed)
    finally:
        if starter:  # Ray's shutdown began after the last result, on its own thread
            starter.close()
    return report
