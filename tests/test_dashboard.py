"""``ztrace dashboard`` without a browser: self-contained HTML, bounded size, absent charts.

Results directories here come from :mod:`tests.support.sample`, a seeded *fixture* in the
documented schema (not replay output); the browser test renders them in Chromium.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import polars as pl
import pytest

from tests.support.sample import write_sample_results
from ztrace.format import read_results
from ztrace.format.safeio import write_manifest
from ztrace.look.dashboard import CHARTS, build_dashboard, prepare


def _specs(html: str) -> dict:
    m = re.search(r"const ztraceSpecs = (\{.*?\});\n", html, re.S)
    assert m
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_html_is_self_contained(tmp_path: Path, cli) -> None:
    res = write_sample_results(tmp_path / "r")
    out = tmp_path / "d.html"
    r = cli("dashboard", str(res), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # status goes to stderr
    html = out.read_text()
    # Nothing is loaded from anywhere: no src/href to a URL, no import, no CDN name.
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"\bimport\s*\(", html)
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in html
    assert "window.vegaEmbed=" in html  # the inlined bundle
    assert html.count("<script") == 2  # bundle + boot
    specs = _specs(html)
    assert set(specs) == {"locks", "lru"}
    # Every chart of the contract is drawn from the sample, none listed as absent.
    assert "Not shown" not in html
    # Altair suffixes a view that owns a param inside a layer ("sweep_0").
    names = {re.sub(r"_\d+$", "", n) for n in re.findall(r'"name":\s*"(\w+)"', json.dumps(specs))}
    assert set(CHARTS) <= names
    assert 0.5e6 < out.stat().st_size < 10e6


def test_absent_charts_are_listed(tmp_path: Path) -> None:
    res = write_sample_results(tmp_path / "r", lru=False)
    (res / "classes.parquet").unlink()
    (res / "manifest.json").unlink()
    write_manifest(res)  # a complete directory without classes.parquet
    out = build_dashboard(res, tmp_path / "d.html")
    html = out.path.read_text()
    assert set(out.absent) == {"heatmap", "sweep", "tiers", "lru_time"}
    assert "Not shown" in html
    assert "no sweep.parquet" in html and "no classes.parquet" in html
    assert set(_specs(html)) == {"locks"}
    assert out.charts == ["timeline", "compare", "memory", "wait_cdf"]


def test_prepare_bounds_rows_whatever_the_input(tmp_path: Path) -> None:
    """20 000 timeline bins x 3 designs and 2 000 x 60 class rows shrink to the caps."""
    res = read_results(write_sample_results(tmp_path / "r", n_bins=20_000, lru=False))
    d = prepare(res, max_bins=400, max_class_bins=80)
    assert d.timeline is not None and d.classes is not None
    assert d.timeline.height <= 3 * 400
    assert d.classes["t"].n_unique() <= 80
    # Counts are conserved by re-binning; levels (pages) keep the last value.
    tl = res["timeline"]
    for design in ("class", "pool"):
        src = tl.filter(pl.col("lock_design") == design)
        dst = d.timeline.filter(pl.col("lock_design") == design)
        assert dst["contended"].sum() == src["contended"].sum()
        assert dst["acquisitions"].sum() == src["acquisitions"].sum()
        assert dst.sort("t")["pages_used"][-1] == src.sort("bin_start_ns")["pages_used"][-1]


def test_wait_cdf_from_histogram(tmp_path: Path) -> None:
    res = read_results(write_sample_results(tmp_path / "r", n_bins=50))
    d = prepare(res)
    assert d.wait_cdf is not None
    for design, g in d.wait_cdf.group_by("lock_design"):
        cdf = g.sort("wait_us")["cdf"].to_list()
        assert cdf == sorted(cdf) and cdf[-1] == pytest.approx(1.0), design


def test_trace_input_is_replayed(tmp_path: Path) -> None:
    """A TRACE (not results) is replayed by the CLI under every registered design first."""
    from ztrace.cli.dashboard import replayed_results
    from ztrace.format import write_trace
    from ztrace.workloads import synth

    trace = tmp_path / "t"
    write_trace(
        trace,
        synth.synth("zram-parallel", events=5_000, seed=1),
        synth.synth_meta("zram-parallel", cpus=4, seed=1, events=5_000),
    )
    # In-process: the replay's numba functions compile once per test session, not per CLI.
    out = build_dashboard(replayed_results(trace), tmp_path / "t.html")
    html = out.path.read_text()
    assert _specs(html)["locks"]["vconcat"][0]["name"] == "timeline"
    assert "events: 5,000" in html
    assert out.charts == ["timeline", "compare", "memory", "wait_cdf", "heatmap"]
    assert set(out.absent) == {"sweep", "tiers", "lru_time"}


def test_trace_summary_without_replay(tmp_path: Path) -> None:
    """Without the replay engine a trace is summarised from its own lock_contention events."""
    import numpy as np

    from ztrace.format import Results, TraceMeta, make_events, write_trace
    from ztrace.look.tracesum import summarise_trace

    n = 1000
    ev = np.where(np.arange(n) % 10 == 0, "lock_contention", "zs_malloc")
    wait = np.where(ev == "lock_contention", 1000 + np.arange(n), 0).astype(np.uint64)
    write_trace(
        tmp_path / "t",
        make_events(
            ts_ns=np.arange(n, dtype=np.uint64) * 1000,
            event=ev.tolist(),
            wait_ns=[
                int(w) if e == "lock_contention" else None for w, e in zip(wait, ev, strict=True)
            ],
            lock_kind=["class" if e == "lock_contention" else None for e in ev],
        ),
        TraceMeta(kernel_release="t", source="capture", lost_events=4),
    )
    r = summarise_trace(tmp_path / "t")
    assert isinstance(r, Results)
    s = r["locks_summary"].row(0, named=True)
    assert (s["lock_design"], s["contended"], s["acquisitions"]) == ("observed", 100, 900)
    assert s["wait_ns_max"] == 1990 and s["wait_ns_total"] == sum(range(1000, 1991, 10))
    assert r["timeline"]["contended"].sum() == 100 and r["timeline"]["ops"].sum() == n
    assert r["wait_hist"]["count"].sum() == 100
    assert r.summary["lost_events"] == 4
    out = build_dashboard(r, tmp_path / "o.html")
    assert out.charts == ["timeline", "compare", "memory", "wait_cdf"]


def test_progress_never_on_stdout(tmp_path: Path) -> None:
    import io

    from ztrace.progress import progress

    err = io.StringIO()
    # Not a terminal: silent unless forced; quiet always wins.
    with progress(10, desc="x", stream=err) as bar:
        bar.advance(10)
    assert err.getvalue() == "" and not bar.enabled
    with progress(10, desc="x", stream=err, quiet=True) as bar:
        assert not bar.enabled


def test_progress_forced_goes_to_stderr(tmp_path: Path, monkeypatch) -> None:
    import subprocess
    import sys

    from ztrace.format import TraceMeta, make_events, write_trace

    write_trace(
        tmp_path / "t",
        make_events(ts_ns=list(range(1000)), event="zs_malloc"),
        TraceMeta(kernel_release="t"),
    )
    cmd = [sys.executable, "-m", "ztrace", "export", "perfetto", str(tmp_path / "t")]
    env = {"ZTRACE_PROGRESS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "100"}
    r = subprocess.run(
        [*cmd, "-o", str(tmp_path / "a.json")], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and "export" in r.stderr and "1000/1000" in r.stderr
    q = subprocess.run(
        [*cmd, "-o", str(tmp_path / "b.json"), "--quiet"], capture_output=True, text=True, env=env
    )
    assert q.returncode == 0 and "1000/1000" not in q.stderr


# ------------------------------------------------ where the costs came from (issue 10 item 2)

#: a bundled 6.12 guest capture with measured durations (replays/samples/README.md)
SAMPLE = Path(__file__).resolve().parent.parent / "replays" / "samples" / "guest-6.12-zswap"


def _provenance_tables(page: str) -> dict[str, dict[str, str]]:
    """The page's `cost-provenance` section: data-designs -> {cost: source}, as a browser
    reads it (entities decoded)."""
    from html.parser import HTMLParser

    start = page.index('<section id="cost-provenance">')
    section = page[start : page.index("</section>", start)]
    tables: dict[str, dict[str, str]] = {}

    class P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.table: str | None = None
            self.cells: list[str] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "table":
                self.table = dict(attrs)["data-designs"]
                tables[self.table] = {}
            elif tag == "td":
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag == "td" and self.cell is not None:
                self.cells.append("".join(self.cell))
                self.cell = None
            elif tag == "tr" and self.cells:
                assert self.table is not None and len(self.cells) == 2
                tables[self.table][self.cells[0]] = self.cells[1]
                self.cells = []

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    P().feed(section)
    return tables


def _sample_replay(locks: list[str], **kw):
    from ztrace.replay.engine import replay

    return replay(str(SAMPLE), locks=locks, **kw)


def test_cost_provenance_of_a_real_replay_is_shown(tmp_path: Path) -> None:
    """A replay of a bundled capture: every provenance entry of the results, with its value,
    in one table for all designs (one replay), the same the report prints."""
    from ztrace.look.report import build_report
    from ztrace.replay.tables import write_results

    out = tmp_path / "r"
    write_results(_sample_replay(["pool", "class"]), out)
    results = read_results(out)
    prov = results.summary["cost_provenance"]
    # a measured capture: the interesting sources are there (what the section is for)
    assert prov["zs_malloc"].startswith("measured") and "hold_share" in prov
    assert {"probe_overhead_ns", "stalls"} <= set(prov)
    page = build_dashboard(out, tmp_path / "d.html").path.read_text()
    designs = results["locks_summary"]["lock_design"].to_list()
    assert _provenance_tables(page) == {",".join(designs): prov}
    assert f"The same for all {len(designs)} designs ({', '.join(designs)})" in page
    # escaped: the sources' quotes and ">" never reach the page raw
    assert any(c in v for v in prov.values() for c in "'>")
    section = page[page.index('id="cost-provenance"') :].split("</section>")[0]
    for k, v in prov.items():
        assert f"<td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td>" in section
    assert build_report(results)["cost_provenance"] == prov  # one reader, one answer


def test_cost_provenance_of_a_replayed_trace_comes_from_the_metadata(tmp_path: Path) -> None:
    """`ztrace dashboard TRACE` replays in memory: no summary.json provenance, only the
    results' metadata, which the page shows."""
    from ztrace.cli.dashboard import replayed_results

    results = replayed_results(SAMPLE, ["pool"])
    assert "cost_provenance" not in results.summary
    prov = json.loads(results.meta["ztrace.cost_provenance"])
    page = build_dashboard(results, tmp_path / "d.html").path.read_text()
    assert _provenance_tables(page) == {"pool": prov}
    assert "The same for the one design (pool)" in page


