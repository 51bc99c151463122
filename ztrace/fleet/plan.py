"""The sweep plan: traces × the product of the parameter axes → tasks.

One task is one trace × one parameter set: a lock task (``kind="locks"``: one lock design at
one ``cpus`` and one ``speedup``) or an LRU task (``kind="lru"``: one LRU design at one pool
limit). A task's id hashes everything its row depends on (trace path and bytes, parameters,
seed), so a rerun recognises finished work and a changed trace is replayed again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from ztrace.errors import ConfigError
from ztrace.fleet.discover import TraceRef

Kind = Literal["locks", "lru"]


@dataclass(frozen=True)
class Axes:
    """The parameter axes; an empty design list switches that kind of task off."""

    locks: tuple[str, ...] = ()
    cpus: tuple[int | None, ...] = (None,)  # None: the trace's own CPUs
    speedup: tuple[float, ...] = (1.0,)
    lru: tuple[str, ...] = ()
    pool_limits: tuple[str, ...] = ()
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Task:
    """One trace × one parameter set."""

    trace: TraceRef
    kind: Kind
    design: str
    cpus: int | None = None
    speedup: float | None = None
    pool_limit: str | None = None
    seed: int = 0

    @property
    def params(self) -> dict[str, Any]:
        """Every field but the trace, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trace"}

    @property
    def task_id(self) -> str:
        key = {"trace": self.trace.path, "sha256": self.trace.sha256, **self.params}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]

    def label(self) -> str:
        """``web-17 locks:pool cpus=16 speedup=2`` (for progress and error lines)."""
        if self.kind == "locks":
            extra = f" cpus={self.cpus or 'trace'} speedup={self.speedup:g}"
        else:
            extra = f" pool_limit={self.pool_limit}"
        return f"{self.trace.host} {self.kind}:{self.design}{extra}"


@dataclass(frozen=True)
class Plan:
    tasks: list[Task]
    #: (trace path, reason) for traces a whole kind of task does not apply to
    not_applicable: list[tuple[str, str]]


def plan(traces: list[TraceRef], axes: Axes) -> Plan:
    """Every task, in a fixed order: trace path, then locks before lru, then axes order."""
    if not axes.locks and not axes.lru:
        raise ConfigError("nothing to sweep: give --locks D1,D2 and/or --lru D1,D2")
    if axes.lru and not axes.pool_limits:
        raise ConfigError("--lru needs --pool-limits (pages, 64M or 20%; A,B or A:B:step)")
    tasks: list[Task] = []
    skipped: list[tuple[str, str]] = []
    for t in traces:
        if axes.locks:
            if t.has_alloc:
                for d, c, s in itertools.product(axes.locks, axes.cpus, axes.speedup):
                    tasks.append(Task(t, "locks", d, c, float(s), None, axes.seed))
            else:
                skipped.append((t.path, "no zs_malloc/zs_free events: lock tasks skipped"))
        if axes.lru:
            if t.has_swap:
                for d, lim in itertools.product(axes.lru, axes.pool_limits):
                    tasks.append(Task(t, "lru", d, None, None, lim, axes.seed))
            else:
                skipped.append((t.path, "no zswap events: LRU tasks skipped"))
    return Plan(tasks, skipped)
