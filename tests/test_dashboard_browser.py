"""The dashboard in real headless Debian Chromium: renders, draws data, and the brush links.

The page is served from 127.0.0.1 and driven through chromedriver. The checks read Vega's
scenegraph (what is drawn), not the spec, and the brush is a real pointer drag.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import CHROMEDRIVER, CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.skipif(not Path(CHROMEDRIVER).exists(), reason=f"{CHROMEDRIVER} not installed"),
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "artifacts"

ALL_CHARTS = [
    ("locks", "timeline"),
    ("locks", "compare"),
    ("locks", "memory"),
    ("locks", "wait_cdf"),
    ("locks", "heatmap"),
    ("lru", "sweep"),
    ("lru", "tiers"),
    ("lru", "lru_time"),
]


def _page(tmp_path: Path, source: Path) -> Path:
    from ztrace.look.dashboard import build_dashboard

    site = tmp_path / "site"
    site.mkdir()
    build_dashboard(source, site / "index.html")
    return site


def _load(driver, served) -> None:
    from tests.support.browser import severe_logs, wait_ready

    driver.get(served.url + "index.html")
    wait_ready(driver)
    assert severe_logs(driver) == []
    # One request only: the page itself. No scripts, fonts or icons from anywhere else.
    assert len(served.requests) == 1 and "GET /index.html" in served.requests[0]


def test_sample_dashboard_renders_and_brush_filters(tmp_path: Path) -> None:
    """Fixture results (every results file, synthetic numbers) exercise every chart."""
    from tests.support.browser import chromium, drag, marks, plot_rect, serve
    from tests.support.sample import write_sample_results

    site = _page(tmp_path, write_sample_results(tmp_path / "results", n_bins=200))
    with serve(site) as served, chromium() as driver:
        _load(driver, served)
        drawn = {c: marks(driver, s, c) for s, c in ALL_CHARTS}
        for chart, items in drawn.items():
            assert items, f"{chart}: no marks drawn"
        # 3 designs x 200 bins on the timeline; 3 design bars; 3 LRU designs x 6 limits.
        assert len(drawn["timeline"]) == 600
        assert sorted(r["lock_design"] for r in drawn["compare"]) == ["class", "pool", "stripe4"]
        assert len(drawn["sweep"]) == 18
        # tiers start at the preselected (middle) pool limit: one limit, 3 designs x 2 tiers.
        assert {r["pool_limit_pages"] for r in drawn["tiers"]} == {6144}
        assert len(drawn["tiers"]) == 6

        before_rate = {r["lock_design"]: r["rate_pct"] for r in drawn["compare"]}
        # Drag across the burst in the middle of the timeline (40 %..60 % of the x range).
        left, top, w, h = plot_rect(driver, "locks", "timeline")
        drag(driver, left + 0.4 * w, top + h / 2, left + 0.6 * w)
        driver.execute_async_script(
            "const done = arguments[0]; window.ztrace.views.locks.runAsync().then(() => done(1));"
        )
        after = {c: marks(driver, "locks", c) for c in ("compare", "memory", "heatmap")}
        after_rate = {r["lock_design"]: r["rate_pct"] for r in after["compare"]}
        # The burst has a higher contention rate than the whole run, for every design.
        for d in before_rate:
            assert after_rate[d] > before_rate[d] * 1.5, (d, before_rate[d], after_rate[d])
        # Memory and heatmap now show only the brushed ~20 % of the run.
        ts = [r["t"] for r in after["memory"]]
        assert 0 < len(ts) < 0.3 * len(drawn["memory"])
        assert min(ts) >= 0.35 * 2000 and max(ts) <= 0.65 * 2000
        assert 0 < len(after["heatmap"]) < 0.4 * len(drawn["heatmap"])

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        from tests.support.browser import severe_logs

        assert severe_logs(driver) == []


def _real_results(tmp_path: Path, cli) -> Path:
    """Results written by the real replay (`ztrace replay`)."""
    from ztrace.format import write_trace
    from ztrace.workloads import synth

    trace = tmp_path / "trace"
    write_trace(
        trace,
        synth.synth("zram-parallel", events=50_000, seed=3),
        synth.synth_meta("zram-parallel", cpus=4, seed=3, events=50_000),
    )
    out = tmp_path / "results"
    r = cli("replay", str(trace), "--locks", "class,pool,striped", "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_real_replay_results_render_and_brush(tmp_path: Path, cli) -> None:
    """End to end on real replay output: every lock chart draws data, the brush links."""
    from tests.support.browser import chromium, drag, marks, plot_rect, serve, severe_logs
    from ztrace.format import read_results

    results = _real_results(tmp_path, cli)
    site = _page(tmp_path, results)
    html = (site / "index.html").read_text()
    assert "Not shown" in html  # a lock replay has no LRU files, and the page says so
    with serve(site) as served, chromium() as driver:
        _load(driver, served)
        # where every cost came from (issue 10 item 2): on screen, as the results store it
        from selenium.webdriver.common.by import By

        section = driver.find_element(By.ID, "cost-provenance")
        assert section.is_displayed() and section.size["height"] > 0
        shown = driver.execute_script(
            "return [...document.querySelectorAll('#cost-provenance table.prov tr')]"
            ".slice(1).map(r => [r.cells[0].innerText, r.cells[1].innerText]);"
        )
        assert dict(shown) == read_results(results).summary["cost_provenance"]
        drawn = {
            c: marks(driver, "locks", c)
            for c in ("timeline", "compare", "memory", "wait_cdf", "heatmap")
        }
        for chart, items in drawn.items():
            assert items, f"{chart}: no marks drawn"
        assert sorted(r["lock_design"] for r in drawn["compare"]) == ["class", "pool", "striped:8"]
        assert marks(driver, "lru", "sweep") is None  # no LRU section at all
        # The pool lock contends more than per-class locks on a parallel workload.
        rate = {r["lock_design"]: r["rate_pct"] for r in drawn["compare"]}
        assert rate["pool"] > rate["class"]
        left, top, w, h = plot_rect(driver, "locks", "timeline")
        drag(driver, left + 0.1 * w, top + h / 2, left + 0.3 * w)
        driver.execute_async_script(
            "const done = arguments[0]; window.ztrace.views.locks.runAsync().then(() => done(1));"
        )
        after = marks(driver, "locks", "compare")
        acq_before = {r["lock_design"]: r["acquisitions"] for r in drawn["compare"]}
        acq_after = {r["lock_design"]: r["acquisitions"] for r in after}
        for d in acq_before:
            assert 0 < acq_after[d] < 0.5 * acq_before[d], d
        assert 0 < len(marks(driver, "locks", "heatmap")) < len(drawn["heatmap"])
        assert severe_logs(driver) == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-replay.png"))


def test_real_sweep_click_picks_tier_limit(tmp_path: Path, cli) -> None:
    """`ztrace sweep` output: clicking a pool limit in the sweep re-filters the tier bars."""
    from tests.support.browser import chromium, click_item, marks, serve, severe_logs

    trace, out = tmp_path / "swap", tmp_path / "sweep"
    r = cli("synth", "--profile", "phase-change", "--scale", "0.1", "-o", str(trace))
    assert r.returncode == 0, r.stderr
    r = cli(
        "sweep",
        str(trace),
        "--lru",
        "none,entry-lru,swap-lru",
        "--pool-limits",
        "512:2048:512",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    site = _page(tmp_path, out)
    with serve(site) as served, chromium() as driver:
        _load(driver, served)
        pts = marks(driver, "lru", "sweep")
        assert pts and len(pts) == 3 * 4
        before = marks(driver, "lru", "tiers")
        # Preselected: the middle of the 4 limits.
        assert {t["pool_limit_pages"] for t in before} == {1536}
        click_item(driver, "lru", "sweep", {"lru_design": "none", "pool_limit_pages": 512})
        driver.execute_async_script(
            "const done = arguments[0]; window.ztrace.views.lru.runAsync().then(() => done(1));"
        )
        after = marks(driver, "lru", "tiers")
        assert {t["pool_limit_pages"] for t in after} == {512}
        want = {(p["lru_design"], p["zswap_hits"]) for p in pts if p["pool_limit_pages"] == 512}
        got = {(t["lru_design"], t["hits"]) for t in after if t["tier"] == "zswap"}
        assert got == want
        assert severe_logs(driver) == []
        driver.save_screenshot(str(ARTIFACTS / "dashboard-sweep.png"))
