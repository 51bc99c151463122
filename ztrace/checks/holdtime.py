"""How long zsmalloc's lock is really held inside a zs_malloc/zs_free/zs_map_object call.

A capture's ``duration_ns`` is the whole call (kprobe entry to kretprobe). The kernel holds
the lock for part of it only (6.1 and 6.12 mm/zsmalloc.c: zs_malloc allocates the handle
with cache_alloc_handle() before ``spin_lock()`` and runs alloc_zspage() between two holds;
zs_free frees the handle after ``spin_unlock()``). The replay holds the lock for a call's
*hold share* of its duration (:mod:`ztrace.replay.holds`); this module measures that share on
the guest kernel, independently of any validation run (``ztrace vm run -s holdtime``).

Method (``probes/zs_hold.bpf.c``), over one zsstress thread (no contention: a wait inside
the call would count as call time, not hold), rounds A, B, C repeated:

* **A**: a kprobe/kretprobe pair on zs_malloc/zs_free/zs_map_object alone: the call
  duration ``D`` as a capture measures it.
* **B**: A plus probes on the out-of-line lock functions (kprobe + kretprobe on
  ``_raw_spin_lock`` / ``_raw_read_lock``, kprobe on ``_raw_spin_unlock`` /
  ``_raw_read_unlock``; Debian's amd64 builds: CONFIG_UNINLINE_SPIN_UNLOCK=y, PREEMPTION),
  per thread: the first lock of each family that the zs_* function itself asks for (its
  return address inside the function's own text, :func:`own_text`), matched by lock address:
  the hold ``H`` = lock return to unlock entry, summed per call. Locks asked for by code the
  call runs (slab, page allocator, scheduler) are counted per call (``other_lock_calls``),
  never tracked. The distinct addresses are reported (6.1: one, pool->lock).
  Round B also times where the hold sits: call entry to the first request of the tracked
  lock, and its last unlock to the call's return (the replay asks for the lock at the call's
  entry; session 15).
* **C**: B plus handlers doing the recording handlers' work inside the hold window; the
  growth of the median hold (C - B, adjacent rounds) stands for the lock probes' own
  in-window cost, capped by the shortest hold of the round B (no hold is negative, so the
  probes' in-window cost cannot exceed it). The recording handlers keep their work outside
  the window (timestamp last at lock return, first at unlock), so C - B over-states it.

Every round also puts a kprobe/kretprobe pair on the spinlock slowpath (session 23): per
call, the contended acquisitions of the spin lock the zs_* function itself asked for, and
their time in the slowpath. With one zsstress thread that is 0 (the pool is the module's
own); with several (``ztrace vm run -s holdtime -p threads=4``) the calibration measures the
kernel's contention on the very calls whose holds it measures, and ``-p trace=1`` adds a
capture of the same load whose replay ``ztrace check holds`` holds against it.
:func:`stall_in_hold` says how much of a long call's extra time lies inside the hold.

Per op kind (malloc with one hold, malloc that grew a zspage = two holds, free, map): the
hold bracket is [median H_B - in-window cost, median H_B] and the share is that over median
D_A. Stdlib and bcc only in the guest (no numpy there); :func:`summarize` is pure.

    python3 -m ztrace.checks.holdtime --rounds 4 -o holdtime.json -- sh -c 'insmod ...'
    python3 -m ztrace.checks.holdtime --slim holdtime.json replays/calibration/holdtime-REL.json
    python3 -m ztrace.checks.holdtime --merge replays/calibration/holdtime-REL.json \
        "run 1 (...)=RUN1/holdtime.json" "run 2 (...)=RUN2/holdtime.json"
"""

from __future__ import annotations

import bisect
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ztrace.errors import FeatureMissingError

