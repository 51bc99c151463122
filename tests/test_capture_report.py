"""``ztrace report TRACE``: measured contention from a capture, checked against raw rows.

The bundled capture ``replays/samples/host-6.18-locks`` (this host's 6.18 kernel, lock
tracepoints with stacks, 870 ``lock_contention`` rows) is read twice: through the report and
directly with pyarrow, and every number the report prints is recomputed from the raw rows.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from ztrace.look.measured import (
    build_measured_report,
    caller_of,
    folded,
    load_measured,
    report_trace,
)

SAMPLE = ROOT / "replays" / "samples" / "host-6.18-locks"


def _raw_lock_rows() -> dict[str, np.ndarray]:
    t = pq.read_table(SAMPLE / "part-00000.parquet")
    t = t.filter(pc.equal(t["event"].cast(pa.string()), "lock_contention"))
    return {
        "addr": t["lock_addr"].to_numpy(),
        "wait": t["wait_ns"].to_numpy().astype(np.int64),
        "stack": t["stack_id"].to_numpy(),
        "kind": np.array(t["lock_kind"].cast(pa.string()).to_pylist()),
        "flags": t["lock_flags"].to_numpy(),
    }


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ztrace", "report", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_by_lock_and_by_caller_match_the_raw_rows() -> None:
    raw = _raw_lock_rows()
    assert len(raw["wait"]) == 870  # what replays/README.md says the sample holds
    rep = build_measured_report(load_measured(SAMPLE))
    assert rep["totals"]["contended"] == 870
    assert rep["totals"]["wait_ns_total"] == int(raw["wait"].sum())
    assert rep["trust"]["lost_events"] == 0
    # by lock: one row per (address, kind), every field recomputed
    rows = {(r["addr"], r["lock_kind"]): r for r in rep["by_lock"]}
    keys = {(f"{a:#x}", k) for a, k in zip(raw["addr"], raw["kind"], strict=True)}
    assert set(rows) == keys
    for (addr, kind), r in rows.items():
        sel = (raw["addr"] == int(addr, 16)) & (raw["kind"] == kind)
        w = raw["wait"][sel]
        assert r["contended"] == len(w)
        assert r["wait_ns_total"] == w.sum()
        assert r["wait_ns_max"] == w.max() and r["wait_ns_min"] == w.min()
        assert r["wait_ns_avg"] == w.sum() // len(w)
        assert r["type"] == "spinlock"  # every wait in this sample has flags LCB_F_SPIN
        assert r["hold_ns_total"] is None  # the probes do not measure hold times
    # sorted by total wait, like perf's default
    totals = [r["wait_ns_total"] for r in rep["by_lock"]]
    assert totals == sorted(totals, reverse=True)
    # by kind
    kinds = {r["name"]: r for r in rep["by_kind"]}
    for k in set(raw["kind"]):
        assert kinds[k]["contended"] == int((raw["kind"] == k).sum())
        assert kinds[k]["wait_ns_total"] == int(raw["wait"][raw["kind"] == k].sum())
    # by caller: the first non-lock frame of each row's stack, from stacks.json
    stacks = {int(k): v for k, v in json.loads((SAMPLE / "stacks.json").read_text()).items()}
    want: dict[str, list[int]] = defaultdict(list)
    for sid, w in zip(raw["stack"], raw["wait"], strict=True):
        want[caller_of(stacks[int(sid)]) if sid >= 0 else "[no stack]"].append(int(w))
    got = {r["name"]: r for r in rep["by_caller"]}
    assert set(got) == set(want)
    for name, ws in want.items():
        assert got[name]["contended"] == len(ws) and got[name]["wait_ns_total"] == sum(ws)
        assert got[name]["wait_ns_max"] == max(ws)
    # the zsmalloc callers the writers hit, named as perf would (not the lock functions)
    assert {"zs_malloc", "zs_free"} <= set(got)
    assert not any(n.startswith(("_raw_", "__pv_queued")) for n in got)
    # histogram counts every wait once
    assert sum(h["count"] for h in rep["wait_histogram"]) == 870


def test_caller_skips_lock_machinery() -> None:
    fr = ["__pv_queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc", "zram_submit_bio"]
    assert caller_of(fr) == "zs_malloc"
    assert caller_of(["_raw_spin_lock"]) == "[unknown]"
    assert caller_of(["mutex_lock", "__mutex_lock_slowpath", "do_thing"]) == "do_thing"


def test_folded_weights_sum_to_total_wait_in_flamegraph_format() -> None:
    raw = _raw_lock_rows()
    text = folded(load_measured(SAMPLE))
    total = 0
    stacks = {int(k): v for k, v in json.loads((SAMPLE / "stacks.json").read_text()).items()}
    for line in text.splitlines():
        # flamegraph.pl / speedscope: "frame;frame;frame <integer>", no spaces in frames
        m = re.fullmatch(r"([^ ;]+(?:;[^ ;]+)*) (\d+)", line)
        assert m, line
        total += int(m.group(2))
        frames = m.group(1).split(";")
        assert frames[-1] in ("[class]", "[pool]", "[zspage]", "[other]")
    assert total == int(raw["wait"].sum())
    # root first: one stack from the sample, reversed, is a line prefix
    sid = int(raw["stack"][0])
    assert ";".join(reversed(stacks[sid])) in text


def test_cli_tables_csv_json_and_sorting() -> None:
    p = _run(str(SAMPLE), "-E", "3")
    assert p.returncode == 0, p.stderr
    assert "by lock" in p.stdout and "by caller" in p.stdout
    assert "zs_malloc" in p.stdout and "lost: 0, total: 358246" in p.stdout
    assert "hold time: not measured" in p.stdout
    p = _run(str(SAMPLE), "--csv", "-k", "contended")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "# output: contended, total wait, max wait, avg wait, type, caller"
    assert lines[-1] == "# debug: total=358246, lost=0"
    counts = [int(x.split(", ")[0]) for x in lines[1:-1]]
    assert counts == sorted(counts, reverse=True) and sum(counts) == 870
    p = _run(str(SAMPLE), "--csv", "-l", "-x", ";", "-E", "2")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("# output: contended; total wait;") and len(lines) == 4
    assert lines[1].split("; ")[5] == "class"
    p = _run(str(SAMPLE), "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["kind"] == "measured" and data["totals"]["contended"] == 870


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--json", "--folded"], "only one of"),
        (["-k", "nonsense"], "nonsense"),
    ],
)
def test_cli_bad_options_are_one_line(args: list[str], msg: str) -> None:
    p = _run(str(SAMPLE), *args)
    assert p.returncode == 2
    assert msg in p.stderr and "Traceback" not in p.stderr


def test_trace_without_lock_columns_is_one_line(tmp_path: Path) -> None:
    p = _run(str(ROOT / "replays" / "samples" / "guest-6.12-zswap"))
    assert p.returncode == 2
    assert p.stderr.startswith("ztrace: error:") and "locks" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_class_index_is_inferred_from_the_enclosing_operation(tmp_path: Path) -> None:
    """Kprobe captures carry sizes: a class-lock wait inside zs_malloc(size) of the same
    thread names class[i] with the kernel's class for that size; zs_free uses the size its
    handle was allocated with by the zs_malloc that returned it last before the free (a
    handle is a slab slot: here thread 3 gets handle 11 again, for 2000 bytes, after the
    free; session 29 found the trace's last malloc of a handle naming 8 of 17 class locks
    of a 6.12 capture wrongly)."""
    from ztrace.format import TraceMeta, TraceWriter, make_events
    from ztrace.model.classes import build_classes

    cls = build_classes(chain_size=8)
    assert cls.class_for_malloc(100) != cls.class_for_malloc(2000)
    a, b = 0xFFFF000000001000, 0xFFFF000000002000
    #   malloc(100)->11 t1 [100, 200)  wait a (t1)  malloc(3000) t2 [200, 300)  free(11) t2
    #   wait b (t2)  malloc(2000)->11 t3 (the slot reused)
    tb = make_events(
        ts_ns=np.array([100, 150, 200, 300, 350, 400], np.uint64),
        event=[
            "zs_malloc",
            "lock_contention",
            "zs_malloc",
            "zs_free",
            "lock_contention",
            "zs_malloc",
        ],
        tid=np.array([1, 1, 2, 2, 2, 3], np.uint32),
        size_bytes=np.array([100, 0, 3000, 0, 0, 2000], np.uint32),
        handle=np.array([11, 0, 22, 11, 0, 11], np.uint64),
        duration_ns=np.array([100, 0, 100, 100, 0, 100], np.uint64),
        lock_addr=pa.array([None, a, None, None, b, None], pa.uint64()),
        lock_kind=pa.array([None, "class", None, None, "class", None]),
        wait_ns=pa.array([None, 40, None, None, 60, None], pa.uint64()),
        lock_flags=pa.array([None, 1, None, None, 1, None], pa.uint32()),
        stack_id=pa.array([None, -1, None, None, -1, None], pa.int32()),
    )
    meta = TraceMeta(
        kernel_release="6.12.0", page_size=4096, nr_cpus=2, source="capture", capture_start_ns=0
    )
    with TraceWriter(tmp_path / "t", meta, columns=tb.column_names) as w:
        w.write(tb)
    rep = build_measured_report(load_measured(tmp_path / "t"))
    names = {r["addr"]: r["name"] for r in rep["by_lock"]}
    # the wait on b happened in zs_free(h=11) of thread 2: the size of handle 11 is 100
    assert names == {
        f"{a:#x}": f"class[{cls.class_for_malloc(100)}]",
        f"{b:#x}": f"class[{cls.class_for_malloc(100)}]",
    }
    out = report_trace(tmp_path / "t", as_folded=True)
    assert out == "[no stack];[class] 100\n"


@pytest.mark.parametrize("mode", ["per-lock:64", "each"])
def test_report_says_callers_are_sampled_under_per_lock_stacks(tmp_path: Path, mode: str) -> None:
    """A capture made with ``--lock-stacks per-lock`` gives each lock's waits the stack of its
    last walk: the report keeps the lock exact and says the callers are sampled."""
    from ztrace.format import TraceMeta, TraceWriter, make_events

    tb = make_events(
        ts_ns=np.array([100, 200], np.uint64),
        event=["lock_contention", "lock_contention"],
        lock_addr=pa.array([0xFFFF000000001000] * 2, pa.uint64()),
        lock_kind=pa.array(["class", "class"]),
        wait_ns=pa.array([40, 60], pa.uint64()),
        lock_flags=pa.array([1, 1], pa.uint32()),
        stack_id=pa.array([-1, -1], pa.int32()),
    )
    meta = TraceMeta(
        kernel_release="6.18.0",
        page_size=4096,
        nr_cpus=2,
        source="capture",
        capture_start_ns=0,
        extra={"lock_stacks": mode},
    )
    with TraceWriter(tmp_path / "t", meta, columns=tb.column_names) as w:
        w.write(tb)
    text = report_trace(tmp_path / "t")
    assert ("callers: sampled (--lock-stacks per-lock" in text) == mode.startswith("per-lock")
    rep = json.loads(report_trace(tmp_path / "t", as_json=True))
    assert rep["trust"]["lock_stacks"] == mode and rep["totals"]["contended"] == 2


def test_slowpath_rows_count_every_spinlock_wait_once(tmp_path: Path) -> None:
    """On a kprobe kernel a spinlock wait is a ``spin_slowpath`` row, and a queued one also a
    ``lock_contention`` row (its plain-spinlock rows are a subset): the report counts the
    slowpath rows plus the tracepoint's non-spinlock rows, each wait once."""
    from ztrace.format import TraceMeta, TraceWriter, make_events

    a, m = 0xFFFF000000001000, 0xFFFF000000002000
    #   slowpath a (pending waiter), slowpath a (queued), tracepoint a (the same queued wait),
    #   tracepoint mutex m (only the tracepoint sees mutexes)
    tb = make_events(
        ts_ns=np.array([100, 200, 201, 300], np.uint64),
        event=["spin_slowpath", "spin_slowpath", "lock_contention", "lock_contention"],
        lock_addr=pa.array([a, a, a, m], pa.uint64()),
        lock_kind=pa.array(["pool", "pool", "pool", "other"]),
        wait_ns=pa.array([40, 90, 80, 1000], pa.uint64()),
        lock_flags=pa.array([1, 1, 1, 32], pa.uint32()),
        stack_id=pa.array([-1, -1, -1, -1], pa.int32()),
    )
    meta = TraceMeta(
        kernel_release="6.1.0", page_size=4096, nr_cpus=2, source="capture", capture_start_ns=0
    )
    with TraceWriter(tmp_path / "t", meta, columns=tb.column_names) as w:
        w.write(tb)
    rep = build_measured_report(load_measured(tmp_path / "t"))
    kinds = {r["name"]: (r["contended"], r["wait_ns_total"]) for r in rep["by_kind"]}
    assert kinds == {"pool": (2, 40 + 90), "other": (1, 1000)}
    assert rep["trust"]["waits"].startswith("spinlock slowpath kprobe")
    # the dashboard's observed design counts the same rows
    from ztrace.look.tracesum import OBSERVED, summarise_trace

    s = summarise_trace(tmp_path / "t")["locks_summary"]
    row = s.filter(s["lock_design"] == OBSERVED).row(0, named=True)
    assert (row["contended"], row["wait_ns_total"]) == (3, 40 + 90 + 1000)


