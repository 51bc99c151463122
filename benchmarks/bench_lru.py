"""LRU design replay throughput, side by side with libCacheSim's LRU on the same stream.

Stream: the bundled 6.12 zswap guest capture (``replays/samples/guest-6.12-zswap``, real
kernel swap traffic) tiled ``--copies`` times, each copy with its pages shifted into a fresh
range and its time after the previous copy's, so the stream is N real-shaped swap events.
Each run, in one process and interleaved (anchor, then every design, then the next run):

* **anchor**: libCacheSim's C LRU (``process_trace`` on an oracleGeneral file of the same
  operations: every store, load and invalidate is a request for its page, size = the store's
  compressed length, 4096 otherwise), cache = the pool limit in bytes;
* every design: :func:`ztrace.replay.lru.run_design` on the loaded workload (compiled replay,
  the kernel-exact zsmalloc pool model, the inversion metric, results rows).

Process CPU time is the number to quote on this shared machine; wall time is printed too.
The per-workload preparation (dense page ids, resolved lengths; shared by every design and
limit) is timed separately. One JSON line per run configuration.

    .venv/bin/python -m benchmarks.bench_lru                     # 8 copies, 8M, 5 runs
    .venv/bin/python -m benchmarks.bench_lru --copies 16 --runs 3 --designs entry-lru
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_replay import _libcachesim_seconds, _machine

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "replays" / "samples" / "guest-6.12-zswap"
ALL = "none,zspage-lru,entry-lru,entry-lru-2nd-chance,swap-lru"


def _stream(copies: int):  # type: ignore[no-untyped-def]
    from ztrace.replay.lru.workload import Workload, load_workload

    w = load_workload(SAMPLE)
    clen = w.resolved_clen()
    span = int(w.ts[-1] - w.ts[0]) + 1
    shift = int(w.page.max()) + 1
    return Workload(
        ts=np.concatenate([w.ts + k * span for k in range(copies)]),
        op=np.tile(w.op, copies),
        page=np.concatenate([w.page + np.uint64(k * shift) for k in range(copies)]),
        clen=np.tile(clen, copies),
        page_size=w.page_size,
        ram_pages=w.ram_pages,
        meta=w.meta,
        dur=np.tile(w.dur, copies) if w.dur is not None else None,
    )


def _oracle_general(w, work: Path) -> Path:  # type: ignore[no-untyped-def]
    dt = np.dtype([("ts", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    rec = np.zeros(len(w), dtype=dt)
    rec["ts"] = ((w.ts - w.ts[0]) // 1_000_000).astype(np.uint32)
    rec["id"] = w.page
    c = w.resolved_clen()
    rec["size"] = np.where((w.op == 0) & (c > 0) & (c <= w.page_size), c, w.page_size)
    rec["next"] = -1
    out = work / f"lru-stream-{len(w)}.oracleGeneral.bin"
    out.write_bytes(rec.tobytes())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--designs", default=ALL)
    ap.add_argument("--pool-limit", default="8M")
    ap.add_argument("--work", default="/tmp/ztrace-bench")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from ztrace.replay.lru import design_list, parse_pool_limit, run_design

    names = design_list(args.designs)
    w = _stream(args.copies)
    n = len(w)
    limit = parse_pool_limit(args.pool_limit, ram_pages=None, page_size=w.page_size)
    t = time.process_time()
    w.prepared()
    prep_cpu = time.process_time() - t
    t = time.perf_counter()
    from ztrace.replay.lru.workload import from_arrays

    tiny = from_arrays([0, 1], [0, 1], [1, 1], [100, 0])
    for name in names:  # warm-up: load (or compile) every design
        run_design(tiny, name, 4)
    warm_s = time.perf_counter() - t
    og = _oracle_general(w, work)
    cpu: dict[str, list[float]] = {k: [] for k in ("libcachesim-lru", *names)}
    wall: dict[str, list[float]] = {k: [] for k in cpu}
    for _ in range(args.runs):
        t = time.perf_counter()
        cpu["libcachesim-lru"].append(_libcachesim_seconds(og, limit * w.page_size))
        wall["libcachesim-lru"].append(time.perf_counter() - t)
        for name in names:
            t, c = time.perf_counter(), time.process_time()
            run_design(w, name, limit)
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - t)
    anchor = statistics.median(cpu["libcachesim-lru"])
    per: dict[str, object] = {}
    for k in cpu:
        med = statistics.median(cpu[k])
        ratios = [a / b for a, b in zip(cpu[k], cpu["libcachesim-lru"], strict=True)]
        per[k] = {
            "runs_cpu_s": [round(x, 3) for x in cpu[k]],
            "median_cpu_s": round(med, 3),
            "median_wall_s": round(statistics.median(wall[k]), 3),
            "median_events_per_cpu_s": round(n / med),
            "ratio_vs_libcachesim_cpu": round(med / anchor, 3),
            "ratio_per_run_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        }
    out = {
        "bench": "lru",
        "machine": _machine(),
        "command": f"python -m benchmarks.bench_lru --copies {args.copies} --runs {args.runs} "
        f"--designs {args.designs} --pool-limit {args.pool_limit}",
        "events": n,
        "pool_limit_pages": limit,
        "prepare_cpu_s": round(prep_cpu, 3),
        "warm_start_s": round(warm_s, 2),
        "designs": per,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