PROGRAM = "zs_hold.bpf.c"
#: traced zs_* functions, in the BPF program's ZH_FN_* order
FUNCS = ("zs_malloc", "zs_free", "zs_map_object")
#: lock families: (lock function, unlock function), the BPF program's index 0 and 1
FAMILIES = (("_raw_spin_lock", "_raw_spin_unlock"), ("_raw_read_lock", "_raw_read_unlock"))
#: op kinds summarized: name -> (zs function index, number of spin holds or None = any)
KINDS = {"malloc": (0, 1), "malloc_grow": (0, 2), "free": (1, None), "map": (2, None)}
#: per-call samples kept per kind and round (the distribution's quantiles come from them)
MAX_SAMPLES = 20000
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
#: round B's per-kind medians of where the hold sits in the call (_request_and_release)
PLACEMENT = ("request_ns", "request_share", "release_ns", "release_share")
#: what the result's "method" says
METHOD = (
    "rounds A (zs_* pair alone: D), B (+ lock/unlock probes, hold = lock return to unlock "
    "entry of the lock the zs_* function takes), C (+ handlers inside the hold window: "
    "in-window probe cost = hold C - hold B); hold bracket [H_B - cost, H_B], share = "
    "hold / D_A, medians over A,B,C cycles; request/release = round B's call entry to the "
    "first lock request and last unlock to return (ns and share of that call); every round: "
    "spinlock slowpath entries for the zs_* function's own spin lock (contended_calls) and "
    "their time (slowpath_wait_ns)"
)


def text_symbols(kallsyms: str) -> list[tuple[int, str]]:
    r"""The text symbols (types t, T, w, W) of ``kallsyms`` (the text of /proc/kallsyms) as
    (address, name), in file order; read once for :func:`own_text` and :func:`trampolines`.

    >>> text_symbols("ffffffffc0001000 t zs_malloc\t[zsmalloc]\nffffffff82000000 D data\n")
    [(18446744072635813888, 'zs_malloc')]
    """
    syms: list[tuple[int, str]] = []
    for line in kallsyms.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    return syms


def own_text(
    syms: list[tuple[int, str]], funcs: tuple[str, ...] = FUNCS
) -> list[list[tuple[int, int]]]:
    r"""Per function of ``funcs``: the address ranges of its own text among ``syms``
    (:func:`text_symbols`): its symbol and its split-off parts (``zs_malloc.cold``), each up
    to the next higher symbol's address. zsmalloc is a module on Debian's 6.1 and built in on
    6.12; either way /proc/kallsyms lists its functions, not where they end.

    >>> ks = "ffffffffc0001000 t zs_malloc\t[zsmalloc]\nffffffffc0001400 T zs_free\t[zsmalloc]\n"
    >>> syms = text_symbols(ks + "ffffffffc0001600 t x\n")
    >>> [[(hex(a), hex(b)) for a, b in r] for r in own_text(syms)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [[('0xffffffffc0001000', '0xffffffffc0001400')],
     [('0xffffffffc0001400', '0xffffffffc0001600')], []]
    """
    addrs = sorted({a for a, _ in syms if a})
    out: list[list[tuple[int, int]]] = []
    for fn in funcs:
        ranges = []
        for a, name in syms:
            if a and (name == fn or name.startswith(fn + ".")):
                i = bisect.bisect_right(addrs, a)
                ranges.append((a, addrs[i] if i < len(addrs) else a + (1 << 16)))
        out.append(sorted(set(ranges)))
    return out


#: the kretprobe trampoline's names across kernels (6.1 and 6.12 x86: rethook; older:
#: kretprobe): a lock call's return address reads as this when a kretprobe took it first
TRAMPOLINES = ("arch_rethook_trampoline", "__kretprobe_trampoline", "kretprobe_trampoline")


def trampolines(syms: list[tuple[int, str]]) -> list[int]:
    r"""Addresses of the ``TRAMPOLINES`` among ``syms`` (:func:`text_symbols`).

    >>> syms = text_symbols("ffffffff81076930 T arch_rethook_trampoline\nffffffff81000000 T x\n")
    >>> [hex(a) for a in trampolines(syms)]
    ['0xffffffff81076930']
    """
    return [a for a, name in syms if a and name in TRAMPOLINES]


