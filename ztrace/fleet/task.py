"""Run one task and store its one-row result atomically (``tasks/<id>.parquet``).

A failure is stored as ``failed/<id>.json`` (trace, parameters, error) instead, so the other
tasks go on; a later success removes it.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.fleet.plan import Task
from ztrace.format import SCHEMAS
from ztrace.format.safeio import atomic_file

_U64, _F64, _STR, _I64 = pa.uint64(), pa.float64(), pa.string(), pa.int64()

#: identity and parameter columns, then the metrics of both kinds (null where not applicable)
COLUMNS: dict[str, pa.DataType] = {
    "host": _STR,
    "capture_id": _STR,
    "kernel_release": _STR,
    "trace_path": _STR,
    "trace_sha256": _STR,
    "task_id": _STR,
    "kind": _STR,
    "design": _STR,
    "cpus": _I64,
    "speedup": _F64,
    "pool_limit": _STR,
    "seed": _I64,
    # locks: locks_summary's columns, from the one results schema (docs/results-format.md),
    # with the op count first and the replay's memory and makespan after
    "ops": _U64,
    **{k: v for k, v in SCHEMAS["locks_summary"].items() if k != "lock_design"},
    "pages_used_peak": _U64,
    "makespan_ns": _U64,
    # lru: lru_summary's columns, from the one results schema (docs/results-format.md)
    **{k: v for k, v in SCHEMAS["lru_summary"].items() if k != "lru_design"},
}
_SKIP = {"lock_design", "lru_design"}


def _locks_row(task: Task) -> dict[str, Any]:
    from ztrace.replay.engine import replay

    res = replay(
        task.trace.path,
        locks=[task.design],
        seed=task.seed,
        cpus=task.cpus,
        speedup=task.speedup or 1.0,
        # one thread per task: a sweep's parallelism is its tasks (`-j N` processes), so a
        # task never competes with its siblings for cores, and `-j 1` means one core
        threads=1,
    )
    (row,) = res.summary
    return dict(row)


def _lru_row(task: Task) -> dict[str, Any]:
    from ztrace.replay.lru import run_lru

    assert task.pool_limit is not None  # plan() gives every LRU task a pool limit
    tables = run_lru(task.trace.path, task.design, pool_limit=task.pool_limit, seed=task.seed)
    (row,) = tables["lru_summary"].to_pylist()
    return dict(row)


def run_task(task: Task) -> pa.Table:
    """Replay one task; its one-row table (:data:`COLUMNS`, then any newer metric columns a
    design reports, sorted by name)."""
    metrics = _locks_row(task) if task.kind == "locks" else _lru_row(task)
    t = task.trace
    row: dict[str, Any] = {
        "host": t.host,
        "capture_id": t.capture_id,
        "kernel_release": t.kernel_release,
        "trace_path": t.path,
        "trace_sha256": t.sha256,
        "task_id": task.task_id,
        **task.params,
    }
    row.update({k: v for k, v in metrics.items() if k not in _SKIP})
    fields = [pa.field(k, ty) for k, ty in COLUMNS.items()]
    for k in sorted(set(row) - set(COLUMNS)):
        v = row[k]
        fields.append(pa.field(k, _F64 if isinstance(v, int | float) else _STR))
        if not isinstance(v, int | float) and v is not None:
            row[k] = str(v)
    schema = pa.schema(fields)
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in fields}], schema=schema)


def write_atomic(path: Path, write: Callable[[IO[Any]], object], *, text: bool = False) -> None:
    """Write ``path`` through ``write(file)`` with the project's safe writer
    (:func:`ztrace.format.safeio.atomic_file`: a fresh temporary beside it, renamed when
    complete), so a reader or a resumed sweep never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode, enc = ("w", "utf-8") if text else ("wb", None)
    with atomic_file(path, mode=mode, encoding=enc) as f:
        write(f)


def task_path(out: Path, task: Task) -> Path:
    return out / "tasks" / f"{task.task_id}.parquet"


def failed_path(out: Path, task: Task) -> Path:
    return out / "failed" / f"{task.task_id}.json"


def run_and_store(task: Task, out: str) -> tuple[str, str | None]:
    """Run ``task`` and store its result under ``out``; returns (task id, error or None).

    Never raises for a task's own failure: the error (one line, plus the traceback in the
    JSON file) is stored and returned so the sweep goes on.
    """
    o = Path(out)
    try:
        table = run_task(task)
    except Exception as exc:  # one broken trace must not stop the fleet
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
        doc = {
            "task_id": task.task_id,
            "trace": task.trace.path,
            "host": task.trace.host,
            **task.params,
            "error": msg,
            "traceback": traceback.format_exc(),
        }
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        write_atomic(failed_path(o, task), lambda f: f.write(text), text=True)
        return task.task_id, msg
    write_atomic(task_path(o, task), lambda f: pq.write_table(table, f, compression="zstd"))
    failed_path(o, task).unlink(missing_ok=True)
    return task.task_id, None
