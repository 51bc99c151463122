"""Run a sweep's pending tasks: on Ray (a local Ray started on demand, or ``ray_address``)
or in this process, with the same per-task code, so both give byte-identical files.

Resume: a task whose ``tasks/<id>.parquet`` exists is finished and not run again (files
appear only complete: :func:`ztrace.fleet.task.write_atomic`). A failed task is reported
with its trace and error; the others go on.
"""

from __future__ import annotations

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
    #: seconds: starting (or joining) Ray, on its own thread; the driver idle, waiting for
    #: it; running the pending tasks (first start to last result, less that idle wait)
    startup_s: float = 0.0
    startup_idle_s: float = 0.0
    tasks_s: float = 0.0
    #: tasks the driver ran itself while a local Ray was starting
    in_driver: int = 0


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
    """``ray.init`` on a background thread, then every task still queued submitted at once.

    A local Ray takes ~2 s to start (GCS, raylet, two prestarted workers; more on a busy
    host). Meanwhile the driver runs the *shortest* queued tasks itself (:func:`_on_ray`),
    so its core is not idle; the moment Ray is up, this thread takes all the rest, longest
    first. A task runs in exactly one place, through the same :func:`run_and_store`, so the
    files are the same wherever it ran.
    """

    def __init__(self, ray: Any, queue: deque[Task], out: str, jobs: int,
                 address: str | None) -> None:  # fmt: skip
        self.ray = ray
        self.queue = queue
        self.lock = threading.Lock()
        self.refs: list[Any] = []
        self.error: BaseException | None = None
        self.started = False  # we started a local Ray (and so shut it down)
        self.submitted = threading.Event()
        self._stop = threading.Event()
        self.seconds = 0.0
        self._old_sigterm: Any = None
        self._out, self._jobs, self._address = out, jobs, address
        self._thread = threading.Thread(target=self._run, name="ztrace-ray-start", daemon=True)

    def start(self) -> None:
        # Ray's driver installs a SIGTERM handler that exits (so its atexit shutdown runs),
        # but only from the main thread: do the same here, and drop its warning about it
        logging.getLogger("ray._private.worker").addFilter(_NOT_MAIN_THREAD_WARNING)
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._thread.start()

    def _run(self) -> None:
        out, jobs, address = self._out, self._jobs, self._address
        t0 = time.perf_counter()
        try:
            if not self.ray.is_initialized():
                if address:
                    self.ray.init(address=address, logging_level="WARNING", log_to_driver=True)
                else:
                    self.ray.init(
                        num_cpus=jobs,
                        object_store_memory=OBJECT_STORE_BYTES,
                        include_dashboard=False,
                        logging_level="WARNING",
                    )
                self.started = True
            self.seconds = time.perf_counter() - t0
            remote = self.ray.remote(num_cpus=1, max_retries=0)(run_and_store)
            with self.lock:
                while self.queue:
                    self.refs.append(remote.remote(self.queue.popleft(), out))
        except BaseException as exc:  # reported by join() in the driver's thread
            self.error = exc
            self.seconds = time.perf_counter() - t0
        finally:
            self.submitted.set()
        # Ray's own processes (GCS, raylet) die with the *thread* that started them: they
        # are spawned with PR_SET_PDEATHSIG (ray/_private/services.py: start_ray_process ->
        # utils.set_kill_on_parent_death_linux), and Linux sends that signal when the
        # parent *thread* exits. So this thread lives until the sweep is over, and shuts
        # Ray down itself
        self._stop.wait()
        if self.started:
            self.ray.shutdown()

    def next_for_driver(self) -> Task | None:
        """The shortest queued task, while Ray is not up yet; None once it is. The last
        ``jobs`` tasks are always left to Ray, so every Ray sweep runs on Ray's workers."""
        with self.lock:
            if self.submitted.is_set() or len(self.queue) <= self._jobs:
                return None
            return self.queue.pop()

    def join(self) -> None:
        """Wait until Ray is up and has every remaining task (or failed to start)."""
        self.submitted.wait()
        if self.error is not None:
            raise self.error

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


def _on_ray(
    ray: Any, pending: list[Task], out: str, jobs: int, address: str | None, rep: SweepReport
) -> Iterator[tuple[str, str | None]]:
    starter = _RayStart(ray, deque(longest_first(pending)), out, jobs, address)
    starter.start()
    try:
        # a local Ray is started for this sweep: until it is up, the driver's core works
        # too (an existing cluster is joined in well under a second: just wait for it)
        while address is None and (task := starter.next_for_driver()) is not None:
            rep.in_driver += 1
            yield run_and_store(task, out)
        t0 = time.perf_counter()
        starter.join()
        rep.startup_idle_s = time.perf_counter() - t0
        rep.startup_s = starter.seconds
        refs = starter.refs
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            yield ray.get(done[0])
    finally:
        starter.close()


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
    results = (
        _on_ray(ray, pending, str(o), jobs, ray_address, report)
        if ray
        else _serial(pending, str(o))
    )
    report.backend = "ray" if ray else "serial"
    failed: dict[str, str] = {}
    desc = f"fleet ({report.already_done} done before)" if report.already_done else "fleet"
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
        report.tasks_s = time.perf_counter() - t0 - report.startup_idle_s
    report.failed.sort(key=lambda te: the_plan.tasks.index(te[0]))
    report.dataset = assemble(o, traces, axes, the_plan, failed)
    return report
