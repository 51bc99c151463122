"""Which lock design is better, said only as far as the intervals allow (issue 10, items 4-5).

A replay is one sample of what the kernel could have done. ``ztrace replay --replicas N``
stores, per design and metric, the plain replay's value and the ``[lo, hi]`` interval over
all replicas (``locks_interval.parquet``). This module turns that into what ``report`` and
the dashboard say:

* the metrics users feel come first: total wait, wait per operation, p99 wait; the
  contention rate second (docs/replay-model.md: a rate compares badly across designs that
  take a different number of locks);
* designs are ordered by a metric's value, and each pair of neighbours is either ranked or,
  where their intervals overlap, "no measurable difference";
* hold times measured or fitted in a VM guest (slow TCG emulation, probes' own cost inside
  the durations) are flagged.

Nothing here replays: it reads results and, for the guest flag, the trace's metadata.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ztrace.errors import TraceFormatError
from ztrace.format import Results

#: what users feel, in the order reports lead with them
LEAD_METRICS: tuple[str, ...] = ("wait_ns_total", "wait_ns_per_op", "wait_ns_p99")
#: second: how often a lock was contended
SECOND_METRICS: tuple[str, ...] = ("contended",)
METRIC_LABEL: dict[str, str] = {
    "wait_ns_total": "total wait",
    "wait_ns_per_op": "wait per op",
    "wait_ns_p99": "p99 wait",
    "contended": "contended",
    "acquisitions": "acquired",
}
NO_DIFFERENCE = "no measurable difference"
#: ``ztrace.extra.host`` of every capture the VM harness takes (ztrace/vm/guest-init sets the
#: guest's hostname); the harness runs qemu with TCG unless ZTRACE_VM_ACCEL=kvm
GUEST_HOSTS = ("ztrace-guest",)


@dataclass(frozen=True)
class Estimate:
    """One design's metric: the plain replay's value and the interval over replicas.

    ``lo == hi == value`` when the results carry no intervals (``runs == 1``)."""

    value: float
    lo: float
    hi: float
    runs: int

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "interval": [self.lo, self.hi], "runs": self.runs}


def overlap(a: Estimate, b: Estimate) -> bool:
    """Closed intervals overlap (a shared end point counts: [0, 0] and [0, 5] do)."""
    return a.lo <= b.hi and b.lo <= a.hi


def _per_op(row: dict[str, Any]) -> float | None:
    ops = row.get("ops")
    if not isinstance(ops, int | float) or isinstance(ops, bool):
        return None
    return float(row["wait_ns_total"]) / ops if ops else 0.0


def estimates(results: Results) -> dict[str, dict[str, Estimate]]:
    """design -> metric -> :class:`Estimate`, for every design in ``locks_summary``.

    Intervals come from ``locks_interval`` when the replay ran replicas; otherwise every
    estimate is the single replay's value with a zero-width interval and ``runs == 1``."""
    out: dict[str, dict[str, Estimate]] = {}
    if not results.has("locks_summary"):
        return out
    for row in results["locks_summary"].to_dicts():
        vals: dict[str, float | None] = {
            "wait_ns_total": float(row["wait_ns_total"]),
            "wait_ns_per_op": _per_op(row),
            "wait_ns_p99": float(row["wait_ns_p99"]),
            "contended": float(row["contended"]),
            "acquisitions": float(row["acquisitions"]),
        }
        out[row["lock_design"]] = {
            k: Estimate(v, v, v, 1) for k, v in vals.items() if v is not None
        }
    if results.has("locks_interval"):
        for r in results["locks_interval"].to_dicts():
            d = out.get(r["lock_design"])
            if d is None or not all(math.isfinite(r[k]) for k in ("value", "lo", "hi")):
                continue
            d[r["metric"]] = Estimate(r["value"], r["lo"], r["hi"], int(r["runs"]))
    return out


def has_intervals(est: dict[str, dict[str, Estimate]]) -> bool:
    return any(e.runs > 1 for m in est.values() for e in m.values())


