"""``ztrace export perfetto``: the output obeys the Chrome trace-event format's rules.

Rules checked (Trace Event Format, JSON object form, as Perfetto's importer reads it):
valid JSON; ``traceEvents`` list and ``displayTimeUnit``; per phase the required keys with
numbers (not strings) for ts/dur/pid/tid; ``dur >= 0``; ``X`` events on one thread in ts
order and not overlapping (improper nesting is dropped by Perfetto); ``i`` instants have a
scope; ``M`` metadata names every process and thread used; ``C`` counters carry numbers.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from ztrace.format import TraceMeta, make_events, write_trace

POOL = 0xFFFF888812345678  # a kernel pointer: larger than a JSON number holds exactly

REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "C": {"name", "ph", "ts", "pid", "args"},
    "M": {"name", "ph", "pid", "args"},
}


def check_trace_event_rules(doc: Any) -> dict[str, list[dict[str, Any]]]:
    """Assert the format's rules; return the events grouped by phase."""
    assert isinstance(doc, dict)
    assert isinstance(doc["traceEvents"], list)
    assert doc["displayTimeUnit"] in ("ms", "ns")
    by_ph: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in doc["traceEvents"]:
        ph = ev["ph"]
        assert ph in REQUIRED, ev
        assert REQUIRED[ph] <= set(ev), ev
        assert isinstance(ev["name"], str) and ev["name"]
        for k in ("ts", "dur", "pid", "tid"):
            if k in ev:
                assert isinstance(ev[k], int | float) and not isinstance(ev[k], bool), ev
        for k in ("pid", "tid"):
            if k in ev:
                assert isinstance(ev[k], int) and 0 <= ev[k] < 2**31, ev
        if ph == "X":
            assert ev["dur"] >= 0, ev
        if ph == "i":
            assert ev["s"] in ("g", "p", "t")
        if ph == "C":
            assert all(isinstance(v, int | float) for v in ev["args"].values())
        if ph == "M":
            assert ev["name"] in (
                "process_name",
                "thread_name",
                "process_sort_index",
                "thread_sort_index",
            )
        by_ph[ph].append(ev)
    # X events per thread: in ts order and non-overlapping (exact decimal arithmetic).
    tracks: dict[tuple[int, int], list[tuple[Decimal, Decimal]]] = defaultdict(list)
    for ev in by_ph["X"]:
        tracks[ev["pid"], ev["tid"]].append((Decimal(str(ev["ts"])), Decimal(str(ev["dur"]))))
    for key, evs in tracks.items():
        for (t0, d0), (t1, _) in itertools.pairwise(evs):
            assert t0 <= t1, (key, t0, t1)
            assert t0 + d0 <= t1, (key, t0, d0, t1)
    # Every thread that has events is named.
    named = {(e["pid"], e.get("tid")) for e in by_ph["M"] if e["name"] == "thread_name"}
    used = {(e["pid"], e["tid"]) for ph in ("X", "i") for e in by_ph[ph]}
    assert used <= named, used - named
    procs = {e["pid"] for e in by_ph["M"] if e["name"] == "process_name"}
    assert {e["pid"] for ph in ("X", "i", "C") for e in by_ph[ph]} <= procs
    return by_ph


def small_trace(d: Path) -> Path:
    # cpu 1 has a hold (1300..2200) that runs into the next wait (1500): it must be cut.
    t = make_events(
        ts_ns=np.array([100, 1000, 1500, 2000, 2600, 3000], dtype=np.uint64),
        event=[
            "zs_malloc",
            "lock_contention",
            "lock_contention",
            "zs_free",
            "lock_contention",
            "checkpoint",
        ],
        cpu=[0, 1, 1, 0, 1, 0],
        tid=[10, 11, 11, 10, 11, 10],
        pool=[POOL] * 6,
        size_bytes=[100, 0, 0, 0, 0, 0],
        handle=[7, 0, 0, 7, 0, 0],
        duration_ns=[0, 0, 0, 250, 0, 0],
        lock_kind=["class", "class", "pool", "class", "class", None],
        wait_ns=[None, 300, 400, None, 200, None],
        hold_ns=[None, 900, None, None, 50, None],
        lock_addr=[None, 0xFFFF1, 0xFFFF2, None, 0xFFFF1, None],
        pool_pages=[None, None, None, None, None, 42],
    )
    write_trace(d, t, TraceMeta(kernel_release="test", lost_events=3))
    return d


