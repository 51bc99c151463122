"""Run a sweep's pending tasks: on Ray (a local Ray started on demand, or ``ray_address``)
or in this process, with the same per-task code, so both give byte-identical files.

Resume: a task whose ``tasks/<id>.parquet`` exists is finished and not run again (files
appear only complete: :func:`ztrace.fleet.task.write_atomic`). A failed task is reported
with its trace and error; the others go on.
"""

from __future__ import annotations

import os
import sys
import time
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
    #: seconds: starting (or joining) Ray; running the pending tasks (submit to last result)
    startup_s: float = 0.0
    tasks_s: float = 0.0


def _ray() -> Any | None:
    try:
        import ray
    except ImportError:
        return None
    return ray


def _serial(pending: list[Task], out: str) -> Iterator[tuple[str, str | None]]:
    for t in pending:
        yield run_and_store(t, out)


def _on_ray(
    ray: Any, pending: list[Task], out: str, jobs: int, address: str | None, rep: SweepReport
) -> Iterator[tuple[str, str | None]]:
    started = False
    t0 = time.perf_counter()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        else:
            ray.init(
                num_cpus=jobs,
                object_store_memory=OBJECT_STORE_BYTES,
                include_dashboard=False,
                logging_level="WARNING",
            )
        started = True
    rep.startup_s = time.perf_counter() - t0
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_and_store)
        refs = [remote.remote(t, out) for t in pending]
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


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
        report.tasks_s = time.perf_counter() - t0 - report.startup_s
    report.failed.sort(key=lambda te: the_plan.tasks.index(te[0]))
    report.dataset = assemble(o, traces, axes, the_plan, failed)
    return report