def compare(est: dict[str, dict[str, Estimate]], metric: str) -> list[dict[str, Any]]:
    """Designs by ``metric``, lowest first; each pair of neighbours ranked (``lower``) or
    ``no measurable difference`` when their intervals overlap.

    Without intervals (a single replay) two designs overlap only when equal, so the
    verdicts then rank by one sample; callers say so (:func:`interval_note`)."""
    names = sorted((d for d in est if metric in est[d]), key=lambda d: est[d][metric].value)
    out = []
    for a, b in itertools.pairwise(names):
        ea, eb = est[a][metric], est[b][metric]
        out.append(
            {
                "metric": metric,
                "lower": a,
                "higher": b,
                "verdict": NO_DIFFERENCE if overlap(ea, eb) else "lower",
            }
        )
    return out


def comparison(est: dict[str, dict[str, Estimate]]) -> list[dict[str, Any]]:
    """:func:`compare` for the lead metrics, then the second ones."""
    return [c for m in (*LEAD_METRICS, *SECOND_METRICS) for c in compare(est, m)]


def pair_text(c: dict[str, Any]) -> str:
    """One :func:`compare` entry in words."""
    if c["verdict"] == NO_DIFFERENCE:
        return f"{c['lower']} vs {c['higher']}: {NO_DIFFERENCE} (intervals overlap)"
    return f"{c['lower']} lower than {c['higher']} (intervals apart)"


def verdict_line(est: dict[str, dict[str, Estimate]], metric: str) -> str:
    """``total wait: class ≈ pools:32 < pool`` (``≈``: no measurable difference)."""
    pairs = compare(est, metric)
    if not pairs:
        return ""
    text = pairs[0]["lower"]
    for p in pairs:
        text += (" ≈ " if p["verdict"] == NO_DIFFERENCE else " < ") + p["higher"]
    return f"{METRIC_LABEL.get(metric, metric)}: {text}"


def interval_note(est: dict[str, dict[str, Estimate]]) -> str:
    if not est:
        return ""
    if has_intervals(est):
        runs = max(e.runs for m in est.values() for e in m.values())
        return (
            f"intervals: [min, max] over {runs} replays (the values: the plain one; the "
            f"others: arrival jitter, hold times redrawn); ≈: {NO_DIFFERENCE}"
        )
    return (
        "no intervals in these results (one replay): the order is one sample, not a "
        "measured difference; re-run `ztrace replay --replicas 3` for intervals"
    )


# ------------------------------------------------------------------- where costs came from


def guest_flag(results: Results) -> str | None:
    """A warning when measured or fitted hold times come from a VM guest capture, else None.

    The VM harness's captures carry ``ztrace.extra.host=ztrace-guest``; qemu runs them under
    TCG (binary translation, far slower than hardware) unless ZTRACE_VM_ACCEL=kvm, and a
    measured ``duration_ns`` also holds the probes' own cost (docs/validation.md). The trace
    is read through ``ztrace.format`` (metadata only) when its path still exists."""
    from ztrace.look.provenance import cost_provenance

    from_trace = sorted(
        k for k, v in cost_provenance(results).items() if v.startswith(("measured", "fitted"))
    )
    if not from_trace:
        return None
    host = _trace_host(results)
    if host is None or host not in GUEST_HOSTS:
        return None
    return (
        f"TCG GUEST COSTS: hold times of {', '.join(from_trace)} were measured or fitted in a "
        f"VM guest (trace host {host!r}; the VM harness runs qemu TCG unless "
        "ZTRACE_VM_ACCEL=kvm): every guest instruction is emulated, far slower than hardware, "
        "and the durations include the probes' own cost, so predicted waits are inflated"
    )


def _trace_host(results: Results) -> str | None:
    trace = results.trace_path
    if not trace or not Path(trace).exists():
        return None
    try:
        from ztrace.format import open_trace

        meta = open_trace(trace).meta
    except (TraceFormatError, OSError):
        return None
    if meta.source != "capture":
        return None
    return meta.extra.get("host")