def test_cost_provenance_per_design_when_replays_differ(tmp_path: Path) -> None:
    """Two results directories of one trace, replayed with different hold shares, read
    together: each design's table shows its own replay's sources."""
    from dataclasses import replace

    from ztrace.cli.dashboard import combined_results
    from ztrace.replay.tables import write_results

    a = _sample_replay(["pool"])
    b = _sample_replay(["class"], hold_share=0.3)
    assert a.cost_provenance["hold_share"] != b.cost_provenance["hold_share"]
    write_results(replace(a, tables={"locks_summary": a.tables["locks_summary"]}), tmp_path / "a")
    write_results(replace(b, tables={"timeline": b.tables["timeline"]}), tmp_path / "b")
    results = combined_results((str(tmp_path / "a"), str(tmp_path / "b")))
    page = build_dashboard(results, tmp_path / "d.html").path.read_text()
    assert _provenance_tables(page) == {
        "pool": read_results(tmp_path / "a").summary["cost_provenance"],
        "class": read_results(tmp_path / "b").summary["cost_provenance"],
    }
    assert "Different per design" in page


def test_no_cost_provenance_no_section(tmp_path: Path) -> None:
    """Fixture results (no replay, no provenance) draw no empty section."""
    page = build_dashboard(write_sample_results(tmp_path / "r"), tmp_path / "d.html")
    assert 'id="cost-provenance"' not in page.path.read_text()