def own_text_macro(ranges: list[list[tuple[int, int]]], tramps: Sequence[int] = ()) -> str:
    r"""The ``ZH_OWN(fn, ret)`` definition for probes/zs_hold.bpf.c: is the return address
    ``ret`` of a lock call inside the text of zs function number ``fn``? And ``ZH_TRAMP(ret)``:
    is it the kretprobe trampoline (``tramps``)?

    >>> print(own_text_macro([[(16, 32)], []], [48]).replace(" || ", "\n  || "))
    #define ZH_OWN(fn, ret) (((fn) == 0 && (((ret) >= 0x10ULL && (ret) < 0x20ULL)))
      || ((fn) == 1 && (0)))
    #define ZH_TRAMP(ret) ((ret) == 0x30ULL)
    <BLANKLINE>
    """
    terms = []
    for i, rs in enumerate(ranges):
        inside = " || ".join(f"((ret) >= {a:#x}ULL && (ret) < {b:#x}ULL)" for a, b in rs)
        terms.append(f"((fn) == {i} && ({inside or '0'}))")
    tramp = " || ".join(f"(ret) == {a:#x}ULL" for a in tramps) or "0"
    return f"#define ZH_OWN(fn, ret) ({' || '.join(terms)})\n#define ZH_TRAMP(ret) ({tramp})\n"


def spin_slowpath(syms: list[tuple[int, str]]) -> str:
    """The spinlock slowpath's name in this kernel's text: x86 with
    CONFIG_PARAVIRT_SPINLOCKS (Debian) calls it ``native_queued_spin_lock_slowpath``
    (as the capture's loader, ztrace/capture/loader.py).

    >>> spin_slowpath([(1, "native_queued_spin_lock_slowpath"), (2, "zs_malloc")])
    'native_queued_spin_lock_slowpath'
    """
    names = {n for _, n in syms}
    for name in ("native_queued_spin_lock_slowpath", "queued_spin_lock_slowpath"):
        if name in names:
            return name
    raise FeatureMissingError("/proc/kallsyms: no queued_spin_lock_slowpath")


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def quantiles(xs: list[float]) -> dict[str, float] | None:
    """Nearest-rank quantiles ``QUANTILES`` of ``xs``.

    >>> quantiles([5, 1, 3, 2, 4])["q50"]
    3
    """
    if not xs:
        return None
    s = sorted(xs)
    return {f"q{round(q * 100)}": s[min(len(s) - 1, int(q * len(s)))] for q in QUANTILES}


def kind_of(rec: dict[str, Any]) -> str | None:
    """The op kind of one call record (``fn``, ``n`` = holds per family). Without lock
    probes (rounds A: no holds seen) every zs_malloc counts as ``malloc``.

    >>> kind_of({"fn": 0, "n": [0, 0]}), kind_of({"fn": 0, "n": [2, 0]})
    ('malloc', 'malloc_grow')
    """
    if rec["fn"] == 0:
        return "malloc_grow" if rec["n"][0] >= 2 else "malloc"
    for kind, (fn, _) in KINDS.items():
        if rec["fn"] == fn:
            return kind
    return None


def family_of(recs: list[dict[str, Any]]) -> int | None:
    """The lock family whose holds most of a kind's calls show: spin (0: 6.1 pool->lock,
    6.12 class->lock; preferred on a tie, 6.12 zs_free takes both) or rwlock read (1: 6.12
    pool->migrate_lock in zs_map_object); None if neither.

    >>> family_of([{"n": [0, 1]}, {"n": [1, 1]}, {"n": [0, 1]}])
    1
    """
    counts = [sum(1 for r in recs if r["n"][fam]) for fam in (0, 1)]
    if not any(counts):
        return None
    return 0 if counts[0] >= counts[1] else 1


