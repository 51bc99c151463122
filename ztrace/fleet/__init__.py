"""Fleet: replay many hosts' traces under a product of designs, on Ray or serially.

Data flow: :mod:`discover` finds traces (paths, a directory of traces, a hive tree such as
``host=web-17/``) and their identity (host, capture id, kernel release, absolute path,
SHA-256 of the bytes); :mod:`plan` expands the axes (lock designs × ``--cpus`` ×
``--speedup``; LRU designs × pool limits) into tasks, one trace × one parameter set each;
:mod:`task` runs one task and stores its one-row result atomically; :mod:`runner` runs the
pending tasks (local Ray, an existing cluster, or in-process) and :mod:`dataset` assembles
``fleet.parquet``, the one dataset (docs/fleet.md).

Serial and Ray runs give byte-identical files: a task's row depends only on the task, and
the dataset is assembled in plan order.
"""

from __future__ import annotations

from ztrace.fleet.dataset import assemble, read_fleet
from ztrace.fleet.discover import TraceRef, discover
from ztrace.fleet.plan import Axes, Task, plan
from ztrace.fleet.runner import SweepReport, sweep

__all__ = [
    "Axes",
    "SweepReport",
    "Task",
    "TraceRef",
    "assemble",
    "discover",
    "plan",
    "read_fleet",
    "sweep",
]
