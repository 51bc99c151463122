"""``ztrace report``: exact tables, perf-shaped CSV, JSON keys, trust footer, bad input.

The results directory here is a hand-written test fixture in the documented schema
(docs/results-format.md), small enough that every expected number is checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ztrace.format.safeio import write_manifest
from ztrace.look.report import human_ns

U64 = pa.uint64()


def _write(d: Path, name: str, cols: dict[str, pa.Array], trace: str = "<none>") -> None:
    t = pa.table(cols).replace_schema_metadata(
        {"ztrace.results_version": "1", "ztrace.trace": trace, "ztrace.seed": "0"}
    )
    pq.write_table(t, d / f"{name}.parquet")


def make_results(d: Path, *, lru: bool = True, trace: str = "<none>") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    _write(
        d,
        "locks_summary",
        {
            "lock_design": pa.array(["class", "pool"]),
            "acquisitions": pa.array([1000, 1000], U64),
            "contended": pa.array([13, 200], U64),
            "contention_rate": pa.array([0.013, 0.2]),
            "wait_ns_total": pa.array([785_610, 9_000_000_000], U64),
            "wait_ns_avg": pa.array([60_431.5, 45_000_000.0]),
            "wait_ns_p50": pa.array([50_000, 40_000_000], U64),
            "wait_ns_p99": pa.array([79_000, 90_000_000], U64),
            "wait_ns_max": pa.array([79_360, 120_000_000_000], U64),
            "hold_ns_total": pa.array([10_000_000, 10_000_000], U64),
        },
        trace,
    )
    _write(
        d,
        "locks_by_lock",
        {
            "lock_design": pa.array(["class", "class", "class", "pool"]),
            "lock": pa.array(["class[3]", "class[37]", "class[9]", "pool"]),
            "lock_type": pa.array(["spinlock", "spinlock", "spinlock", "spinlock"]),
            "acquisitions": pa.array([500, 400, 100, 1000], U64),
            "contended": pa.array([3, 10, 0, 200], U64),
            "wait_ns_total": pa.array([600_000, 185_610, 0, 9_000_000_000], U64),
            "wait_ns_max": pa.array([79_360, 30_000, 0, 120_000_000_000], U64),
            "wait_ns_min": pa.array([100_000, 900, 0, 1_000], U64),
            "hold_ns_total": pa.array([1, 2, 3, 4], U64),
        },
        trace,
    )
    if lru:
        _write(
            d,
            "lru_summary",
            {
                "lru_design": pa.array(["lru", "fifo"]),
                "pool_limit_pages": pa.array([4096, 4096], U64),
                "stores": pa.array([1000, 1000], U64),
                "rejects": pa.array([0, 0], U64),
                "writebacks": pa.array([100, 100], U64),
                "written_back_bytes": pa.array([409600, 409600], U64),
                "inversions": pa.array([5, 30], U64),
                "inversion_rate": pa.array([0.05, 0.3]),
                "age_gap_ns_p50": pa.array([1, 1], U64),
                "age_gap_ns_max": pa.array([2, 2], U64),
                "zswap_hits": pa.array([900, 800], U64),
                "disk_swapins": pa.array([100, 200], U64),
                "expected_fault_latency_ns": pa.array([2500.0, 4100.0]),
                "disk_faults": pa.array([100, 200], U64),
                "avoidable_disk_faults": pa.array([40, 150], U64),
                "optimal_gap": pa.array([60, 160], pa.int64()),
                "latency_zswap_ns": pa.array([500.0, 500.0]),
                "latency_disk_ns": pa.array([20500.0, 20500.0]),
            },
            trace,
        )
    (d / "manifest.json").unlink(missing_ok=True)
    write_manifest(d)  # complete: readers refuse a directory without one (issue 11)
    return d


def test_human_ns_matches_perf_units() -> None:
    assert human_ns(785_610) == "785.61 us"
    assert human_ns(79_360) == "79.36 us"
    assert human_ns(999) == "999 ns"
    assert human_ns(1_500_000) == "1.50 ms"
    assert human_ns(2_000_000_000) == "2.00 s"
    assert human_ns(120e9) == "2.00 m"
    assert human_ns(7200e9) == "2.00 h"


def test_terminal_report_exact(tmp_path: Path, cli) -> None:
    d = make_results(tmp_path / "r")
    r = cli("report", str(d))
    assert r.returncode == 0, r.stderr
    lines = [ln.rstrip() for ln in r.stdout.splitlines()]
    # perf's column names, in perf's order.
    header = next(ln for ln in lines if "contended" in ln and "lock" in ln.split()[-1:])
    assert header.split() == [
        "contended",
        "total",
        "wait",
        "max",
        "wait",
        "avg",
        "wait",
        "type",
        "lock",
    ]
    rows = [
        ln.split()
        for ln in lines
        if ln.strip().endswith(("]", " pool")) and ln.split()[0].replace(",", "").isdigit()
    ]
    # Default key wait_total: class[3] (600 us) before class[37]; class[9] never waited.
    assert rows == [
        ["3", "600.00", "us", "79.36", "us", "200.00", "us", "spinlock", "class[3]"],
        ["10", "185.61", "us", "30.00", "us", "18.56", "us", "spinlock", "class[37]"],
        ["200", "9.00", "s", "2.00", "m", "45.00", "ms", "spinlock", "pool"],
    ]
    assert "class[9]" not in r.stdout
    # designs: what users feel first (total wait, wait per op, p99 wait), then contention
    feel = next(ln for ln in lines if ln.split()[:1] == ["pool"] and "%" not in ln)
    assert feel.split() == ["pool", "9.00", "s", "-", "90.00", "ms"]  # no ops column here
    summary = next(ln for ln in lines if ln.split()[:1] == ["pool"] and "%" in ln)
    assert summary.split()[:5] == ["pool", "200", "20.00", "%", "1,000"]
    assert "LRU designs" in r.stdout and "30.00 %" in r.stdout
    # harm leads: disk faults, avoidable, gap to optimal and fault latency come before the
    # inversion columns, and the latencies used are stated
    lru_row = next(ln.split() for ln in lines if ln.split()[:1] == ["fifo"])
    assert lru_row[:8] == ["fifo", "4,096", "pg", "200", "150", "+160", "4.10", "us"]
    assert "500 ns (zswap)" in r.stdout and "20.50 us (disk)" in r.stdout
    # Trust footer: the trace is unknown here, and the footer says so instead of guessing.
    assert "=== output for trust ===" in r.stdout
    assert "events: unknown" in r.stdout


def test_sort_key_and_entries(tmp_path: Path, cli) -> None:
    d = make_results(tmp_path / "r")
    r = cli("report", str(d), "-k", "contended", "-E", "1", "--csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # perf's lock rows; the per-design block follows under its own `# output:` header
    body = [ln for ln in lines[: lines.index(next(ln for ln in lines[1:] if ln[0] == "#"))]]
    body = [ln for ln in body if not ln.startswith("#")]
    assert body == [
        "10, 185610, 30000, 18561, spinlock, class[37], class",
        "200, 9000000000, 120000000000, 45000000, spinlock, pool, pool",
    ]


def test_csv_is_perf_shaped(tmp_path: Path, cli) -> None:
    d = make_results(tmp_path / "r")
    r = cli("report", str(d), "--csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == ("# output: contended, total wait, max wait, avg wait, type, lock, design")
    assert lines[1] == "3, 600000, 79360, 200000, spinlock, class[3], class"
    assert lines[-1] == "# debug: total=unknown, lost=unknown"
    # perf's rows end where the per-design block (issue 10: intervals) starts
    end = next(i for i, ln in enumerate(lines) if i and ln.startswith("# output: design"))
    assert lines[end + 1].startswith("class, 785610, ")
    for ln in lines[1:end]:
        fields = ln.split(", ")
        assert len(fields) == 7
        assert all(f.isdigit() for f in fields[:4])  # raw integer ns, no units
    r2 = cli("report", str(d), "--csv", "-x", ";")
    assert r2.stdout.splitlines()[1] == "3; 600000; 79360; 200000; spinlock; class[3]; class"
    bad = cli("report", str(d), "--csv", "-x", ":")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "separator" in bad.stderr


def test_json_keys_and_raw_ns(tmp_path: Path, cli) -> None:
    d = make_results(tmp_path / "r", lru=False)
    r = cli("report", str(d), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {
        "results",
        "locks_summary",
        "locks",
        "absent",
        "trust",
        # issue 10: per design the lead metrics with intervals, and the verdicts
        "designs",
        "comparison",
        "intervals",
        "interval_note",
    }
    assert doc["absent"] == ["lru_summary", "sweep"]
    assert set(doc["locks"][0]) == {
        "lock_design",
        "contended",
        "wait_ns_total",
        "wait_ns_max",
        "wait_ns_avg",
        "wait_ns_min",
        "lock_type",
        "lock",
        "acquisitions",
    }
    assert doc["locks"][0]["wait_ns_total"] == 600_000
    assert doc["trust"] == {
        "events": None,
        "lost_events": None,
        "trace": "<none>",
        "source": "unknown",
        "bad": {},
    }


def test_trust_footer_reads_trace_metadata(tmp_path: Path, cli) -> None:
    import numpy as np

    from ztrace.format import TraceMeta, make_events, write_trace

    trace = tmp_path / "trace"
    write_trace(
        trace,
        make_events(ts_ns=np.arange(23, dtype=np.uint64), event="zs_malloc"),
        TraceMeta(kernel_release="t", source="capture", lost_events=2),
    )
    d = make_results(tmp_path / "r", trace=str(trace))
    r = cli("report", str(d))
    assert "lost: 2, total: 25" in r.stdout
    assert "lost rate: 8.00 %" in r.stdout
    assert "capture again" in r.stdout
    csv = cli("report", str(d), "--csv")
    assert csv.stdout.splitlines()[-1] == "# debug: total=23, lost=2"


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "foreign", "column"])
def test_bad_results_dir_is_one_line_exit_2(tmp_path: Path, cli, case: str) -> None:
    d = tmp_path / "r"
    if case != "missing":
        d.mkdir()
    if case == "corrupt":
        (d / "timeline.parquet").write_bytes(b"PAR1 not really")
        named = "timeline.parquet"
    elif case == "foreign":
        pq.write_table(pa.table({"x": [1]}), d / "locks_summary.parquet")
        named = "locks_summary.parquet"
    elif case == "column":
        _write(d, "wait_hist", {"lock_design": pa.array(["a"]), "count": pa.array([1], U64)})
        named = "wait_hist.parquet"
    else:
        named = str(d)
    if case in ("corrupt", "foreign", "column"):
        write_manifest(d)  # sealed, so the reader's checks behind the manifest are reached
    for cmd in (["report", str(d)], ["dashboard", str(d), "-o", str(tmp_path / "x.html")]):
        r = cli(*cmd)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert r.stderr.startswith("ztrace: error: ") and r.stderr.count("\n") == 1
        assert named in r.stderr
        assert "Traceback" not in r.stderr


def test_json_and_csv_exclusive(tmp_path: Path, cli) -> None:
    r = cli("report", str(make_results(tmp_path / "r")), "--json", "--csv")
    assert r.returncode == 2 and "--json/--csv: give one of them, not both" in r.stderr