def test_tracepoint_only_trace_keeps_its_spinlock_rows(tmp_path: Path) -> None:
    """Without slowpath rows (a host with no kprobes) the tracepoint's rows are all there is."""
    rep = build_measured_report(load_measured(SAMPLE))
    assert rep["totals"]["contended"] == 870
    assert rep["trust"]["waits"].startswith("lock tracepoint")


@pytest.mark.parametrize("sample", ["guest-6.1-zsstress", "guest-6.12-zsstress"])
def test_guest_capture_report_agrees_with_the_kernel_attribution(sample: str) -> None:
    """The bundled guest captures' measured zsmalloc contention, as `ztrace report` prints it
    from the capture's own attribution, is what the validation's stack-and-address
    attribution (``<sample>.kernel/contention.json``) counted: same waits, same total."""
    base = ROOT / "replays" / "samples" / sample
    kernel = json.loads((base.parent / f"{sample}.kernel" / "contention.json").read_text())
    rep = build_measured_report(load_measured(base))
    kinds = {r["name"]: (r["contended"], r["wait_ns_total"]) for r in rep["by_kind"]}
    got = {k: v for k, v in kinds.items() if k in ("pool", "class", "zspage")}
    want = {
        k: (v["contended"], v["wait_ns_total"])
        for k, v in kernel["by_kind"].items()
        if v["contended"]
    }
    assert got == want and sum(c for c, _ in want.values()) == kernel["zsmalloc"]["contended"] > 0


