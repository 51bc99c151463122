"""Replay throughput and memory: allocator model + lock design(s), against libCacheSim.

Pipeline measured: a ``zram-parallel`` synthetic trace (N events, 4 CPUs) streamed through
:func:`ztrace.replay.engine.replay` (Parquet read + kernel-exact zsmalloc model + lock
simulator + results tables) ``--runs`` times after one warm-up (numba compilation is
reported separately, not timed). Wall and process CPU times are both reported: on a shared
machine the CPU time is the meaningful one. The anchor, in the same process: the same event stream
(object = handle, size = the malloc's size) through libCacheSim's C LRU via
``process_trace`` on an oracleGeneral binary trace -- one hash-table lookup and list update
per event, i.e. the cost floor of a C trace simulator. Prints one JSON line per run
configuration.

    .venv/bin/python -m benchmarks.bench_replay                       # 10 M events, class
    .venv/bin/python -m benchmarks.bench_replay --locks class,pool,pools:32,striped:8,magazine
    .venv/bin/python -m benchmarks.bench_replay --events 100000000 --runs 1   # memory check
    .venv/bin/python -m benchmarks.bench_replay --runs 1 --no-anchor --startup  # start time
    .venv/bin/python -m benchmarks.bench_replay --events 5000000 --latency      # memory bound
    .venv/bin/python -m benchmarks.bench_replay --ab-against /tmp/ab-old --rounds 7  # A/B
    .venv/bin/python -m benchmarks.bench_replay --core --ab-against /tmp/ab-old  # lock core A/B
    .venv/bin/python -m benchmarks.bench_replay --threads-ab --locks class,pool,magazine  # threads

``--ab-against DIR`` compares this checkout with another one (e.g. ``git worktree add
/tmp/ab-old <commit>``): it runs ``--runs 1 --no-anchor`` in a fresh process of each tree,
alternating A B A B ... ``--rounds`` times so that host load hits both alike, and prints one
JSON line with both trees' median CPU throughput, their spread (min, max) and the ratio.

``--core`` times the lock core alone: the ops that one replay of the trace's first
``--core-events`` events hands to each design (saved once under ``--work``), fed batch by
batch into a fresh ``SimState`` per design, thread CPU ns per op (median of ``--runs``). With
``--ab-against`` both trees run the same saved ops (the input of ``SimState.feed``, which
both must accept), alternating fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 10_000_000


def _trace(events: int, work: Path) -> Path:
    """N-event trace; above 10 M, 10 M chunks shifted in time and handle space (so the
    synthetic generator never holds more than 10 M events in memory)."""
    from ztrace.format import write_trace
    from ztrace.workloads.synth import synth, synth_meta

    out = work / f"replay-trace-{events}"
    if (out / "part-00000.parquet").exists():
        return out
    n0 = min(events, CHUNK)
    meta = synth_meta("zram-parallel", cpus=4, seed=1, events=events)
    t = synth("zram-parallel", events=n0, seed=1, cpus=4)
    path = write_trace(out, t, meta)
    if events > CHUNK:
        md = pq.read_metadata(path).metadata
        ts = t.column("ts_ns").to_numpy()
        span = int(ts[-1] - ts[0]) + 1
        for k in range(1, events // CHUNK):
            part = t.set_column(0, "ts_ns", pa.array(ts + np.uint64(k * span)))
            h = t.column("handle").to_numpy() + np.uint64(k << 40)
            part = part.set_column(part.schema.get_field_index("handle"), "handle", pa.array(h))
            pq.write_table(
                part.replace_schema_metadata(md), out / f"part-{k:05d}.parquet", compression="zstd"
            )
    return out


def _oracle_general(trace: Path, work: Path) -> tuple[Path, int]:
    """The trace as libCacheSim oracleGeneral records (u32 ts, u64 id, u32 size, i64 next)."""
    from ztrace.format import iter_batches

    out = work / f"{trace.name}.oracleGeneral.bin"
    dt = np.dtype([("ts", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    n = 0
    sizes: dict[int, int] = {}
    with open(out, "wb") as f:
        for b in iter_batches(trace, columns=["ts_ns", "handle", "size_bytes"]):
            h = b.column("handle").to_numpy()
            sz = b.column("size_bytes").to_numpy().astype(np.int64)
            # frees carry size 0: give them their malloc's size (the object's size)
            m = sz > 0
            sizes.update(zip(h[m].tolist(), sz[m].tolist(), strict=True))
            if (~m).any():
                sz[~m] = [sizes.get(x, 1) for x in h[~m].tolist()]
            rec = np.zeros(len(h), dtype=dt)
            rec["ts"] = (b.column("ts_ns").to_numpy() // 1_000_000).astype(np.uint32)
            rec["id"] = h
            rec["size"] = sz
            rec["next"] = -1
            f.write(rec.tobytes())
            n += len(h)
    return out, n


def _libcachesim_seconds(path: Path, cache_bytes: int) -> float:
    import libcachesim as lcs

    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    cache = lcs.LRU(cache_size=cache_bytes)
    t = time.process_time()
    cache.process_trace(reader)
    return time.process_time() - t


def _breakdown(trace: Path, n: int = 2_000_000) -> dict[str, float]:
    """CPU ns/event of the parts, on the first ``n`` events: the pool model alone (a plain
    numba loop calling malloc/free), the handle table alone, and the lock core alone (class
    design, ops from one replay)."""
    from numba import njit

    from ztrace.format import read_trace
    from ztrace.format.events import EV_FREE, EV_MALLOC
    from ztrace.model.classes import build_classes
    from ztrace.model.zsmalloc import free as zs_free
    from ztrace.model.zsmalloc import malloc as zs_malloc
    from ztrace.model.zsmalloc import new_pool
    from ztrace.replay import handles as E
    from ztrace.replay.ingest import event_codes

    t = read_trace(trace, columns=["event", "size_bytes", "handle"]).table.slice(0, n)
    code = event_codes(t.column("event"))
    size = t.column("size_bytes").to_numpy().astype(np.int64)
    handle = t.column("handle").to_numpy().view(np.int64)

    @njit
    def model_only(pool, code, size, handle, tab):  # type: ignore[no-untyped-def]
        for i in range(code.shape[0]):
            if code[i] == EV_MALLOC:
                s = -1 - E.hm_find(tab, handle[i])
                tab[s, E.HM_KEY] = handle[i]
                tab[s, E.HM_VAL] = zs_malloc(pool, size[i]) << E.HM_SHIFT
            elif code[i] == EV_FREE:
                s = E.hm_find(tab, handle[i])
                zs_free(pool, tab[s, E.HM_VAL] >> E.HM_SHIFT)
                E.hm_delete(tab, s)

    @njit
    def table_only(code, handle, tab):  # type: ignore[no-untyped-def]
        for i in range(code.shape[0]):
            if code[i] == EV_MALLOC:
                s = -1 - E.hm_find(tab, handle[i])
                tab[s, E.HM_KEY] = handle[i]
                tab[s, E.HM_VAL] = 0
            elif code[i] == EV_FREE:
                E.hm_delete(tab, E.hm_find(tab, handle[i]))

    out = {}
    cap = 1 << int(np.ceil(np.log2(4 * n)))
    for name, fn, args in (
        (
            "model_and_table",
            model_only,
            lambda: (
                new_pool(build_classes(8)),
                code,
                size,
                handle,
                np.full((cap, E.HM_COLS), -1, np.int64),
            ),
        ),
        ("table_only", table_only, lambda: (code, handle, np.full((cap, E.HM_COLS), -1, np.int64))),
    ):
        a = args()
        fn(*[x[:10] if isinstance(x, np.ndarray) and x.ndim == 1 else x for x in a])
        a = args()
        c = time.process_time()
        fn(*a)
        out[f"{name}_cpu_ns_per_event"] = round((time.process_time() - c) / len(code) * 1e9)
    return out


def _chase_ns(mb: float, steps: int = 2_000_000, huge: bool = False) -> float:
    """ns per dependent load of a random pointer chase through ``mb`` MB (one cycle); with
    ``huge`` in an anonymous mapping advised MADV_HUGEPAGE (transparent huge pages)."""
    import mmap

    from numba import njit

    @njit(cache=False)
    def chase(nxt, steps):  # type: ignore[no-untyped-def]
        i = 0
        for _ in range(steps):
            i = nxt[i]
        return i

    n = int(mb * 2**20 / 8)
    perm = np.random.default_rng(1).permutation(n)
    if huge:
        m = mmap.mmap(-1, n * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_HUGEPAGE)
        nxt = np.frombuffer(m, dtype=np.int64)
    else:
        nxt = np.empty(n, np.int64)
    nxt[perm] = np.roll(perm, -1)
    chase(nxt, 1000)
    t = time.perf_counter()
    chase(nxt, steps)
    return (time.perf_counter() - t) / steps * 1e9


def _anon_huge_kb() -> int:
    """This process's transparent huge pages now (smaps_rollup AnonHugePages, kB)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def _latency(trace: Path) -> dict[str, object]:
    """What bounds the pool model: this machine's dependent-load latency by working-set
    size, and the model's own working set and cost on the whole trace without a handle
    table (each free is told the row of its malloc, found beforehand in Python)."""
    from numba import njit

    from ztrace.format import read_trace
    from ztrace.format.events import EV_FREE, EV_MALLOC
    from ztrace.model.classes import build_classes
    from ztrace.model.zsmalloc import free as zs_free
    from ztrace.model.zsmalloc import malloc as zs_malloc
    from ztrace.model.zsmalloc import new_pool
    from ztrace.replay.handles import HM_COLS
    from ztrace.replay.ingest import event_codes

    out: dict[str, object] = {
        "load_ns_by_working_set_mb": {
            str(mb): round(_chase_ns(mb), 1) for mb in (0.5, 2, 8, 32, 128)
        },
        "load_ns_by_working_set_mb_huge_pages": {
            str(mb): round(_chase_ns(mb, huge=True), 1) for mb in (8, 32, 128)
        },
        "anon_huge_pages_kb": _anon_huge_kb(),
    }
    t = read_trace(trace, columns=["event", "size_bytes", "handle"]).table
    code = event_codes(t.column("event"))
    size = t.column("size_bytes").to_numpy().astype(np.int64)
    handle = t.column("handle").to_numpy().view(np.int64)
    ref = np.full(len(code), -1, np.int64)  # a free's malloc row
    live: dict[int, int] = {}
    for i in np.flatnonzero((code == EV_MALLOC) | (code == EV_FREE)).tolist():
        if code[i] == EV_MALLOC:
            live[int(handle[i])] = i
        else:
            ref[i] = live.pop(int(handle[i]), -1)

    @njit(cache=False)
    def model(pool, code, size, ref, objof, frees):  # type: ignore[no-untyped-def]
        for i in range(code.shape[0]):
            if code[i] == EV_MALLOC:
                objof[i] = zs_malloc(pool, size[i])
            elif frees and code[i] == EV_FREE and ref[i] >= 0:
                zs_free(pool, objof[ref[i]])

    for frees, key in ((False, "mallocs_only"), (True, "mallocs_and_frees")):
        pool = new_pool(build_classes(8))
        objof = np.full(len(code), -1, np.int64)
        model(new_pool(build_classes(8)), code[:10], size[:10], ref[:10], objof[:10], frees)
        c = time.process_time()
        model(pool, code, size, ref, objof, frees)
        out[f"model_{key}_cpu_ns_per_event"] = round((time.process_time() - c) / len(code) * 1e9)

    # the same model with a cache-resident pool: 1,000 live objects, each step frees a
    # random one and allocates a size from the trace (its compute, not its memory)
    @njit(cache=False)
    def resident(pool, sizes, live_n, steps):  # type: ignore[no-untyped-def]
        np.random.seed(1)
        live = np.empty(live_n, np.int64)
        for k in range(live_n):
            live[k] = zs_malloc(pool, sizes[k])
        for t in range(steps):
            k = np.random.randint(live_n)
            zs_free(pool, live[k])
            live[k] = zs_malloc(pool, sizes[t % sizes.shape[0]])

    sizes = size[code == EV_MALLOC][:65536]
    resident(new_pool(build_classes(8)), sizes, 10, 10)
    steps = 2_000_000
    c = time.process_time()
    resident(new_pool(build_classes(8)), sizes, 1000, steps)
    out["model_cache_resident_cpu_ns_per_op"] = round(
        (time.process_time() - c) / (2 * steps + 1000) * 1e9
    )
    # the end state of the run with frees: the pool's arrays, and the handle
    # table the replay would hold for its live handles (power of two, at most 3/4 full)
    rows = 1 << int(np.ceil(np.log2(max(4 * len(live) / 3, 1))))
    out["working_set_mb"] = {
        "pool_obj": round(pool.obj.nbytes / 2**20, 1),
        "pool_zspages": round(pool.zp.nbytes / 2**20, 1),
        "pool_slots": round(pool.slot.nbytes / 2**20, 1),
        "handle_table": round(rows * HM_COLS * 8 / 2**20, 1),
    }
    out["frees"] = int((code == EV_FREE).sum())
    out["live_handles_end"] = len(live)
    return out


