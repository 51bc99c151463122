"""Intervals on contention predictions: replicas over interleaving and hold times.

One replay is one sample of what the kernel could have done with the traced operations. The
prediction's uncertainty has two sources this module samples:

* **interleaving**: trace timestamps of different CPUs are neither exact nor the only order
  the kernel could have run them in. Replica ``r >= 1`` delays every arrival by a seeded
  ``0..jitter_ns`` (keeping trace order), so requests that were near each other may swap
  and near-misses may collide;
* **hold times**: replica ``r >= 1`` draws every measured duration from the trace's own
  distribution of that event kind (a trace without durations has none: its constant
  defaults give no spread on this axis, and the result says so).

Replica 0 is the plain replay. The interval of a metric is ``[min, max]`` over the replicas.
Where two designs' intervals of a metric overlap, :func:`compare` says "no measurable
difference" instead of ranking them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

from ztrace.replay.engine import ReplayResult, replay

#: what users feel first (total wait, wait per op, p99 wait), then contention
METRICS = ("wait_ns_total", "wait_ns_per_op", "wait_ns_p99", "contended", "acquisitions")
#: default interleaving jitter: one microsecond, above the probes' timestamp skew
JITTER_NS = 1_000


@dataclass
class IntervalResult:
    """Per design: metric -> (replica-0 value, [lo, hi]) and the replica count."""

    runs: int
    jitter_ns: int
    designs: dict[str, dict[str, dict[str, Any]]]
    first: ReplayResult
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Every field but ``first`` (the replica-0 replay, whose tables are not JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "first"}


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    out = {k: float(row[k]) for k in METRICS if k in row}
    out["wait_ns_per_op"] = row["wait_ns_total"] / row["ops"] if row["ops"] else 0.0
    return out


def replay_interval(
    trace: str | os.PathLike[str],
    *,
    locks: Sequence[str] | str,
    runs: int = 5,
    jitter_ns: int = JITTER_NS,
    seed: int = 0,
    **kw: Any,
) -> IntervalResult:
    """Replay ``trace`` ``runs`` times (replica 0 plain, the others perturbed) and return
    every design's metrics with their interval. ``kw`` goes to :func:`replay`."""
    if runs < 1:
        from ztrace.errors import ConfigError

        raise ConfigError(f"--runs must be at least 1, got {runs}")
    samples: dict[str, dict[str, list[float]]] = {}
    first: ReplayResult | None = None
    for r in range(runs):
        res = replay(
            trace,
            locks=locks,
            seed=seed + r,
            jitter_ns=jitter_ns if r else 0,
            resample_holds=r > 0,
            **kw,
        )
        if first is None:
            first = res
        for row in res.summary:
            d = samples.setdefault(row["lock_design"], {})
            for k, v in _metrics(row).items():
                d.setdefault(k, []).append(v)
    assert first is not None
    designs = {
        name: {k: {"value": v[0], "interval": [min(v), max(v)]} for k, v in m.items()}
        for name, m in samples.items()
    }
    notes = []
    if not any(
        first.cost_provenance.get(k, "").startswith("measured") for k in ("zs_malloc", "zs_free")
    ):
        notes.append(
            "no measured durations in the trace: hold times are constants, so the "
            "interval covers interleaving only"
        )
    return IntervalResult(runs, jitter_ns, designs, first, notes)


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare(res: IntervalResult, metric: str = "wait_ns_total") -> list[dict[str, Any]]:
    """Designs ordered by ``metric`` (lowest first); each pair of neighbours is either
    ranked or "no measurable difference" when their intervals overlap."""
    order = sorted(res.designs, key=lambda d: res.designs[d][metric]["value"])
    out = []
    for a, b in itertools.pairwise(order):
        ia, ib = res.designs[a][metric]["interval"], res.designs[b][metric]["interval"]
        out.append(
            {
                "metric": metric,
                "lower": a,
                "higher": b,
                "verdict": "no measurable difference" if overlap(ia, ib) else "lower",
            }
        )
    return out


def interval_table(res: IntervalResult) -> pa.Table:
    """``locks_interval`` results table (docs/results-format.md): one row per design × metric,
    replica 0's value and the ``[lo, hi]`` interval over all ``runs`` replicas."""
    rows = [
        (design, metric, float(m["value"]), float(m["interval"][0]), float(m["interval"][1]))
        for design, metrics in res.designs.items()
        for metric, m in metrics.items()
    ]
    n = len(rows)
    return pa.table(
        {
            "lock_design": pa.array([r[0] for r in rows], pa.string()),
            "metric": pa.array([r[1] for r in rows], pa.string()),
            "value": pa.array([r[2] for r in rows], pa.float64()),
            "lo": pa.array([r[3] for r in rows], pa.float64()),
            "hi": pa.array([r[4] for r in rows], pa.float64()),
            "runs": pa.array([res.runs] * n, pa.uint32()),
            "jitter_ns": pa.array([res.jitter_ns] * n, pa.uint64()),
        }
    )