def _agg_maps(rows: dict[tuple[int, int, int], list[int]]) -> object:
    """A per-CPU hash of ``struct zs_agg`` keyed by ``struct zs_lock_key`` (probes/zs_events.h)
    as bcc's table reads it: ``items()`` of ctypes keys and per-CPU value lists. The host has
    no kprobes, so no real map here can hold a slowpath key; tests/test_capture_vm.py reads
    the real maps in the 6.1 and 6.12 guests."""
    import ctypes

    from ztrace.capture.summary import HIST_BUCKETS

    class Key(ctypes.Structure):
        _fields_ = [
            ("addr", ctypes.c_uint64),
            ("flags", ctypes.c_uint32),
            ("stack_id", ctypes.c_int32),
        ]

    class Agg(ctypes.Structure):
        _fields_ = [
            ("count", ctypes.c_uint64),
            ("total_ns", ctypes.c_uint64),
            ("max_ns", ctypes.c_uint64),
            ("min_ns", ctypes.c_uint64),
            ("hist", ctypes.c_uint32 * HIST_BUCKETS),
        ]

    def agg(waits: list[int]) -> Agg:
        if not waits:  # a CPU that never touched the key: its value all zero
            return Agg()
        a = Agg(len(waits), sum(waits), max(waits), min(waits))
        for w in waits:
            a.hist[max(w, 1).bit_length() - 1] += 1
        return a

    class Table:
        def items(self) -> list[tuple[Key, list[Agg]]]:
            # two CPUs: every key's waits split between them, as a per-CPU map holds them
            return [(Key(*k), [agg(w[::2]), agg(w[1::2])]) for k, w in rows.items()]

    return Table()


