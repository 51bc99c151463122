"""The fleet page with 1,000 synthetic hosts in real headless Debian Chromium.

What it draws is checked here; how fast it renders is claimed in benchmarks/README.md
("fleet page", `benchmarks/bench_dashboard.py --fleet-hosts 1000`), not timed in a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.browser import CHROMEDRIVER, CHROMIUM
from tests.support.fleet import synthetic_fleet_dataset

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.skipif(not Path(CHROMEDRIVER).exists(), reason=f"{CHROMEDRIVER} not installed"),
]


def test_fleet_page_with_1000_hosts_renders_and_names_the_worst(tmp_path: Path) -> None:
    from tests.support.browser import chromium, marks, serve, severe_logs, wait_ready

    data = synthetic_fleet_dataset(tmp_path / "fleet", 1000)
    site = tmp_path / "site"
    site.mkdir()
    r = run_cli("fleet", "dashboard", str(data), "-o", str(site / "index.html"))
    assert r.returncode == 0, r.stderr
    with serve(site) as served, chromium() as driver:
        driver.get(served.url + "index.html")
        wait_ready(driver)
        assert severe_logs(driver) == []
        assert len(served.requests) == 1  # one offline file
        hist = marks(driver, "fleet", "ratio_hist")
        worst = marks(driver, "fleet", "worst")
        gl = marks(driver, "fleet", "gain_lose")
    # aggregated: every host counted once per design, in 40 bins or fewer per design
    assert hist and sum(m["hosts"] for m in hist) == 2000 and len(hist) <= 80
    assert sum(m["hosts"] for m in gl) == 2000
    # the 20 worst per design, each with its trace for the tooltip
    assert worst and len(worst) == 40
    assert all(m["trace_path"].startswith("/fleet/host=") for m in worst)
    pool = sorted(
        (m for m in worst if m["design"].startswith("locks:pool")), key=lambda m: m["rank"]
    )
    assert pool[0]["ratio"] >= pool[-1]["ratio"] > 1
