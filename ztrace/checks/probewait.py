"""``check probewait``: what the capture records as a spinlock wait on a lock nobody holds.

Every measured spinlock wait runs from the slowpath kprobe's stamp to its kretprobe's, so it
carries the pair's own cost even when the lock was free the moment the probe let go
(:func:`ztrace.vm.contention.probe_floor` estimates that cost as the 1st percentile of a
run's waits). ``ztrace vm run -s probewait`` measures it directly (issue 10: "measure the
probes' own cost on each kernel ... on the same function path"): zsstress.ko calls
``queued_spin_lock_slowpath()`` on a lock only its caller uses, under the real capture, from
a kthread, from a user process's ``write()`` (one call, or 64 in a row), and right after the
same process wrote a page to zram; each step alone and beside a zram writer, interleaved.
The rows are told apart by lock address (the module prints each free lock's, ``zsstress:
free_lock=ADDR``, to the kernel log the scenario keeps as ``zsstress.log``; stacks cannot do
it, as the module is gone by the time the capture symbolizes them) and the steps by the
guest's uptime stamps in ``probewait.tsv`` (the capture's clock: both are CLOCK_MONOTONIC in
a guest that never suspends).
"""

from __future__ import annotations

import os
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ztrace.errors import ConfigError
from ztrace.format import read_trace

#: /proc/uptime, the scenario's step stamps, counts in 10 ms: a step's window is widened by
#: this much on each side (its free locks exist only while its module is loaded, and steps
#: are 2 s apart, so no other step's rows come in)
STEP_PAD_NS = 500_000_000
#: zsmalloc's own locks as the capture attributes them (ztrace.capture.attribute)
ZS_KINDS = ("class", "pool", "zspage")


def steps(run: Path) -> list[tuple[str, str, int, int]]:
    """(step, background, start ns, end ns) per line of ``probewait.tsv``."""
    f = run / "probewait.tsv"
    if not f.is_file():
        raise ConfigError(f"{run}: no probewait.tsv (a `ztrace vm run -s probewait` output)")
    out = []
    for n, line in enumerate(f.read_text().splitlines(), 1):
        try:
            name, bg, s, e = line.split("\t")
            out.append((name, bg, round(float(s) * 1e9), round(float(e) * 1e9)))
        except ValueError:
            raise ConfigError(f"{f}:{n}: expected step, background, start, end") from None
    if not out:
        raise ConfigError(f"{f}: no steps (the scenario did not finish)")
    return out


def free_locks(run: Path) -> set[int]:
    """The free locks' addresses the module printed (``zsstress: free_lock=ADDR``)."""
    f = run / "zsstress.log"
    if not f.is_file():
        raise ConfigError(f"{run}: no zsstress.log (the kernel log of a probewait run)")
    found = {int(a, 16) for a in re.findall(r"zsstress: free_lock=([0-9a-f]+)", f.read_text())}
    if not found:
        raise ConfigError(
            f"{f}: no `zsstress: free_lock=` line (a zsstress.ko older than 2026-12-05)"
        )
    return found


def _stats(w: np.ndarray) -> dict[str, Any]:
    if not w.size:
        return {"n": 0}
    q = np.percentile(w, [10, 50, 90, 99])
    return {
        "n": int(w.size),
        "p10_ns": int(q[0]),
        "p50_ns": int(q[1]),
        "p90_ns": int(q[2]),
        "p99_ns": int(q[3]),
        "mean_ns": int(w.mean()),
    }


def check_probewait(run: str | os.PathLike[str]) -> dict[str, Any]:
    """Per step of a probewait run: the free-lock waits the capture recorded, and the
    zsmalloc lock waits of the same window (the zram writer's, when it ran)."""
    d = Path(run)
    plan = steps(d)
    free_addrs = free_locks(d)
    tr = read_trace(d / "trace")
    t = tr.table.filter(pc.equal(tr.table.column("event").cast(pa.string()), "spin_slowpath"))
    ts = np.asarray(t.column("ts_ns"), dtype=np.int64)
    wait = np.asarray(t.column("wait_ns").fill_null(0), dtype=np.int64)
    kind = np.asarray(t.column("lock_kind").cast(pa.string()).fill_null("other"), dtype=object)
    addr = np.asarray(t.column("lock_addr").fill_null(0), dtype=np.uint64)
    free = np.isin(addr, np.array(sorted(free_addrs), dtype=np.uint64))
    # the gap from the CPU's last page-table switch to each wait (captures since session 29;
    # -1 where unknown): TCG's TLB is empty right after one, and the probes then cost ~6 us
    mm = (
        np.asarray(t.column("mm_switch_ns").cast(pa.int64()).fill_null(-1), dtype=np.int64)
        if "mm_switch_ns" in t.column_names
        else np.full(t.num_rows, -1, np.int64)
    )
    zs = np.isin(kind, ZS_KINDS)
    rows: list[dict[str, Any]] = []
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, bg, s, e in plan:
        win = (ts >= s - STEP_PAD_NS) & (ts <= e + STEP_PAD_NS)
        row = {
            "step": name,
            "background": bg,
            "seconds": round((e - s) / 1e9, 3),
            "free_lock": _stats(wait[win & free]),
            "mm_switch_p50_ns": _p50_known(mm[win & free]),
            "zsmalloc_waits": _stats(wait[win & zs]),
        }
        rows.append(row)
        by.setdefault((name, bg), []).append(row)
    summary = [
        {
            "step": k[0],
            "background": k[1],
            "reps": len(v),
            "free_lock_p50_ns": [r["free_lock"].get("p50_ns") for r in v],
            "free_lock_p50_ns_median": _median([r["free_lock"].get("p50_ns") for r in v]),
            "free_lock_mean_ns_median": _median([r["free_lock"].get("mean_ns") for r in v]),
            "zsmalloc_waits_p50_ns": [r["zsmalloc_waits"].get("p50_ns") for r in v],
            "mm_switch_p50_ns_median": _median([r["mm_switch_p50_ns"] for r in v]),
        }
        for k, v in by.items()
    ]
    return {"run": str(d), "kernel": tr.meta.kernel_release, "steps": rows, "summary": summary}


def _p50_known(a: np.ndarray) -> int | None:
    """The median of the known (>= 0) values, None without any."""
    a = a[a >= 0]
    return int(np.median(a)) if a.size else None


def _median(xs: list[int | None]) -> int | None:
    v = [x for x in xs if x is not None]
    return int(statistics.median(v)) if v else None


def lines(res: dict[str, Any]) -> list[str]:
    """The check as text: one line per step kind and background, medians over the reps."""
    out = [
        f"{res['run']} ({res['kernel']}): spinlock waits the capture recorded on a free lock",
        f"{'step':<10} {'beside':<6} {'reps':>4}  {'p50 ns (median; per rep)':<36} {'mean ns':>8}"
        f"  {'since mm switch':>15}  zsmalloc waits p50 ns (per rep)",
    ]
    for s in res["summary"]:
        reps = ", ".join("-" if x is None else str(x) for x in s["free_lock_p50_ns"])
        zsw = ", ".join("-" if x is None else str(x) for x in s["zsmalloc_waits_p50_ns"])
        gap = s["mm_switch_p50_ns_median"]
        since = "-" if gap is None else f"{gap / 1e3:,.0f} us"
        out.append(
            f"{s['step']:<10} {s['background']:<6} {s['reps']:>4}  "
            f"{str(s['free_lock_p50_ns_median']) + ' (' + reps + ')':<36} "
            f"{s['free_lock_mean_ns_median'] or '-':>8}  {since:>15}  {zsw}"
        )
    return out
