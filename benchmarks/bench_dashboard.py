"""Dashboard size, build time and Chromium render time for a large trace.

Pipeline measured: ``ztrace synth`` trace (N events) -> ``replay`` under every registered
lock design -> results directory -> ``build_dashboard`` -> headless Chromium render.
Prints one JSON line. The anchor, measured in the same process, is the same results inlined
*without* pre-aggregation (every timeline and classes row as JSON records): what a dashboard
would weigh if it skipped :func:`ztrace.look.dashboard.prepare`.

    .venv/bin/python -m benchmarks.bench_dashboard                 # 10 M events
    .venv/bin/python -m benchmarks.bench_dashboard --events 1000000 --runs 5

``--fleet-hosts N`` measures the fleet page instead (``ztrace fleet dashboard`` over a
synthetic sweep of N hosts, ``tests/support/fleet.py``): build time, size and Chromium
render time, against the same page for ``--fleet-anchor`` hosts (default 10) rendered in
the same browser, alternately, in the same run. The render time is claimed here and not in
``tests/test_fleet_browser.py``, which checks what the page draws.

    .venv/bin/python -m benchmarks.bench_dashboard --fleet-hosts 1000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _trace(events: int, work: Path) -> Path:
    from ztrace.format import write_trace
    from ztrace.workloads.synth import synth, synth_meta

    out = work / f"trace-{events}"
    if not (out / "part-00000.parquet").exists():
        write_trace(
            out,
            synth("zram-parallel", events=events, seed=1, cpus=4),
            synth_meta("zram-parallel", cpus=4, seed=1, events=events),
        )
    return out


def _results(trace: Path, work: Path) -> tuple[Path, float]:
    from ztrace.replay.engine import replay, write_results
    from ztrace.replay.locks import available

    out = work / f"results-{trace.name}"
    if (out / "timeline.parquet").exists():
        return out, float("nan")
    t = time.perf_counter()
    res = replay(trace, locks=list(available()))
    took = time.perf_counter() - t
    write_results(res, out)
    return out, took


def _render_seconds(html: Path, runs: int) -> tuple[list[float], int, list[str]]:
    from tests.support.browser import chromium, marks, serve, severe_logs, wait_ready

    site = html.parent
    times = []
    with serve(site) as served, chromium() as driver:
        for _ in range(runs):
            driver.get("about:blank")
            driver.get(served.url + html.name)
            times.append(wait_ready(driver, timeout=120))
        drawn = sum(
            len(marks(driver, "locks", c) or [])
            for c in ("timeline", "compare", "memory", "wait_cdf", "heatmap")
        )
        errors = [e["message"] for e in severe_logs(driver)]
    return times, drawn, errors


def _machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _fleet_page(hosts: int, work: Path, site: Path) -> tuple[Path, float, int]:
    """Build ``site/fleet-N.html`` for ``hosts`` synthetic hosts; its path, build seconds
    and bytes."""
    from tests.support.fleet import synthetic_fleet_dataset
    from ztrace.fleet import read_fleet
    from ztrace.look.fleet import build_page

    data = synthetic_fleet_dataset(work / f"fleet-{hosts}", hosts)
    t = time.perf_counter()
    page = build_page(read_fleet(data), source=str(data), top=20)
    took = time.perf_counter() - t
    html = site / f"fleet-{hosts}.html"
    html.write_text(page)
    return html, took, len(page.encode())


def fleet_main(args: argparse.Namespace) -> int:
    """The fleet page for ``--fleet-hosts`` against ``--fleet-anchor`` hosts, loaded
    alternately in one browser (a first, unmeasured load of each warms it)."""
    from tests.support.browser import chromium, marks, serve, severe_logs, wait_ready

    site = args.work / "fleet-site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    sizes = (args.fleet_hosts, args.fleet_anchor)
    pages = {n: _fleet_page(n, args.work, site) for n in sizes}
    render: dict[int, list[float]] = {n: [] for n in sizes}
    drawn = 0
    with serve(site) as served, chromium() as driver:
        for i in range(args.runs + 1):
            for n in sizes:
                driver.get("about:blank")
                driver.get(served.url + pages[n][0].name)
                seconds = wait_ready(driver, timeout=120)
                if i:
                    render[n].append(seconds)
                if n == args.fleet_hosts:
                    drawn = len(marks(driver, "fleet", "ratio_hist") or [])
        errors = [e["message"] for e in severe_logs(driver)]
    med = {n: statistics.median(v) for n, v in render.items()}
    line = {
        "bench": "fleet_page",
        "machine": _machine(),
        "hosts": args.fleet_hosts,
        "anchor_hosts": args.fleet_anchor,
        "build_s": round(pages[args.fleet_hosts][1], 3),
        "html_bytes": pages[args.fleet_hosts][2],
        "render_s_median": round(med[args.fleet_hosts], 3),
        "render_s": [round(x, 3) for x in render[args.fleet_hosts]],
        "anchor_render_s_median": round(med[args.fleet_anchor], 3),
        "anchor_render_s": [round(x, 3) for x in render[args.fleet_anchor]],
        "render_ratio_vs_anchor": round(med[args.fleet_hosts] / med[args.fleet_anchor], 3),
        "histogram_bins_drawn": drawn,
        "console_errors": errors,
    }
    print(json.dumps(line), flush=True)
    return 0 if not errors else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--fleet-hosts", type=int, default=None, help="measure the fleet page")
    ap.add_argument("--fleet-anchor", type=int, default=10)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.fleet_hosts is not None:
        return fleet_main(args)

    from ztrace.format import read_results
    from ztrace.look.dashboard import build_dashboard, javascript_bundle

    t = time.perf_counter()
    trace = _trace(args.events, args.work)
    synth_s = time.perf_counter() - t
    results_dir, replay_s = _results(trace, args.work)
    javascript_bundle()  # warm the bundle cache: its one-off cost is not per dashboard

    site = args.work / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    builds = []
    for _ in range(args.runs):
        r = build_dashboard(results_dir, site / "index.html", force=True)  # each run replaces it
        builds.append(r.seconds)
    size = r.bytes
    # Anchor: the same tables inlined raw (no re-binning), as JSON records.
    res = read_results(results_dir)
    raw = sum(
        len(json.dumps(res[n].to_dicts()))
        for n in ("timeline", "classes", "wait_hist")
        if res.has(n)
    ) + len(javascript_bundle())
    render, drawn, errors = _render_seconds(site / "index.html", args.runs)
    line = {
        "bench": "dashboard",
        "machine": _machine(),
        "events": args.events,
        "lock_designs": res["locks_summary"]["lock_design"].to_list(),
        "results_rows": {n: res[n].height for n in res.tables},
        "synth_s": round(synth_s, 2),
        "replay_s": None if replay_s != replay_s else round(replay_s, 2),
        "build_s_median": round(statistics.median(builds), 3),
        "build_s": [round(b, 3) for b in builds],
        "html_bytes": size,
        "raw_inline_bytes": raw,
        "size_ratio_vs_raw": round(size / raw, 4),
        "render_s_median": round(statistics.median(render), 3),
        "render_s": [round(x, 3) for x in render],
        "marks_drawn": drawn,
        "console_errors": errors,
    }
    print(json.dumps(line), flush=True)
    return 0 if not errors and size < 10e6 else 1


if __name__ == "__main__":
    sys.exit(main())
