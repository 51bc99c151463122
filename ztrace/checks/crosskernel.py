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

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ztrace.errors import ConfigError
from ztrace.format import read_meta

METRICS = ("contended", "wait_ns_total")
#: lock_kind values the capture gives zsmalloc's own locks
ZS_LOCK_KINDS = ("pool", "class", "zspage")


def design_for_kernel(release: str) -> str:
    """The lock design a kernel release runs (see docs/replay-model.md §3).

    ≥6.11 ``class`` ("mm/zsmalloc: change back to per-size_class lock"); 6.2–6.10 ``pool``
    (c0547d0b6a4b); 6.1: ``pool`` -- Debian's 6.1.192 source has the consolidated
    ``spin_lock(&pool->lock)`` in zs_malloc, zs_free, zs_map_object and __zs_compact
    (mm/zsmalloc.c, checked), i.e. the stable backport; ≤6.0 ``class``.
    """
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ConfigError(f"kernel release `{release}`: cannot tell its lock design")
    v = (int(m.group(1)), int(m.group(2)))
    if v >= (6, 11):
        return "class"
    if v >= (6, 1):
        return "pool"
    return "class"


def measured(trace: str | os.PathLike[str]) -> dict[str, Any]:
    """zsmalloc lock contention a capture measured: ``contended`` rows, ``wait_ns_total``;
    both None when the capture had no lock probes.

    The kernel side is ztrace/vm/contention.py's attribution (by stack and by lock address,
    with the spinlock slowpath kprobe rows that ``lock:contention_begin`` never sees on a
    2-vCPU guest); ``<trace>.kernel/`` beside a bundled sample or a VM run supplies the
    pool layout for the address check."""
    from ztrace.vm.contention import summarize_trace

    meta = read_meta(trace)
    probes = meta.extra.get("probes", "")
    if "locks" not in probes:
        return {"contended": None, "wait_ns_total": None, "note": f"no lock probes ({probes})"}
    p = Path(trace)
    side = summarize_trace(p, p.with_name(p.name + ".kernel"))
    z = side["zsmalloc"]
    return {
        "contended": z["contended"],
        "wait_ns_total": z["wait_ns_total"],
        "other_contended": side.get("other", {}).get("contended", 0),
        "source": side.get("source", ""),
    }


def _scenario(trace: str | os.PathLike[str]) -> str:
    meta = read_meta(trace)
    return meta.extra.get("scenario") or Path(trace).name


def cross_kernel(
    from_trace: str | os.PathLike[str],
    to_trace: str | os.PathLike[str],
    *,
    runs: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The pairs of ``validate cross-kernel --from A --to B`` (see the module docstring)."""
    from ztrace.replay.interval import replay_interval

    traces = {"from": from_trace, "to": to_trace}
    kernel = {k: read_meta(t).kernel_release for k, t in traces.items()}
    design = {k: design_for_kernel(r) for k, r in kernel.items()}
    meas = {k: measured(t) for k, t in traces.items()}
    designs = list(dict.fromkeys(design.values()))
    pred = {k: replay_interval(t, locks=designs, runs=runs, seed=seed) for k, t in traces.items()}
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
    for k in ("from", "to"):
        notes += [f"{k}: {n}" for n in pred[k].notes]
    return {"pairs": pairs, "notes": notes}
