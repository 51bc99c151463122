"""``validate cross-kernel``: predict a kernel that runs the *other* lock design, check it.

Given two captures of the same workload on two kernels (e.g. the 6.1 guest, one pool
spinlock, and the 6.12 guest, class locks), replay each under both kernels' designs and
compare with what each kernel measured:

* same kernel: trace A under A's design against A's measured contention (and B likewise);
* cross kernel: trace A under B's design against B's measured contention (and B -> A),
  plus whether the predicted *direction* of the change (design B vs design A on the same
  trace) matches the measured one.

Measured contention is the capture's ``lock_contention`` rows attributed to zsmalloc's
locks: the capture classified the lock address as the pool or a class lock
(``lock_kind``), or a zsmalloc function is on the kernel stack (``stacks.json``). Every
prediction carries an interval (:mod:`ztrace.replay.interval`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ztrace.errors import ConfigError
from ztrace.format import open_trace, read_meta
from ztrace.replay.costs import CostModel, probe_cost
from ztrace.replay.hold_ends import DEFAULT_END
from ztrace.replay.holds import find as find_holds

METRICS = ("contended", "wait_ns_total")
#: lock_kind values the capture gives zsmalloc's own locks
ZS_LOCK_KINDS = ("pool", "class", "zspage")


def design_for_kernel(release: str) -> str:
    """The lock design a kernel release runs (see docs/replay-model.md §3).

    ≥6.15 ``class-6.15`` (its zspage-lock writers only try the lock, "zsmalloc: make zspage
    lock preemptible"); 6.11–6.14 ``class`` ("mm/zsmalloc: change back to per-size_class
    lock"); 6.2–6.10 ``pool``
    (c0547d0b6a4b); 6.1: ``pool`` -- Debian's 6.1.192 source has the consolidated
    ``spin_lock(&pool->lock)`` in zs_malloc, zs_free, zs_map_object and __zs_compact
    (mm/zsmalloc.c, checked), i.e. the stable backport; ≤6.0 ``class``.
    """
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ConfigError(f"kernel release `{release}`: cannot tell its lock design")
    v = (int(m.group(1)), int(m.group(2)))
    if v >= (6, 15):
        return "class-6.15"
    if v >= (6, 11):
        return "class"
    if v >= (6, 1):
        return "pool"
    return "class"


def measured(trace: str | os.PathLike[str]) -> dict[str, Any]:
    """zsmalloc lock contention a capture measured: ``contended`` rows, ``wait_ns_total``;
    both None when the capture had no lock probes."""
    meta = read_meta(trace)
    probes = meta.extra.get("probes", "")
    if "locks" not in probes:
        return {"contended": None, "wait_ns_total": None, "note": f"no lock probes ({probes})"}
    stacks: dict[str, list[str]] = {}
    p = Path(trace)
    if (p / "stacks.json").exists():
        stacks = json.loads((p / "stacks.json").read_text())
    zs_stack = {
        int(k)
        for k, frames in stacks.items()
        if any(f.lstrip("_").startswith("zs_") for f in frames)
    }
    if _has_spin_slowpath(trace):
        return _measured_with_slowpath(trace)
    cont = wait = other = 0
    tr = open_trace(trace)
    names = set(tr.schema.names)
    if "stack_id" not in names:
        zs_stack = set()
    cols = [c for c in ("event", "lock_kind", "wait_ns", "stack_id") if c in names]
    for b in tr.iter_batches(columns=cols):
        ev = b.column("event").cast(pa.string()).to_numpy(zero_copy_only=False)
        is_lock = ev == "lock_contention"
        if not is_lock.any():
            continue
        kind = b.column("lock_kind").cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)
        sid = b.column("stack_id").fill_null(-1).to_numpy() if zs_stack else np.full(len(ev), -1)
        zs = is_lock & (np.isin(kind, ZS_LOCK_KINDS) | np.isin(sid, list(zs_stack)))
        cont += int(zs.sum())
        wait += int(b.column("wait_ns").fill_null(0).to_numpy()[zs].sum())
        other += int((is_lock & ~zs).sum())
    return {"contended": cont, "wait_ns_total": wait, "other_contended": other}


def _has_spin_slowpath(trace: str | os.PathLike[str]) -> bool:
    for b in open_trace(trace).iter_batches(columns=["event"]):
        ev = b.column("event").cast(pa.string()).to_numpy(zero_copy_only=False)
        if (ev == "spin_slowpath").any():
            return True
    return False


def _measured_with_slowpath(trace: str | os.PathLike[str]) -> dict[str, Any]:
    """Every contended spinlock acquisition, from the ``spin_slowpath`` kprobe rows (plus the
    tracepoint's rwlock/rwsem rows), attributed to zsmalloc by stack and lock address
    (:func:`ztrace.vm.contention.summarize_trace`, the same count as the VM matrix tables).

    ``lock:contention_begin`` alone misses qspinlock's first waiter: it fires only after the
    ``queue:`` label (6.1.192 kernel/locking/qspinlock.c: queued_spin_lock_slowpath), and the
    pending-bit waiter never gets there; with 2 vCPUs that is nearly every waiter. The
    sidecar ``<trace>.kernel/`` (zs_pool_layout.json, zsstress.log) gives the lock address.
    """
    from ztrace.vm.contention import summarize_trace

    # the run's guest files: a bundled sample's NAME.kernel/, or a VM run directory
    side, run_dir = Path(str(trace) + ".kernel"), Path(trace).parent
    aux = run_dir if (run_dir / "vm.json").is_file() else side if side.is_dir() else Path(trace)
    res = summarize_trace(Path(trace), aux)
    zs = res["zsmalloc"]
    return {
        "contended": int(zs["contended"]),
        "wait_ns_total": int(zs["wait_ns_total"]),
        "other_contended": int(res["other"]["contended"]) if "other" in res else None,
        "source": res["source"],
        # each slowpath row less the capture's probe floor (ztrace.vm.contention.probe_floor)
        "wait_ns_less_probe_floor": zs.get("wait_ns_less_probe_floor"),
    }


def _with_probe_cost(got: tuple[int, str] | None) -> CostModel | None:
    return CostModel(probe_overhead_ns=got[0]) if got else None


def _scenario(trace: str | os.PathLike[str]) -> str:
    meta = read_meta(trace)
    return meta.extra.get("scenario") or Path(trace).name


def cross_kernel(
    from_trace: str | os.PathLike[str],
    to_trace: str | os.PathLike[str],
    *,
    runs: int = 5,
    seed: int = 0,
    probe_cost_bound: bool = True,
    hold_share: float | None = None,
    hold_end: str = DEFAULT_END,
    stalls: bool = True,
    closed_loop: bool = True,
) -> dict[str, Any]:
    """The pairs of ``validate cross-kernel --from A --to B`` (see the module docstring)."""
    from ztrace.replay.engine import replay
    from ztrace.replay.interval import replay_interval

    traces = {"from": from_trace, "to": to_trace}
    kernel = {k: read_meta(t).kernel_release for k, t in traces.items()}
    design = {k: design_for_kernel(r) for k, r in kernel.items()}
    meas = {k: measured(t) for k, t in traces.items()}
    designs = list(dict.fromkeys(design.values()))
    model: dict[str, Any] = {"stalls": stalls, "closed_loop": closed_loop}
    hk: dict[str, Any] = {"hold_share": hold_share, "hold_end": hold_end, **model}
    pred = {
        k: replay_interval(t, locks=designs, runs=runs, seed=seed, **hk) for k, t in traces.items()
    }
    # the ends of the hold bracket (H, issue 10): where the hold share was measured on the
    # trace's kernel (ztrace.replay.holds), the prediction at the bracket's low and high
    # ends beside the chosen end (default low). The zs_* probes' own cost is inside the
    # share's denominator, so the probe-pair subtraction below is not applied on top of a
    # measured share (it would count it twice)
    measured_holds = {
        k: hold_share is None and not find_holds(t, kernel[k]).whole for k, t in traces.items()
    }
    ends = {
        (k, end): {
            r["lock_design"]: r
            for r in replay(t, locks=designs, seed=seed, hold_end=end, **model).summary
        }
        for k, t in traces.items()
        if probe_cost_bound and measured_holds[k]
        for end in ("low", "high")
    }
    # the other end of the probe-cost bracket: the measured whole-pair cost subtracted from
    # every duration (plain replay; the part inside a duration lies between 0 and this)
    pc = (
        {k: probe_cost(t) for k, t in traces.items() if not measured_holds[k]}
        if probe_cost_bound
        else {}
    )
    bound = {
        k: {
            r["lock_design"]: r
            for r in replay(
                t, locks=designs, seed=seed, cost_model=_with_probe_cost(got), **hk
            ).summary
        }
        for k, t in traces.items()
        if (got := pc.get(k))
    }
    pairs: list[dict[str, Any]] = []
    other = {"from": "to", "to": "from"}
    for src in ("from", "to"):
        for tgt in (src, other[src]):
            d = design[tgt]
            for metric in METRICS:
                p = pred[src].designs[d][metric]
                m = meas[tgt][metric]
                row: dict[str, Any] = {
                    "scenario": _scenario(traces["from"]),
                    "trace_kernel": kernel[src],
                    "target_kernel": kernel[tgt],
                    "design": d,
                    "metric": metric,
                    "predicted": p["value"],
                    "measured": m,
                    "ratio": p["value"] / m if m else None,
                    "interval": p["interval"],
                    "runs": 1,
                    "replicas": runs,
                    "kind": "same kernel" if src == tgt else "cross kernel",
                }
                if src in bound:
                    row["probe_cost_ns"] = pc[src][0]  # type: ignore[index]
                    row["predicted_probe_cost_subtracted"] = bound[src][d][metric]
                if (src, "low") in ends:
                    # the hold bracket is part of the prediction's uncertainty
                    lo_hi = [ends[(src, e)][d][metric] for e in ("low", "high")]
                    row["predicted_hold_share_low"], row["predicted_hold_share_high"] = lo_hi
                    row["interval"] = [
                        min(p["interval"][0], *lo_hi),
                        max(p["interval"][1], *lo_hi),
                    ]
                if src != tgt:
                    # direction: the other design vs the trace's own design, on this trace
                    own = pred[src].designs[design[src]][metric]["value"]
                    m_own = meas[src][metric]
                    if m is not None and m_own is not None and design[src] != d:
                        row["direction_right"] = bool(
                            np.sign(p["value"] - own) == np.sign(m - m_own)
                        )
                pairs.append(row)
    notes = [f"{k}: {v['note']}" for k, v in meas.items() if "note" in v]
    from ztrace.replay.stops import co_running

    for k in ("from", "to"):
        co = co_running(traces[k])
        notes.append(
            f"{k}: two or more CPUs recorded in {co['share']:.2%} of the 10 µs bins with any "
            "(only then can CPUs contend; a TCG guest whose vCPUs the host runs one at a time "
            "measures little contention whatever its lock design)"
        )
        got = pc.get(k)
        if measured_holds[k]:
            notes.append(
                f"{k}: predicted = the measured hold share ({hold_end} end of its bracket); "
                "predicted_hold_share_low/_high = its ends, inside the interval"
            )
            continue
        notes.append(
            f"{k}: predicted = probe cost kept; predicted_probe_cost_subtracted = one whole "
            f"probe pair ({got[0]} ns, {got[1]}) taken from every measured duration: the "
            "probes' share of a duration lies between the two"
            if got
            else f"{k}: probe cost not measured for this trace's kernel (kept in the durations)"
        )
    for k in ("from", "to"):
        held = pred[k].first.cost_provenance.get("hold_share")
        if held:
            notes.append(f"{k}: hold share: {held}")
        notes += [f"{k}: {n}" for n in pred[k].notes]
    return {"pairs": pairs, "notes": notes}
