"""The dashboard's measured side (ztrace/look/measured_panel.py): a flame graph of a capture's
lock waits and measured vs replayed contention, checked against the raw ``lock_contention``
rows of the bundled host capture (870 waits with stacks), in code and in headless Chromium.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.support.browser import CHROMEDRIVER, CHROMIUM

SAMPLE = Path(__file__).resolve().parent.parent / "replays" / "samples" / "host-6.18-locks"


def _raw() -> dict[str, dict[str, int]]:
    """Independently of look/: folded path prefix -> {wait, contended} over the raw rows,
    the path being root-first frames from stacks.json then ``[lock_kind]``."""
    t = pq.read_table(SAMPLE / "part-00000.parquet")
    t = t.filter(pc.equal(t.column("event").cast("string"), "lock_contention"))
    stacks = json.loads((SAMPLE / "stacks.json").read_text())
    out: dict[str, dict[str, int]] = {"": {"wait": 0, "contended": 0}}
    for sid, kind, wait in zip(
        t.column("stack_id").to_pylist(),
        t.column("lock_kind").cast("string").to_pylist(),
        t.column("wait_ns").to_pylist(),
        strict=True,
    ):
        frames = stacks.get(str(sid), ["[unknown stack]"]) if sid >= 0 else ["[no stack]"]
        path = [*reversed(frames), f"[{kind or 'other'}]"]
        for i in range(len(path) + 1):
            key = ";".join(path[:i])
            acc = out.setdefault(key, {"wait": 0, "contended": 0})
            acc["wait"] += wait
            acc["contended"] += 1
    return out


def _results(tmp_path: Path, trace: Path):  # type: ignore[no-untyped-def]
    """Sample replay results (synthetic numbers) that name ``trace`` as their capture."""
    from tests.support.sample import write_sample_results
    from ztrace.format import read_results, results_from_tables

    r = read_results(write_sample_results(tmp_path / "r", n_bins=50))
    meta = {**r.meta, "ztrace.trace": str(trace)}
    return results_from_tables(r.tables, meta=meta, summary=r.summary)


def test_flame_frames_carry_the_raw_waits(tmp_path: Path) -> None:
    from ztrace.look.measured import load_measured
    from ztrace.look.measured_panel import MIN_FRAC, flame_nodes

    raw = _raw()
    nodes = flame_nodes(load_measured(SAMPLE))
    root = nodes.filter(nodes["depth"] == 0).to_dicts()
    assert len(root) == 1
    assert root[0]["wait_ns"] == raw[""]["wait"] == 485_328
    assert root[0]["contended"] == raw[""]["contended"] == 870
    total = raw[""]["wait"]
    for r in nodes.to_dicts():
        assert r["x1"] - r["x0"] == r["wait_ns"]
        if r["depth"]:
            want = raw[r["path"]]
            assert (r["wait_ns"], r["contended"]) == (want["wait"], want["contended"]), r
            assert r["wait_ns"] >= MIN_FRAC * total
    # every frame at least MIN_FRAC of the total is drawn
    drawn = set(nodes["path"].to_list())
    assert {k for k, v in raw.items() if v["wait"] >= MIN_FRAC * total} <= drawn
    # children lie inside their parent, side by side
    by_path = {r["path"]: r for r in nodes.to_dicts()}
    for r in nodes.to_dicts():
        if r["depth"] > 1:
            parent = by_path[r["path"].rsplit(";", 1)[0]]
            assert parent["x0"] <= r["x0"] and r["x1"] <= parent["x1"]


def test_versus_rows_and_section(tmp_path: Path) -> None:
    from ztrace.look.dashboard import build_dashboard
    from ztrace.look.measured_panel import prepare_panel

    res = _results(tmp_path, SAMPLE)
    panel = prepare_panel(res)
    assert panel.versus is not None
    rows = panel.versus.to_dicts()
    assert rows[0] == {
        "source": "measured",
        "design": "measured",
        "contended": 870,
        "wait_ns_total": 485_328,
    }
    summary = {r["lock_design"]: r for r in res["locks_summary"].to_dicts()}
    assert {r["design"] for r in rows[1:]} == set(summary)
    for r in rows[1:]:
        assert r["contended"] == summary[r["design"]]["contended"]
        assert r["wait_ns_total"] == summary[r["design"]]["wait_ns_total"]
    out = build_dashboard(res, tmp_path / "d.html")
    assert out.charts[-2:] == ["flame", "vs_replayed"]
    assert out.absent == {}


def test_no_panel_without_a_capture(tmp_path: Path) -> None:
    """A synthesized trace's lock rows are not measurements: no panel, nothing listed."""
    from ztrace.format import write_trace
    from ztrace.look.measured_panel import prepare_panel
    from ztrace.workloads import synth

    trace = tmp_path / "t"
    write_trace(
        trace,
        synth.synth("zram-parallel", events=2_000, seed=1),
        synth.synth_meta("zram-parallel", cpus=4, seed=1, events=2_000),
    )
    for t in (trace, tmp_path / "missing"):
        p = prepare_panel(_results(tmp_path / t.name, t))
        assert (p.flame, p.versus, p.absent) == (None, None, {})