def _startup(work: Path) -> dict[str, float]:
    """Wall seconds of a fresh process importing ztrace and replaying a 10 k-event trace:
    ``cold`` with an empty numba cache (everything compiles), ``warm`` once that cache is
    filled (what every later CLI call, demo step or subprocess test pays)."""
    import subprocess
    import tempfile

    tr = _trace(10_000, work)
    code = f"from ztrace.replay.engine import replay; replay({str(tr)!r}, locks=['class'])"
    root = Path(__file__).resolve().parents[1]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for name in ("cold_start_s", "warm_start_s", "warm_start_s"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True)
            d = round(time.perf_counter() - t, 2)
            out[name] = min(d, out.get(name, d))
    return out


def _machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stages(trace: Path, n: int, locks: list[str]) -> dict[str, float]:
    """CPU ns/event of each stage of one serial replay (``threads=1``, thread CPU time):
    allocator ingest, compaction split, lock core, results tables, and the rest (Parquet
    decode, column conversion, prescan)."""
    import ztrace.replay.engine as engine
    import ztrace.replay.pipeline as pipeline

    acc: dict[str, float] = {}
    saved = {}

    def timed(mod: object, name: str, key: str) -> None:
        f = getattr(mod, name)
        saved[(mod, name)] = f

        def w(*a: object, **k: object) -> object:
            t = time.thread_time()
            try:
                return f(*a, **k)
            finally:
                acc[key] = acc.get(key, 0.0) + time.thread_time() - t

        setattr(mod, name, w)

    timed(pipeline.AllocGroup, "ingest", "ingest")
    timed(pipeline, "split_compactions", "split")
    timed(pipeline, "feed", "lock_core")
    timed(engine, "build_tables", "tables")
    try:
        c = time.thread_time()
        engine.replay(trace, locks=locks, threads=1)
        total = time.thread_time() - c
    finally:
        for (mod, name), f in saved.items():
            setattr(mod, name, f)
    acc["rest"] = total - sum(acc.values())
    return {f"stage_{k}_cpu_ns_per_event": round(v / n * 1e9) for k, v in acc.items()}


