"""Intervals reach the user (issue 10 items 4-5): report, CSV, JSON and dashboard lead with
total wait, wait per op and p99 wait with their intervals, rank designs only where the
intervals are apart, and flag hold times measured in a TCG guest.

The fixtures are hand-written results directories (tests/test_report.py's) plus a
``locks_interval`` table whose numbers can be checked on paper; one test runs the real
``ztrace replay --replicas`` on a synthetic trace with a planted difference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.test_report import _write, make_results
from ztrace.format.safeio import write_manifest

NO_DIFF = "no measurable difference"


def _intervals(d: Path, rows: list[tuple[str, str, float, float, float]], runs: int = 4) -> Path:
    """Add locks_interval.parquet (design, metric, value, lo, hi) and a fresh manifest."""
    _write(
        d,
        "locks_interval",
        {
            "lock_design": pa.array([r[0] for r in rows]),
            "metric": pa.array([r[1] for r in rows]),
            "value": pa.array([float(r[2]) for r in rows]),
            "lo": pa.array([float(r[3]) for r in rows]),
            "hi": pa.array([float(r[4]) for r in rows]),
            "runs": pa.array([runs] * len(rows), pa.uint32()),
            "jitter_ns": pa.array([1000] * len(rows), pa.uint64()),
        },
    )
    (d / "manifest.json").unlink()
    write_manifest(d)
    return d


def _summary_json(d: Path, doc: dict) -> None:
    (d / "summary.json").write_text(json.dumps(doc))
    (d / "manifest.json").unlink()
    write_manifest(d)


# fixture (tests/test_report.py): class total wait 785.61 us, p99 79 us, 13 contended;
# pool total wait 9 s, p99 90 ms, 200 contended.
APART = [
    ("class", "wait_ns_total", 785_610, 700_000, 900_000),
    ("pool", "wait_ns_total", 9e9, 8e9, 9e9),
    ("class", "wait_ns_p99", 79_000, 79_000, 81_000),
    ("pool", "wait_ns_p99", 9e7, 8e7, 9e7),
    ("class", "contended", 13, 13, 20),
    ("pool", "contended", 200, 150, 200),
]
# the same, except pool's total-wait interval reaches down into class's: [800 us, 9 s]
OVERLAP = [
    r if r[:2] != ("pool", "wait_ns_total") else ("pool", r[1], 9e9, 800_000, 9e9) for r in APART
]


def test_apart_intervals_rank_and_overlap_says_no_measurable_difference(
    tmp_path: Path, cli
) -> None:
    apart = _intervals(make_results(tmp_path / "a", lru=False), APART)
    r = cli("report", str(apart))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "total wait: class < pool" in out
    assert "p99 wait: class < pool" in out
    assert "contended: class < pool" in out
    assert NO_DIFF + " (intervals overlap)" not in out
    # intervals are printed beside the values, in perf's units
    assert "[700.00 us, 900.00 us]" in out and "[8.00 s, 9.00 s]" in out
    assert "over 4 replays" in out
    # what users feel comes first: the wait table is printed before the contention table
    assert out.index("what users feel") < out.index("contention (second")

    over = _intervals(make_results(tmp_path / "o", lru=False), OVERLAP)
    r = cli("report", str(over))
    assert r.returncode == 0, r.stderr
    # 800 us <= 900 us: the intervals share [800, 900] us, so no ranking on total wait
    assert "total wait: class ≈ pool" in r.stdout
    assert "class vs pool: no measurable difference (intervals overlap)" in r.stdout
    assert "p99 wait: class < pool" in r.stdout  # still apart: [79, 81] us vs [80, 90] ms


def test_json_and_csv_carry_intervals_and_verdicts(tmp_path: Path, cli) -> None:
    d = _intervals(make_results(tmp_path / "r", lru=False), OVERLAP)
    doc = json.loads(cli("report", str(d), "--json").stdout)
    assert doc["intervals"] is True
    assert doc["designs"]["pool"]["wait_ns_total"] == {
        "value": 9e9,
        "interval": [800_000.0, 9e9],
        "runs": 4,
    }
    # lead metrics first, contention second; no ops column in this fixture: no wait per op
    assert list(doc["designs"]["class"]) == ["wait_ns_total", "wait_ns_p99", "contended"]
    verdicts = {(c["metric"], c["lower"], c["higher"]): c["verdict"] for c in doc["comparison"]}
    assert verdicts == {
        ("wait_ns_total", "class", "pool"): NO_DIFF,
        ("wait_ns_p99", "class", "pool"): "lower",
        ("contended", "class", "pool"): "lower",
    }
    lines = cli("report", str(d), "--csv").stdout.splitlines()
    head = lines.index(
        "# output: design, total wait, total wait lo, total wait hi, wait per op, "
        "wait per op lo, wait per op hi, p99 wait, p99 wait lo, p99 wait hi, contended, "
        "contended lo, contended hi"
    )
    assert lines[head + 1] == (
        "class, 785610, 700000, 900000, , , , 79000, 79000, 81000, 13, 13, 20"
    )
    assert f"# compare: total wait: class vs pool: {NO_DIFF} (intervals overlap)" in lines
    assert "# compare: p99 wait: class lower than pool (intervals apart)" in lines
    assert lines[-1].startswith("# debug:")


def test_without_intervals_says_one_sample(tmp_path: Path, cli) -> None:
    """Results from a replay without --replicas: values only, and the report says the order
    is one sample (it still shows the waits first)."""
    d = make_results(tmp_path / "r", lru=False)
    r = cli("report", str(d))
    assert "total wait: class < pool" in r.stdout
    assert "one sample, not a measured difference" in r.stdout
    assert "interval" not in r.stdout.split("=== output for trust")[0].split("comparison")[0]
    doc = json.loads(cli("report", str(d), "--json").stdout)
    assert doc["intervals"] is False
    assert doc["designs"]["class"]["wait_ns_total"]["interval"] == [785_610.0, 785_610.0]


def _trace(path: Path, host: str) -> Path:
    from ztrace.format import TraceMeta, make_events, write_trace

    write_trace(
        path,
        make_events(ts_ns=np.arange(10, dtype=np.uint64), event="zs_malloc"),
        TraceMeta(kernel_release="6.1.0-56-amd64", source="capture", extra={"host": host}),
    )
    return path


@pytest.mark.parametrize(
    ("host", "prov", "flagged"),
    [
        ("ztrace-guest", "measured (duration_ns of all 10 rows)", True),
        ("ztrace-guest", "fitted (malloc_ns=900, median of the measured)", True),
        ("ztrace-guest", "default (malloc_ns=120)", False),  # constants: not from the guest
        ("buildbox", "measured (duration_ns of all 10 rows)", False),  # a host capture
    ],
)
def test_tcg_guest_costs_are_flagged(
    tmp_path: Path, cli, host: str, prov: str, flagged: bool
) -> None:
    trace = _trace(tmp_path / "t", host)
    d = make_results(tmp_path / "r", lru=False, trace=str(trace))
    _summary_json(d, {"cost_provenance": {"zs_malloc": prov, "lookup_ns": "default (40)"}})
    out = cli("report", str(d)).stdout
    assert ("TCG GUEST COSTS" in out) is flagged
    if flagged:
        assert "zs_malloc" in out.split("TCG GUEST COSTS")[1].splitlines()[0]
    doc = json.loads(cli("report", str(d), "--json").stdout)
    assert ("cost_flag" in doc) is flagged

    from ztrace.look.dashboard import build_dashboard

    build_dashboard(d, tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    assert ('id="cost-flag"' in page) is flagged


def test_dashboard_leads_with_waits_and_verdicts(tmp_path: Path) -> None:
    from ztrace.look.dashboard import build_dashboard

    d = _intervals(make_results(tmp_path / "r", lru=False), OVERLAP)
    build_dashboard(d, tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    table = page[page.index('<section id="designs">') : page.index("</section>")]
    heads = [h.split("</th>")[0] for h in table.split("<th")[1:]]
    assert [h.split(">")[-1] for h in heads] == [
        "design",
        "total wait",
        "wait per op",
        "p99 wait",
        "contended",
    ]
    assert "[800.00 us, 9.00 s]" in table
    assert "class vs pool: no measurable difference (intervals overlap)" in table
    assert "p99 wait: class &lt; pool" in table


def test_replay_replicas_store_intervals_and_rank_a_planted_difference(tmp_path: Path, cli) -> None:
    """Real replay: 4 parallel CPUs; one pool lock against per-class locks is a planted
    difference (every op takes the same pool lock). --replicas 2 = 3 replays."""
    import pyarrow.parquet as pq

    trace = tmp_path / "trace"
    r = cli(
        "synth", "--profile", "zram-parallel", "--events", "20000", "--seed", "3", "-o", str(trace)
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "r"
    r = cli("replay", str(trace), "--locks", "class,pool", "--replicas", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    # replay's own tables (stderr) lead with the waits and rank the planted difference
    assert "what users feel" in r.stderr and "total wait: class < pool" in r.stderr
    ivl = pq.read_table(out / "locks_interval.parquet").to_pylist()
    rows = pq.read_table(out / "locks_summary.parquet").to_pylist()
    summary = {s["lock_design"]: s for s in rows}
    assert {(x["lock_design"], x["metric"]) for x in ivl} >= {
        (d, m)
        for d in ("class", "pool")
        for m in ("wait_ns_total", "wait_ns_per_op", "wait_ns_p99", "contended")
    }
    for x in ivl:
        assert x["runs"] == 3 and x["lo"] <= x["value"] <= x["hi"]
        if x["metric"] in ("wait_ns_total", "contended", "wait_ns_p99"):
            # replica 0 is the plain replay: the values written to locks_summary
            assert x["value"] == summary[x["lock_design"]][x["metric"]]
    doc = json.loads(cli("report", str(out), "--json").stdout)
    pool, cls = doc["designs"]["pool"]["wait_ns_total"], doc["designs"]["class"]["wait_ns_total"]
    assert cls["interval"][1] < pool["interval"][0], (cls, pool)  # planted: apart
    assert ("wait_ns_total", "class", "pool") in {
        (c["metric"], c["lower"], c["higher"]) for c in doc["comparison"] if c["verdict"] == "lower"
    }
    assert "total wait: class < pool" in cli("report", str(out)).stdout
