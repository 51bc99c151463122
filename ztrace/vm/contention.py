"""Measured zsmalloc lock contention of one guest run, attributed by stack and by lock address.

A capture with the ``locks`` probe holds one ``lock_contention`` row per contended acquisition
(``lock:contention_begin`` → ``contention_end``), with the lock address, the tracepoint flags and
``lock_kind`` already attributed from the waiter's kernel stack (ztrace/capture/attribute.py:
the first zsmalloc function on the stack and the lock type name the lock).

This module adds the second witness, the address: the guest dumps ``struct zs_pool``'s layout
from the kernel's BTF (``zs_pool_layout.json``), so an address equal to ``pool +
offsetof(struct zs_pool, lock)`` for a pool seen in the trace (or the zsstress pool the module
printed) *is* that pool's lock (6.1: the one pool spinlock; 6.9+: the migration rwlock).
Other addresses on zsmalloc stacks are class locks (6.9+) or zspage locks. The summary goes to
``<trace>.kernel/contention.json`` beside the run's trace, the sidecar the validation reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ztrace.format import LOCK_CLASSES_FILE, read_trace
from ztrace.lockflags import LCB_F_WRITE, measured_waits, taken_by_callee

ZS_KINDS = ("pool", "class", "zspage")


def _pools_from_log(outdir: Path) -> set[int]:
    log = outdir / "zsstress.log"
    if not log.is_file():
        return set()
    return {int(m, 16) for m in re.findall(r"pool=([0-9a-f]+)", log.read_text())}


def _read(trace: Path) -> tuple[pa.Table, int, str]:
    tr = read_trace(trace, allow_empty=True)
    return tr.table, tr.meta.lost_events, tr.meta.kernel_release


def _pct(a: np.ndarray, q: float) -> int:
    return int(np.percentile(a, q)) if a.size else 0


def summarize(outdir: str | Path, trace_name: str = "trace") -> dict[str, Any]:
    """Contention summary of the run in ``outdir`` (its ``trace/`` capture and guest files)."""
    return summarize_trace(Path(outdir) / trace_name, Path(outdir))


def summarize_trace(trace: str | Path, aux: str | Path) -> dict[str, Any]:
    """Contention summary of ``trace``; ``aux`` holds zs_pool_layout.json / zsstress.log
    (the run directory, or a bundled sample's ``NAME.kernel/``)."""
    trace, out = Path(trace), Path(aux)
    t, lost, release = _read(trace)
    layout: dict[str, Any] = {}
    if (out / "zs_pool_layout.json").is_file():
        try:
            layout = json.loads((out / "zs_pool_layout.json").read_text())
        except json.JSONDecodeError:
            layout = {}
    lock_offsets = {
        m["offset"]: name
        for name, m in layout.get("members", {}).items()
        if "lock" in name or "lock" in str(m.get("type", ""))
    }
    pools = _pools_from_log(out)
    res: dict[str, Any] = {
        "trace": str(trace),
        "events": t.num_rows,
        "lost_events": lost,
        "zs_pool_lock_offsets": {str(k): v for k, v in sorted(lock_offsets.items())},
    }
    if t.num_rows == 0 or "event" not in t.column_names:
        res.update(zsmalloc={"contended": 0, "wait_ns_total": 0}, locks=[], by_kind={})
        res["has_lock_rows"] = False
        return res
    ev = t.column("event").cast(pa.string())
    zs_rows = pc.is_in(ev, pa.array(["zs_malloc", "zs_free"]))
    if pc.any(zs_rows).as_py():
        pools |= {int(p) for p in pc.unique(t.filter(zs_rows).column("pool")).to_pylist() if p}
    vc = pc.value_counts(ev)
    counts = {
        str(e): int(n)
        for e, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
    }
    res["event_counts"] = counts
    res["pools"] = [hex(p) for p in sorted(pools)]
    res["has_lock_rows"] = "lock_kind" in t.column_names
    frames = _stack_frames(trace)

    def addr_name(a: int) -> str:
        for p in pools:
            off = a - p
            if off in lock_offsets:
                return f"pool.{lock_offsets[off]}"
        return ""

    tp = t.filter(pc.equal(ev, "lock_contention"))
    slow = t.filter(pc.equal(ev, "spin_slowpath"))
    res["tracepoint"] = _measure(tp, addr_name, frames, pools_known=bool(pools and lock_offsets))
    res["has_spin_slowpath"] = counts.get("spin_slowpath", 0) > 0
    if slow.num_rows or res["has_spin_slowpath"]:
        # Every contended acquisition, each once, by the rule `ztrace report` and the
        # dashboard apply (ztrace.lockflags.measured_waits): all spinlock slowpath entries
        # (kprobe), then the tracepoint rows it keeps (rwlock, mutex, rwsem)
        flags = np.asarray(tp.column("lock_flags").fill_null(0), dtype=np.uint32)
        keep = measured_waits(False, np.ones(tp.num_rows, bool), flags, has_slowpath=True)
        both = pa.concat_tables([slow, tp.filter(pa.array(keep))]) if tp.num_rows else slow
        res["probe_floor_ns"] = probe_floor(slow)
        calls = t.filter(pc.is_in(ev, pa.array(_TAKER_EVENTS)))
        res["all_contended"] = _measure(
            both,
            addr_name,
            frames,
            res["probe_floor_ns"],
            calls,
            probe_costs(release),
            pools_known=bool(pools and lock_offsets),
        )
        primary, res["source"] = res["all_contended"], "spin_slowpath kprobe + lock tracepoint"
    else:
        primary, res["source"] = res["tracepoint"], "lock tracepoint (queued spinlock waiters only)"
    res["zsmalloc"] = primary["zsmalloc"]
    res["other"] = primary["other"]
    res["by_kind"] = primary["by_kind"]
    res["locks"] = primary["locks"]
    res["distinct_zsmalloc_lock_addrs"] = len(primary["locks"])
    confirmed = _kernel_class_check(trace, primary["locks"])
    if confirmed is not None:
        res["class_locks_by_kernel"] = confirmed
    return res


def _kernel_class_check(trace: Path, locks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The address witness from the kernel itself: of the locks (and waits) attributed to a
    size class, how many sit at a ``struct size_class`` by the index and size the probes
    read there (``lock_classes.json``; probes/zs_capture.bpf.c, zt_note_lock). None when the
    capture has no such file (zsmalloc a module, as in the 6.1 guest, or an older capture).
    Session 29, three 6.12 zsstress-spread runs: 94 of 94 class waits, once the callee
    locks were out (``ztrace.lockflags.taken_by_callee``)."""
    path = trace / LOCK_CLASSES_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            return None
        kernel = {int(k) for k in raw}
    except ValueError:
        return None
    cls = [d for d in locks if d["kind"] == "class"]
    on = [d for d in cls if int(d["addr"], 16) in kernel]
    return {
        "locks": len(cls),
        "locks_at_size_class": len(on),
        "waits": sum(d["contended"] for d in cls),
        "waits_at_size_class": sum(d["contended"] for d in on),
    }


_RW_INTERNAL = ("queued_read_lock_slowpath", "queued_write_lock_slowpath")
#: Frames where an interrupt or softirq was entered: a lock taken above one of these (nearer the
#: top of the stack) belongs to the interrupt, not to the zsmalloc function it interrupted.
_IRQ_ENTRY = (
    "asm_common_interrupt",
    "common_interrupt",
    "asm_sysvec_",
    "sysvec_",
    "__do_softirq",
    "handle_softirqs",
    "irq_exit_rcu",
    "__irq_exit_rcu",
    "do_softirq",
)


def _irq_before_zs(frames: list[str]) -> bool:
    """True when the waiter is an interrupt that landed inside a zsmalloc function."""
    for f in frames:
        name = f.split("+")[0]
        if name.startswith(_IRQ_ENTRY):
            return True
        if name.startswith("zs_") or name.startswith("__zs_") or name in ("obj_malloc", "obj_free"):
            return False
    return False


def _stack_frames(trace: Path) -> dict[int, list[str]]:
    path = trace / "stacks.json"
    if not path.is_file():
        return {}
    try:
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError):
        return {}


def _column(lk: pa.Table, name: str, fill: int, dtype: Any) -> np.ndarray:
    """Column ``name`` of ``lk`` as a numpy array, nulls read as ``fill``; a trace without the
    column (no lock addresses, flags or stacks) reads ``fill`` on every row."""
    if not lk.num_rows or name not in lk.column_names:
        return np.full(lk.num_rows, fill, dtype)
    return np.asarray(lk.column(name).fill_null(fill), dtype=dtype)


#: fewer slowpath rows than this give no probe floor (the low percentile of a handful of
#: rows, mostly other locks' long waits, is not the probes' cost: 6.12 zsstress-light, 48 rows)
PROBE_FLOOR_MIN_ROWS = 100


def probe_floor(slow: pa.Table) -> int | None:
    """The capture's own share of every measured spinlock wait: the 1st percentile of the
    run's ``spin_slowpath`` durations, or None below PROBE_FLOOR_MIN_ROWS rows.

    A slowpath row runs from the kprobe program's timestamp to the kretprobe program's, so
    it holds the rest of the entry program, the kretprobe trampoline and the start of the
    return program even when the lock was free the moment the probe let go. Under TCG that
    is no rounding error: on session 9's quiet matrix the 1st percentile was 1.5-2.3 us in
    every run with enough rows, on both guest kernels, half the median wait of the busiest
    cells (6.1 zsstress-heavy: 1.55 of 1.88 us). The estimate is high by the shortest real
    waits, so ``wait_ns_less_probe_floor`` leans low; the raw total leans high."""
    if slow.num_rows < PROBE_FLOOR_MIN_ROWS:
        return None
    w = np.asarray(slow.column("wait_ns").fill_null(0), dtype=np.float64)
    return int(np.percentile(w, 1))


#: the zs_* calls that take each kind of zsmalloc lock: 6.1.192 (the 6.2 consolidation
#: backported) takes pool->lock in zs_malloc, zs_free and zs_map_object (our zs_write and
#: zs_read rows span map..unmap); 6.12 takes class->lock in zs_malloc and zs_free only
#: (zs_map_object takes pool->migrate_lock for read and the zspage lock). mm/zsmalloc.c.
_TAKERS = {
    "pool": ("zs_malloc", "zs_free", "zs_write", "zs_read"),
    "class": ("zs_malloc", "zs_free"),
}
_TAKER_EVENTS = sorted({e for events in _TAKERS.values() for e in events})


def requests_in_holder_calls(
    ts: np.ndarray, cpu: np.ndarray, kind: np.ndarray, calls: pa.Table
) -> dict[str, Any]:
    """How many contended requests (slowpath rows at ``ts`` on ``cpu``, lock ``kind``) were
    stamped while another CPU was inside a zs_* call that takes that kind of lock
    (:data:`_TAKERS`). Some CPU held the lock then, so with honest stamps nearly all are;
    session 16 found 17-21 % on 6.12 while the probe read the clock after its stack walk,
    51-88 % once it read it first (the rest fall just after the holder's return: the
    slowpath kprobe's own dispatch). A check of the capture's timing, not of the model.

    ``position_tenths``: where in the holder's call those requests fell, in tenths of its
    duration (0 = its entry). The lock is held there, so this is where the hold sits in a
    call under the capture's probes (session 16, zsstress-heavy: 90 % of 6.1's and 96 % of
    6.12's in the call's second half).

    >>> calls = pa.table({"event": ["zs_malloc", "zs_free", "zs_malloc"], "cpu": [0, 1, 1],
    ...                   "ts_ns": [100, 200, 400], "duration_ns": [50, 50, 50]})
    >>> requests_in_holder_calls(np.array([120, 230, 300, 420]), np.array([1, 0, 0, 1]),
    ...                          np.array(["class"] * 4, dtype=object), calls)
    {'rows': 4, 'inside': 2, 'share': 0.5, 'position_tenths': [0, 0, 0, 0, 1, 0, 1, 0, 0, 0]}
    """
    inside = np.zeros(len(ts), dtype=bool)
    where = np.zeros(len(ts), dtype=np.float64)
    c_ev = np.asarray(calls.column("event").cast(pa.string()).to_pylist(), dtype=object)
    c_cpu = _column(calls, "cpu", 0, np.int64)
    c_ts = _column(calls, "ts_ns", 0, np.int64)
    c_end = c_ts + _column(calls, "duration_ns", 0, np.int64)
    for k, takers in _TAKERS.items():
        rows = np.flatnonzero(kind == k)
        if not rows.size:
            continue
        mine = np.isin(c_ev, takers)
        for c in np.unique(c_cpu[mine]):
            sel = mine & (c_cpu == c)
            order = np.argsort(c_ts[sel], kind="stable")
            a, e = c_ts[sel][order], c_end[sel][order]
            r = ts[rows].astype(np.int64)
            i = np.searchsorted(a, r, side="right") - 1  # that CPU's last call begun by r
            j = np.maximum(i, 0)
            hit = (i >= 0) & (e[j] >= r) & (cpu[rows] != c)
            inside[rows] |= hit
            where[rows[hit]] = (r[hit] - a[j[hit]]) / np.maximum(e[j[hit]] - a[j[hit]], 1)
    n = int(np.isin(kind, list(_TAKERS)).sum())
    k_in = int(inside.sum())
    tenths = np.bincount(np.minimum((where[inside] * 10).astype(np.int64), 9), minlength=10)
    return {
        "rows": n,
        "inside": k_in,
        "share": round(k_in / n, 4) if n else None,
        "position_tenths": tenths.tolist(),
    }


#: how much of a zs_read/zs_write span (map entry .. unmap return) can hold 6.1's pool lock:
#: zs_map_object() takes it for the handle lookup only, at the span's start (6.1.192
#: mm/zsmalloc.c). The call alone takes 1.3 us in the calibration (holdtime-6.1.0-57-amd64.json,
#: `map` dur_ns) and the capture's entry probe ~1.6 us (the slowpath pair on a free lock,
#: scenarios/probewait.sh): 3 us covers both, so a span's later copy counts as no holder and
#: anything near its start as one (the check leans toward finding a holder)
MAP_CALL_NS = 3000


def without_holder(
    ts: np.ndarray, wait: np.ndarray, tid: np.ndarray, kind: np.ndarray, calls: pa.Table
) -> np.ndarray:
    """Per contended wait (slowpath row from ``ts`` for ``wait`` ns, thread ``tid``, lock
    ``kind``): True when no other thread was inside any zs_* call that takes that kind of
    lock (:data:`_TAKERS`; of a zs_read/zs_write span only its first :data:`MAP_CALL_NS`)
    at any time during it. Rows of other kinds are False."""
    none = np.zeros(len(ts), dtype=bool)
    c_ev = np.asarray(calls.column("event").cast(pa.string()).to_pylist(), dtype=object)
    c_tid = _column(calls, "tid", 0, np.int64)
    c_ts = _column(calls, "ts_ns", 0, np.int64)
    dur = _column(calls, "duration_ns", 0, np.int64)
    span = np.isin(c_ev, ("zs_read", "zs_write"))
    c_end = c_ts + np.where(span, np.minimum(dur, MAP_CALL_NS), dur)
    w_end = ts.astype(np.int64) + wait.astype(np.int64)
    for k, takers in _TAKERS.items():
        rows = np.flatnonzero(kind == k)
        mine = np.isin(c_ev, takers)
        if not rows.size:
            continue
        if not mine.any():
            none[rows] = True
            continue
        order = np.argsort(c_ts[mine], kind="stable")
        a, e, who = c_ts[mine][order], c_end[mine][order], c_tid[mine][order]
        longest = int((e - a).max())
        for r in rows:
            lo = np.searchsorted(a, ts[r] - longest, side="left")
            hi = np.searchsorted(a, w_end[r], side="left")
            none[r] = not bool(((who[lo:hi] != tid[r]) & (e[lo:hi] > ts[r])).any())
    return none


def waits_without_holder(
    ts: np.ndarray, wait: np.ndarray, tid: np.ndarray, kind: np.ndarray, calls: pa.Table
) -> dict[str, Any]:
    """How many contended waits had no holder to wait for (:func:`without_holder`), and
    their share of the total wait.

    Nothing can have held the lock for such a wait's measured time, yet the kernel recorded
    it: the holder let go before the waiter's probe stamped the request, and the rest is the
    waiter's own time (its probes' cost, its vCPU). A lock model can give such a wait no more
    than the probe's cost. The share of waits and of their total wait that are like this
    bounds what a replay of holds can match (docs/validation.md, session 28). A check of the
    measurement, not of the model.

    >>> calls = pa.table({"event": ["zs_malloc", "zs_free"], "tid": [1, 2],
    ...                   "ts_ns": [100, 300], "duration_ns": [50, 50]})
    >>> got = waits_without_holder(np.array([120, 200, 310]), np.array([10, 40, 20]),
    ...     np.array([2, 1, 1]), np.array(["class"] * 3, dtype=object), calls)
    >>> got["without_holder"], got["share"], got["wait_share"]
    (1, 0.3333, 0.5714)
    >>> got["wait_ns_p50_without"], got["wait_ns_p50_with"]
    (40, 15)
    """
    return holder_summary(without_holder(ts, wait, tid, kind, calls), wait, kind)


def holder_summary(none: np.ndarray, wait: np.ndarray, kind: np.ndarray) -> dict[str, Any]:
    """:func:`waits_without_holder`'s counts from flags :func:`without_holder` already gave."""
    sel = np.isin(kind, list(_TAKERS))
    n, k_none = int(sel.sum()), int((none & sel).sum())
    w = wait.astype(np.int64)
    total = int(w[sel].sum())
    return {
        "rows": n,
        "without_holder": k_none,
        "share": round(k_none / n, 4) if n else None,
        "wait_share": round(int(w[none & sel].sum()) / total, 4) if total else None,
        "wait_ns_p50_without": _pct(w[none & sel], 50),
        "wait_ns_p50_with": _pct(w[~none & sel], 50),
    }


#: a wait this long or longer behind a holder is a holder stalled in its hold (session 23:
#: 1-2 % of the waits, 35-60 % of the wait; the holder's vCPU descheduled on the host)
LONG_WAIT_NS = 20_000


def probe_costs(release: str, search: Path | None = None) -> dict[str, Any] | None:
    """The slowpath probe pair's own cost inside a wait on ``release``, measured on a free
    lock (``replays/calibration/probewait-<release>.json``: ``ztrace check probewait --json``
    of a ``-s probewait`` run): ``kthread`` (zsstress's waiters) and ``user`` (a process
    right after a zram page write: zram's and zswap's waiters), the p50 alone, median over
    the reps; None where it was not measured."""
    base = search or Path(__file__).resolve().parent.parent.parent / "replays" / "calibration"
    f = base / f"probewait-{release}.json"
    if not f.is_file():
        return None
    try:
        rows = {(r["step"], r["background"]): r for r in json.loads(f.read_text())["summary"]}
        k = int(rows[("kthread", "none")]["free_lock_p50_ns_median"])
        u = int(rows[("userzram", "none")]["free_lock_p50_ns_median"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"kthread": k, "user": u, "source": f"replays/calibration/{f.name}"}


def wait_parts(
    wait: np.ndarray, none: np.ndarray, comm: np.ndarray, costs: dict[str, Any]
) -> dict[str, Any]:
    """Where the measured zsmalloc wait goes (session 28), in ns of the total:

    * ``probe``: the probe pair's own cost, once per wait (at most the wait), as measured on
      a free lock in the waiter's context (:func:`probe_costs`: a ``zsstress/N`` kthread or
      a user process);
    * ``without_holder``: the rest of the waits no other thread could have caused
      (:func:`without_holder`);
    * ``long``: the rest of the waits behind a holder that lasted :data:`LONG_WAIT_NS` or
      more (a holder stalled in its hold);
    * ``held``: the rest of the waits behind a holder: what a model of the holds predicts.

    A diagnosis of the measurement, not the issue's metric (docs/validation.md, session 28).

    >>> wait_parts(np.array([3000, 5000, 30000, 1000]), np.array([False, True, False, False]),
    ...            np.array(["fio", "fio", "fio", "zsstress/0"], dtype=object),
    ...            {"kthread": 1500, "user": 2000, "source": "x"})["ns"]
    {'probe': 7000, 'without_holder': 3000, 'long': 28000, 'held': 1000}
    """
    w = wait.astype(np.int64)
    cost = np.where([str(c).startswith("zsstress/") for c in comm], costs["kthread"], costs["user"])
    probe = np.minimum(w, cost)
    rest = w - probe
    long = ~none & (w >= LONG_WAIT_NS)
    ns = {
        "probe": int(probe.sum()),
        "without_holder": int(rest[none].sum()),
        "long": int(rest[long].sum()),
        "held": int(rest[~none & ~long].sum()),
    }
    return {
        "ns": ns,
        "probe_cost_ns": {"kthread": costs["kthread"], "user": costs["user"]},
        "source": costs["source"],
    }


def _measure(
    lk: pa.Table,
    addr_name: Callable[[int], str],
    frames: dict[int, list[str]],
    floor: int | None = None,
    calls: pa.Table | None = None,
    costs: dict[str, Any] | None = None,
    *,
    pools_known: bool = False,
) -> dict[str, Any]:
    """Contended count and wait of ``lk``'s rows, split zsmalloc (stack or address) / other;
    with a probe ``floor`` (:func:`probe_floor`), also the zsmalloc wait less it per row;
    with the zs_* ``calls``, :func:`requests_in_holder_calls` of the zsmalloc slowpath rows."""
    n = lk.num_rows
    addr = _column(lk, "lock_addr", 0, np.uint64)
    wait = _column(lk, "wait_ns", 0, np.uint64)
    kind = (
        np.asarray(
            lk.column("lock_kind").cast(pa.string()).fill_null("other").to_pylist(), dtype=object
        )
        if n and "lock_kind" in lk.column_names
        else np.full(n, "other", object)
    )
    sid = _column(lk, "stack_id", -1, np.int64)
    # A qrwlock's slowpath spins on its internal wait_lock: that is the rwlock's own contention
    # (reported by the tracepoint as rwlock:R/W), not a second lock.
    flags = _column(lk, "lock_flags", 0, np.uint32)
    internal = (flags == 1) & np.array(
        [any(f.split("+")[0] in _RW_INTERNAL for f in frames.get(int(i), [])) for i in sid],
        dtype=bool,
    )
    names = np.array([addr_name(int(a)) for a in addr], dtype=object)
    # The stack attribution takes the first zsmalloc frame; an interrupt taken inside, say,
    # zs_unmap_object that then waits on a driver lock has that frame too, below the irq entry.
    in_irq = np.array([_irq_before_zs(frames.get(int(i), [])) for i in sid], dtype=bool)
    callee = np.array([taken_by_callee(frames.get(int(i), [])) for i in sid], dtype=bool) & ~in_irq
    is_zs = np.array([k in ZS_KINDS for k in kind], dtype=bool) & ~internal & ~in_irq & ~callee
    # An address that is a pool's lock is zsmalloc's even if the stack walk lost the frames.
    by_addr_only = (~is_zs) & (names != "") & ~internal
    zs = is_zs | by_addr_only
    # pool.* members are the pool's locks, whatever the stack said (session 31: 6.12's
    # read_lock(&pool->migrate_lock) inlined into zs_map_object was taken for the zspage's)
    kind = np.where(zs & (names != ""), "pool", kind)
    # ... and a *write* wait on an rwlock the stack gave the pool at another address, the
    # pools' being known, is a zspage lock's: only compaction and migration write-lock, and
    # 6.9-6.14 they take the pool's and the source zspage's with the same stack
    wr = (flags & LCB_F_WRITE) != 0
    kind = np.where(zs & (kind == "pool") & (names == "") & wr & pools_known, "zspage", kind)
    w = wait[zs]
    # kprobe rows: only they carry the probe floor and a request stamp to check
    slowpath = np.asarray(lk.column("event").cast(pa.string()).to_pylist(), dtype=object) == (
        "spin_slowpath"
    )
    less_floor = None
    if floor is not None:  # only the kprobe rows carry it (tracepoint rows: no kprobe pair)
        cut = np.where(slowpath[zs], floor, 0)
        less_floor = int(np.maximum(w.astype(np.int64) - cut, 0).sum())
    out: dict[str, Any] = {
        "rows": int(n),
        "rwlock_internal_excluded": int(internal.sum()),
        "irq_inside_zsmalloc_excluded": int((in_irq & (kind != "other")).sum()),
        "callee_lock_excluded": int((callee & (kind != "other")).sum()),
        "zsmalloc": {
            "contended": int(zs.sum()),
            "wait_ns_total": int(w.sum()),
            "wait_ns_p50": _pct(w, 50),
            "wait_ns_p99": _pct(w, 99),
            "wait_ns_max": int(w.max()) if w.size else 0,
            "attributed_by_stack": int(is_zs.sum()),
            "attributed_by_address_only": int(by_addr_only.sum()),
            "stack_and_address_agree": int((is_zs & (names != "")).sum()),
            "wait_ns_less_probe_floor": less_floor,
        },
        "other": {
            "contended": int((~zs & ~internal).sum()),
            "wait_ns_total": int(wait[~zs & ~internal].sum()),
        },
        "by_kind": {
            k: {
                "contended": int((kind[zs] == k).sum()),
                "wait_ns_total": int(wait[zs][kind[zs] == k].sum()),
            }
            for k in ZS_KINDS
        },
    }
    locks: dict[int, dict[str, Any]] = {}
    for a, k, nm, wt, z in zip(addr, kind, names, wait, zs, strict=True):
        if not z:
            continue
        d = locks.setdefault(
            int(a),
            {
                "addr": hex(int(a)),
                "name": nm or f"{k} lock",
                "kind": k,
                "contended": 0,
                "wait_ns_total": 0,
            },
        )
        d["contended"] += 1
        d["wait_ns_total"] += int(wt)
    out["locks"] = sorted(locks.values(), key=lambda d: -d["contended"])
    if calls is not None and calls.num_rows and n:
        sp = zs & slowpath
        out["zsmalloc"]["request_in_holder_call"] = requests_in_holder_calls(
            _column(lk, "ts_ns", 0, np.int64)[sp],
            _column(lk, "cpu", 0, np.int64)[sp],
            kind[sp],
            calls,
        )
        ts, tid = _column(lk, "ts_ns", 0, np.int64)[sp], _column(lk, "tid", 0, np.int64)[sp]
        # one pass over the waits (a loop per row) for both the counts and the parts
        none = without_holder(ts, wait[sp], tid, kind[sp], calls)
        out["zsmalloc"]["waits_without_holder"] = holder_summary(none, wait[sp], kind[sp])
        if costs is not None:
            comm = (
                np.asarray(lk.column("comm").cast(pa.string()).fill_null("").to_pylist(), object)
                if "comm" in lk.column_names
                else np.full(n, "", object)
            )
            out["zsmalloc"]["wait_parts"] = wait_parts(wait[sp], none, comm[sp], costs)
    return out


def write_sidecar(outdir: str | Path, trace_name: str = "trace") -> Path | None:
    """Write ``<trace>.kernel/contention.json`` for a run whose capture exists; its path.
    None for a ``capture --summary`` run: it has no event rows to attribute by stack and
    address (its report is ``ztrace report DIR/trace``)."""
    out = Path(outdir)
    if not (out / trace_name).is_dir() or not any((out / trace_name).glob("part-*.parquet")):
        return None
    side = out / f"{trace_name}.kernel"
    side.mkdir(exist_ok=True)
    path = side / "contention.json"
    path.write_text(json.dumps(summarize(out, trace_name), indent=1, sort_keys=True) + "\n")
    return path


def one_line(side: dict[str, Any], label: str) -> str:
    """``make demo``'s line for one measured run."""
    z, tp = side["zsmalloc"], side.get("tracepoint", {}).get("zsmalloc", {})
    locks = ", ".join(f"{lk['name']} {lk['contended']}" for lk in side["locks"][:3]) or "-"
    return (
        f"{label}: {z['contended']} contended, {z['wait_ns_total'] / 1e6:.1f} ms total wait "
        f"(p50 {z.get('wait_ns_p50', 0) / 1e3:.1f} us, p99 {z.get('wait_ns_p99', 0) / 1e3:.1f} us)"
        f" on {locks}; lock:contention_begin alone saw {tp.get('contended', 0)}"
    )


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        side_path = Path(arg + ".kernel") / "contention.json"
        if not side_path.is_file():
            side_path = Path(arg) / "trace.kernel" / "contention.json"
        try:
            data = json.loads(side_path.read_text())
        except (OSError, ValueError) as exc:
            print(f"ztrace: error: {side_path}: {exc}", file=sys.stderr)
            sys.exit(2)
        print(one_line(data, f"{data.get('kernel_release') or Path(arg).name}"))