def _threads_ab(args: argparse.Namespace) -> int:
    """Serial (``threads=1``) against parallel (``threads=--threads``) replays of the same
    trace and designs, alternating S P P S ... for ``--rounds`` pairs in this process (numba
    warmed first). Wall time is the number this measures; each run also reports its process
    CPU time, the CPU time of every worker thread's tasks, and the load average."""
    import ztrace.replay.engine as engine
    from ztrace.replay.pipeline import DesignPipeline

    seen: list[DesignPipeline] = []

    class Recorded(DesignPipeline):
        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            super().__init__(*a, **k)
            seen.append(self)

    engine.DesignPipeline = Recorded  # type: ignore[misc]
    work = Path(args.work)
    trace = _trace(args.events, work)
    locks = args.locks.split(",")
    engine.replay(_trace(10_000, work), locks=locks, threads=args.threads)  # compile
    runs: dict[str, list[dict[str, object]]] = {"serial": [], "parallel": []}
    for r in range(args.rounds):
        for name in ("serial", "parallel") if r % 2 == 0 else ("parallel", "serial"):
            load = os.getloadavg()[0]
            t, c = time.perf_counter(), time.process_time()
            engine.replay(trace, locks=locks, threads=1 if name == "serial" else args.threads)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            th = {k: round(v, 2) for k, v in sorted(seen[-1].thread_cpu_s.items())}
            runs[name].append(
                {
                    "wall_s": round(wall, 2),
                    "cpu_s": round(cpu, 2),
                    "load_avg_1m_before": load,
                    "thread_cpu_s": th,
                }
            )
    walls = {k: [float(x["wall_s"]) for x in v] for k, v in runs.items()}  # type: ignore[arg-type]
    pairs = [p / s for s, p in zip(walls["serial"], walls["parallel"], strict=True)]
    print(
        json.dumps(
            {
                "bench": "replay-threads",
                "machine": _machine(),
                "command": f"python -m benchmarks.bench_replay --threads-ab --threads "
                f"{args.threads} --rounds {args.rounds} --events {args.events} "
                f"--locks {args.locks}",
                "runs": runs,
                "median_wall_s": {k: statistics.median(v) for k, v in walls.items()},
                "wall_parallel_over_serial_per_pair": [round(x, 3) for x in pairs],
                "median_ratio": round(statistics.median(pairs), 3),
                "ratio_of_medians": round(
                    statistics.median(walls["parallel"]) / statistics.median(walls["serial"]), 3
                ),
                "load_avg_1m_end": os.getloadavg()[0],
            }
        ),
        flush=True,
    )
    return 0