def test_capture_without_lock_rows_says_why(tmp_path: Path) -> None:
    from ztrace.look.measured_panel import prepare_panel

    zswap = SAMPLE.parent / "guest-6.12-zswap"  # captured with zsmalloc,zswap: no lock columns
    p = prepare_panel(_results(tmp_path, zswap))
    assert p.flame is None and p.versus is None
    assert set(p.absent) == {"flame", "vs_replayed"}
    assert "no lock columns" in p.absent["flame"]


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
@pytest.mark.skipif(not Path(CHROMEDRIVER).exists(), reason=f"{CHROMEDRIVER} not installed")
def test_measured_panel_in_chromium(tmp_path: Path) -> None:
    """No console errors, and what is drawn equals the raw rows: every flame rectangle's wait
    and count, the measured bars, and the replayed bars (locks_summary)."""
    from tests.support.browser import chromium, marks, serve, severe_logs, wait_ready
    from ztrace.look.dashboard import build_dashboard

    res = _results(tmp_path, SAMPLE)
    site = tmp_path / "site"
    site.mkdir()
    build_dashboard(res, site / "index.html")
    raw = _raw()
    with serve(site) as served, chromium() as driver:
        driver.get(served.url + "index.html")
        wait_ready(driver)
        assert severe_logs(driver) == []
        flame = marks(driver, "measured", "flame")
        bars = marks(driver, "measured", "vs_replayed")
        wait_bars = marks(driver, "measured", "vs_replayed_wait")
    assert flame and bars and wait_bars
    root = [f for f in flame if f["depth"] == 0]
    assert [(r["wait_ns"], r["contended"]) for r in root] == [(485_328, 870)]
    for f in flame:
        want = raw[f["path"]]
        assert (f["wait_ns"], f["contended"]) == (want["wait"], want["contended"]), f
    assert len({f["path"] for f in flame}) == len(flame) > 20
    summary = {r["lock_design"]: r for r in res["locks_summary"].to_dicts()}
    for drawn, col in ((bars, "contended"), (wait_bars, "wait_ns_total")):
        got = {b["design"]: b[col] for b in drawn}
        want = {d: int(r[col]) for d, r in summary.items()}
        want["measured"] = raw[""]["contended" if col == "contended" else "wait"]
        assert got == want
    # the measured bar is the raw count of lock_contention rows, not a replayed number
    assert np.isclose(got["measured"], 485_328)


def test_dashboard_of_a_replayed_capture_shows_what_it_measured(tmp_path: Path) -> None:
    """The CLI's path (`ztrace dashboard TRACE`): replay a bundled guest capture, then the
    measured section reads that capture (``ztrace.trace``) beside the replayed designs."""
    from ztrace.cli.dashboard import replayed_results
    from ztrace.look.dashboard import build_dashboard
    from ztrace.look.measured_panel import prepare_panel

    trace = SAMPLE.parent / "guest-6.1-zsstress"
    res = replayed_results(trace, ["class", "pool"])
    out = build_dashboard(res, tmp_path / "d.html")
    assert out.charts[-2:] == ["flame", "vs_replayed"]
    t = pq.read_table(trace / "part-00000.parquet")
    ev = t.column("event").cast("string")
    # a kprobe guest: every spinlock wait is a spin_slowpath row; the tracepoint adds its
    # non-spinlock rows (its plain-spinlock rows are a subset of the slowpath's)
    slow = t.filter(pc.equal(ev, "spin_slowpath"))
    tp = t.filter(pc.equal(ev, "lock_contention"))
    tp = tp.filter(pc.not_equal(tp.column("lock_flags").fill_null(0), 1))
    locks = pa.concat_tables([slow, tp])
    assert slow.num_rows > 400 and tp.num_rows > 0
    panel = prepare_panel(res)
    assert panel.versus is not None
    rows = {r["design"]: r for r in panel.versus.to_dicts()}
    assert rows["measured"]["contended"] == locks.num_rows
    assert rows["measured"]["wait_ns_total"] == sum(locks.column("wait_ns").to_pylist())
    assert set(rows) == {"measured", "class", "pool"}
