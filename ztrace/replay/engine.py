"""Single-pass replay of a zsmalloc trace under one or more lock designs: the orchestration.

Per trace batch (``iter_batches``, bounded memory) the engine

1. turns the Arrow columns into int64 numpy arrays (no Python object per event);
2. runs each distinct *allocator configuration* once (:mod:`ztrace.replay.ingest`: the
   kernel-exact pool model, the handle table, the design's allocator front), which decides
   each op's kind and cost;
3. feeds the ops to every design's numba lock simulator
   (:class:`ztrace.replay.locks._state.SimState`);

and at the end builds the results tables (:mod:`ztrace.replay.tables`).

Usage::

    from ztrace.replay.engine import replay, write_results
    res = replay("trace_dir", locks=["class", "pool"], seed=0)
    res.summary[0]["contention_rate"]
    write_results(res, "out_dir")
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import TraceMeta, iter_batches, read_meta
from ztrace.format.events import READ_EVENTS
from ztrace.format.trace import MAX_TS_NS
from ztrace.replay import _cache
from ztrace.replay.costs import CostModel, probe_cost
from ztrace.replay.hashing import splitmix64_array
from ztrace.replay.hold_ends import DEFAULT_END
from ztrace.replay.holds import HoldShares
from ztrace.replay.holds import find as find_holds
from ztrace.replay.ingest import (
    COUNTER_NAMES,
    EV_MALLOC,
    STD_KEY,
    AllocGroup,
    event_codes,
    handle_order,
    malloc_ok,
    swap_codes,
)
from ztrace.replay.locks import parse_designs
from ztrace.replay.locks._sim import OPEN_LOOP
from ztrace.replay.locks._state import SimState
from ztrace.replay.pipeline import DesignPipeline
from ztrace.replay.prescan import prescan, resample_durations
from ztrace.replay.sizes import check_replayed, check_sizes, impute, reference_sizes
from ztrace.replay.stalls import Stalls
from ztrace.replay.stalls import find as find_stalls
from ztrace.replay.stalls import in_trace as stalls_in_trace
from ztrace.replay.stops import (
    NOT_HELD_COLUMNS,
    NOT_HELD_TEXT,
    STOP_GAP_NS,
    bounded_dur_hist,
    call_rows,
    find_stops,
    held_durations,
    lock_keys,
    one_pool_lock,
    witness_bound,
)
from ztrace.replay.tables import ReplayResult, build_tables, write_results

__all__ = ["ReplayResult", "replay", "write_results"]

#: rows per trace batch. Results do not depend on it (the replay streams: tested). Peak
#: memory does: each batch row costs ~500 bytes of transient arrays (Arrow decode, int64
#: columns, ingest outputs, the ops), and with threads up to 1 + ``pipeline.IN_FLIGHT``
#: batches are alive. Measured on 10 M events (benchmarks/README.md, issue 15): peak RSS
#: 729 MB at 2^20 rows, 431 MB at 2^18 (import + numba: 224 MB), for ~the same CPU time.
#: Session 4, 30 M events, 16-byte handle rows: 2^17 rows 594 MB, 2^16 571 MB (2^18 with
#: 32-byte rows: 705 MB); past the live state, the transient is most of what stands between
#: 100 M events and 1 GB.
BATCH_ROWS = 1 << 16
#: most time bins a run may produce (keeps timeline memory bounded)
MAX_BINS = 1_000_000
#: most time bins in classes.parquet (coarser bins, multiples of the timeline's, beyond)
MAX_CLASS_BINS = 2_000

_cache.depend_on_replay_sources()


def _nice_bin(span: int) -> int:
    """A 1-2-5 x 10^k bin width giving at most ~500 bins (at least 1 us)."""
    raw = max(1_000, math.ceil(span / 500))
    exp = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * exp >= raw:
            return m * exp
    return 10 * exp


def _check_options(
    speedup: float, cpus: int | None, bin_ns: int | None, threads: int | None = None
) -> None:
    if not (isinstance(speedup, int | float) and math.isfinite(speedup) and speedup > 0):
        raise ConfigError(f"--speedup must be a positive number, got {speedup!r}")
    if cpus is not None and not (isinstance(cpus, int) and 1 <= cpus <= 4096):
        raise ConfigError(f"--cpus must be between 1 and 4096, got {cpus!r}")
    if bin_ns is not None and not (isinstance(bin_ns, int) and bin_ns >= 1):
        raise ConfigError(f"--bin-ms must be positive, got {bin_ns!r} ns")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")


def replay(
    trace: str | os.PathLike[str],
    *,
    locks: Sequence[str] | str,
    seed: int = 0,
    cpus: int | None = None,
    speedup: float = 1.0,
    cost_model: CostModel | None = None,
    bin_ns: int | None = None,
    progress: bool = False,
    batch_rows: int = BATCH_ROWS,
    sizes_from: str | os.PathLike[str] | None = None,
    jitter_ns: int = 0,
    resample_holds: bool = False,
    threads: int | None = None,
    stop_gap_ns: int = STOP_GAP_NS,
    hold_share: float | None = None,
    hold_end: str = DEFAULT_END,
    stalls: bool = True,
    closed_loop: bool = True,
) -> ReplayResult:
    """Replay ``trace`` under each lock design in ``locks``, in one streaming pass.

    Parameters
    ----------
    trace
        Trace directory or file (format v1/v2).
    locks
        Design specs, e.g. ``["class", "pool", "pools:32"]`` or ``"class,pool"``.
    seed
        Seeds the ``--cpus`` spreading and the ``pools:N`` handle hash; same trace + seed
        gives byte-identical results.
    cpus
        Replay on this many CPUs: event ``i`` goes to CPU ``hash(seed, i) mod cpus``.
        ``None`` keeps each event's traced CPU.
    speedup
        Divide inter-arrival times by this factor (``> 1`` compresses time).
    cost_model
        Hold/CPU times for events without ``duration_ns``. ``None``: defaults, fitted to the
        trace's measured durations (median per event kind) when it has any.
    bin_ns
        Timeline bin width (replay clock). ``None``: a 1-2-5 width giving ~500 bins.
    progress
        Show a progress bar on stderr.
    batch_rows
        Trace rows per batch: bounds the transient memory; results do not depend on it.
    sizes_from
        A capture whose zs_malloc sizes stand in for a trace that has none (the kmem
        tracepoint fallback); without it such a trace is refused. See
        :mod:`ztrace.replay.sizes`.
    jitter_ns, resample_holds
        One replica of the prediction's uncertainty (see :mod:`ztrace.replay.interval`):
        delay each arrival by a seeded 0..``jitter_ns`` (trace order kept), and draw each
        measured duration from the trace's distribution of its event kind. Defaults: off.
    threads
        Run the allocator groups and the lock designs on up to this many threads at once
        (:mod:`ztrace.replay.pipeline`); results are the same bytes for any value. ``None``:
        the CPUs this process may run on; ``1``: everything in the calling thread.
    stop_gap_ns
        Silences longer than this with a measured call in flight (a stopped guest) are
        removed from the replay clock and from the durations across them
        (:mod:`ztrace.replay.stops`); 0 = keep them.

    hold_share, hold_end
        The share of a measured zs_malloc/zs_free duration that holds the lock
        (:mod:`ztrace.replay.holds`): ``None`` = measured on the trace's kernel (calibration
        file), else the whole duration; a number is an *experiment* (labelled in the
        results). ``hold_end``: ``low`` (default, :data:`ztrace.replay.hold_ends.DEFAULT_END`),
        ``mid`` or ``high`` in the measured bracket.
    stalls
        Where the trace's kernel has a calibration: cut each traced call at its kind's stall
        cap and stall lock holds at the rate the trace's own zs_free calls show (the
        calibration's where it has none; :mod:`ztrace.replay.stalls`). ``False``: neither.
    closed_loop
        A CPU whose op ends later than its traced call did (a wait, a stall that the trace
        did not have there) starts its next ops that much later, less what the traced calls
        spent not working (:func:`ztrace.replay.locks._sim.sim_batch`). Needs measured
        durations and the traced CPUs (no ``cpus``); otherwise, or with ``False``, every op
        arrives when traced.

    Returns
    -------
    ReplayResult
    """
    from ztrace.model.classes import build_classes, kernel_profile

    _check_options(speedup, cpus, bin_ns, threads)
    lock_specs = list(locks) if not isinstance(locks, str) else locks
    parse_designs(lock_specs)  # fail on a bad name before reading the trace
    meta: TraceMeta = read_meta(trace)
    pre = prescan(trace)
    if pre.counts.get("zs_malloc", 0) + pre.counts.get("zs_free", 0) == 0:
        raise TraceFormatError(trace, "no zs_malloc/zs_free events: nothing to replay")
    ref_sizes = None
    if sizes_from is not None:
        ref_sizes = reference_sizes(sizes_from)
    else:
        check_sizes(
            trace, pre.counts.get("zs_malloc", 0), pre.size_max, meta.extra.get("probes", "")
        )
    try:
        prof = kernel_profile(meta.kernel_release)
        legacy, ratio = prof.legacy_classes, prof.ratio_groups
    except ConfigError:
        legacy, ratio = False, True  # unknown release string: model a current kernel
    table = build_classes(
        None if legacy else meta.zsmalloc_chain_size, legacy=legacy, page_size=meta.page_size
    )
    designs = parse_designs(lock_specs, table.n_classes)
    cm_model = cost_model if cost_model is not None else CostModel().fit(pre.medians)
    provenance = cm_model.provenance(pre.measured, pre.counts)
    # (H, issue 10) the share of a measured call that holds the lock (ztrace.replay.holds)
    holds = HoldShares()
    stall = Stalls()
    if pre.measured:
        holds = find_holds(trace, meta.kernel_release, share=hold_share, end=hold_end)
        provenance["hold_share"] = holds.source
        if stalls:
            stall = find_stalls(trace, meta.kernel_release)
    closed = closed_loop and pre.measured and cpus is None
    if closed:
        provenance["loop"] = (
            "closed: a CPU's later ops start as late as its op ends past the traced call, "
            "less the traced call's own waits and stopped time"
        )
    pc = probe_cost(trace) if pre.measured else None
    if pc is not None and not cm_model.probe_overhead_ns:
        provenance["probe_overhead_ns"] = (
            f"kept in the durations; one whole probe pair = {pc[0]} ns ({pc[1]}), an upper "
            "bound on the probes' share (`check cross-kernel` predicts with it subtracted too)"
        )
    # (B, issue 10) what a measured duration holds that is no lock hold: stopped guest
    # time, and time other threads ran on its CPU or held its lock (ztrace.replay.stops)
    stops = find_stops(trace, stop_gap_ns) if stop_gap_ns > 0 and pre.measured else None
    if stops is not None and stops.total_ns > 0:
        provenance["stopped_time"] = (
            f"{stops.total_ns} ns in {len(stops.start)} silences > {stop_gap_ns} ns with a "
            "call in flight removed from the clock and the durations across them"
        )
    else:
        stops = None
    if stall.mean_ns and pre.counts.get("zs_free", 0):
        # the rate at the capture's own host load, with the calibration's caps
        stall = stalls_in_trace(trace, stops, stall)
    if stalls and pre.measured:
        provenance["stalls"] = stall.source
    cm = np.concatenate([cm_model.as_array(), holds.as_array(), stall.as_array()])
    names = _schema_names(trace)
    # thread ids (kprobe captures); a synthetic trace's all-0 tids witness nothing
    has_tid = "tid" in names and _column_max(trace, "tid") != 0
    one_pool = one_pool_lock(meta.kernel_release)
    if pre.measured and (stops is not None or has_tid):
        pre.dur_hist = bounded_dur_hist(trace, stops, one_pool, table)
    n_cpus = cpus if cpus is not None else max(pre.max_cpu + 1, meta.nr_cpus, 1)
    # --- issue 11 (limits from the trace, not from its metadata) --------------------------
    # Per-CPU allocator fronts (magazines) are sized from the CPUs the trace holds, not from
    # ztrace.nr_cpus: CPUs that never appear never index them, so results are unchanged.
    front_cpus = cpus if cpus is not None else max(pre.max_cpu + 1, 1)
    # The replay clock is int64 ns; a --speedup below 1 stretches the span, and past 2^62 ns
    # (the trace format's own ts_ns limit) it would wrap, so refuse it.
    if (pre.ts_last - pre.ts0) / speedup > MAX_TS_NS:
        raise ConfigError(
            f"--speedup {speedup!r}: stretches the trace's span past the replay clock (2^62 ns)"
        )
    # ---------------------------------------------------------------------------------------
    span = int((pre.ts_last - pre.ts0) / speedup)
    bw = bin_ns if bin_ns is not None else _nice_bin(span)
    if span // bw + 1 > MAX_BINS:
        raise ConfigError(f"--bin-ms too small: {span // bw + 1} time bins (max {MAX_BINS})")

    groups: dict[Any, AllocGroup] = {}
    for d in designs:
        if d.allocator_key not in groups:
            groups[d.allocator_key] = AllocGroup(
                d, table, ratio, front_cpus, seed, snap_on=d.allocator_key == STD_KEY
            )
    if STD_KEY not in groups:  # classes.parquet always describes the plain single pool
        groups[STD_KEY] = AllocGroup(
            parse_designs("pool")[0], table, ratio, front_cpus, seed, snap_on=True
        )
    sims = [
        SimState(d, n_cpus, table.n_classes, cm, cm_model.write_after_malloc, seed) for d in designs
    ]
    # classes.parquet has one row per class per bin: keep it to ~MAX_CLASS_BINS bins
    for g in groups.values():
        g.snap_stride = max(1, -(-(span // bw + 1) // MAX_CLASS_BINS))

    from ztrace.progress import progress as progress_bar

    cols = ["ts_ns", "cpu", "event", "size_bytes", "handle", "duration_ns"]
    has_cls = "class_idx" in names
    if has_cls:
        cols.append("class_idx")
    if has_tid:
        cols.append("tid")
    # (session 9, issue 10) what a capture shows was no hold: switched-out time and the
    # thread's own lock waits inside each call (ztrace.replay.stops.held_durations)
    not_held = [c for c in NOT_HELD_COLUMNS if c in names] if pre.measured and has_tid else []
    cols += [c for c in not_held if c not in cols]
    not_held_total = 0
    has_ok = "ok" in names  # zs_malloc's outcome, from a return probe
    if has_ok:
        cols.append("ok")
    # reads from zswap's own events, unless zsmalloc's read functions were traced
    zs_reads = sum(pre.counts.get(e, 0) for e in READ_EVENTS)
    swap_reads = zs_reads == 0 and "outcome" in names and pre.counts.get("zswap_load", 0) > 0
    if swap_reads:
        cols += ["outcome"] + (["swap_entry"] if "swap_entry" in names else [])
    probe_ns = np.int64(cm_model.probe_overhead_ns)
    n_imputed = 0
    last_arr = np.zeros(1, dtype=np.int64)
    jitter_mix = np.uint64((seed * 0x9FB21C651E98DF25 + 0x2D358DCCAA6C78A5) % 2**64)
    offset = 0
    seed_mix = np.uint64((seed * 0x2545F4914F6CDD1D + 0x1B873593) % 2**64)
    pipe = DesignPipeline(groups, sims, cm, _threads(threads, len(groups) + len(sims)))
    with (
        progress_bar(pre.n_events, desc="replay", quiet=not progress, unit="events") as bar,
        contextlib.closing(pipe),
    ):
        for batch in iter_batches(trace, columns=cols, batch_rows=batch_rows):
            n = batch.num_rows
            if n == 0:
                continue
            ts_raw = batch.column("ts_ns").to_numpy().astype(np.int64)
            ts = (ts_raw if stops is None else stops.warp(ts_raw)) - np.int64(pre.ts0)
            arr = ts if speedup == 1.0 else (ts / speedup).astype(np.int64)
            if jitter_ns:
                rows = np.arange(offset, offset + n, dtype=np.uint64)
                j = splitmix64_array(rows ^ jitter_mix) % np.uint64(jitter_ns)
                # delayed, but never before the op before it: trace order is kept
                arr = np.maximum.accumulate(np.concatenate([last_arr, arr + j.astype(np.int64)]))
                last_arr, arr = arr[-1:], arr[1:]
            if cpus is None:
                cpu = batch.column("cpu").to_numpy().astype(np.int64)
            else:
                x = splitmix64_array(np.arange(offset, offset + n, dtype=np.uint64) ^ seed_mix)
                cpu = (x % np.uint64(cpus)).astype(np.int64)
            if has_cls:
                clsidx = batch.column("class_idx").fill_null(-1).to_numpy().astype(np.int64)
            else:
                clsidx = np.full(n, -1, dtype=np.int64)
            code = event_codes(batch.column("event"))
            swap_key = handle_bits = batch.column("handle").to_numpy().view(np.int64)
            if swap_reads:
                code = swap_codes(code, batch.column("event"), batch.column("outcome"))
                if "swap_entry" in cols:
                    se = batch.column("swap_entry").fill_null(0).to_numpy().view(np.int64)
                    swap_key = np.where(se != 0, se, handle_bits)
            size = batch.column("size_bytes").to_numpy().astype(np.int64)
            handle = batch.column("handle").to_numpy()
            if ref_sizes is not None:
                n_imputed += impute(size, code == EV_MALLOC, offset, seed, ref_sizes)
            dur = batch.column("duration_ns").to_numpy().astype(np.int64)
            tid = (
                batch.column("tid").to_numpy().astype(np.int64)
                if has_tid
                else np.zeros(n, np.int64)
            )
            order = handle_order(code, handle.view(np.int64), ts_raw, dur, tid)  # (B, issue 10)
            held = held_durations(batch, ts_raw, dur, tid) if not_held else None
            if held is not None:
                not_held_total += int((dur - held).sum())
            if stops is not None:
                dur = stops.durations(ts_raw, dur)
            traced = dur  # the call's length on the replay clock, before what was no work
            if held is not None:  # both take out time that is no hold: keep the tighter
                dur = np.minimum(dur, held)
            if has_tid and pre.measured:  # (B, issue 10: what other threads did meanwhile)
                calls = call_rows(batch.column("event"))
                dur, _ = witness_bound(
                    code,
                    ts,
                    dur,
                    tid,
                    batch.column("cpu").to_numpy().astype(np.int64),
                    calls,
                    lock_keys(code, size, handle_bits, calls, one_pool, table),
                )
            if resample_holds:
                dur = resample_durations(dur, code, pre.dur_hist, offset, seed)
            if probe_ns:  # the probes' own cost is inside every measured duration
                dur = np.where(dur > 0, np.maximum(dur - probe_ns, 1), 0)
            credit = np.maximum(traced - dur, 0) if closed else np.full(n, OPEN_LOOP)
            b = {
                "code": code,
                "size": size,
                # int64 bits of the u64 handle: the table compares and hashes the bits
                "handle": handle.view(np.int64),
                "dur": dur,
                "swap_key": swap_key,
                "ok": malloc_ok(code, handle, batch.column("ok") if has_ok else None),
                "cpu": cpu,
                "clsidx": clsidx,
                "bin": arr // bw,
                "credit": credit,
            }
            if order is not None:
                b["order"] = order
            pipe.submit(b, arr)
            offset += n
            bar.advance(n)
        pipe.close()  # every batch done (an error in a worker is raised here)
    for s in sims:
        s.finish()
    for g in groups.values():
        g.finish()

    if not_held_total:
        provenance["not_held_time"] = (
            f"{not_held_total} ns taken out of the durations: "
            + " and ".join(NOT_HELD_TEXT[c] for c in not_held)
        )
    run_meta = {
        "ztrace.results_version": "1",
        "ztrace.trace": str(trace),
        "ztrace.seed": str(seed),
        "ztrace.speedup": repr(float(speedup)),
        "ztrace.cpus": str(n_cpus),
        "ztrace.cpus_remapped": str(cpus is not None),
        "ztrace.bin_ns": str(bw),
        "ztrace.ts0_ns": str(pre.ts0),
        "ztrace.span_ns": str(span),
        "ztrace.lock_designs": ",".join(d.name for d in designs),
        "ztrace.cost_model": cm_model.to_json(),
        "ztrace.cost_provenance": json.dumps(provenance, sort_keys=True),
        "ztrace.kernel_release": meta.kernel_release,
        "ztrace.replica": f"jitter_ns={jitter_ns},resample_holds={resample_holds}",
        "ztrace.reads": "zswap_load hits and zswap_writeback (zs_map_object inside)"
        if swap_reads
        else ("/".join(e for e in READ_EVENTS if pre.counts.get(e)) if zs_reads else "none traced"),
        "ztrace.sizes": "traced"
        if ref_sizes is None
        else f"imputed: {n_imputed} zs_malloc sizes drawn (seeded) from the "
        f"{len(ref_sizes)} zs_malloc sizes of {sizes_from}",
    }
    counters = {k: int(v) for k, v in zip(COUNTER_NAMES, groups[STD_KEY].counters, strict=True)}
    if ref_sizes is not None:
        counters["sizes_imputed"] = n_imputed
    # nothing replayed: refuse rather than report "no contention" (sizes imputed from
    # --sizes-from name that option: its sizes were the ones drawn)
    where = trace if ref_sizes is None else f"--sizes-from {sizes_from}"
    check_replayed(where, counters, meta.page_size)
    n_bins = span // bw + 1
    summary, tables = build_tables(designs, sims, groups, table, bw, n_bins)
    return ReplayResult(
        summary=summary,
        tables=tables,
        meta=run_meta,
        counters=counters,
        cost_model=cm_model,
        cost_provenance=provenance,
    )


def _threads(threads: int | None, work: int) -> int:
    """Threads worth using for ``work`` independent states (one thread: no pool at all)."""
    return min(threads if threads is not None else len(os.sched_getaffinity(0)), work)


def _column_max(trace: str | os.PathLike[str], column: str) -> int | None:
    from ztrace.format import open_trace

    return open_trace(trace).column_max(column)


def _schema_names(trace: str | os.PathLike[str]) -> list[str]:
    from ztrace.format import open_trace

    return list(open_trace(trace).schema.names)