def _core_ops(trace: Path, events: int, work: Path, locks: list[str]) -> Path:
    """Save the ops each design's lock core gets in one serial replay of the trace's first
    ``events`` events (``SimState.feed``'s arguments, batch by batch, and its set-up)."""
    import ztrace.replay.pipeline as pipeline
    from ztrace.replay.engine import replay

    out = work / f"core-ops-{trace.name}-{events}-{'_'.join(locks).replace(':', '-')}.npz"
    if out.exists():
        return out
    part = work / f"core-trace-{events}"
    if not (part / "part-00000.parquet").exists():
        from ztrace.format import read_trace, write_trace

        t = read_trace(trace)
        write_trace(part, t.table.slice(0, events), t.meta)
    saved: dict[str, np.ndarray] = {}
    feed = pipeline.feed

    def record(s: object, ops: dict[str, np.ndarray]) -> None:
        d = s.design.name  # type: ignore[attr-defined]
        k = sum(1 for x in saved if x.startswith(f"{d}/arr/"))
        for name in ("arr", "cpu", "kind", "cls", "pool", "cost", "cost2", "cost3", "bin"):
            saved[f"{d}/{name}/{k}"] = np.ascontiguousarray(ops[name], dtype=np.int64)
        if k == 0:
            saved[f"{d}/setup"] = np.array(
                [len(s.qhead), s.cstats.shape[0], int(s.write_after)]  # type: ignore[attr-defined]
            )
            saved[f"{d}/cm"] = s.cm  # type: ignore[attr-defined]
        feed(s, ops)  # type: ignore[arg-type]

    pipeline.feed = record  # type: ignore[assignment]
    try:
        replay(part, locks=locks, threads=1)
    finally:
        pipeline.feed = feed
    np.savez(out, **saved)
    return out


