"""Assemble the finished tasks into the one fleet dataset, and read it back.

``OUT/fleet.parquet`` holds one row per finished task, in plan order, with the identity,
parameter and metric columns of :data:`ztrace.fleet.task.COLUMNS`; its Parquet metadata and
``OUT/fleet.json`` record the sources as absolute paths with their SHA-256, so a moved
results set still names (and can verify) its traces. Nothing in either file depends on how
the sweep ran (``-j``, Ray, order of completion) or when.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.errors import ConfigError
from ztrace.fleet.discover import TraceRef
from ztrace.fleet.plan import Axes, Plan
from ztrace.fleet.task import task_path, write_atomic

FLEET_VERSION = 1
DATASET = "fleet.parquet"
MANIFEST = "fleet.json"  # not manifest.json: that name marks a results directory


def check_output_dir(out: Path) -> None:
    """Refuse to write into a non-empty directory that is not a fleet output (never
    overwrite what the user had: a replay's ``summary.json``, say)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    entries = [p.name for p in out.iterdir()]
    if entries and not (MANIFEST in entries or "tasks" in entries):
        raise ConfigError(
            f"{out}: not empty and not a fleet sweep's directory (refusing to write into it)"
        )
    if MANIFEST in entries:
        try:
            doc = json.loads((out / MANIFEST).read_text())
        except (OSError, ValueError):
            doc = {}
        if doc.get("ztrace.fleet_version") is None:
            raise ConfigError(f"{out}/{MANIFEST}: not a fleet manifest (refusing to overwrite)")


def _sources(traces: list[TraceRef]) -> list[dict[str, Any]]:
    return [
        {
            "path": t.path,
            "sha256": t.sha256,
            "host": t.host,
            "capture_id": t.capture_id,
            "kernel_release": t.kernel_release,
        }
        for t in traces
    ]


def assemble(
    out: str | os.PathLike[str],
    traces: list[TraceRef],
    axes: Axes,
    the_plan: Plan,
    failed: dict[str, str],
) -> Path | None:
    """Write ``fleet.parquet`` (finished tasks, plan order) and ``manifest.json``.

    Returns the dataset path, or None when no task finished."""
    o = Path(out)
    parts = [pq.read_table(task_path(o, t)) for t in the_plan.tasks if task_path(o, t).exists()]
    sources = _sources(traces)
    manifest = {
        "ztrace.fleet_version": FLEET_VERSION,
        "dataset": DATASET,
        "axes": axes.to_json(),
        "sources": sources,
        "tasks": len(the_plan.tasks),
        "finished": len(parts),
        "failed": [
            {
                "task_id": t.task_id,
                "task": t.label(),
                "trace": t.trace.path,
                "error": failed[t.task_id],
            }
            for t in the_plan.tasks
            if t.task_id in failed
        ],
        "not_applicable": [{"trace": p, "reason": r} for p, r in the_plan.not_applicable],
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    path: Path | None = None
    if parts:
        table = pa.concat_tables(parts, promote_options="default")
        kv = {
            b"ztrace.fleet_version": str(FLEET_VERSION).encode(),
            b"ztrace.fleet.axes": json.dumps(axes.to_json(), sort_keys=True).encode(),
            b"ztrace.fleet.sources": json.dumps(
                [[s["path"], s["sha256"]] for s in sources]
            ).encode(),
        }
        table = table.replace_schema_metadata(kv)
        path = o / DATASET
        write_atomic(path, lambda f: pq.write_table(table, f, compression="zstd"))
    else:
        # nothing finished this time: an earlier run's dataset must not stand beside a
        # manifest that no longer describes it (issue 11: never mixed)
        (o / DATASET).unlink(missing_ok=True)
    write_atomic(o / MANIFEST, lambda f: f.write(text), text=True)
    return path


#: what names a row of a fleet dataset: the host, its trace and the design configuration
#: (every task row has them; ``fleet dashboard`` and ``compare`` key rows by them)
IDENTITY_COLUMNS = ("host", "trace_path", "kind", "design", "cpus", "speedup", "pool_limit")


def read_fleet(path: str | os.PathLike[str]) -> pa.Table:
    """A fleet dataset: ``OUT`` (the sweep's directory) or ``OUT/fleet.parquet``."""
    p = Path(path)
    f = p / DATASET if p.is_dir() else p
    if not f.exists():
        raise ConfigError(f"{path}: no {DATASET} (not a fleet sweep's output)")
    try:
        table = pq.read_table(f)
    except (pa.ArrowInvalid, OSError) as exc:  # not Parquet (or cut short): one line, no trace
        raise ConfigError(f"{f}: not a readable fleet dataset ({exc})") from None
    if b"ztrace.fleet_version" not in (table.schema.metadata or {}):
        raise ConfigError(f"{f}: not a fleet dataset (no ztrace.fleet_version metadata)")
    missing = [c for c in IDENTITY_COLUMNS if c not in table.schema.names]
    if missing:  # e.g. rewritten by another tool: the readers key every row by these
        raise ConfigError(f"{f}: not a fleet dataset (no column {', '.join(missing)})")
    return table