def test_summary_counts_slowpath_waits_by_lock_each_once(tmp_path: Path) -> None:
    """``capture --summary`` on a kprobe kernel: a slowpath wait's lock key carries the
    ZT_AGG_SLOWPATH bit (probes/zs_events.h), so its rows name the lock and the stack like the
    tracepoint's, and `report` counts each wait once (the tracepoint's plain-spinlock rows are
    a subset of the slowpath's). Before session 27 the slowpath waits were op rows, so a
    guest's summary showed almost no zsmalloc contention."""
    from ztrace.capture.summary import AGG_SLOWPATH, SummaryState, interval_rows, write_summary

    a, m = 0xFFFF000000001000, 0xFFFF000000002000
    lock_rows = {
        (a, 1 | AGG_SLOWPATH, 7): [40, 90, 300],  # three spinlock waits on a, slowpath pair
        (a, 1, 7): [80],  # the queued one of them, as the tracepoint saw it too
        (m, 32, 9): [1000, 3000],  # a mutex: only the tracepoint sees it
    }
    table = interval_rows(SummaryState(), _agg_maps(lock_rows), _agg_maps({}), None, 0, 10)
    got = {
        (r["event"], r["lock_flags"]): (r["count"], r["total_ns"], sum(r["hist"]))
        for r in table.to_pylist()
    }
    assert got == {
        ("spin_slowpath", 1): (3, 430, 3),  # the bit is taken off the flags
        ("lock_contention", 1): (1, 80, 1),
        ("lock_contention", 32): (2, 4000, 2),
    }
    (tmp_path / "s").mkdir()
    meta = {"summary_version": "2", "kernel_release": "6.1.0", "nr_cpus": "2"}
    write_summary(table, tmp_path / "s" / "summary-00000.parquet", meta)
    rep = build_measured_report(load_measured(tmp_path / "s"))
    assert (rep["totals"]["contended"], rep["totals"]["wait_ns_total"]) == (3 + 2, 430 + 4000)
    assert rep["trust"]["waits"].startswith("spinlock slowpath kprobe")
    # a version-1 file (no `event` column, written before this change): all its lock rows
    # are the tracepoint's, every one counted
    (tmp_path / "v1").mkdir()
    old = table.drop_columns(["event"]).filter(pc.equal(table.column("event"), "lock_contention"))
    pq.write_table(old, tmp_path / "v1" / "summary-00000.parquet")
    rep1 = build_measured_report(load_measured(tmp_path / "v1"))
    assert (rep1["totals"]["contended"], rep1["totals"]["wait_ns_total"]) == (3, 4080)
    assert rep1["trust"]["waits"].startswith("lock tracepoint")