def _core(args: argparse.Namespace) -> int:
    """CPU ns per op of the lock core alone, per design (see the module docstring)."""
    from ztrace.replay.locks import get_design
    from ztrace.replay.locks._state import SimState

    work = Path(args.work)
    locks = args.locks.split(",")
    ops_file = Path(args.core_ops) if args.core_ops else None
    if ops_file is None:
        ops_file = _core_ops(_trace(args.events, work), args.core_events, work, locks)
    z = np.load(ops_file)
    out: dict[str, object] = {"bench": "replay-core", "ops_file": str(ops_file), "locks": locks}
    for d in locks:
        key = get_design(d).name  # the ops are saved by design name ("magazine:16")
        n_cpus, n_classes, write_after = (int(x) for x in z[f"{key}/setup"])
        cm = z[f"{key}/cm"]
        nb = sum(1 for x in z.files if x.startswith(f"{key}/arr/"))
        names = ("arr", "cpu", "kind", "cls", "pool", "cost", "cost2", "cost3", "bin")
        batches = [[z[f"{key}/{c}/{k}"] for c in names] for k in range(nb)]
        n_ops = sum(len(b[0]) for b in batches)
        warm = SimState(get_design(d), n_cpus, n_classes, cm, bool(write_after))
        warm.feed(*[x[:100] for x in batches[0]], final=True)  # compile or load the cache
        ns = []
        for _ in range(args.runs):
            s = SimState(get_design(d), n_cpus, n_classes, cm, bool(write_after))
            t = time.thread_time()
            for b in batches:
                s.feed(*b)
            s.finish()
            ns.append((time.thread_time() - t) / n_ops * 1e9)
        out[d] = {"ops": n_ops, "cpu_ns_per_op": [round(x, 1) for x in ns]}
        out[f"{d}_median_cpu_ns_per_op"] = round(statistics.median(ns), 1)
    out["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    return 0


def _ab(args: argparse.Namespace) -> int:
    """Alternate single-run processes of this tree (B, "new") and ``--ab-against`` (A)."""
    import subprocess

    trees = {"old": Path(args.ab_against).resolve(), "new": Path(__file__).resolve().parents[1]}
    if args.core:
        return _core_ab(args, trees)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_replay",
        "--events",
        str(args.events),
        "--runs",
        "1",
        "--no-anchor",
        "--locks",
        args.locks,
        "--work",
        args.work,
    ]
    got: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            env = dict(os.environ, PYTHONPATH=str(trees[name]))
            out = subprocess.run(
                cmd, cwd=trees[name], env=env, capture_output=True, text=True, check=True
            )
            got[name].append(json.loads(out.stdout.splitlines()[-1])["median_events_per_cpu_s"])
    med = {k: statistics.median(v) for k, v in got.items()}
    print(
        json.dumps(
            {
                "bench": "replay-ab",
                "machine": _machine(),
                "command": f"python -m benchmarks.bench_replay --ab-against {args.ab_against} "
                f"--rounds {args.rounds} --events {args.events} --locks {args.locks}",
                "trees": {k: str(v) for k, v in trees.items()},
                "events_per_cpu_s": got,
                "median_events_per_cpu_s": med,
                "spread": {k: [min(v), max(v)] for k, v in got.items()},
                "ratio_new_over_old": round(med["new"] / med["old"], 3),
                "load_avg_1m": os.getloadavg()[0],
            }
        ),
        flush=True,
    )
    return 0