def test_small_trace_exact(tmp_path: Path, cli) -> None:
    trace = small_trace(tmp_path / "t")
    out = tmp_path / "t.json"
    r = cli("export", "perfetto", str(trace), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # messages go to stderr
    doc = json.loads(out.read_text())
    by = check_trace_event_rules(doc)
    xs = {(e["name"], e["ts"]): e for e in by["X"]}
    assert xs["wait class", 1.0]["dur"] == 0.3 and xs["wait class", 1.0]["tid"] == 100_002
    assert xs["hold class", 1.3]["dur"] == 0.2  # cut at the next wait (was 0.9)
    assert xs["wait pool", 1.5]["dur"] == 0.4
    assert xs["zs_free", 2.0]["dur"] == 0.25 and xs["zs_free", 2.0]["tid"] == 1
    assert [(e["name"], e["ts"]) for e in by["i"]] == [("zs_malloc", 0.1)]
    assert by["C"] == [
        {"name": "pool pages", "ph": "C", "ts": 3.0, "pid": 1, "args": {"pages": 42}}
    ]
    names = {e["args"]["name"] for e in by["M"] if "name" in e["args"]}
    assert names == {"zsmalloc pool 0xffff888812345678", "cpu 0", "cpu 1 locks"}
    assert doc["otherData"]["clamped_events"] == 1
    assert doc["otherData"]["lost_events"] == 3
    assert doc["otherData"]["exported_trace_events"] == 6


def test_batches_carry_overlap_across_boundaries(tmp_path: Path) -> None:
    """Batch size 1 forces every overlap check across a batch boundary."""
    from ztrace.look.perfetto import export_perfetto

    trace = small_trace(tmp_path / "t")
    whole = export_perfetto(trace, tmp_path / "a.json")
    tiny = export_perfetto(trace, tmp_path / "b.json", batch_rows=1)
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    check_trace_event_rules(b)
    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    assert sorted(map(key, a["traceEvents"])) == sorted(map(key, b["traceEvents"]))
    assert whole.clamped == tiny.clamped == 1


def test_synth_trace_rules_and_counts(tmp_path: Path) -> None:
    from ztrace.look.perfetto import export_perfetto
    from ztrace.workloads import synth

    n = 50_000
    trace = tmp_path / "t"
    write_trace(
        trace,
        synth.synth("zram-parallel", events=n, seed=5, cpus=4),
        synth.synth_meta("zram-parallel", cpus=4, seed=5, events=n),
    )
    st = export_perfetto(trace, tmp_path / "s.json", batch_rows=7_777)
    doc = json.loads((tmp_path / "s.json").read_text())
    by = check_trace_event_rules(doc)
    # synth calls have no measured duration: every one is an instant on its CPU's thread.
    assert len(by["i"]) + len(by["X"]) == n == st.trace_events
    assert {e["tid"] for e in by["i"]} == {1, 2, 3, 4}
    per_tid: dict[int, list[float]] = defaultdict(list)
    for e in doc["traceEvents"]:
        if e["ph"] == "i":
            per_tid[e["tid"]].append(e["ts"])
    assert all(ts == sorted(ts) for ts in per_tid.values())


def test_window_and_limit(tmp_path: Path, cli) -> None:
    trace = small_trace(tmp_path / "t")
    out = tmp_path / "w.json"
    r = cli(
        "export", "perfetto", str(trace), "-o", str(out), "--start-ns", "1000", "--end-ns", "2600"
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    check_trace_event_rules(doc)
    assert doc["otherData"]["exported_trace_events"] == 3
    r = cli("export", "perfetto", str(trace), "-o", str(out), "--max-events", "2", "--force")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["otherData"]["exported_trace_events"] == 2
    bad = cli("export", "perfetto", str(trace), "-o", str(out), "--start-ns", "5", "--end-ns", "5")
    assert bad.returncode == 2 and "--end-ns" in bad.stderr


def test_bad_trace_one_line(tmp_path: Path, cli) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "part-00000.parquet").write_bytes(b"nope")
    r = cli("export", "perfetto", str(tmp_path / "t"), "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "part-00000.parquet" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_kprobe_trace_waits_are_lock_slices_each_once(tmp_path: Path) -> None:
    """A kprobe kernel's trace: every spinlock wait is a ``spin_slowpath`` row, and a queued
    one is a ``lock_contention`` row too. The export draws each wait once, on the CPU's lock
    thread (before session 27 the slowpath rows were allocator-call slices, and the queued
    tracepoint row a second wait beside them)."""
    import pyarrow as pa

    from ztrace.look.perfetto import LOCK_TID_BASE, export_perfetto

    a, m = 0xFFFF000000001000, 0xFFFF000000002000
    tb = make_events(
        ts_ns=np.array([100, 200, 201, 300, 400], np.uint64),
        cpu=np.array([0, 1, 1, 0, 0], np.uint16),
        event=["spin_slowpath", "spin_slowpath", "lock_contention", "lock_contention", "zs_malloc"],
        pool=np.array([POOL] * 5, np.uint64),
        size_bytes=np.array([0, 0, 0, 0, 512], np.uint32),
        handle=np.array([0, 0, 0, 0, 7], np.uint64),
        duration_ns=np.array([0, 0, 0, 0, 50], np.uint64),
        lock_addr=pa.array([a, a, a, m, None], pa.uint64()),
        lock_kind=pa.array(["pool", "pool", "pool", "other", None]),
        wait_ns=pa.array([40, 90, 80, 1000, None], pa.uint64()),
        lock_flags=pa.array([1, 1, 1, 32, None], pa.uint32()),
    )
    meta = TraceMeta(kernel_release="6.1.0", page_size=4096, nr_cpus=2, source="capture")
    write_trace(tmp_path / "t", tb, meta)
    export_perfetto(tmp_path / "t", tmp_path / "k.json")
    doc = json.loads((tmp_path / "k.json").read_text())
    by = check_trace_event_rules(doc)
    waits = sorted((e["name"], e["dur"]) for e in by["X"] if e["tid"] >= LOCK_TID_BASE)
    assert waits == [("wait other", 1), ("wait pool", 0.04), ("wait pool", 0.09)]
    calls = [e["name"] for e in by["X"] + by["i"] if e["tid"] < LOCK_TID_BASE]
    assert calls == ["zs_malloc"]
    assert doc["otherData"]["waits"].startswith("spinlock slowpath kprobe")


def test_bundled_guest_capture_exports_its_measured_waits() -> None:
    """The bundled 6.1 guest capture (kprobes): as many wait slices as `report` counts."""
    import tempfile

    from tests.conftest import ROOT
    from ztrace.look.measured import build_measured_report, load_measured
    from ztrace.look.perfetto import LOCK_TID_BASE, export_perfetto

    trace = ROOT / "replays" / "samples" / "guest-6.1-zsstress"
    with tempfile.TemporaryDirectory() as d:
        export_perfetto(trace, Path(d) / "g.json")
        doc = json.loads((Path(d) / "g.json").read_text())
    by = check_trace_event_rules(doc)
    waits = [e for e in by["X"] if e["tid"] >= LOCK_TID_BASE and e["name"].startswith("wait ")]
    rep = build_measured_report(load_measured(trace))
    assert len(waits) == rep["totals"]["contended"] > 400
    assert not any(e["name"] in ("spin_slowpath", "lock_contention") for e in by["X"] + by["i"])
