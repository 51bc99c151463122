"""Compare a design's predictions with a real kernel's zswap counters (docs/lru-kernel-check.md).

Input is the output directory of ``ztrace vm run --scenario zswap``: ``trace/`` (the capture,
schema v2 with zswap events) and ``counters/{before,after}.json`` (``ztrace/vm/counters.py``:
/proc/vmstat, debugfs zswap/*, /sys/module/zswap/parameters/*, /proc/meminfo). The pool limit
is what the guest kernel used: ``max_pool_percent`` of ``MemTotal`` (``totalram_pages``), with
the guest's ``accept_threshold_percent``.

    ztrace check lru-kernel VMDIR --design none [--design ...] [--json]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ztrace.errors import TraceFormatError
from ztrace.replay.lru import canonical_name, run_design, split_design_spec
from ztrace.replay.lru.worker_timing import measure, parse_scan_memcgs, parse_scans
from ztrace.replay.lru.workload import Workload, load_workload, with_scans

#: (label, kernel counter source, key, how the replay predicts it)
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("stores accepted (zswpout)", "vmstat", "zswpout", "zswpout"),
    ("pool_limit_hit", "debugfs", "pool_limit_hit", "pool_limit_hit"),
    ("rejects on the limit", "trace", "zswap_store:reject_pool_limit", "reject_pool_limit"),
    ("limit rejects (6.5+: derived)", "derived", "limit_rejects_derived", "reject_pool_limit"),
    ("reject_reclaim_fail", "debugfs", "reject_reclaim_fail", "reject_reclaim_fail"),
    (
        "reject_compress_fail + _poor",
        "debugfs_sum",
        "reject_compress_fail+reject_compress_poor",
        "reject_compress_poor",
    ),
    ("reject_alloc_fail", "debugfs", "reject_alloc_fail", "-"),
    ("written_back_pages", "debugfs", "written_back_pages", "written_back_pages"),
    ("duplicate_entry", "debugfs", "duplicate_entry", "duplicate_entry"),
    ("zswap loads hit (zswpin)", "vmstat", "zswpin", "zswpin"),
    ("disk swap-outs (pswpout)", "vmstat", "pswpout", "disk_writes"),
    ("disk swap-ins (pswpin)", "vmstat", "pswpin", "disk_swapin"),
    ("stored_pages at end", "debugfs_gauge", "stored_pages", "stored_pages"),
    ("pool pages at end", "pool_gauge", "pool_total_size", "pool_total_pages"),
)


def _load(p: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise TraceFormatError(p, f"cannot read counters ({exc})") from None


def _num(d: dict[str, Any], k: str) -> int | None:
    v = d.get(k)
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def kernel_values(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int | None]:
    """Counter deltas (after − before) and end-state gauges, by ROWS key."""
    out: dict[str, int | None] = {}
    for _, src, key, _ in ROWS:
        if src == "vmstat":
            a, b = _num(after["vmstat"], key), _num(before["vmstat"], key)
            out[key] = None if a is None or b is None else a - b
        elif src == "debugfs":
            a, b = _num(after["zswap_debugfs"], key), _num(before["zswap_debugfs"], key)
            out[key] = None if a is None or b is None else a - b
        elif src == "debugfs_sum":
            vals = []
            for part in key.split("+"):
                a, b = _num(after["zswap_debugfs"], part), _num(before["zswap_debugfs"], part)
                if a is not None and b is not None:
                    vals.append(a - b)
            out[key] = sum(vals) if vals else None
        elif src == "debugfs_gauge":
            out[key] = _num(after["zswap_debugfs"], key)
        elif src == "pool_gauge":
            v = _num(after["zswap_debugfs"], key)
            out[key] = None if v is None else -(-v // 4096)
    return out


def kernel_pool_hits(trace: str | Path, limit: int, kernel: str) -> dict[str, int]:
    """The kernel's own ``zs_malloc``/``zs_free`` stream (capture) through the zsmalloc
    model: at how many ``zswap_store`` entries the pool was at or above ``limit`` (6.10+
    ``zswap_check_limits``: ``cur_pages >= max_pages`` counts ``pool_limit_hit``). Equal to
    the kernel's counter, it shows the pool model and the limit check exact, so a replay's
    difference lies in which entries left the pool and when.

    ``zs_malloc`` is replayed in its two steps (6.12.118 and 6.1.192 mm/zsmalloc.c:
    zs_malloc): at entry, under the class lock (6.1: the pool lock), ``find_get_zspage()``;
    when its class has no zspage with room, the lock is dropped for ``alloc_zspage()`` and
    the object goes into that new zspage, whose pages count from the return
    (``atomic_long_add(..., &pool->pages_allocated)`` after the lock is taken again).
    Another CPU's ``zs_malloc`` of the same class meanwhile finds no room either and
    allocates a zspage of its own: two zspages where one-at-a-time replay makes one, up to
    ``pages_per_zspage`` pages more until one of them empties."""
    import heapq

    import numpy as np
    import pyarrow.compute as pc

    from ztrace.format import read_trace
    from ztrace.replay.lru._base import _new_zspool

    t = read_trace(Path(trace)).table
    ev = np.asarray(t.column("event").cast("string").to_numpy(zero_copy_only=False), object)
    keep = np.flatnonzero(np.isin(ev, ["zs_malloc", "zs_free", "zswap_store"]))
    ts = np.asarray(t.column("ts_ns").to_numpy())[keep]
    dur = np.asarray(pc.fill_null(t.column("duration_ns"), 0).to_numpy())[keep]
    h = np.asarray(pc.fill_null(t.column("handle"), 0).to_numpy())[keep]
    sz = np.asarray(pc.fill_null(t.column("size_bytes"), 0).to_numpy())[keep]
    ev = ev[keep]
    chain = int(t.schema.metadata.get(b"ztrace.zsmalloc_chain_size", b"8"))
    pool = _new_zspool(kernel, chain, 4096)
    objs: dict[int, Any] = {}
    # slow-path zs_malloc calls still in alloc_zspage(): (return ts, row, handle, size)
    pending: list[tuple[int, int, int, int]] = []
    hits = checks = peak = 0
    for i in np.argsort(ts, kind="stable").tolist():
        now = int(ts[i])
        while pending and pending[0][0] <= now:
            _, _, ph, psz = heapq.heappop(pending)
            objs[ph] = pool.malloc_new(psz)
        e = ev[i]
        if e == "zs_malloc":
            s = int(sz[i])
            if pool.has_room(s):
                objs[int(h[i])] = pool.malloc(s)
            else:
                heapq.heappush(pending, (now + int(dur[i]), i, int(h[i]), s))
        elif e == "zs_free":
            o = objs.pop(int(h[i]), None)
            if o is not None:
                pool.free(o)
        else:
            checks += 1
            cur = int(pool.total_pages())
            peak = max(peak, cur)
            hits += cur >= limit
    return {"store_checks": checks, "pool_limit_hit": hits, "peak_pages": peak}


def check(vmdir: str | Path, designs: list[str], *, pool_check: bool = False) -> dict[str, Any]:
    """Replay ``vmdir``'s capture under ``designs``; return kernel, recorded and predicted.
    ``pool_check``: also :func:`kernel_pool_hits` (a pass over the allocator rows)."""
    d = Path(vmdir)
    before = _load(d / "counters" / "before.json")
    after = _load(d / "counters" / "after.json")
    params = after.get("zswap_params", {})
    pct = int(params.get("max_pool_percent", 20))
    thr = int(params.get("accept_threshold_percent", 90))
    ram_pages = int(after["meminfo"]["MemTotal_kB"]) // 4
    # zswap_is_full(): totalram_pages() * zswap_max_pool_percent / 100
    limit = ram_pages * pct // 100
    w: Workload = load_workload(d / "trace")
    # the zswap-lru scenario's ftrace of the shrink worker: replay the worker in time
    timing = None
    scans: dict[str, Any] | None = None
    if (d / "shrink_wq.trace").is_file():
        timing = measure(d / "shrink_wq.trace", w.worker_wb_ts, w.worker_wb_dur)
        w.worker_timing = timing
        s_ts, s_n, scans = parse_scans(d / "shrink_wq.trace")
        if len(s_ts):  # the shrinker's measured calls replace its writebacks as demand
            w = with_scans(w, s_ts, s_n, parse_scan_memcgs(d / "shrink_wq.trace"))
    kern = kernel_values(before, after)
    stores = int((w.op == 0).sum())
    if kern.get("zswpout") is not None and not w.recorded.get("zswap_store:reject_pool_limit"):
        # 6.5+ zswap_store returns bool (the capture sees `reject_other`): the kernel's limit
        # rejects are what is neither stored nor a compression failure
        cf = kern.get("reject_compress_fail+reject_compress_poor") or 0
        kern["limit_rejects_derived"] = stores - int(kern["zswpout"] or 0) - int(cf)
    rec = w.recorded
    result: dict[str, Any] = {
        "vmdir": str(d),
        "release": after.get("uname_r"),
        "zswap_params": params,
        "ram_pages": ram_pages,
        # events the capture lost (ring buffer full): the replayed workload misses them
        "lost_events": w.meta.lost_events if w.meta is not None else 0,
        "pool_limit_pages": limit,
        "accept_threshold": thr,
        "worker_timing": None if timing is None else timing.summary,
        "shrinker_scans": scans,
        "trace_ops": {
            "stores": stores,
            "loads": int((w.op == 1).sum()),
            "invalidates": int((w.op == 2).sum()),
            # writebacks of the kernel's memory-pressure shrinker (6.8+), replayed as demand
            "shrinker_writebacks": int((w.op == 3).sum()),
        },
        "recorded": rec,
        "kernel": kern,
        "designs": {},
    }
    if pool_check:
        rel = str(after.get("uname_r") or "6.12")
        result["kernel_pool_hits"] = kernel_pool_hits(d / "trace", limit, rel.split("-")[0])
    for spec in designs:
        name, extra = split_design_spec(spec)
        params = f"accept_threshold={thr}" + (f",{extra}" if extra else "")
        r = run_design(w, canonical_name(name), limit, params)
        label = r.design + (f" ({extra})" if extra else "")
        result["designs"][label] = {"summary": r.summary, "counters": r.counters}
        if r.memcg:
            result["designs"][label]["memcg"] = r.memcg
    if (d / "memcg.tsv").is_file() and len(w.memcg_ids()) > 1:
        result["memcg"] = memcg_kernel(d)
    return result


def memcg_kernel(d: Path) -> dict[str, dict[str, Any]]:
    """Per cgroup of the ``zswap-lru`` scenario (memcg.tsv): its cgroup id (the capture's
    ``memcg_id``), ``memory.max`` and memory.stat deltas (zswpout, zswpin, zswpwb; 6.12
    counts them per memcg: mm/zswap.c count_objcg_events in zswap_store, zswap_load,
    zswap_writeback_entry)."""
    from ztrace.replay.lru.memcg import kernel_counts, memcg_rows

    out: dict[str, dict[str, Any]] = {}
    for parts in memcg_rows(d):
        if len(parts) >= 4 and parts[2].isdigit():
            out[parts[1]] = {"memcg_id": int(parts[2]), "memory_max": parts[3]}
    for name, kc in kernel_counts(d, list(out)).items():
        out[name].update(kc)
    return out


#: memory.stat key → the replay's per-memcg counter (_core.MC_NAMES)
MEMCG_ROWS = (("zswpout", "stored"), ("zswpwb", "written_back"), ("zswpin", "zswap_hits"))


def memcg_markdown(res: dict[str, Any]) -> str:
    """Per cgroup: the kernel's memory.stat against each design's replay."""
    if not res.get("memcg"):
        return ""
    names = [n for n in res["designs"] if res["designs"][n].get("memcg")]
    head = ["cgroup", "counter", "kernel (memory.stat)", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cg, kc in res["memcg"].items():
        for key, pred in MEMCG_ROWS:
            cells = [f"{cg} ({kc['memory_max']})", key, str(kc.get(key, "–"))]
            for n in names:
                row = res["designs"][n]["memcg"].get(str(kc["memcg_id"]), {})
                v, k = row.get(pred), kc.get(key)
                pct = f" ({(v - k) / k:+.1%})" if v is not None and k else ""
                cells.append("–" if v is None else f"{v}{pct}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(res: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    names = list(res["designs"])
    head = ["quantity", "kernel (counters)", "capture (recorded outcomes)", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rec = res["recorded"]
    recorded_for = {
        "zswpout": rec.get("zswap_store:stored"),
        "zswap_store:reject_pool_limit": rec.get("zswap_store:reject_pool_limit"),
        "reject_compress_fail+reject_compress_poor": rec.get("zswap_store:reject_compress"),
        "written_back_pages": rec.get("zswap_writeback:written"),
        "zswpin": rec.get("zswap_load:hit"),
    }
    for label, src, key, pred in ROWS:
        kv = res["kernel"].get(key) if src != "trace" else None
        cells = [label, "–" if kv is None else str(kv)]
        rv = recorded_for.get(key)
        cells.append("–" if rv is None else str(rv))
        for n in names:
            c = res["designs"][n]["counters"]
            cells.append(str(c.get(pred, "–")) if pred != "-" else "not modelled")
        lines.append("| " + " | ".join(cells) + " |")
    if res.get("memcg"):
        lines.append("\nper memory cgroup:\n\n" + memcg_markdown(res))
    for key, what in (
        ("worker_timing", "shrink worker timing (measured, replayed)"),
        ("shrinker_scans", "memory-pressure shrinker calls (measured, replayed)"),
        ("kernel_pool_hits", "the kernel's own allocations through the pool model"),
    ):
        if res.get(key):
            lines.append(f"\n{what}: {json.dumps(res[key])}")
    return "\n".join(lines) + "\n"