def _core_ab(args: argparse.Namespace, trees: dict[str, Path]) -> int:
    """``--core --ab-against``: the lock core alone, both trees on the same saved ops."""
    import subprocess

    work = Path(args.work)
    locks = args.locks.split(",")
    ops_file = _core_ops(_trace(args.events, work), args.core_events, work, locks)
    # this script in both trees' processes; each imports ztrace from its tree (PYTHONPATH)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--core", "--runs", str(args.runs)]
    cmd += ["--locks", args.locks, "--work", args.work, "--core-ops", str(ops_file)]
    got: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    loads = []
    for r in range(args.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            env = dict(os.environ, PYTHONPATH=str(trees[name]))
            out = subprocess.run(
                cmd, cwd=trees[name], env=env, capture_output=True, text=True, check=True
            )
            res = json.loads(out.stdout.splitlines()[-1])
            loads.append(res["load_avg_1m"])
            for d in locks:
                got[name].setdefault(d, []).append(res[f"{d}_median_cpu_ns_per_op"])
    med = {k: {d: statistics.median(v) for d, v in g.items()} for k, g in got.items()}
    print(
        json.dumps(
            {
                "bench": "replay-core-ab",
                "machine": _machine(),
                "command": f"python -m benchmarks.bench_replay --core --ab-against "
                f"{args.ab_against} --rounds {args.rounds} --runs {args.runs} "
                f"--core-events {args.core_events} --locks {args.locks}",
                "trees": {k: str(v) for k, v in trees.items()},
                "cpu_ns_per_op": got,
                "median_cpu_ns_per_op": med,
                "spread": {k: {d: [min(v), max(v)] for d, v in g.items()} for k, g in got.items()},
                "ratio_new_over_old": {d: round(med["new"][d] / med["old"][d], 3) for d in locks},
                "load_avg_1m": [min(loads), max(loads)],
            }
        ),
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--locks", default="class")
    ap.add_argument("--work", default="/tmp/ztrace-bench")
    ap.add_argument("--no-anchor", action="store_true", help="Skip libCacheSim.")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="Also time the pool model and handle table alone (CPU ns/event).",
    )
    ap.add_argument(
        "--latency",
        action="store_true",
        help="Also measure this machine's load latency by working-set size, and the pool "
        "model's cost and working set without a handle table.",
    )
    ap.add_argument(
        "--stages",
        action="store_true",
        help="Also split one serial replay's CPU time by stage (ns/event).",
    )
    ap.add_argument(
        "--startup",
        action="store_true",
        help="Also time fresh processes: cold (empty numba cache) and warm.",
    )
    ap.add_argument(
        "--ab-against",
        metavar="DIR",
        help="A/B: alternate fresh runs of this checkout and the checkout in DIR.",
    )
    ap.add_argument("--rounds", type=int, default=7, help="A/B rounds (default 7).")
    ap.add_argument(
        "--threads-ab",
        action="store_true",
        help="A/B in this process: threads=1 against threads=--threads (wall time).",
    )
    ap.add_argument("--threads", type=int, default=2, help="Parallel side of --threads-ab.")
    ap.add_argument(
        "--core",
        action="store_true",
        help="Time the lock core alone (CPU ns/op per design); with --ab-against: A/B.",
    )
    ap.add_argument(
        "--core-events",
        type=int,
        default=2_000_000,
        help="--core: replay the trace's first N events for the ops (default 2 M).",
    )
    ap.add_argument("--core-ops", metavar="NPZ", help=argparse.SUPPRESS)  # --core-ab's children
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.ab_against:
        return _ab(args)
    if args.core:
        return _core(args)
    if args.threads_ab:
        return _threads_ab(args)

    from ztrace.replay.engine import replay

    trace = _trace(args.events, work)
    locks = args.locks.split(",")
    rss_before = _rss_mb()
    t = time.perf_counter()
    replay(_trace(10_000, work), locks=locks)  # warm-up: numba compilation
    compile_s = time.perf_counter() - t
    times = []
    cpu_times = []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        res = replay(trace, locks=locks)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    med = statistics.median(times)
    cmed = statistics.median(cpu_times)
    rss_replay = _rss_mb()
    out: dict[str, object] = {
        "bench": "replay",
        "machine": _machine(),
        "command": f"python -m benchmarks.bench_replay --events {args.events} "
        f"--runs {args.runs} --locks {args.locks}",
        "events": args.events,
        "locks": locks,
        "runs_s": [round(x, 3) for x in times],
        "median_s": round(med, 3),
        "median_events_per_s": round(args.events / med),
        # CPU time of this process: the honest number on a shared, loaded machine
        "runs_cpu_s": [round(x, 3) for x in cpu_times],
        "median_events_per_cpu_s": round(args.events / cmed),
        "load_avg_1m": os.getloadavg()[0],
        "compile_s": round(compile_s, 1),
        "peak_rss_mb_before": round(rss_before),
        "peak_rss_mb": round(rss_replay),
        "live_objects_end": int(res.counters["mallocs"] - res.counters["frees"]),
    }
    if not args.no_anchor:
        og, _ = _oracle_general(trace, work)
        lt = [_libcachesim_seconds(og, 64 << 20) for _ in range(args.runs)]
        lmed = statistics.median(lt)
        out["libcachesim_lru_median_cpu_s"] = round(lmed, 3)
        out["libcachesim_events_per_cpu_s"] = round(args.events / lmed)
        out["ours_over_theirs_cpu_time"] = round(cmed / lmed, 2)
    if args.startup:
        out.update(_startup(work))
    if args.stages:
        out.update(_stages(trace, args.events, locks))
    if args.latency:
        out.update(_latency(trace))
    if args.breakdown:
        out.update(_breakdown(trace))
        out["replay_cpu_ns_per_event"] = round(cmed / args.events * 1e9)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