def round_stats(config: str, recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: calls, median duration and (B, C) median hold of the calls that completed
    a hold of the kind's family, the number of distinct tracked lock addresses (6.1: one,
    pool->lock; 6.12: one per size class used), plus per-call (hold, duration) samples of
    B rounds."""
    out: dict[str, Any] = {"config": config}
    for kind in KINDS:
        rs = [r for r in recs if kind_of(r) == kind]
        fam = family_of(rs) if config != "A" else None
        row: dict[str, Any] = {"calls": len(rs), "dur_ns": _median([r["dur"] for r in rs])}
        if rs and "slow" in rs[0]:
            # the kernel's contended acquisitions of the call's own spin lock, and their
            # time in the slowpath (0 with one zsstress thread: the pool is the module's own)
            row["contended_calls"] = sum(1 for r in rs if r["slow"])
            row["slowpath_wait_ns"] = sum(r["slow_ns"] for r in rs)
        if config == "A" and kind == "malloc" and rs:
            # rounds A mix plain and growing mallocs: percentiles, so that summarize() can
            # take the plain ones' median (the grows are the slow tail)
            ds = sorted(r["dur"] for r in rs)
            row["dur_pct"] = [ds[min(len(ds) - 1, len(ds) * q // 100)] for q in range(101)]
        if fam is not None:
            held = [r for r in rs if r["n"][fam] and not (r["open"] >> fam) & 1]
            row["family"] = FAMILIES[fam][0]
            row["hold_ns"] = _median([r["hold"][fam] for r in held])
            # no call's hold is below the probes' own in-window cost: the shortest one
            # bounds it (summarize() caps the C - B estimate with it)
            row["hold_min_ns"] = min((r["hold"][fam] for r in held), default=None)
            row["held_calls"] = len(held)
            addrs = Counter(r["lock"][fam] for r in held)
            row["lock_addresses"] = len(addrs)
            # share of the calls on the most common address (6.1: pool->lock; a foreign
            # lock first, e.g. an interrupt's, shows here)
            row["top_lock_share"] = max(addrs.values()) / len(held) if held else None
            # calls in which code the call runs asked for a lock of the family too (not
            # tracked; absent from records before session 18)
            row["other_lock_calls"] = sum(1 for r in rs if r.get("other", [0, 0])[fam])
            if config == "B":
                # (hold, duration, 1 if the call waited in the spinlock slowpath, ns the
                # thread was switched out)
                row["samples"] = [
                    [r["hold"][fam], r["dur"], 1 if r.get("slow") else 0, r.get("offcpu", 0)]
                    for r in held[:MAX_SAMPLES]
                ]
                row.update(_request_and_release(held, fam))
        out[kind] = row
    return out


def _request_and_release(held: list[dict[str, Any]], fam: int) -> dict[str, Any]:
    """Where in a call the lock is first asked for, and how long the call runs on after its
    last unlock (issue 10: the replay requests the lock at a call's entry): medians of the ns
    and of their share of the call's duration, over the round's held calls (round B: the lock
    probes' own time is inside both). Calls that never asked for it give nothing.

    >>> r = {"dur": 1000, "req": [200, 0], "rel": [300, 0]}
    >>> _request_and_release([r, r | {"req": [400, 0]}], 0)["request_share"]
    0.3
    """
    got = [r for r in held if r["req"][fam] and r["rel"][fam]]
    if not got:
        return {}
    return {
        "request_ns": statistics.median(r["req"][fam] for r in got),
        "request_share": round(statistics.median(r["req"][fam] / r["dur"] for r in got), 4),
        "release_ns": statistics.median(r["rel"][fam] for r in got),
        "release_share": round(statistics.median(r["rel"][fam] / r["dur"] for r in got), 4),
    }


def stall_in_hold(samples: list[list[float]], factor: float = 5.0) -> dict[str, Any] | None:
    """Where a long call's extra time lies: inside the lock hold, or outside it.

    ``samples``: round B's per-call ``[hold, duration, contended, switched-out ns]``. The
    time on a CPU is the duration less the switched-out time (a lock holder is never
    switched out). A call on a CPU for over ``factor`` times the median was stalled (an
    interrupt, the host descheduling the vCPU under TCG, the slab's or the page allocator's
    slow path, a zspage freed under the lock); its excess is ``on-CPU - median``, and the
    part of it inside the hold is ``max(0, hold - median hold)``. ``share`` is the second
    summed over the first, over the uncontended calls (a contended call's wait lies before
    its hold); ``calls_mostly_inside`` counts the long calls with over half their excess
    inside. The replay holds the same share of every part of a call (docs/replay-model.md
    §4): in expectation that is right when ``share`` is near the hold share, but a stall
    that lands in a hold holds the lock for all of its length. None without long calls.

    >>> stall_in_hold([[10, 100, 0, 0]] * 8 + [[10, 1100, 0, 0], [610, 1100, 0, 0],
    ...                [900, 9000, 1, 0], [10, 9000, 0, 8900]])
    {'long_calls': 2, 'excess_ns': 2000, 'share': 0.3, 'calls_mostly_inside': 1}
    """
    # (hold, time on a CPU) of the uncontended calls; samples before session 23 have 2 fields
    calm = [(x[0], x[1] - (x[3] if len(x) > 3 else 0)) for x in samples if len(x) < 3 or not x[2]]
    if not calm:
        return None
    md = statistics.median(on for _, on in calm)
    mh = statistics.median(h for h, _ in calm)
    long = [(h, on) for h, on in calm if on > factor * md]
    excess = sum(on - md for _, on in long)
    if not long or excess <= 0:
        return None
    inside = [max(0.0, h - mh) for h, _ in long]
    return {
        "long_calls": len(long),
        "excess_ns": round(excess),
        "share": round(sum(inside) / excess, 4),
        "calls_mostly_inside": sum(
            1 for i, (_, on) in zip(inside, long, strict=True) if i > (on - md) / 2
        ),
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind, from rounds in the order A, B, C, A, B, C, ...: the in-window probe cost
    (median over cycles of median hold C - B), the hold bracket [H_B - cost, H_B] and the
    share of the call duration D_A (medians over cycles), with the per-call hold quantiles.

    >>> a = {"config": "A", "malloc": {"calls": 9, "dur_ns": 1000.0}}
    >>> b = {"config": "B", "malloc": {"calls": 9, "dur_ns": 2400.0, "hold_ns": 600.0,
    ...      "family": "_raw_spin_lock", "samples": [[600, 2400]]}}
    >>> c = {"config": "C", "malloc": {"calls": 9, "dur_ns": 2900.0, "hold_ns": 800.0}}
    >>> s = summarize([a, b, c])["malloc"]
    >>> s["probe_in_window_ns"], s["hold_ns"], s["share"]
    (200.0, [400.0, 600.0], [0.4, 0.6])
    """
    out: dict[str, Any] = {}
    cycles = [rounds[i : i + 3] for i in range(0, len(rounds) - 2, 3)]
    for kind in KINDS:
        inwin: list[float] = []
        hb: list[float] = []
        da: list[float] = []
        sh_lo: list[float] = []
        sh_hi: list[float] = []
        samples: list[float] = []
        stall: list[list[float]] = []
        contended_a: list[int] = []
        placed: dict[str, list[float]] = {k: [] for k in PLACEMENT}
        family = None
        for cyc in cycles:
            ra, rb, rc = (r.get(kind, {}) for r in cyc)
            d = ra.get("dur_ns")
            grows = cyc[1].get("malloc_grow", {}).get("calls", 0)
            if kind == "malloc" and ra.get("dur_pct") and grows:
                # D_A of a plain malloc: the median of the fastest (1 - g) of rounds A's
                # mallocs, g = the share that grew in the adjacent round B (same workload)
                g = grows / (grows + rb.get("calls", 0))
                d = ra["dur_pct"][round(50 * (1 - g))]
            if kind == "malloc_grow":
                # rounds A cannot tell a grow from a plain malloc (no holds seen): D_A of a
                # grow = its D_B less two holds' worth of lock probes (D_B - D_A of malloc)
                ma, mb = cyc[0].get("malloc", {}), cyc[1].get("malloc", {})
                if rb.get("dur_ns") and ma.get("dur_ns") and mb.get("dur_ns"):
                    g = rb.get("calls", 0) / max(1, rb.get("calls", 0) + mb.get("calls", 0))
                    pct = ma.get("dur_pct")
                    plain = pct[round(50 * (1 - g))] if pct else ma["dur_ns"]
                    d = rb["dur_ns"] - 2 * (mb["dur_ns"] - plain)
            if rb.get("hold_ns") is None or not d or d <= 0:
                continue
            family = rb.get("family", family)
            cost = (rc["hold_ns"] - rb["hold_ns"]) if rc.get("hold_ns") is not None else 0.0
            floor = rb.get("hold_min_ns")
            if floor is None and rb.get("samples"):
                floor = min(x[0] for x in rb["samples"])
            if floor is not None:
                # a hold is never negative, so the in-window cost is at most the shortest
                # hold seen in the round (C - B, two whole extra handlers, can exceed it)
                cost = min(cost, floor)
            inwin.append(cost)
            hb.append(rb["hold_ns"])
            da.append(d)
            sh_hi.append(rb["hold_ns"] / d)
            sh_lo.append(max(0.0, rb["hold_ns"] - max(cost, 0.0)) / d)
            samples += [x[0] for x in rb.get("samples", [])]
            stall += rb.get("samples", [])
            if ra.get("contended_calls") is not None:
                contended_a.append(ra["contended_calls"])
            for k in PLACEMENT:
                if rb.get(k) is not None:
                    placed[k].append(rb[k])
        if not hb:
            continue
        cost = max(0.0, statistics.median(inwin))
        h = statistics.median(hb)
        d = statistics.median(da)
        out[kind] = {
            "family": family,
            "cycles": len(hb),
            "dur_ns": d,
            "probe_in_window_ns": statistics.median(inwin),
            "probe_in_window_range_ns": [min(inwin), max(inwin)],
            "hold_ns": [max(0.0, h - cost), h],
            "share": [round(max(0.0, h - cost) / d, 4), round(h / d, 4)],
            "share_range": [round(min(sh_lo), 4), round(max(sh_hi), 4)],
            "hold_quantiles_ns": quantiles(samples),
            "samples": len(samples),
        }
        if contended_a:  # absent before session 23's slowpath probe
            out[kind]["contended_calls_a"] = statistics.median(contended_a)
        placement = stall_in_hold(stall)
        if placement is not None:
            out[kind]["stall_in_hold"] = placement
        # where the hold sits in the call (round B medians, median over cycles); absent in
        # results from before session 15's probe fields
        out[kind].update({k: statistics.median(v) for k, v in placed.items() if v})
    return out


def measure(cmd: list[str], rounds: int = 3) -> dict[str, Any]:  # pragma: no cover - kprobes
    """Run ``cmd`` ``3 * rounds`` times (A, B, C, A, B, C, ...) under the probes."""
    from bcc import BPF

    from ztrace.capture.loader import probes_dir
    from ztrace.checks.probecost import check_result, detach_all

    syms = text_symbols(Path("/proc/kallsyms").read_text())
    ranges = own_text(syms)
    missing = [fn for fn, rs in zip(FUNCS, ranges, strict=True) if not rs]
    if missing:
        raise FeatureMissingError(f"/proc/kallsyms: no symbol for {', '.join(missing)}")
    slowpath = spin_slowpath(syms)
    defines = own_text_macro(ranges, trampolines(syms))
    text = defines.encode() + (probes_dir() / PROGRAM).read_bytes()
    bpf = BPF(text=text)
    recs: list[dict[str, Any]] = []

    def on_event(_cpu: int, data: Any, _size: int) -> None:
        e = bpf["zh_out"].event(data)
        recs.append(
            {
                "fn": e.fn,
                "dur": e.dur,
                "size": e.size,
                "hold": [e.hold[0], e.hold[1]],
                "n": [e.n[0], e.n[1]],
                "other": [e.other[0], e.other[1]],
                "lock": [e.lock[0], e.lock[1]],
                "open": e.open,
                "req": [e.req[0], e.req[1]],
                "rel": [e.rel[0], e.rel[1]],
                "t0": e.t0,
                "cpu": e.cpu,
                "slow": e.slow,
                "slow_ns": e.slow_ns,
                "offcpu": e.offcpu,
            }
        )

    bpf["zh_out"].open_perf_buffer(on_event, page_cnt=256)
    zs = [("zh_malloc_entry", FUNCS[0]), ("zh_free_entry", FUNCS[1]), ("zh_map_entry", FUNCS[2])]
    out_rounds: list[dict[str, Any]] = []
    try:
        # every round: the kernel's own count of contended acquisitions of the zs_* function's
        # spin lock (several zsstress threads; 0 with one) and their waits. Attached once for
        # all rounds: each attach or detach patches a hot function's text, and under TCG a
        # vCPU may run the half-patched site (the race of docs/vm.md, which the harness boots
        # again after); the zs_* and lock probes must change per round, this one need not
        bpf.attach_kretprobe(event=slowpath, fn_name="zh_slowpath_ret")
        bpf.attach_kprobe(event=slowpath, fn_name="zh_slowpath")
        for r in range(3 * rounds):
            config = "ABC"[r % 3]
            att: list[tuple[str, str, bool]] = []
            for prog, fn in zs:
                bpf.attach_kprobe(event=fn, fn_name=prog)
                bpf.attach_kretprobe(event=fn, fn_name="zh_zs_return")
                att += [(fn, prog, False), (fn, "zh_zs_return", True)]
            if config in "BC":
                for fam, (lk, ul) in zip(("spin", "read"), FAMILIES, strict=True):
                    # the kretprobe first: the entry kprobe, newer, runs before it and reads
                    # the caller's return address before the kretprobe replaces it
                    bpf.attach_kretprobe(event=lk, fn_name=f"zh_{fam}_lock_ret")
                    bpf.attach_kprobe(event=lk, fn_name=f"zh_{fam}_lock")
                    bpf.attach_kprobe(event=ul, fn_name=f"zh_{fam}_unlock")
                    att += [(lk, f"zh_{fam}_lock_ret", True), (lk, f"zh_{fam}_lock", False)]
                    att += [(ul, f"zh_{fam}_unlock", False)]
            if config == "C":  # attached last: runs inside the recording handlers' window
                for fam, (lk, ul) in zip(("spin", "read"), FAMILIES, strict=True):
                    bpf.attach_kretprobe(event=lk, fn_name=f"zh_dummy_{fam}_lock_ret")
                    bpf.attach_kprobe(event=ul, fn_name=f"zh_dummy_{fam}_unlock")
                    att += [(lk, f"zh_dummy_{fam}_lock_ret", True)]
                    att += [(ul, f"zh_dummy_{fam}_unlock", False)]
            recs.clear()
            t0 = time.monotonic()
            p = subprocess.Popen(cmd)
            while p.poll() is None:
                bpf.perf_buffer_poll(timeout=100)
            bpf.perf_buffer_poll(timeout=100)
            wall = time.monotonic() - t0
            detach_all(bpf, att)
            bpf.perf_buffer_poll(timeout=100)
            row = round_stats(config, recs)
            out_rounds.append(row)
            row["round"], row["rc"], row["wall_s"] = r, p.returncode, wall
            row["records"] = len(recs)
            if r < 3:  # a few raw records, for the caller check by hand
                row["example_records"] = recs[:: max(1, len(recs) // 8)][:8]
            brief = {k: v for k, v in row.items() if k not in KINDS}
            brief.update({k: {x: y for x, y in row[k].items() if x != "samples"} for k in KINDS})
            print(json.dumps(brief), file=sys.stderr, flush=True)
    finally:
        bpf.cleanup()
    return check_result(METHOD, cmd, out_rounds, kinds=summarize(out_rounds))


def slim(res: dict[str, Any]) -> dict[str, Any]:
    """``res`` without the per-call samples and raw example records (what ships in
    ``replays/calibration/``: the summary and every round's medians stay).

    >>> slim({"kinds": {}, "rounds": [{"malloc": {"samples": [[1, 2]], "hold_ns": 1}}]})
    {'kinds': {}, 'rounds': [{'malloc': {'hold_ns': 1}}]}
    """
    rounds = []
    for r in res.get("rounds", []):
        r = {k: v for k, v in r.items() if k != "example_records"}
        for kind in KINDS:
            if kind in r:
                r[kind] = {k: v for k, v in r[kind].items() if k not in ("samples", "dur_pct")}
        rounds.append(r)
    return {**res, "rounds": rounds}


def merge(results: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Several calibration runs of one kernel as one shipped file: every cycle of every run
    summarized together (medians over all of them), each run's own summary under ``runs``
    with its label and command, slimmed (:func:`slim`). Refuses runs of different kernels.

    >>> a = {"config": "A", "malloc": {"calls": 9, "dur_ns": 1000.0}}
    >>> b = {"config": "B", "malloc": {"calls": 9, "dur_ns": 2400.0, "hold_ns": 600.0,
    ...      "family": "_raw_spin_lock", "samples": [[600, 2400]]}}
    >>> c = {"config": "C", "malloc": {"calls": 9, "dur_ns": 2900.0, "hold_ns": 800.0}}
    >>> one = {"kernel": "k", "method": "m", "cmd": ["x"], "rounds": [a, b, c]}
    >>> m = merge([("run 1", one), ("run 2", one)])
    >>> m["kinds"]["malloc"]["cycles"], [r["run"] for r in m["runs"]]
    (2, ['run 1', 'run 2'])
    >>> sorted(m["rounds"][4]["malloc"])  # round B of run 2, its per-call samples gone
    ['calls', 'dur_ns', 'family', 'hold_ns']
    """
    kernels = {r.get("kernel") for _, r in results}
    if len(kernels) != 1:
        raise ValueError(f"runs of different kernels: {sorted(map(str, kernels))}")
    rounds = [rnd for _, r in results for rnd in r["rounds"]]
    first = results[0][1]
    runs = [
        {"run": label, "cmd": r.get("cmd"), "kinds": summarize(r["rounds"])} for label, r in results
    ]
    merged = {
        "kernel": first["kernel"],
        "method": first.get("method"),
        "cmd": first.get("cmd"),
        "rounds": rounds,
        "kinds": summarize(rounds),
        "runs": runs,
    }
    return slim(merged)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - kprobes
    from ztrace.checks.probecost import run_check

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--slim"] and len(args) == 3:  # --slim IN OUT (host side)
        with open(args[1]) as f:
            res = slim(json.load(f))
        with open(args[2], "w") as f:
            json.dump(res, f, indent=1)
        return 0

    if args[:1] == ["--merge"] and len(args) >= 4:  # --merge OUT LABEL=IN ... (host side)
        runs = []
        try:
            for spec in args[2:]:
                label, _, path = spec.rpartition("=")
                with open(path) as f:
                    runs.append((label or path, json.load(f)))
            merged = merge(runs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"ztrace: error: --merge: {exc}", file=sys.stderr)
            return 2
        with open(args[1], "w") as f:
            json.dump(merged, f, indent=1)
        return 0

    got = run_check("holdtime", 3, "A/B/C cycles (default 3)", measure, argv)
    if got is None:
        return 2
    for kind, s in got[1]["kinds"].items():
        where = ""
        if "request_share" in s:
            where = f", asked at {s['request_share']}, released {s['release_share']} before return"
        if s.get("contended_calls_a"):
            where += f"; {s['contended_calls_a']} contended calls a round A (slowpath)"
        if s.get("stall_in_hold"):
            where += f"; {s['stall_in_hold']['share']} of long calls' excess inside the hold"
        print(f"{kind}: hold {s['hold_ns']} ns of {s['dur_ns']} ns, share {s['share']}{where}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
